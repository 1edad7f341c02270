"""The stage deployment runs after each backup, as prefect.yaml declares it: a runner serves
`drp-stage` with the trigger read from prefect.yaml, a backup runs as a flow (as its
deployments run it; `drp backup run --flow` here), and the Prefect server starts a staging run
of its own when the backup flow run completes; that run stages the new set on the DRP server."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from flow_helpers import LAB_CONFIG, drp_cli, ensure_backups, serving, without_stages

from runbooks import connect
from runbooks.inventory import Site, load_site

pytestmark = [pytest.mark.lab, pytest.mark.prefect]

REPO = Path(__file__).resolve().parents[2]
DEPLOYMENT = "stage-trigger-test"
SERVE = f"""
import yaml
from prefect.cli.deploy._triggers import _initialize_deployment_triggers
from flows.stage import drp_stage

with open({str(REPO / "prefect.yaml")!r}) as f:
    declared = next(d for d in yaml.safe_load(f)["deployments"] if d["name"] == "stage")
triggers = _initialize_deployment_triggers({DEPLOYMENT!r}, declared["triggers"])
drp_stage.serve(name={DEPLOYMENT!r}, triggers=triggers, limit=1)
"""


@pytest.fixture
def site(lab, prefect_server) -> Iterator[Site]:
    loaded = load_site(LAB_CONFIG)
    ensure_backups(loaded)
    with without_stages(loaded):
        yield loaded


def _staging_runs() -> list[Any]:
    """The runs of the served stage deployment, as the API has them."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterName

    with get_client(sync_client=True) as client:
        return client.read_flow_runs(
            deployment_filter=DeploymentFilter(name=DeploymentFilterName(any_=[DEPLOYMENT]))
        )


def _staged_sets(site: Site) -> list[str]:
    with connect.HostPool(site) as pool:
        out = pool["drp"].run(["sh", "-c", "ls srv/app/*.drp-stage/ 2>/dev/null; true"])
    return sorted(name for name in out.stdout.split() if not name.endswith(".json"))


def test_a_completed_backup_starts_a_staging_run_that_stages_it(
    site: Site, prefect_server, tmp_path: Path
) -> None:
    env = {
        **os.environ,
        "PREFECT_API_URL": prefect_server.api_url,
        "PREFECT_RUNNER_POLL_FREQUENCY": "1",
        "DRP_CONFIG": str(LAB_CONFIG),
        "DRP_REPORTS_DIR": str(tmp_path / "reports"),
    }
    with serving(SERVE, env, tmp_path / "runner.log", f"drp-stage/{DEPLOYMENT}") as runner:
        assert _staging_runs() == []
        assert _staged_sets(site) == []
        # The trigger's automation is loaded by the server's triggers service within seconds.
        time.sleep(5)

        started = datetime.now(UTC)
        # As the backup deployments run it: a flow run, recorded in Prefect (--flow).
        backup = drp_cli(prefect_server.api_url, "backup", "run", "-c", str(LAB_CONFIG), "--flow")
        assert backup.returncode == 0, backup.stdout[-2000:] + backup.stderr[-2000:]

        deadline = time.monotonic() + 240
        while True:
            runs = _staging_runs()
            done = [r for r in runs if r.state is not None and r.state.is_final()]
            if done:
                break
            assert runner.poll() is None, (tmp_path / "runner.log").read_text()[-3000:]
            assert time.monotonic() < deadline, (
                f"no staging run ended within 240 s of the backup (runs: {runs}); runner log: "
                + (tmp_path / "runner.log").read_text()[-3000:]
            )
            time.sleep(1)

    (run,) = runs  # one backup, one staging run
    assert run.state.is_completed(), run.state
    assert run.created >= started
    assert run.parameters == {}  # as the trigger starts it: the inventory from DRP_CONFIG
    assert _staged_sets(site), "the triggered staging run staged nothing"
