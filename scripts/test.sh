#!/usr/bin/env bash
# The test suite (what CI runs): lint, then pytest on 2 workers (one file per worker, so a
# module-scoped fixture such as a compiled model is built once).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/venv.sh"
cd "$ROOT"
"$VENV/bin/ruff" check .
exec "$VENV/bin/python" -m pytest -q -n 2 --dist loadfile "$@"
