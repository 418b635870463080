"""The Forward baseline in PyTorch, as a `command` stage: a starting point for a method of
one's own (formats: docs/formats.md; run it as the README's "Your own method" says).

Forward loss correction (Patrini et al., "Making Deep Neural Networks Robust to Label
Noise: a Loss Correction Approach", CVPR 2017), as the `train` kind's `forward` method:

1. Phase 1: cross-entropy on every training example's (noisy) label.
2. Ĉ by anchor points: for each class i, among the softmax outputs p(x) of all training
   examples, drop the values of column i at or above their 97th percentile (numpy's
   "higher" interpolation, GLC's robust filter) and take Ĉ[i, :] = p(x*) at the arg-max x*
   of what remains.
3. Phase 2, from the same initial weights: the corrected loss −log Σ_i p_i(x) Ĉ[i, ỹ].

Arguments (`args:` of the stage), defaults as the `train` kind's for the digits:
  hidden      hidden layer widths of the MLP (default [128, 128])
  epochs      epochs per phase (default 20)
  batch_size  (default 32)
  lr          Adam's learning rate (default 1e-3)
  percentile  the anchor filter's percentile (default 97)

Outputs: metrics.json (epochs of both phases; extras: Ĉ's distances to the true C),
c_hat.json. The state after each epoch goes to REPRO_CHECKPOINT/state.pt; an interrupted
run resumes there.
"""

import math
import os
import sys

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from repro_io import Stage, frobenius, mean_row_l1  # noqa: E402


def mlp(d_in, hidden, k):
    layers, d = [], d_in
    for h in hidden:
        layers += [torch.nn.Linear(d, h), torch.nn.ReLU()]
        d = h
    layers.append(torch.nn.Linear(d, k))
    return torch.nn.Sequential(*layers)


def anchor_estimate(probs, percentile):
    n, k = probs.shape
    c = torch.zeros(k, k, dtype=probs.dtype)
    for i in range(k):
        col = probs[:, i].clone()
        sorted_col, _ = torch.sort(col)
        thresh = sorted_col[min(n - 1, math.ceil(percentile / 100.0 * (n - 1)))]
        col[col >= thresh] = 0.0
        c[i] = probs[torch.argmax(col)]
    return c


def main():
    st = Stage()
    torch.set_num_threads(st.threads)
    torch.manual_seed(st.seed)
    ds, nl = st.dataset("data"), st.noise("noise")
    a = st.args
    hidden = a.get("hidden", [128, 128])
    epochs, batch = int(a.get("epochs", 20)), int(a.get("batch_size", 32))
    lr, percentile = float(a.get("lr", 1e-3)), float(a.get("percentile", 97.0))
    x = torch.tensor(ds.train_x, dtype=torch.float32)
    y = torch.tensor(nl.noisy, dtype=torch.long)
    tx = torch.tensor(ds.test_x, dtype=torch.float32)
    ty = torch.tensor(ds.test_y, dtype=torch.long)
    k = ds.num_classes

    net = mlp(x.shape[1], hidden, k)
    init = {n: t.clone() for n, t in net.state_dict().items()}
    state_file = os.path.join(st.checkpoint, "state.pt")
    s = {"phase": 1, "epoch": 0, "history": [], "c_hat": None, "net": None, "opt": None,
         "rng": None}
    if os.path.exists(state_file):
        s = torch.load(state_file, weights_only=False)
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    if s["net"] is not None:
        net.load_state_dict(s["net"])
        opt.load_state_dict(s["opt"])
        torch.set_rng_state(s["rng"])

    def loss_of(logits, target, c_hat):
        if c_hat is None:
            return F.cross_entropy(logits, target)
        noisy_probs = F.softmax(logits, dim=1) @ c_hat.to(logits.dtype)
        return F.nll_loss(torch.log(noisy_probs.clamp_min(1e-12)), target)

    try:
        while s["phase"] <= 2:
            c_hat = None if s["phase"] == 1 else s["c_hat"]
            while s["epoch"] < epochs:
                net.train()
                perm, total = torch.randperm(len(x)), 0.0
                for b in range(0, len(x), batch):
                    idx = perm[b : b + batch]
                    loss = loss_of(net(x[idx]), y[idx], c_hat)
                    opt.zero_grad()
                    loss.backward()
                    opt.step()
                    total += loss.item() * len(idx)
                net.eval()
                with torch.no_grad():
                    acc = (net(tx).argmax(1) == ty).float().mean().item()
                s["epoch"] += 1
                s["history"].append({"epoch": s["epoch"], "phase": "phase%d" % s["phase"],
                                     "train_loss": total / len(x), "test_accuracy": acc})
                print("phase %d epoch %d: loss %.4f, test accuracy %.4f"
                      % (s["phase"], s["epoch"], total / len(x), acc), flush=True)
                s.update(net=net.state_dict(), opt=opt.state_dict(), rng=torch.get_rng_state())
                torch.save(s, state_file)
            if s["phase"] == 1:
                with torch.no_grad():
                    s["c_hat"] = anchor_estimate(F.softmax(net(x), dim=1).double(), percentile)
                net.load_state_dict(init)
                opt = torch.optim.Adam(net.parameters(), lr=lr)
            s.update(phase=s["phase"] + 1, epoch=0, net=net.state_dict(), opt=opt.state_dict(),
                     rng=torch.get_rng_state())
            torch.save(s, state_file)
    except KeyboardInterrupt:
        print("interrupted; progress saved at the last epoch", flush=True)
        sys.exit(130)

    c_hat = s["c_hat"].tolist()
    extra = {
        "c_hat_frobenius_to_true_c": frobenius(c_hat, nl.true_c),
        "c_hat_mean_row_l1_to_true_c": mean_row_l1(c_hat, nl.true_c),
    }
    st.write_c_hat(c_hat)
    st.write_metrics(ds, nl, "mlp", s["history"], s["history"][-1]["test_accuracy"], extra)


if __name__ == "__main__":
    main()
