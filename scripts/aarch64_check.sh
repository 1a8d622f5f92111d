#!/usr/bin/env bash
# An aarch64 LAS-ResNet-50 built here runs on an emulated board (qemu, Debian arm64, the TVM
# runtime alone, over TVM RPC) and equals the x86 build: outputs and every mask. Needs root for
# the emulated board (scripts/emulated_board.sh, ~4 minutes the first time); then ~3 minutes.
#
#   bash scripts/aarch64_check.sh [--board jetson-tx2-cpu|raspberry-pi-4] [--input-size 64]
#                                  [--out build/aarch64_check] [--json results/aarch64_check.json]
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/venv.sh"
cd "$ROOT"
BOARD_ROOT=$(bash scripts/emulated_board.sh)
exec "$VENV/bin/python" -m benchmarks.aarch64_check --root "$BOARD_ROOT" "$@"
