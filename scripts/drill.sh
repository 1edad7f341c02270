#!/usr/bin/env bash
# The main job on the local lab: set up what is missing, bring the lab up and show it.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export DO_NOT_TRACK=1 PREFECT_SERVER_ANALYTICS_ENABLED=false
.venv/bin/drp lab up
.venv/bin/drp lab status
