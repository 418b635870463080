"""The comparison of bench/mlc_code_check.sh: for each seed, the `code_check` profile's
`train_mlc` member (metrics from its run in the store) beside bench/mlc_code_reference.py
run on that member's own `download` and `inject_noise` outputs with the same iteration
counts; writes a Markdown table.

    mlc_code_check.py PROJECT OUT.md
"""

import json
import os
import subprocess
import sys

PROFILE = "code_check"
STAGE = "code_check_mlc_official"
BATCH = 64  # the stage's batch_size, with drop_last
TOLERANCE = 2.0  # points


def run_dir(project, lock, member):
    rec = lock["profiles"][PROFILE][member]
    return os.path.join(project, "results", ".runs", "runs", rec["fingerprint"], "out")


def main():
    project, out = sys.argv[1], sys.argv[2]
    with open(os.path.join(project, "pipeline.lock")) as f:
        lock = json.load(f)
    members = sorted(m for m in lock["profiles"][PROFILE] if m.startswith(STAGE + "["))
    if not members:
        sys.exit("pipeline.lock: no %s member in profile %s" % (STAGE, PROFILE))
    data = run_dir(project, lock, "code_check_data")
    with open(os.path.join(data, "dataset.json")) as f:
        n_train = json.load(f)["train_len"]
    per_epoch = n_train // BATCH
    rows = []
    for m in members:
        seed = int(m.split("seed=")[1].rstrip("]"))
        with open(os.path.join(run_dir(project, lock, m), "metrics.json")) as f:
            ours = json.load(f)
        warmup = sum(1 for e in ours["epochs"] if e["phase"] == "warmup")
        mlc = sum(1 for e in ours["epochs"] if e["phase"] == "mlc")
        noise = run_dir(project, lock, "code_check_noisy[seed=%d]" % seed)
        cmd = [sys.executable, os.path.join(os.path.dirname(__file__), "mlc_code_reference.py"),
               data, noise, "--warmup-iters", str(warmup * per_epoch),
               "--mlc-iters", str(mlc * per_epoch), "--seed", str(seed), "--threads", "2"]
        print(" ".join(cmd[1:]), file=sys.stderr)
        ref = json.loads(subprocess.run(cmd, check=True, capture_output=True,
                                        text=True).stdout.strip().splitlines()[-1])
        x = ours["extra"]
        rows.append((seed, {
            "warm-up best": (x["warmup_best_test_accuracy"], ref["warmup_best_test_accuracy"]),
            "MLC best": (x["best_test_accuracy"], ref["best_test_accuracy"]),
            "final": (ours["final_test_accuracy"], ref["final_test_accuracy"]),
        }))
    cols = list(rows[0][1])
    pct = lambda v: "%.2f" % (100 * v)
    lines = [
        "# The released MLC code's protocol at CPU scale: the project against a PyTorch loop",
        "",
        "Written by `bench/mlc_code_check.sh`. Fashion-MNIST, `mlc_symmetric` noise at 0.4 on "
        "all %d training images, a meta set of 50 images per class drawn from the test split "
        "(never trained on), test accuracy (%%) on the other test images; an MLP 784-256-10; "
        "the warm-up with SGD at 0.1 for %d iterations, kept at its best evaluation; the MLC "
        "phase with a new SGD at 1e-4 on the summed loss for %d iterations; evaluations every "
        "100 iterations. **Ours**: the `code_check` profile (`train_mlc`, `variant: "
        "official_code`; finite-difference hypergradient, a shuffle per epoch). **PyTorch**: "
        "`bench/mlc_code_reference.py`, main.py's loop (exact second-order gradient, "
        "independent batch draws), on the same data, noise and meta set."
        % (n_train, warmup * per_epoch, mlc * per_epoch),
        "",
        "| seed | " + " | ".join("%s: ours | %s: PyTorch" % (c, c) for c in cols) + " |",
        "|---|" + "---|---|" * len(cols),
    ]
    for seed, r in rows:
        lines.append("| %d | " % seed + " | ".join("%s | %s" % (pct(r[c][0]), pct(r[c][1]))
                                                  for c in cols) + " |")
    mean = {c: tuple(sum(r[c][i] for _, r in rows) / len(rows) for i in (0, 1)) for c in cols}
    lines.append("| mean | " + " | ".join("%s | %s" % (pct(mean[c][0]), pct(mean[c][1]))
                                          for c in cols) + " |")
    worst = max(abs(mean[c][0] - mean[c][1]) * 100 for c in cols)
    ok = worst <= TOLERANCE
    lines += ["", "Largest difference of the means: %.2f points (%s %.0f)." %
              (worst, "within" if ok else "OVER", TOLERANCE), ""]
    with open(out, "w") as f:
        f.write("\n".join(lines))
    print("\n".join(lines))
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
