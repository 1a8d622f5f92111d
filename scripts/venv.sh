#!/usr/bin/env bash
# Create or reuse the project virtualenv at .venv/ and (re)install the project when
# pyproject.toml changed. Sourced by scripts/main.sh and scripts/test.sh.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/.venv"
PY="${PYTHON:-python3}"
if [ ! -x "$VENV/bin/python" ]; then
    echo "[las] creating virtualenv at $VENV" >&2
    "$PY" -m venv "$VENV"
fi
STAMP="$VENV/.las-installed"
WANT="$(sha256sum "$ROOT/pyproject.toml" | cut -d' ' -f1)"
if [ ! -f "$STAMP" ] || [ "$(cat "$STAMP")" != "$WANT" ]; then
    echo "[las] installing las-compiler and its dependencies into $VENV" >&2
    "$VENV/bin/python" -m pip install --quiet --upgrade pip
    "$VENV/bin/python" -m pip install --quiet -e "$ROOT[dev,bench,viz,cuda,boards]"
    echo "$WANT" > "$STAMP"
fi
export TVM_NUM_THREADS="${TVM_NUM_THREADS:-2}"
