#!/usr/bin/env python3
"""What each `paper` target costs: its stages, CPU core-hours on this kind of machine, and
GPU-hours on one A100 (an estimate from the GPU model, not a measurement).

Every training member is counted from its stage's params in pipeline.yaml (epochs, warm-up
epochs, batch size, network) and the size of its dataset's training split, at the step
times measured here:

  network (batch)                     CPU step, 2 cores   source
  WRN-40-2 (128 CIFAR images)         5.4 s               cargo bench -p repro-stages --bench train_step -- --only=wrn
  ResNet-18 (128 CIFAR images)        7.0 s               ... --only=resnet18
  ResNet-50 (32 images of 224x224)    15.3 s              ... --only=resnet50
  MLP 784-128-128-10 (32 images)      0.66 ms, 1 core     a Fashion-MNIST `ce` stage: 12.4 s for 10 epochs of 1,875 steps
  MLP 150-256-256-25 (64 windows)     1.3 ms, 1 core      scaled from the MNIST MLP by multiply-adds per step (not measured)

A step at another batch size is scaled linearly. A meta-learning step (MLC's look-ahead, the
soft labels' hypergradient) costs 3.7 plain steps (`cargo bench -p repro-stages --bench
meta_step`); warm-up epochs are plain. `trusted_only` trains on the trusted examples only;
the first phase of `forward_gold`, `glc` and `confusion` on the untrusted ones. The A100
step times are those of `bench/gpu_model.py` (WRN-40-2 ~210 ms, ResNet-18 ~95 ms per 128
images); the ResNet-50 and the MLPs are not modelled there, so their GPU cells stay empty.

Usage: python3 bench/paper_costs.py [path/to/repro]   (default: target/release/repro)
Prints a Markdown table (the README's "Cost per target").
"""
import json
import math
import os
import re
import subprocess
import sys

import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REPRO = sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "target/release/repro")

TARGETS = [
    "paper_mnist_report",
    "paper_cifar_report[cifar10]",
    "paper_cifar_report[cifar100]",
    "paper_cifar100_hierarchical_report",
    "paper_clean_report[cifar10]",
    "paper_clean_report[cifar100]",
    "paper_twitter_report",
    "paper_clothing1m_report",
    "paper_report_mlc_code",
    "paper_report",
]

# Training examples per dataset (the split the methods train on).
TRAIN_SIZE = {"mnist": 60_000, "cifar10": 50_000, "cifar100": 50_000,
              "twitter": 19_442, "clothing1m": 1_047_570}
# Clothing1M's trusted set is its clean-train split, not a fraction.
CLOTHING1M_TRUSTED = 47_570

# (seconds per step on the CPU, batch it was measured at, cores it used, A100 s per step or None)
STEP = {
    "wrn": (5.4, 128, 2, 0.210),
    "resnet18": (7.0, 128, 2, 0.095),
    "resnet50": (15.3, 32, 2, None),
    "mlp_mnist": (0.66e-3, 32, 1, None),
    "mlp_twitter": (1.3e-3, 64, 1, None),
}
META = 3.7  # a meta-learning step in plain steps
TWO_PHASE = {"forward", "forward_gold", "glc", "confusion"}
FIRST_PHASE_UNTRUSTED = {"forward_gold", "glc", "confusion"}
METHODS = {"trusted_only", "ce", "forward", "forward_gold", "ideal", "confusion",
           "label_smoothing", "glc"}


def network(params, dataset):
    arch = params.get("model", {}).get("arch", "mlp")
    if arch == "mlp":
        return "mlp_twitter" if dataset == "twitter" else "mlp_mnist"
    return arch


def dataset_of(stage, member):
    for d in ("cifar100", "cifar10", "clothing1m", "twitter", "mnist"):
        if d in member or stage.startswith(d):
            return d
    raise SystemExit(f"no dataset for {member}")


def coords(member):
    m = re.search(r"\[(.*)\]$", member)
    return m.group(1).split(",") if m else []


def trusted_share(dataset, stage, member):
    """The trusted share of the training set: the coordinate after the strength."""
    if dataset == "clothing1m":
        return CLOTHING1M_TRUSTED / TRAIN_SIZE["clothing1m"]
    floats = []
    for c in coords(member):
        try:
            floats.append(float(c))
        except ValueError:
            pass
    if len(floats) >= 2:
        return floats[1]
    if "code" in stage:  # the released MLC code's 50 clean images per class
        return 500 / TRAIN_SIZE[dataset]
    return 0.0


def plain_epochs(kind, params, member):
    """(method, plain epochs, meta epochs) of a training member; (None, 0, 0) otherwise."""
    epochs = params.get("epochs", 20)
    if kind == "train":
        method = params.get("method") or next(c for c in coords(member) if c in METHODS)
        return method, epochs, 0
    if kind == "train_mlc":
        return "mlc", params.get("warmup_epochs", 0), epochs
    if kind == "train_soft_labels":
        per_class = params.get("granularity") == "per_class" or "per_class" in coords(member)
        next_batch = params.get("meta_set") == "next_batch"
        warm = params.get("warmup_epochs", 0 if per_class or next_batch else 10)
        return "soft_labels", warm, epochs
    if kind == "distill":
        return "distill", epochs, 0
    return None, 0, 0


def member_cost(kind, params, stage, member):
    """(CPU core-seconds, A100 seconds or None) of one member."""
    method, plain, meta = plain_epochs(kind, params, member)
    if method is None:
        return 0.0, 0.0
    ds = dataset_of(stage, member)
    net = network(params, ds)
    cpu_step, at_batch, cores, gpu_step = STEP[net]
    batch = params.get("batch_size", 32)
    n = TRAIN_SIZE[ds]
    share = trusted_share(ds, stage, member)
    steps_per_epoch = math.ceil(n / batch)
    if method == "trusted_only":
        steps = plain * math.ceil(n * share / batch)
    elif method in TWO_PHASE:
        first = math.ceil(n * (1 - share) / batch) if method in FIRST_PHASE_UNTRUSTED else steps_per_epoch
        steps = plain * (first + steps_per_epoch)
    else:
        steps = plain * steps_per_epoch + META * meta * steps_per_epoch
    scale = batch / at_batch
    cpu = steps * cpu_step * scale * cores
    gpu = None if gpu_step is None else steps * gpu_step * scale
    return cpu, gpu


def main():
    spec = yaml.safe_load(open(os.path.join(ROOT, "pipeline.yaml")))
    stages = spec["stages"]
    print("| target | stages | CPU core-hours here (2 cores) | one A100, hours (estimate) |")
    print("|---|---|---|---|")
    for target in TARGETS:
        out = subprocess.run([REPRO, "status", "-p", "paper", "--json", target],
                             cwd=ROOT, capture_output=True, text=True)
        members = json.loads(out.stdout)["members"]
        cpu = 0.0
        gpu = 0.0
        unmodelled = False
        for m in members:
            st = stages[m["stage"]]
            c, g = member_cost(st["kind"], st.get("params", {}) or {}, m["stage"], m["member"])
            cpu += c
            if g is None:
                unmodelled = True
            else:
                gpu += g
        gpu_cell = "" if unmodelled and gpu == 0 else f"{gpu / 3600:,.0f}"
        if unmodelled and gpu > 0:
            gpu_cell += " (+ unmodelled MLP or ResNet-50 stages)"
        hours = cpu / 3600
        cpu_cell = f"{hours:,.1f}" if hours < 10 else f"{hours:,.0f}"
        print(f"| `{target}` | {len(members):,} | {cpu_cell} | {gpu_cell} |")


if __name__ == "__main__":
    main()
