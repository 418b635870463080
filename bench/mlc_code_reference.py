"""The released MLC code's protocol (`main.py` of Wang, Hu, Hu, CVPR 2020, commit 709fe1c),
re-implemented in PyTorch at CPU scale: the reference the `code_check` profile's
`train_mlc` members (`variant: official_code`) are compared with by bench/mlc_code_check.sh.

Only the network and the iteration counts are shrunk: an MLP (ReLU, PyTorch's default
initialisation) instead of meta_wrn.py's WRN-40-2, and the iteration counts given on the
command line. Everything else follows main.py:

* data: every training example with its noisy label; the meta set is the noise input's
  trusted set, drawn from the *test* split (`trusted_split: test`, Cifa10_val_build.py);
  the test runs on the other test examples (load_cifar10_data.py:93-107);
* warm-up (train_warm_up): SGD at --lr1 (0.1), momentum 0.9, weight decay 5e-4, on the
  mean cross-entropy; each iteration takes the first batch of a freshly shuffled loader,
  i.e. an independent draw of --batch examples (main.py:76-93); every --eval-every
  iterations (i % 100 == 0, after the step) the test accuracy is taken, and the weights
  are kept whenever it beats the best so far (main.py:95-113);
* MLC phase (train_MLC): a new SGD at --lr2 (1e-4), same momentum and weight decay,
  from the warm-up's best weights (main.py:120,139-141); per iteration, with T = I
  requiring a gradient:

      L(θ, T)   = Σ_b CE(f_θ(x_b) · T, ỹ_b)                  summed over the batch (1)
      θ'        = θ − 1e-3 ∇_θ L(θ, T)                      graph kept              (2)
      G         = ∂/∂T mean_m CE(f_θ'(x_m), y_m)            all meta examples       (3)
      T         ← clamp(T − 0.11 G, 0), each non-zero column divided by its sum     (4)
      θ         ← SGD step on Σ_b CE(f_θ(x_b) · T, ỹ_b)                             (5)

  (main.py:155-204), the logits multiplied by T, not the probabilities; the test
  accuracy every --eval-every iterations, the best of them is `Best_Test_Acc`
  (main.py:206-225).

The exact second-order gradient (3) is taken by autograd through (2), where the kind takes
a finite difference; batches are independent draws, where the kind shuffles once per
epoch. The last line printed is a JSON summary: the warm-up's best accuracy and iteration,
the MLC phase's best accuracy, and the final model's accuracy.

    mlc_code_reference.py DATASET_DIR NOISE_DIR --warmup-iters N --mlc-iters M
                          [--hidden 256] [--batch 64] [--seed 1] [--threads 1]
"""

import argparse
import copy
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from mlc_reference import evaluate, forward, init_mlp, load  # noqa: E402


def accuracy(params, x, y):
    with torch.no_grad():
        return evaluate(params, x, y)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("data_dir")
    ap.add_argument("noise_dir")
    ap.add_argument("--warmup-iters", type=int, required=True)
    ap.add_argument("--mlc-iters", type=int, required=True)
    ap.add_argument("--hidden", type=int, nargs="*", default=[256])
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--lr1", type=float, default=0.1)
    ap.add_argument("--lr2", type=float, default=1e-4)
    ap.add_argument("--momentum", type=float, default=0.9)
    ap.add_argument("--weight-decay", type=float, default=5e-4)
    ap.add_argument("--virtual-lr", type=float, default=1e-3)
    ap.add_argument("--t-lr", type=float, default=0.11)
    ap.add_argument("--eval-every", type=int, default=100)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    gen = torch.Generator().manual_seed(a.seed)

    ds, nl = load(a.data_dir, a.noise_dir)
    if nl["meta"].get("trusted_split") != "test":
        raise SystemExit("%s: the meta set must come from the test split "
                         "(inject_noise's trusted_split: test)" % a.noise_dir)
    k = ds["meta"]["num_classes"]
    x, y = ds["train_x"], nl["noisy"]
    meta = nl["trusted"]
    rest = torch.ones(ds["test_x"].shape[0], dtype=torch.bool)
    rest[meta] = False
    xm, ym = ds["test_x"][meta], ds["test_y"][meta]
    xt, yt = ds["test_x"][rest], ds["test_y"][rest]
    n = x.shape[0]

    def draw():
        idx = torch.randperm(n, generator=gen)[: a.batch]
        return x[idx], y[idx]

    def sgd(params, lr):
        return torch.optim.SGD(params, lr=lr, momentum=a.momentum, weight_decay=a.weight_decay)

    # ---- warm-up: plain CE, the best evaluation's weights kept ----
    params = init_mlp([x.shape[1]] + a.hidden + [k], gen)
    opt = sgd(params, a.lr1)
    best_w, best_w_acc, best_w_iter = None, 0.0, None
    for i in range(a.warmup_iters):
        xb, yb = draw()
        loss = F.cross_entropy(forward(params, xb), yb)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if i % a.eval_every == 0:
            acc = accuracy(params, xt, yt)
            if acc > best_w_acc:
                best_w_acc, best_w_iter = acc, i
                best_w = [p.detach().clone() for p in params]
    if best_w is None:
        raise SystemExit("the warm-up's evaluations were all 0")

    # ---- MLC phase: from the best warm-up weights, a new SGD ----
    params = [p.clone().requires_grad_() for p in best_w]
    opt = sgd(params, a.lr2)
    best, last = 0.0, None
    for i in range(a.mlc_iters):
        xb, yb = draw()
        t = torch.eye(k, requires_grad=True)
        loss = F.cross_entropy(forward(params, xb) @ t, yb, reduction="sum")
        grads = torch.autograd.grad(loss, params, create_graph=True)
        looked = [p - a.virtual_lr * g for p, g in zip(params, grads)]
        meta_loss = F.cross_entropy(forward(looked, xm), ym)
        g_t = torch.autograd.grad(meta_loss, t)[0]
        with torch.no_grad():
            t = torch.clamp(t - a.t_lr * g_t, min=0)
            col = t.sum(0)
            t = torch.where(col > 0, t / torch.where(col > 0, col, 1), t)
        loss = F.cross_entropy(forward(params, xb) @ t, yb, reduction="sum")
        opt.zero_grad()
        loss.backward()
        opt.step()
        if i % a.eval_every == 0:
            last = accuracy(params, xt, yt)
            best = max(best, last)
    final = accuracy(params, xt, yt)
    print(json.dumps({
        "seed": a.seed,
        "warmup_best_test_accuracy": best_w_acc,
        "warmup_best_iteration": best_w_iter,
        "best_test_accuracy": best,
        "final_test_accuracy": final,
        "test_examples": int(rest.sum()),
        "meta_examples": int(meta.shape[0]),
    }))


if __name__ == "__main__":
    main()
