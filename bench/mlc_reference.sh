#!/usr/bin/env bash
# Meta Loss Correction with exact second-order hypergradients (bench/mlc_reference.py), the
# PyTorch reference for the `train_mlc` kind's textbook variant, in the benchmarks' venv.
#
#   bench/mlc_reference.sh DATASET_DIR NOISE_DIR [options]    (--help lists them)
#
# DATASET_DIR is a `download` stage's output, NOISE_DIR an `inject_noise` stage's output.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/torch_venv.sh"
exec "$venv/bin/python" "$here/mlc_reference.py" "$@"
