#!/usr/bin/env bash
# Checks the `cuda` build on a GPU: runs the `tiny` profile, compares every number with
# the CPU run of the same profile, times one training step of WRN-40-2 and ResNet-18
# (batch 128) and one textbook MLC step, and writes a short report. Under 10 minutes on
# one GPU; nothing from the network.
#
#   repro-cuda/gpu_check.sh [--bundle DIR] [--reference FILE] [--out FILE] [--tol X] [-j N]
#
#   --bundle     the unpacked archive of bench/gpu_bundle.sh (default: this script's dir)
#   --reference  the CPU numbers to compare with (default: BUNDLE/reference.json; any
#                `gpu_compare.py extract` of a CPU run of `tiny`)
#   --out        the report (default: gpu_check_report.md in the current directory)
#   --tol        tolerance of the comparison, see gpu_compare.py (default 0.02)
#   -j           stages at once on the GPU (default 4)
#
# The GPU machine needs the NVIDIA driver (libcuda.so.1, CUDA 13 or newer: driver 580+),
# and the NVRTC and cuBLAS libraries of CUDA 13 (or 12) on the loader's path: a CUDA
# toolkit, or the wheels `nvidia-cuda-nvrtc` and `nvidia-cublas` with their lib/ dirs in
# LD_LIBRARY_PATH. The run happens in a temporary copy of the project.
set -euo pipefail
bundle="$(cd "$(dirname "$0")" && pwd)"
ref="" out="$PWD/gpu_check_report.md" tol=0.02 jobs=4
while [ $# -gt 0 ]; do
  case "$1" in
    --bundle) bundle="$(cd "$2" && pwd)"; shift 2 ;;
    --reference) ref="$(realpath "$2")"; shift 2 ;;
    --out) out="$(realpath -m "$2")"; shift 2 ;;
    --tol) tol="$2"; shift 2 ;;
    -j) jobs="$2"; shift 2 ;;
    *) echo "gpu_check: unknown argument $1" >&2; exit 2 ;;
  esac
done
ref="${ref:-$bundle/reference.json}"
bin="$bundle/repro"
for f in "$bin" "$bundle/train_step" "$bundle/meta_step" "$bundle/project.tar" "$ref"; do
  [ -e "$f" ] || { echo "gpu_check: $f is missing (make the bundle with bench/gpu_bundle.sh)" >&2; exit 2; }
done
export REPRO_CUDA_INCLUDE="$bundle/cuda-include"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
mkdir "$tmp/project" && tar xf "$bundle/project.tar" -C "$tmp/project"

{
  echo "# GPU check of the \`cuda\` build"
  echo
  echo "- date: $(date -u +%Y-%m-%dT%H:%MZ), host $(hostname)"
  echo "- binary: $("$bin" --version), commit $(cat "$bundle/COMMIT" 2>/dev/null || echo '?')"
  if command -v nvidia-smi >/dev/null; then
    echo "- GPU: $(nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | head -1)"
  fi
} > "$out"

# 1. the tiny profile on the GPU
start=$(date +%s)
set +e
timeout 330 "$bin" -C "$tmp/project" -q run -p tiny -j "$jobs" > "$tmp/run.log" 2>&1
rc=$?
set -e
secs=$(($(date +%s) - start))
echo "- tiny profile: exit $rc in ${secs} s (-j $jobs)" >> "$out"
status=0
if [ "$rc" -ne 0 ]; then
  { echo; echo '```'; tail -20 "$tmp/run.log"; echo '```'; } >> "$out"
  status=1
else
  python3 "$bundle/gpu_compare.py" extract "$tmp/project" tiny "$tmp/gpu.json" > /dev/null
  cp "$tmp/gpu.json" "${out%.md}.tiny.json"
  echo -e "\n## tiny: GPU against CPU\n" >> "$out"
  python3 "$bundle/gpu_compare.py" compare "$ref" "$tmp/gpu.json" --tol "$tol" >> "$out" || status=1
fi

# 2. step times: `name median_ms min_ms iterations` (train_step), `model variant
# meta_batch median_ms min_ms ratio_to_ce` (meta_step: the CE step and the textbook MLC step)
echo -e "\n## Step times (ms)\n\n\`\`\`" >> "$out"
bench() {
  local filter="$1"; shift
  timeout 80 "$bundle/$1" "${@:2}" > "$tmp/bench.log" 2>&1 &&
    grep -E "$filter" "$tmp/bench.log" >> "$out" ||
    { echo "$*: failed: $(tail -1 "$tmp/bench.log")" >> "$out"; status=1; }
}
bench '^wrn' train_step --only=wrn
bench '^resnet18' train_step --only=resnet18
bench '^#|^digits\S* (ce|mlc_textbook) ' meta_step --only=digits --quick
echo '```' >> "$out"
echo "gpu_check: report in $out (status $status)"
cat "$out"
exit "$status"
