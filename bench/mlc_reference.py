"""Meta Loss Correction with exact second-order hypergradients: a PyTorch reference for
the `train_mlc` kind's textbook variant.

The kind (stages/src/kinds/train_mlc.rs, equations (1)-(6)) learns a persistent noise
transition matrix T on the trusted set; because dfdx has no second derivatives it takes the
hypergradient of T by the finite difference of DARTS (stages/src/nn/hypergrad.rs). This
program runs the same loop with the hypergradient taken exactly, by differentiating through
the virtual SGD step with autograd, so that the kind's numbers (test accuracy, T's diagonal,
T's distance to the true corruption matrix C) can be set beside an independent computation.

    L_train(θ, T) = 1/B Σ_b −log Σ_j softmax(f_θ(x_b))_j T[j, ỹ_b]     untrusted rows  (1)
                    (trusted rows: plain cross-entropy on their clean label, T = I)
    θ'  = θ − α ∇_θ L_train(θ, T)                                                        (2)
    L_meta(θ') = 1/M Σ_m CE(f_θ'(x_m), y_m), M trusted examples drawn without replacement (3)
    h   = ∂L_meta(θ'(T)) / ∂T                                                 exact      (4)
    T   ← Π(T − β h), Π: clamp every entry at 1e-6, divide each row by its sum             (5)
    θ   ← Adam step on ∇_θ L_train(θ, T), with the new T                                 (6)

With `--t-max-step c` each entry's change −β h is clipped to [−c, c] before Π.

`--fd-check N` also computes, at steps 0..20 and at N evenly spaced steps, the finite
difference the kind uses, in float32 on the same θ, T and batches,

    v = ∇_θ' L_meta(θ'),  ε = eps0 / ‖v‖,
    h_fd = −α (∇_T L_train(θ + εv, T) − ∇_T L_train(θ − εv, T)) / (2ε),

with ∇_T L_train in closed form from the logits (−p_bj / q_b / B at column ỹ_b for each
untrusted row), and prints its relative error, the largest |h| and the cosine against the
exact hypergradient (and the exact one recomputed in float64).

The protocol is GLC's on MNIST-like data: MLP 784-128-128-10 with ReLU, Adam (lr 1e-3,
L2 weight decay 1e-6 added to the gradient), batch 32, shuffled each epoch, every training
example with its noisy label (trusted ones with their clean label, as `train_on_trusted`).

    mlc_reference.py DATASET_DIR NOISE_DIR [--epochs 10] [--t-lr 1.0] [--t-max-step C]
                     [--meta-batch 32] [--seed 1] [--warmup-epochs 0] [--fd-check N]

DATASET_DIR is a `download` output, NOISE_DIR an `inject_noise` output (docs/formats.md).
Per epoch it prints the test accuracy, T's mean diagonal and T's Frobenius distance to the
true C; the last line is a JSON summary.
"""

import argparse
import json
import math
import os
import struct
import sys
import time
import warnings

# torch warns at import when NumPy is absent; nothing here uses NumPy.
warnings.filterwarnings("ignore", message="Failed to initialize NumPy")
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

T_FLOOR = 1e-6

_DTYPES = {"U8": torch.uint8, "U32": torch.int32, "F32": torch.float32, "F64": torch.float64}


