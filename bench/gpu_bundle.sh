#!/usr/bin/env bash
# Builds everything a GPU machine needs to check the `cuda` build, into one archive:
#
#   bash bench/gpu_bundle.sh [OUT]        (default OUT: target/repro-cuda.tar.xz)
#
# Runs here, on a machine without a GPU (NVIDIA's compiler comes from PyPI through
# .ci/cuda-env). The archive unpacks to `repro-cuda/`:
#   repro              the `cuda` release binary (stripped)
#   train_step         the step-time benches, `cuda` build (stages/benches/), stripped
#   meta_step
#   cuda-include/      CUDA's headers and dfdx's kernel headers, for the kernels dfdx
#                      compiles at run time with NVRTC (found there by the binary)
#   project.tar        the committed project (`git archive HEAD`)
#   reference.json     every number of the CPU run of the `tiny` profile, same commit
#   gpu_check.sh, gpu_compare.py
# On the GPU machine: `tar xf repro-cuda.tar.xz && repro-cuda/gpu_check.sh` (no network,
# no Rust; see README, "GPU").
# Params (environment): those of .ci/cuda-env (REPRO_CUDA_COMPUTE_CAP, default 80), and
# REPRO_CPU_BIN: a CPU build of repro to make the reference with (default: `cargo build`).
set -euo pipefail
cd "$(dirname "$0")/.."
out="$(realpath -m "${1:-target/repro-cuda.tar.xz}")"
[ -z "$(git status --porcelain --untracked-files=no)" ] ||
  echo "gpu_bundle: note: uncommitted changes; project.tar holds HEAD, the binaries the work tree" >&2

# shellcheck source=.ci/cuda-env
source .ci/cuda-env
stage="$(mktemp -d)"
trap 'rm -rf "$stage" "$repro_cuda_stub"' EXIT
dest="$stage/repro-cuda"
mkdir -p "$dest/cuda-include"

# 1. the `cuda` binaries (a long build: nice'd so other work on the machine goes first)
nice -n 19 cargo build --release --workspace --features cuda \
  --bin repro --bench train_step --bench meta_step --message-format=json-render-diagnostics |
  python3 -c '
import json, shutil, sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m.get("executable") and m["target"]["kind"] == ["bench"]:
        shutil.copy(m["executable"], sys.argv[1] + "/" + m["target"]["name"])
' "$dest"
cp target/release/repro "$dest/repro"
strip "$dest/repro" "$dest/train_step" "$dest/meta_step"

# 2. headers for NVRTC: the toolkit's and dfdx's (copied into its build dir by its build
# script; the dir of this build is the one holding the compiled kernels)
cp -r "$CUDA_ROOT/include/." "$dest/cuda-include/"
dfdx_out="$(dirname "$(ls -t target/release/build/dfdx-*/out/*.ptx | head -1)")"
cp "$dfdx_out"/*.cuh "$dest/cuda-include/"

# 3. the project and the CPU reference run of `tiny` (the CPU build, same commit)
git archive --format=tar HEAD > "$dest/project.tar"
cpu_bin="${REPRO_CPU_BIN:-}"
if [ -z "$cpu_bin" ]; then
  cargo build --bin repro
  cpu_bin=target/debug/repro
fi
ref="$stage/cpu"
mkdir -p "$ref" && tar xf "$dest/project.tar" -C "$ref"
"$cpu_bin" -C "$ref" -q run -p tiny
python3 bench/gpu_compare.py extract "$ref" tiny "$dest/reference.json"

cp bench/gpu_check.sh bench/gpu_compare.py "$dest/"
git rev-parse HEAD > "$dest/COMMIT"
tar cf - -C "$stage" repro-cuda | nice -n 19 xz -6 -T2 > "$out"
echo "gpu_bundle: $out: $(du -h "$out" | cut -f1) (binary $(du -h "$dest/repro" | cut -f1) stripped)"
