#!/usr/bin/env bash
# The main job on the local lab, end to end: set up what is missing, bring the lab up, take a
# backup if there is none, then run a real drill (restore on the DRP server, checked through
# its address, DNS untouched) and end on the RTO/RPO report. The drill runs on the lab's
# Prefect server, which drp finds in the lab's lab.env (config/lab.yaml's env_file); drp prints
# the run's page in its UI.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export DO_NOT_TRACK=1 PREFECT_SERVER_ANALYTICS_ENABLED=false
drp=.venv/bin/drp
config=config/lab.yaml

$drp lab up
$drp config check "$config" --resolve-secrets
complete=$($drp backup list -c "$config" --json \
  | .venv/bin/python -c 'import json,sys; print(sum(s["status"] == "complete" for s in json.load(sys.stdin)["sets"]))')
if [ "$complete" -eq 0 ]; then
  echo "No backup yet: taking one (files, configurations and databases of every environment)."
  $drp backup run -c "$config"
fi
$drp backup list -c "$config"
$drp plan drill -c "$config"
lab_env=${DRP_LAB_DIR:-/var/lib/drp-lab}/lab.env
echo "Watch it in the Prefect UI: http://127.0.10.70:4200 (the password is the whole value of"
echo "PREFECT_API_AUTH_STRING in $lab_env); drp prints the run's own page below."
exec $drp drill -c "$config" --order-by "Lab operator" --reference "LAB-DRILL-$(date -u +%Y%m%d-%H%M)"
