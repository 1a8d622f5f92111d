#!/usr/bin/env bash
# The main job: build the default LAS-ResNet-50 and report on it (see README).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/venv.sh"
exec "$VENV/bin/las" "$@"
