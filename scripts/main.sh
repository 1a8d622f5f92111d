#!/usr/bin/env bash
# The main job: compile the default LAS-ResNet-50 for this CPU and report (see README).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/venv.sh"
exec "$VENV/bin/las" "$@"
