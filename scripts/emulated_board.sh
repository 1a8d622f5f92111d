#!/usr/bin/env bash
# An emulated aarch64 board on this x86 machine: Debian 12 arm64 (python3, glibc 2.36) in a
# folder, run by qemu-user through binfmt_misc, with the aarch64 TVM runtime from PyPI's wheels
# (apache-tvm and apache-tvm-ffi at the versions this project's .venv has) in /opt/tvm. Needs
# root (apt, binfmt_misc, debootstrap) and the Debian and PyPI registries; ~6 minutes the first
# time, then reused. Prints the board's root folder.
#
#   bash scripts/emulated_board.sh            (folder: $LAS_ARM64_ROOT, default
#                                               ~/.cache/las-compiler/arm64-bookworm)
#
# Inside, `chroot ROOT env TVM_USE_RUNTIME_LIB=1 python3 -m tvm.exec.rpc_server ...` is a board
# that serves TVM RPC on 127.0.0.1 (the chroot shares this machine's network).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=${LAS_ARM64_ROOT:-$HOME/.cache/las-compiler/arm64-bookworm}
VENV_PY=.venv/bin/python
say() { echo "[board] $*" >&2; }

if [ "$(id -u)" != 0 ]; then
  echo "error: an emulated board needs root (apt-get, binfmt_misc, debootstrap); on a machine" \
       "where you are not root, deploy to a real board with 'las deploy --rpc'" >&2
  exit 2
fi
missing=()
command -v qemu-aarch64-static > /dev/null || missing+=(qemu-user-static)
command -v debootstrap > /dev/null || missing+=(debootstrap)
command -v update-binfmts > /dev/null || missing+=(binfmt-support)
if [ ${#missing[@]} -gt 0 ]; then
  say "installing ${missing[*]}"
  apt-get update -qq > /dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" > /dev/null
fi
# binfmt_misc lets the kernel hand aarch64 programs to qemu (a chroot's execs, the RPC
# server's worker processes); it is not mounted by default in containers
[ -e /proc/sys/fs/binfmt_misc/status ] || mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc
[ -e /proc/sys/fs/binfmt_misc/qemu-aarch64 ] || update-binfmts --enable qemu-aarch64

if [ ! -x "$ROOT/usr/bin/python3" ]; then
  # the Debian mirror this machine's apt uses (no other host is reachable)
  MIRROR=$(grep -h -m1 -oE 'https?://[^ ]+/debian/?$' /etc/apt/sources.list.d/*.sources \
           /etc/apt/sources.list 2> /dev/null | head -1 || true)
  MIRROR=${MIRROR:-http://deb.debian.org/debian}
  say "debootstrap arm64 bookworm into $ROOT from $MIRROR (about 5 minutes)"
  rm -rf "$ROOT.partial"
  mkdir -p "$(dirname "$ROOT")"
  debootstrap --arch=arm64 --variant=minbase --include=python3 bookworm "$ROOT.partial" \
    "$MIRROR" > "$ROOT.debootstrap.log" 2>&1 || {
      echo "error: debootstrap failed, see $ROOT.debootstrap.log" >&2; exit 1; }
  mv "$ROOT.partial" "$ROOT"
fi

# the runtime at the versions the host compiles with (an artifact is loaded by the TVM that
# matches the one that built it)
read -r TVM_VERSION FFI_VERSION < <("$VENV_PY" - <<'PY'
from importlib.metadata import version
print(version("apache-tvm"), version("apache-tvm-ffi"))
PY
)
STAMP="$ROOT/opt/tvm/.versions"
if [ "$(cat "$STAMP" 2> /dev/null)" != "$TVM_VERSION $FFI_VERSION" ]; then
  say "installing the aarch64 wheels apache-tvm $TVM_VERSION, apache-tvm-ffi $FFI_VERSION"
  rm -rf "$ROOT/opt/tvm"
  PYVER=$(chroot "$ROOT" python3 -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')
  "$VENV_PY" -m pip install -q --no-compile --target "$ROOT/opt/tvm" \
    --platform manylinux_2_28_aarch64 --platform manylinux2014_aarch64 \
    --only-binary=:all: --python-version "$PYVER" \
    "apache-tvm==$TVM_VERSION" "apache-tvm-ffi==$FFI_VERSION" numpy ml_dtypes \
    "typing-extensions>=4.13" psutil cloudpickle
  # the compiler library is 248 MB of what a board does not have (TVM_USE_RUNTIME_LIB=1)
  rm -f "$ROOT"/opt/tvm/tvm/lib/libtvm_compiler.so "$ROOT"/opt/tvm/tvm/libtvm_compiler.so
  echo "$TVM_VERSION $FFI_VERSION" > "$STAMP"
fi
echo "$ROOT"
