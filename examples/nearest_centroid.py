"""Nearest class centroid with GLC's correction, as a `command` stage (Python 3 standard
library only; the formats it reads and writes are in docs/formats.md).

The model: one centroid per class and a shared isotropic variance s², that is a Gaussian
classifier p(y = i | x) ∝ π_i exp(-‖x − μ_i‖² / 2s²), predicting the nearest centroid
(with the class prior).

1. Fit it on the noisy labels of every training example: p̃(ỹ | x).
2. Estimate the corruption matrix as GLC does (Hendrycks et al. 2018, eq. in §3):
   Ĉ[i][j] = mean over the trusted examples x of class i of p̃(ỹ = j | x).
   A class without trusted examples keeps the identity row.
3. Refit on the corrected labels by EM: a trusted example counts for its clean class; an
   untrusted example with noisy label ỹ counts for class i with weight
   p(y = i | x, ỹ) ∝ p(y = i | x) Ĉ[i][ỹ], the posterior under the current model. Starts
   from the trusted examples' centroids.

Arguments (`args:` of the stage):
  iterations  EM iterations (default 5)
  shrink      share by which every centroid is pulled towards the mean of all training
              examples, against few or noisy examples (default 0.0)

Outputs: metrics.json (one "epoch" per EM iteration; extras: Ĉ's distances to the true C,
and the identity's, for the T-estimation table), c_hat.json. Progress goes to
REPRO_CHECKPOINT/state.json after each iteration; an interrupted run (SIGINT) resumes
there.
"""

import json
import math
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from repro_io import Stage, frobenius, mean_row_l1  # noqa: E402


def fit(xs, weights, k, shrink):
    """Centroids, priors and the shared variance from soft class weights."""
    d = len(xs[0])
    grand = [sum(x[j] for x in xs) / len(xs) for j in range(d)]
    mass = [sum(w[i] for w in weights) for i in range(k)]
    mus = []
    for i in range(k):
        if mass[i] <= 0:
            mus.append(list(grand))
            continue
        s = [0.0] * d
        for x, w in zip(xs, weights):
            if w[i]:
                wi = w[i]
                for j in range(d):
                    s[j] += wi * x[j]
        mus.append([(1 - shrink) * v / mass[i] + shrink * g for v, g in zip(s, grand)])
    total = sum(mass)
    prior = [max(m / total, 1e-6) for m in mass]
    sq = 0.0
    for x, w in zip(xs, weights):
        for i in range(k):
            if w[i]:
                sq += w[i] * sum((a - b) ** 2 for a, b in zip(x, mus[i]))
    var = max(sq / (total * d), 1e-6)
    return {"mus": mus, "prior": prior, "var": var}


def posterior(model, x):
    logits = [
        math.log(p) - sum((a - b) ** 2 for a, b in zip(x, mu)) / (2 * model["var"])
        for mu, p in zip(model["mus"], model["prior"])
    ]
    top = max(logits)
    e = [math.exp(v - top) for v in logits]
    z = sum(e)
    return [v / z for v in e]


def accuracy(model, xs, ys):
    hits = 0
    for x, y in zip(xs, ys):
        p = posterior(model, x)
        hits += max(range(len(p)), key=p.__getitem__) == y
    return hits / len(ys)


def one_hot(label, k):
    return [1.0 if i == label else 0.0 for i in range(k)]


def estimate_c(noisy_model, xs, noisy, trusted, k):
    sums = [[0.0] * k for _ in range(k)]
    counts = [0] * k
    for t in trusted:
        y = noisy[t]  # a trusted example's label is clean
        for j, p in enumerate(posterior(noisy_model, xs[t])):
            sums[y][j] += p
        counts[y] += 1
    return [
        [v / counts[i] for v in sums[i]] if counts[i] else one_hot(i, k) for i in range(k)
    ]


def em_step(model, xs, noisy, is_trusted, c_hat, k):
    """New weights from the current model, and the mean noisy-label log loss."""
    weights, loss = [], 0.0
    for x, yt, tr in zip(xs, noisy, is_trusted):
        if tr:
            weights.append(one_hot(yt, k))
            continue
        p = posterior(model, x)
        joint = [p[i] * c_hat[i][yt] for i in range(k)]
        z = sum(joint)
        loss -= math.log(max(z, 1e-12))
        weights.append([v / z for v in joint] if z > 0 else p)
    return weights, loss / max(1, len(xs) - sum(is_trusted))


def save_state(path, state):
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(state, f)
    os.replace(tmp, path)


def main():
    st = Stage()
    ds, nl = st.dataset("data"), st.noise("noise")
    k, xs, noisy = ds.num_classes, ds.train_x, nl.noisy
    iterations = int(st.args.get("iterations", 5))
    shrink = float(st.args.get("shrink", 0.0))
    is_trusted = [False] * len(xs)
    for t in nl.trusted:
        is_trusted[t] = True

    state_file = os.path.join(st.checkpoint, "state.json")
    if os.path.exists(state_file):
        with open(state_file) as f:
            state = json.load(f)
    else:
        noisy_model = fit(xs, [one_hot(y, k) for y in noisy], k, shrink)
        c_hat = estimate_c(noisy_model, xs, noisy, nl.trusted, k)
        trusted_weights = [one_hot(y, k) if tr else [0.0] * k for y, tr in zip(noisy, is_trusted)]
        model = fit(xs, trusted_weights, k, shrink)
        state = {"c_hat": c_hat, "model": model, "epochs": []}
        save_state(state_file, state)

    try:
        while len(state["epochs"]) < iterations:
            weights, loss = em_step(state["model"], xs, noisy, is_trusted, state["c_hat"], k)
            state["model"] = fit(xs, weights, k, shrink)
            acc = accuracy(state["model"], ds.test_x, ds.test_y)
            state["epochs"].append(
                {"epoch": len(state["epochs"]) + 1, "phase": "em", "train_loss": loss,
                 "test_accuracy": acc}
            )
            save_state(state_file, state)
            print("iteration %d: loss %.4f, test accuracy %.4f" % (len(state["epochs"]), loss, acc))
    except KeyboardInterrupt:
        save_state(state_file, state)
        print("interrupted; progress saved")
        sys.exit(130)

    c_hat = state["c_hat"]
    identity = [one_hot(i, k) for i in range(k)]
    extra = {
        "c_hat_frobenius_to_true_c": frobenius(c_hat, nl.true_c),
        "c_hat_mean_row_l1_to_true_c": mean_row_l1(c_hat, nl.true_c),
        "identity_frobenius_to_true_c": frobenius(identity, nl.true_c),
        "identity_mean_row_l1_to_true_c": mean_row_l1(identity, nl.true_c),
    }
    final = state["epochs"][-1]["test_accuracy"] if state["epochs"] else accuracy(
        state["model"], ds.test_x, ds.test_y)
    st.write_c_hat(c_hat)
    st.write_metrics(ds, nl, "nearest_centroid", state["epochs"], final, extra)


if __name__ == "__main__":
    main()
