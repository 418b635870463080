#!/usr/bin/env bash
# The released MLC code's protocol at CPU scale, run two ways on the same data, noise and
# meta sets: by the project (`repro run -p code_check`: train_mlc with variant
# official_code and the T2 settings) and by an independent PyTorch loop of main.py
# (bench/mlc_code_reference.py), for seeds 1-3; writes the comparison to
# docs/mlc_code_check.md and exits 1 when a mean differs by more than 2 points.
#
#   bench/mlc_code_check.sh            (about 25 minutes on 2 cores after the builds, most of it the PyTorch loop)
#
# Needs Fashion-MNIST: Debian's dataset-fashion-mnist, installed here when missing (root).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/torch_venv.sh"
cd "$root"
if [ ! -e /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ]; then
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dataset-fashion-mnist >/dev/null
fi
cargo run --release -q -- run -q -p code_check -j 2
exec "$venv/bin/python" "$here/mlc_code_check.py" "$root" "$root/docs/mlc_code_check.md"
