#!/usr/bin/env bash
# The test suite (what CI runs): lint, then pytest on 2 workers. Tests spread one by one
# (--dist loadgroup), except a file's tests that share a module-scoped fixture such as a
# compiled model, which tests/conftest.py keeps on one worker so that it is built once.
# LAS_FULL_MATRIX=1 adds the opt-in tier (see the README).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/venv.sh"
cd "$ROOT"
"$VENV/bin/ruff" check .
exec "$VENV/bin/python" -m pytest -q -n 2 --dist loadgroup "$@"
