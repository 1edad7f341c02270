"""A run from a deployment suspends at the order gate (no process held while the customer
decides) and, once answered, starts again from the top and goes on."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from flow_helpers import LAB_CONFIG, ensure_backups, knot_answers

from runbooks.inventory import load_site

pytestmark = [pytest.mark.lab, pytest.mark.prefect]

SERVE = """
from flows.drill import drp_drill
drp_drill.serve(name="suspend-test", limit=1)
"""


def _state(run_id: Any) -> Any:
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        return client.read_flow_run(run_id).state


def _wait(run_id: Any, done: Any, what: str, timeout: float = 240) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        state = _state(run_id)
        if state is not None and done(state):
            return state
        assert time.monotonic() < deadline, f"never {what}; last state {state}"
        time.sleep(0.5)


def test_deployment_run_suspends_at_the_gate_and_resumes_from_the_top(
    lab, prefect_server, tmp_path: Path
) -> None:
    from prefect.deployments import run_deployment
    from prefect.flow_runs import resume_flow_run

    ensure_backups(load_site(LAB_CONFIG))
    dns_before = knot_answers()
    env = {
        **os.environ,
        "PREFECT_API_URL": prefect_server.api_url,
        "PREFECT_RUNNER_POLL_FREQUENCY": "1",
        "DRP_CONFIG": str(LAB_CONFIG),
        "DRP_REPORTS_DIR": str(tmp_path),
    }
    runner = subprocess.Popen(
        [sys.executable, "-c", SERVE], env=env, stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                run = run_deployment(
                    "drp-drill/suspend-test",
                    parameters={"operation_id": "drill-suspend-1"},
                    timeout=0,
                )
                break
            except Exception:  # the deployment is not registered yet
                assert time.monotonic() < deadline, "the deployment never appeared"
                assert runner.poll() is None, "the runner ended"
                time.sleep(1)
        suspended = _wait(run.id, lambda s: s.name == "Suspended", "suspended at the gate")
        assert suspended.is_paused()
        report = json.loads((tmp_path / "drill-suspend-1.json").read_text())
        resume_flow_run(
            run.id,
            run_input={
                "ordered_by": "Jane Doe",
                "reference": "1STKYC-SUSPEND",
                "decision": "activate",
                "data_loss_acknowledged": True,
                "plan_hash": report["plan_hash"],
            },
        )
        final = _wait(run.id, lambda s: s.is_final(), "finished")
        assert final.is_completed(), final.message
    finally:
        runner.terminate()
        try:
            runner.wait(timeout=20)
        except subprocess.TimeoutExpired:
            runner.kill()
            runner.wait()
    report = json.loads((tmp_path / "drill-suspend-1.json").read_text())
    assert report["outcome"] == "succeeded"
    assert report["order"]["reference"] == "1STKYC-SUSPEND"
    assert knot_answers() == dns_before
