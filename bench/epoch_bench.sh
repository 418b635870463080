#!/usr/bin/env bash
# Times one epoch of the `cpu` profile's `ce` stage (GLC's MNIST protocol: MLP 784-128-128-10,
# Adam 1e-3, weight decay 1e-6, batch 32, 60,000 images, then the 10,000-image evaluation) in
# repro (stages/benches/epoch.rs: the `train` kind's own code) and in PyTorch
# (bench/pytorch_epoch.py, CPU wheel from PyPI), with the same number of threads, side by side:
# ROUNDS rounds, each running repro then PyTorch for REPS epochs; every round prints both
# medians and their ratio, and the last line the median over the rounds (the machine may be
# shared: the rounds interleave the two sides so that load hits both alike).
#
# Usage: bench/epoch_bench.sh [THREADS] [ROUNDS] [REPS]   (defaults: nproc, 3, 3)
# The venv lives in bench/.venv (bench/torch_venv.sh creates it on first use).
set -euo pipefail
source "$(dirname "$0")/torch_venv.sh"
threads="${1:-$(nproc)}"
rounds="${2:-3}"
reps="${3:-3}"
(cd "$root" && cargo bench --quiet -p repro-stages --bench epoch --no-run 2>/dev/null)
echo "threads: $threads   rounds: $rounds x $reps epochs   torch $("$venv/bin/python" -c 'import torch; print(torch.__version__)')"
printf '%-6s %12s %12s %8s  %s\n' round "repro ms" "pytorch ms" ratio "repro weights sha256"
rs_all=() py_all=() ratios=()
for r in $(seq 1 "$rounds"); do
  rs_out="$(cd "$root" && RAYON_NUM_THREADS="$threads" cargo bench --quiet -p repro-stages --bench epoch -- --reps="$reps" 2>/dev/null)"
  rs="$(echo "$rs_out" | awk '$1 == "ce_epoch" { print $2 }')"
  digest="$(echo "$rs_out" | awk '$1 == "ce_epoch_weights" { print $2 }')"
  py="$(OMP_NUM_THREADS="$threads" MKL_NUM_THREADS="$threads" "$venv/bin/python" "$here/pytorch_epoch.py" "$threads" "$reps" | awk '$1 == "ce_epoch" { print $2 }')"
  ratio="$(awk -v a="$rs" -v b="$py" 'BEGIN { printf "%.3f", a / b }')"
  rs_all+=("$rs") py_all+=("$py") ratios+=("$ratio")
  printf '%-6s %12s %12s %7sx  %s\n' "$r" "$rs" "$py" "$ratio" "$digest"
done
median() { printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }
printf '%-6s %12s %12s %7sx\n' median "$(median "${rs_all[@]}")" "$(median "${py_all[@]}")" "$(median "${ratios[@]}")"
