"""The lab's Prefect server: it runs with the lab, behind basic auth, and the README's drill runs
through it, the command line finding it in lab.env (config/lab.yaml's env_file) and printing
the run's page in the UI. (`drp lab down` stopping it: tests/integration/test_lab.py.)
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest
from flow_helpers import LAB_CONFIG, ensure_backups

from lab import api, prefect_server, topology
from runbooks.inventory import load_site

pytestmark = pytest.mark.lab

API = topology.PREFECT_API_URL


def authed(lab: Any) -> tuple[str, str]:
    user, _, password = lab.secrets["PREFECT_API_AUTH_STRING"].partition(":")
    return user, password


def test_the_lab_s_prefect_server_runs_behind_basic_auth(lab) -> None:
    shown = {s.name: s for s in api.status().services}[prefect_server.NAME]
    assert (shown.host, shown.address, shown.port, shown.state) == (
        "prefect", "127.0.10.70", 4200, "running"
    )  # fmt: skip
    assert prefect_server.database_path(lab.paths).is_file()
    assert httpx.get(f"{API}/health", timeout=10).status_code == 200  # probes need no password
    query = {"url": f"{API}/flows/filter", "json": {}, "timeout": 10}
    assert httpx.post(**query).status_code == 401  # type: ignore[arg-type]
    user, password = authed(lab)
    assert httpx.post(**query, auth=(user, password + "x")).status_code == 401  # type: ignore[arg-type]
    assert httpx.post(**query, auth=(user, password)).status_code == 200  # type: ignore[arg-type]
    # The UI asks for the password, and calls the API where it was loaded from.
    settings = httpx.get(f"{topology.PREFECT_SERVER_URL}/ui-settings", timeout=10).json()
    assert (settings["auth"], settings["api_url"]) == ("BASIC", "/api")


def test_the_readme_drill_runs_on_the_lab_s_server_and_links_its_run(lab, tmp_path: Path) -> None:
    ensure_backups(load_site(LAB_CONFIG))
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env.update(
        PREFECT_HOME=str(tmp_path / "prefect"),
        DRP_REPORTS_DIR=str(tmp_path / "reports"),
        COLUMNS="250",
        DO_NOT_TRACK="1",
    )
    done = subprocess.run(
        [sys.executable, "-m", "flows.cli", "drill", "-c", str(LAB_CONFIG),
         "--order-by", "Lab operator", "--reference", "LAB-PREFECT-SERVER"],
        capture_output=True, text=True, timeout=600, check=False, env=env,
    )  # fmt: skip
    out = done.stdout
    assert done.returncode == 0, out[-3000:] + done.stderr[-3000:]
    assert (
        f"Prefect server {API} (from {lab.paths.secrets_env}, the inventory's env_file, "
        "basic auth)" in out
    )
    assert "temporary local API" not in out
    link = re.search(r"In the Prefect UI: (\S+/v2/runs/flow-run/([0-9a-f-]{36}))$", out, re.M)
    assert link, out[-2000:]
    url, run_id = link.groups()
    assert url.startswith(topology.PREFECT_SERVER_URL)
    assert f"View at {url}" in done.stderr  # Prefect's own log line, at the start
    secret = lab.secrets["PREFECT_API_AUTH_STRING"]
    assert secret not in out + done.stderr and secret.split(":")[1] not in out + done.stderr

    # The run is on the lab's server, completed, with the report as its artifact.
    auth = authed(lab)
    run = httpx.get(f"{API}/flow_runs/{run_id}", auth=auth, timeout=10).json()
    assert run["state_type"] == "COMPLETED"
    reports = list((tmp_path / "reports").glob("drill-*.json"))
    assert len(reports) == 1
    operation_id = json.loads(reports[0].read_text())["operation_id"]
    assert operation_id.endswith(run_id[:8])
    artifacts = httpx.post(
        f"{API}/artifacts/filter",
        json={"artifacts": {"flow_run_id": {"any_": [run_id]}}},
        auth=auth,
        timeout=10,
    ).json()
    assert {(a["key"], a["type"]) for a in artifacts} >= {(f"report-{operation_id}", "markdown")}
    # The page linked to is the UI's (it asks for the password itself).
    page = httpx.get(url, timeout=10, headers={"Accept": "text/html"})
    assert page.status_code == 200 and "<html" in page.text.lower()
