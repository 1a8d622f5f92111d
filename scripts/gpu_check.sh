#!/usr/bin/env bash
# Check and time the LAS blocks built by `python -m benchmarks.gpu_check build` on the machine
# this runs on (one with an NVIDIA GPU, python3 with torch): needs no TVM compiler library and
# nothing from the network. Prints one table; exits non-zero on a mismatch; ends within 10 min.
#
#   bash scripts/gpu_check.sh [BUILD_DIR]      (default: gpu_check, from the repository root)
#
# PYTHON picks the interpreter (default python3); the build's runtime/ holds the `tvm` package
# without its compiler, and wheels/ the apache-tvm-ffi wheel for this machine's Python.
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=$(realpath "${1:-gpu_check}")
PYTHON=${PYTHON:-python3}
[ -f "$BUILD/manifest.json" ] || { echo "error: $BUILD has no manifest.json (run" \
    "'python -m benchmarks.gpu_check build' where TVM's compiler is installed)" >&2; exit 2; }
SITE=$(mktemp -d /tmp/las-gpu-check.XXXXXX)
trap 'rm -rf "$SITE"' EXIT
if ! "$PYTHON" -c "import tvm_ffi" 2> /dev/null && compgen -G "$BUILD/wheels/*.whl" > /dev/null
then
  "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --target "$SITE" \
    "$BUILD"/wheels/*.whl
fi
# the source tree as the installed package lays it out (models/ and schedules/ inside)
mkdir -p "$SITE/las_compiler"
for entry in "$PWD"/las_compiler/*; do ln -s "$entry" "$SITE/las_compiler/"; done
ln -sfn "$PWD/models" "$SITE/las_compiler/models"
ln -sfn "$PWD/schedules" "$SITE/las_compiler/schedules"
# TVM's CUDA runtime library links libcudart.so.13: the toolkit's, or the one PyTorch's wheels
# carry (nvidia-cuda-runtime), which is not on the loader's path
CUDART=$("$PYTHON" - <<'PY'
import glob, os, site
roots = [os.environ.get("CUDA_HOME", ""), "/usr/local/cuda/lib64", "/usr/local/cuda/lib",
         *(os.path.join(p, "nvidia") for p in site.getsitepackages())]
hits = [h for r in roots if r for h in glob.glob(os.path.join(r, "**", "libcudart.so.13*"),
                                                 recursive=True)]
print(os.path.dirname(hits[0]) if hits else "")
PY
)
if [ -n "$CUDART" ]; then
  export LD_LIBRARY_PATH="$CUDART${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
fi
echo "CUDA runtime library: ${CUDART:-not found}" >&2
export PYTHONPATH="$SITE:$BUILD/runtime:$PWD${PYTHONPATH:+:$PYTHONPATH}"
export TVM_USE_RUNTIME_LIB=1 PYTHONUNBUFFERED=1
timeout 590 "$PYTHON" -m benchmarks.gpu_check run "$BUILD" "${@:2}"
