#!/usr/bin/env bash
# Times one training step of the MLP and the small CNN (batch 128) in repro (dfdx + the
# operators of stages/src/nn) and in PyTorch (CPU wheel from PyPI), with the same number
# of threads, and prints medians and ratios.
#
# Usage: bench/pytorch_bench.sh [THREADS] [--quick]   (THREADS defaults to nproc)
# The venv lives in bench/.venv (bench/torch_venv.sh creates it on first use).
set -euo pipefail
source "$(dirname "$0")/torch_venv.sh"
threads="${1:-$(nproc)}"
quick="${2:-}"
echo "threads: $threads   torch $("$venv/bin/python" -c 'import torch; print(torch.__version__)')"
rs="$(cd "$root" && RAYON_NUM_THREADS="$threads" cargo bench --quiet -p repro-stages --bench train_step -- $quick 2>/dev/null | grep -E '^(mlp|cnn)_')"
py="$(OMP_NUM_THREADS="$threads" MKL_NUM_THREADS="$threads" "$venv/bin/python" "$here/pytorch_step.py" "$threads" $quick)"
printf '%-36s %12s %12s %8s\n' model "repro ms" "pytorch ms" ratio
join <(echo "$rs" | sort) <(echo "$py" | sort) | while read -r name r_med r_min r_n p_med p_min p_n; do
  ratio="$(awk -v a="$r_med" -v b="$p_med" 'BEGIN { printf "%.2f", a / b }')"
  printf '%-36s %12s %12s %7sx\n' "$name" "$r_med" "$p_med" "$ratio"
done