def read_safetensors(path):
    """name -> tensor. U32 is read as int32: every value stored here (labels, indices) is
    below 2^31, and the data is little-endian like the machines this runs on."""
    with open(path, "rb") as f:
        raw = f.read()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8 : 8 + n])
    body = bytearray(raw[8 + n :])
    out = {}
    for name, t in header.items():
        if name == "__metadata__":
            continue
        if t["dtype"] not in _DTYPES:
            raise SystemExit("%s: tensor %s has dtype %s, not one of %s"
                             % (path, name, t["dtype"], sorted(_DTYPES)))
        a, b = t["data_offsets"]
        dtype = _DTYPES[t["dtype"]]
        if b == a:
            out[name] = torch.zeros(t["shape"], dtype=dtype)
            continue
        flat = torch.frombuffer(body, dtype=dtype, count=(b - a) // dtype.itemsize, offset=a)
        out[name] = flat.clone().reshape(t["shape"])
    return out


def decode(x, enc, where):
    """Model inputs of a split's `x`, as the dataset's `encoding` says (float32)."""
    n = x.shape[0]
    if enc["kind"] == "features":
        return x.reshape(n, -1).float()
    if enc["kind"] != "pixels":
        raise SystemExit("%s: encoding %s is not handled (pixels or features)" % (where, enc["kind"]))
    scale = torch.tensor(enc["scale"], dtype=torch.float32)
    v = x.float() * scale
    if enc.get("mean") is not None:
        c = len(enc["mean"])
        v = v.reshape(n, c, -1)
        v = (v - torch.tensor(enc["mean"]).view(1, c, 1)) / torch.tensor(enc["std"]).view(1, c, 1)
    return v.reshape(n, -1).contiguous()


def load(data_dir, noise_dir):
    with open(os.path.join(data_dir, "dataset.json")) as f:
        meta = json.load(f)
    t = read_safetensors(os.path.join(data_dir, "dataset.safetensors"))
    with open(os.path.join(noise_dir, "noise.json")) as f:
        nmeta = json.load(f)
    n = read_safetensors(os.path.join(noise_dir, "noise.safetensors"))
    if nmeta.get("dataset_identity") != meta["identity"]:
        raise SystemExit("%s: noise.json's dataset_identity is not the identity of %s"
                         % (noise_dir, data_dir))
    ds = {
        "meta": meta,
        "train_x": decode(t["train.x"], meta["encoding"], data_dir),
        "test_x": decode(t["test.x"], meta["encoding"], data_dir),
        "test_y": t["test.y"].long(),
    }
    nl = {
        "meta": nmeta,
        "noisy": n["noisy"].long(),
        "clean": n["clean"].long(),
        "trusted": n["trusted"].long(),
        "true_c": n["true_c"].double(),
    }
    if nl["noisy"].shape[0] != ds["train_x"].shape[0]:
        raise SystemExit("%s: %d noisy labels for %d training examples"
                         % (noise_dir, nl["noisy"].shape[0], ds["train_x"].shape[0]))
    return ds, nl


# ---- the network, as plain tensors so that θ' can be a function of θ and T ----

def init_mlp(sizes, gen):
    """Linear layers with weight and bias drawn from U(−1/√fan_in, 1/√fan_in)."""
    params = []
    for i, o in zip(sizes[:-1], sizes[1:]):
        bound = 1.0 / math.sqrt(i)
        w = (torch.rand(o, i, generator=gen) * 2 - 1) * bound
        b = (torch.rand(o, generator=gen) * 2 - 1) * bound
        params += [w.requires_grad_(), b.requires_grad_()]
    return params


def forward(params, x):
    h = x
    last = len(params) // 2 - 1
    for layer in range(last + 1):
        h = F.linear(h, params[2 * layer], params[2 * layer + 1])
        if layer < last:
            h = F.relu(h)
    return h


def train_loss(z, labels, trusted, t):
    """Loss (1), batch mean: −log Σ_j p_j T[j, ỹ] on untrusted rows, plain CE on trusted
    rows (T = I there, so T does not enter them)."""
    logp = F.log_softmax(z, dim=1)
    ce = -logp.gather(1, labels[:, None])[:, 0]
    q = (logp.exp() @ t).gather(1, labels[:, None])[:, 0]
    # Trusted rows take log(1) here, so that no value of T can reach their gradient.
    corrected = -torch.log(torch.where(trusted, torch.ones_like(q), q))
    per = torch.where(trusted, ce, corrected)
    return per.mean()


def project_rows(t):
    t = t.clamp_min(T_FLOOR)
    return t / t.sum(dim=1, keepdim=True)


# ---- the hypergradient ----

def exact_hypergradient(params, t, xb, yb, trb, xm, ym, alpha, want_v=False):
    """(meta loss, h = ∂L_meta(θ'(T))/∂T, v = ∇_θ' L_meta when asked), differentiating
    through the virtual step. `params` are leaves; `t` is a tensor of their dtype."""
    t = t.detach().clone().requires_grad_(True)
    z = forward(params, xb)
    lt = train_loss(z, yb, trb, t)
    g = torch.autograd.grad(lt, params, create_graph=True)
    looked = [p - alpha * gi for p, gi in zip(params, g)]
    lm = F.cross_entropy(forward(looked, xm), ym)
    if want_v:
        out = torch.autograd.grad(lm, looked + [t])
        return lm.item(), out[-1].detach(), [v.detach() for v in out[:-1]]
    (h,) = torch.autograd.grad(lm, [t])
    return lm.item(), h.detach(), None


def t_grad_closed_form(z, labels, trusted, t64):
    """∂L_train/∂T from float32 logits, in float64: −p_bj / q_b / B at [j, ỹ_b] for each
    untrusted row b; then rounded to float32."""
    k = t64.shape[0]
    b = labels.shape[0]
    p = torch.softmax(z.double(), dim=1)
    g = torch.zeros(k, k, dtype=torch.float64)
    for bi in range(b):
        if trusted[bi]:
            continue
        y = int(labels[bi])
        q = (p[bi] * t64[:, y]).sum()
        g[:, y] -= p[bi] / q / b
    return g.float()


def f32(v):
    """`v` rounded to float32, as a Python float."""
    return float(torch.tensor(v, dtype=torch.float32))


def fd_hypergradient(params, v, t64, xb, yb, trb, alpha, eps0):
    """The finite-difference hypergradient in float32 at θ ± εv, ε = eps0/‖v‖."""
    # α and eps0 are float32 numbers widened to float64, as in the kind.
    alpha = f32(alpha)
    nv = math.sqrt(sum(float((vi.double() ** 2).sum()) for vi in v))
    if nv == 0.0 or not math.isfinite(nv):
        return torch.zeros_like(t64)
    eps = f32(f32(eps0) / nv)
    eps32 = torch.tensor(eps, dtype=torch.float32)
    with torch.no_grad():
        plus = [p.detach() + eps32 * vi for p, vi in zip(params, v)]
        minus = [p.detach() + (-eps32) * vi for p, vi in zip(params, v)]
        gp = t_grad_closed_form(forward(plus, xb), yb, trb, t64)
        gm = t_grad_closed_form(forward(minus, xb), yb, trb, t64)
    scale = -alpha / (2.0 * eps)
    h = ((gp.double() - gm.double()) * scale).float()
    return h.double()


def compare(h_ref, h):
    h_ref, h = h_ref.double().flatten(), h.double().flatten()
    nr = float(h_ref.norm())
    rel = float((h - h_ref).norm()) / nr if nr > 0 else float("nan")
    cos = float(h @ h_ref) / (nr * float(h.norm())) if nr > 0 and float(h.norm()) > 0 else float("nan")
    return rel, cos


# ---- training ----

def evaluate(params, x, y, batch=1000):
    correct = 0
    with torch.no_grad():
        for i in range(0, x.shape[0], batch):
            correct += int((forward(params, x[i : i + batch]).argmax(1) == y[i : i + batch]).sum())
    return correct / x.shape[0]


def t_stats(t, true_c):
    return float(torch.diagonal(t).mean()), float((t - true_c).norm())


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("data", help="a dataset folder (a `download` output)")
    ap.add_argument("noise", help="a noisy-labels folder (an `inject_noise` output)")
    ap.add_argument("--epochs", type=int, default=10, help="MLC epochs after the warm-up")
    ap.add_argument("--warmup-epochs", type=int, default=0, help="plain CE epochs first")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--lr", type=float, default=1e-3, help="Adam's learning rate")
    ap.add_argument("--weight-decay", type=float, default=1e-6, help="L2, added to the gradient")
    ap.add_argument("--virtual-lr", type=float, default=0.1, help="α of the virtual step")
    ap.add_argument("--t-lr", type=float, default=1.0, help="β of T's SGD step")
    ap.add_argument("--t-max-step", type=float, default=None,
                    help="clip each entry's change per meta step to ±value before Π")
    ap.add_argument("--meta-batch", type=int, default=32, help="trusted examples per meta batch")
    ap.add_argument("--t-init", choices=["identity", "true_c"], default="identity")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--hidden", type=int, nargs="*", default=[128, 128])
    ap.add_argument("--fd-check", type=int, default=0, metavar="N",
                    help="compare the finite difference with the exact hypergradient at "
                         "steps 0..20 and N evenly spaced steps")
    ap.add_argument("--eps0", type=float, default=0.01, help="eps0 of the finite difference")
    ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args()
    if a.epochs < 0 or a.warmup_epochs < 0 or a.batch_size < 1 or a.meta_batch < 1:
        raise SystemExit("epochs must be >= 0, batch sizes >= 1")
    torch.set_num_threads(a.threads)
    started = time.time()

    ds, nl = load(a.data, a.noise)
    k = ds["meta"]["num_classes"]
    x, y = ds["train_x"], nl["noisy"]
    n = x.shape[0]
    trusted = torch.zeros(n, dtype=torch.bool)
    trusted[nl["trusted"]] = True
    trusted_idx = nl["trusted"]
    if trusted_idx.numel() == 0:
        raise SystemExit("%s: no trusted examples, MLC needs a meta set" % a.noise)
    clean = nl["clean"]
    true_c = nl["true_c"]
    m = min(a.meta_batch, trusted_idx.numel())

    gen = torch.Generator().manual_seed(a.seed)
    params = init_mlp([x.shape[1]] + a.hidden + [k], gen)
    opt = torch.optim.Adam(params, lr=a.lr, betas=(0.9, 0.999), eps=1e-8,
                           weight_decay=a.weight_decay)
    shuffle_gen = torch.Generator().manual_seed(a.seed * 1000003 + 1)
    meta_gen = torch.Generator().manual_seed(a.seed * 1000003 + 2)
    t64 = torch.eye(k, dtype=torch.float64) if a.t_init == "identity" else project_rows(true_c)
    per_epoch = (n + a.batch_size - 1) // a.batch_size
    total = per_epoch * a.epochs

    checks = set()
    if a.fd_check > 0 and total > 0:
        checks = set(range(min(21, total)))
        if a.fd_check == 1:
            checks.add(0)
        else:
            checks |= {round(i * (total - 1) / (a.fd_check - 1)) for i in range(a.fd_check)}
    fd_rows = []

    d0, f0 = t_stats(t64, true_c)
    print("data %s: %d train (%d trusted), %d test; noise %s %s, actual rate %.4f"
          % (ds["meta"]["name"], n, trusted_idx.numel(), ds["test_x"].shape[0],
             nl["meta"]["corruption"], nl["meta"]["strength"], nl["meta"]["actual_noise_rate"]))
    print("identity: frobenius to true C %.4f" % float((torch.eye(k, dtype=torch.float64) - true_c).norm()))
    print("T init: mean diag %.4f, frobenius to true C %.4f" % (d0, f0), flush=True)

    history = []

    def batches():
        order = torch.randperm(n, generator=shuffle_gen)
        for b in range(per_epoch):
            idx = order[b * a.batch_size : (b + 1) * a.batch_size]
            yield x[idx], y[idx], trusted[idx]

    for epoch in range(a.warmup_epochs):
        loss_sum = 0.0
        for xb, yb, _ in batches():
            loss = F.cross_entropy(forward(params, xb), yb)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            loss_sum += loss.item()
        acc = evaluate(params, ds["test_x"], ds["test_y"])
        print("warmup epoch %d/%d: loss %.4f, test accuracy %.2f%%"
              % (epoch + 1, a.warmup_epochs, loss_sum / per_epoch, 100 * acc), flush=True)
        history.append({"phase": "warmup", "epoch": epoch + 1, "test_accuracy": acc})

    step = 0
    acc = evaluate(params, ds["test_x"], ds["test_y"])
    for epoch in range(a.epochs):
        loss_sum = meta_sum = 0.0
        t_start = time.time()
        for xb, yb, trb in batches():
            midx = trusted_idx[torch.randperm(trusted_idx.numel(), generator=meta_gen)[:m]]
            xm, ym = x[midx], clean[midx]
            t32 = t64.float()
            check = step in checks
            meta_loss, h, v = exact_hypergradient(params, t32, xb, yb, trb, xm, ym,
                                                  a.virtual_lr, want_v=check)
            if check:
                h_fd = fd_hypergradient(params, v, t64, xb, yb, trb, a.virtual_lr, a.eps0)
                p64 = [p.detach().double().requires_grad_(True) for p in params]
                _, h64, _ = exact_hypergradient(p64, t64, xb.double(), yb, trb, xm.double(), ym,
                                                a.virtual_lr)
                rel, cos = compare(h, h_fd)
                rel32, cos32 = compare(h64, h)
                rel64, cos64 = compare(h64, h_fd)
                row = {"step": step, "rel_err": rel, "cos": cos,
                       "max_abs_h": float(h.abs().max()), "max_abs_h_fd": float(h_fd.abs().max()),
                       "rel_err_vs_f64": rel64, "cos_vs_f64": cos64,
                       "exact_f32_vs_f64_rel": rel32}
                fd_rows.append(row)
                print("fd-check step %6d: rel err %.3e  cos %.6f  max|h| %.3e  max|h_fd| %.3e"
                      "  (vs exact f64: rel %.3e cos %.6f; exact f32 vs f64 rel %.1e)"
                      % (step, rel, cos, row["max_abs_h"], row["max_abs_h_fd"], rel64, cos64,
                         rel32), flush=True)
            if not torch.isfinite(h).all():
                raise SystemExit("the hypergradient of T is not finite at epoch %d step %d"
                                 % (epoch + 1, step))
            delta = -a.t_lr * h.double()
            if a.t_max_step is not None:
                delta = delta.clamp(-a.t_max_step, a.t_max_step)
            t64 = project_rows(t64 + delta)

            loss = train_loss(forward(params, xb), yb, trb, t64.float())
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if not math.isfinite(loss.item()):
                raise SystemExit("training diverged at epoch %d step %d" % (epoch + 1, step))
            loss_sum += loss.item()
            meta_sum += meta_loss
            step += 1
        acc = evaluate(params, ds["test_x"], ds["test_y"])
        diag, frob = t_stats(t64, true_c)
        print("mlc epoch %d/%d: loss %.4f, meta loss %.4f, test accuracy %.2f%%, "
              "T mean diag %.4f, T frobenius to true C %.4f  (%.0fs)"
              % (epoch + 1, a.epochs, loss_sum / per_epoch, meta_sum / per_epoch, 100 * acc,
                 diag, frob, time.time() - t_start), flush=True)
        history.append({"phase": "mlc", "epoch": epoch + 1, "test_accuracy": acc,
                        "t_mean_diag": diag, "t_frobenius_to_true_c": frob,
                        "train_loss": loss_sum / per_epoch, "meta_loss": meta_sum / per_epoch})

    print("T final (row = true class):")
    for row in t64.tolist():
        print("  " + " ".join("%.3f" % v for v in row))
    diag, frob = t_stats(t64, true_c)
    summary = {
        "final_test_accuracy": acc,
        "t_mean_diag": diag,
        "t_frobenius_to_true_c": frob,
        "identity_frobenius_to_true_c": float((torch.eye(k, dtype=torch.float64) - true_c).norm()),
        "settings": {
            "dataset": ds["meta"]["name"],
            "corruption": nl["meta"]["corruption"],
            "strength": nl["meta"]["strength"],
            "trusted_fraction": nl["meta"]["trusted_fraction"],
            "epochs": a.epochs, "warmup_epochs": a.warmup_epochs, "batch_size": a.batch_size,
            "lr": a.lr, "weight_decay": a.weight_decay, "virtual_lr": a.virtual_lr,
            "t_lr": a.t_lr, "t_max_step": a.t_max_step, "meta_batch": m, "t_init": a.t_init,
            "seed": a.seed, "hidden": a.hidden, "hypergradient": "exact",
        },
        "seconds": round(time.time() - started, 1),
    }
    if fd_rows:
        rels = sorted(r["rel_err"] for r in fd_rows)
        coss = sorted(r["cos"] for r in fd_rows)
        summary["fd_check"] = {
            "points": len(fd_rows), "eps0": a.eps0,
            "rel_err_median": rels[len(rels) // 2], "rel_err_max": rels[-1],
            "cos_median": coss[len(coss) // 2], "cos_min": coss[0],
        }
    print(json.dumps(summary))


if __name__ == "__main__":
    sys.exit(main())
