# Sourced by bench/epoch_bench.sh and bench/pytorch_bench.sh: the PyTorch side of the
# benchmarks. Sets `here` (bench/), `root` (the repository) and `venv` (bench/.venv, created
# on first use with `pip install torch`, the CPU wheel from PyPI) and prints nothing.
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(dirname "$here")"
venv="$here/.venv"
if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c "import torch" 2>/dev/null; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet torch
fi
