"""A run from a deployment suspends at the order gate (no process held while the customer
decides) and, once answered, starts again from the top and goes on.

The runs here are started as the UI's "Run" button does, with no parameters at all: the
operation id then comes from the flow run, and must stay the same through every restart (one
operation, one report, a plan hash that the stored answer matches).
"""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from flow_helpers import (
    LAB_CONFIG,
    drp_cli,
    drp_state,
    ensure_backups,
    knot_answers,
    run_logs,
    run_state,
    serving,
    suspended,
    wait_for,
)

from runbooks.inventory import Site, load_site

pytestmark = [pytest.mark.lab, pytest.mark.prefect]

DEPLOYMENT = "drp-drill/gate-test"
SERVE = """
from flows.drill import drp_drill
drp_drill.serve(name="gate-test", limit=1)
"""
DERIVED_ID = re.compile(r"^drill-\d{8}-\d{4}-[0-9a-f]{8}$")


# -- fixtures ----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def site(lab, prefect_server) -> Site:
    loaded = load_site(LAB_CONFIG)
    ensure_backups(loaded)
    return loaded


@pytest.fixture(scope="module")
def reports(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("reports")


@pytest.fixture(scope="module")
def runner(site: Site, prefect_server, reports: Path, tmp_path_factory) -> Iterator[None]:
    """The drill deployment, served by a runner process (as a worker would run it)."""
    env = {
        **os.environ,
        "PREFECT_API_URL": prefect_server.api_url,
        "PREFECT_RUNNER_POLL_FREQUENCY": "1",
        "DRP_CONFIG": str(LAB_CONFIG),
        "DRP_REPORTS_DIR": str(reports),
    }
    with serving(SERVE, env, tmp_path_factory.mktemp("runner") / "runner.log", DEPLOYMENT):
        yield


# -- helpers -----------------------------------------------------------------------------------
def _start(parameters: dict[str, Any] | None = None) -> Any:
    """A deployment run, as the UI's "Run" starts it (no parameters unless given)."""
    from prefect.deployments import run_deployment

    return run_deployment(DEPLOYMENT, parameters=parameters or {}, timeout=0)  # served: `runner`


def _new_reports(reports: Path, before: set[Path]) -> list[dict[str, Any]]:
    return [json.loads(p.read_text()) for p in sorted(set(reports.glob("*.json")) - before)]


def _one_report(reports: Path, before: set[Path], run_id: Any) -> dict[str, Any]:
    """The run's report: exactly one new report file, named after the flow run."""
    new = _new_reports(reports, before)
    assert len(new) == 1, [r["operation_id"] for r in new]
    operation_id = new[0]["operation_id"]
    assert DERIVED_ID.match(operation_id), operation_id
    assert operation_id.endswith(run_id.hex[:8])
    return new[0]


def _answer(plan_hash: str, *, acknowledged: bool = True) -> dict[str, Any]:
    return {
        "ordered_by": "Jane Doe",
        "reference": "1STKYC-77",
        "decision": "activate",
        "data_loss_acknowledged": acknowledged,
        "plan_hash": plan_hash,
    }


_DURATION = (
    (re.compile(r"^(\d+(?:\.\d)?) s$"), lambda m: float(m[1]), 1),
    (re.compile(r"^(\d+) min (\d+) s$"), lambda m: int(m[1]) * 60 + int(m[2]), 1),
    (re.compile(r"^(\d+) h (\d+) min$"), lambda m: int(m[1]) * 3600 + int(m[2]) * 60, 60),
    (re.compile(r"^(\d+) d (\d+) h$"), lambda m: int(m[1]) * 86400 + int(m[2]) * 3600, 3600),
)


def _data_loss_seconds(brief: str) -> tuple[float, float]:
    """The data-loss window the brief states, in seconds, and the precision it is stated to."""
    found = re.search(r"\*\*Data loss: .* \((.+) of data\)\.\*\*", brief)
    assert found, brief[:500]
    for pattern, seconds, precision in _DURATION:
        matched = pattern.match(found[1])
        if matched:
            return float(seconds(matched)), float(precision)
    raise AssertionError(f"unexpected duration {found[1]!r}")


# -- tests -------------------------------------------------------------------------------------
def test_no_parameter_run_answered_with_drp_approve_completes_as_one_operation(
    site, runner, reports: Path, prefect_server
) -> None:
    dns_before = knot_answers()
    before = set(reports.glob("*.json"))
    run = _start()
    wait_for(run.id, suspended(1), "suspended at the gate")
    at_gate = _one_report(reports, before, run.id)
    assert at_gate["outcome"] == "running" and at_gate["order"] is None

    approved = drp_cli(prefect_server.api_url, "approve", str(run.id), "--by", "Jane Doe",
                       "--reference", "1STKYC-77", "--acknowledge-data-loss")  # fmt: skip
    assert approved.returncode == 0, approved.stdout + approved.stderr
    assert "will be lost" in approved.stdout  # the brief is shown to whoever answers
    final = wait_for(run.id, lambda s: s.is_final(), "was finished")
    assert final.is_completed(), final.message

    # The same operation before and after the restart: one report, the same id and plan.
    report = _one_report(reports, before, run.id)
    assert report["operation_id"] == at_gate["operation_id"]
    assert report["plan_hash"] == at_gate["plan_hash"] == report["order"]["plan_hash"]
    assert report["outcome"] == "succeeded", report["message"]
    assert report["order"]["reference"] == "1STKYC-77"
    assert any(f"Operation {report['operation_id']} " in m for m in run_logs(run.id))
    assert knot_answers() == dns_before


def test_no_parameter_run_reopens_its_form_then_completes_through_the_resume_api(
    site, runner, reports: Path
) -> None:
    from prefect.flow_runs import resume_flow_run

    from flows import gate

    dns_before = knot_answers()
    before = set(reports.glob("*.json"))
    run = _start()
    wait_for(run.id, suspended(1), "suspended at the gate")
    at_gate = _one_report(reports, before, run.id)
    first = gate.paused_schema(run.id)["properties"]
    assert "default" not in first["ordered_by"] and "default" not in first["reference"]
    first_loss, _ = _data_loss_seconds(gate.paused_brief(run.id))

    # What the UI's Resume dialog sends, without the data-loss acknowledgement: the run takes
    # it, restarts from the top, and reopens the gate with the reason.
    asked = datetime.now(UTC)
    resume_flow_run(run.id, run_input=_answer(at_gate["plan_hash"], acknowledged=False))
    wait_for(run.id, suspended(2), "suspended at the gate again")
    seen = datetime.now(UTC)
    schema, brief = gate.paused_schema(run.id), gate.paused_brief(run.id)
    assert "The previous answer was not taken" in brief and "not acknowledged" in brief
    # The reopened form keeps what was typed; the acknowledgement is asked again.
    props = schema["properties"]
    assert props["ordered_by"]["default"] == "Jane Doe"
    assert props["reference"]["default"] == "1STKYC-77"
    assert set(schema["required"]) == {"ordered_by", "reference"}
    assert props["data_loss_acknowledged"]["default"] is False
    assert props["plan_hash"]["default"] == at_gate["plan_hash"]  # the same plan
    # The data loss is restated as of the reopening, not copied from the first form.
    oldest = min(datetime.fromisoformat(b["time"]) for b in at_gate["backups"])
    loss, precision = _data_loss_seconds(brief)
    assert (asked - oldest).total_seconds() - precision <= loss
    assert loss <= (seen - oldest).total_seconds() + precision + 1
    assert loss >= first_loss

    gate.answer_gate(run.id, _answer(gate.paused_plan_hash(run.id)))
    final = wait_for(run.id, lambda s: s.is_final(), "was finished")
    assert final.is_completed(), final.message
    report = _one_report(reports, before, run.id)
    assert report["operation_id"] == at_gate["operation_id"]
    assert report["outcome"] == "succeeded", report["message"]
    assert report["order"]["data_loss_acknowledged"] is True
    assert knot_answers() == dns_before


def test_refused_answer_ends_the_no_parameter_run_with_nothing_changed(
    site, runner, reports: Path, prefect_server
) -> None:
    before = set(reports.glob("*.json"))
    drp_before, dns_before = drp_state(site), knot_answers()
    run = _start()
    wait_for(run.id, suspended(1), "suspended at the gate")
    refused = drp_cli(prefect_server.api_url, "approve", str(run.id), "--by", "Jane Doe",
                      "--reference", "1STKYC-78", "--refuse")  # fmt: skip
    assert refused.returncode == 0, refused.stdout + refused.stderr
    final = wait_for(run.id, lambda s: s.is_final(), "was finished")
    assert final.is_completed(), final.message
    report = _one_report(reports, before, run.id)
    assert report["outcome"] == "refused"
    assert "nothing was changed" in report["message"]
    assert drp_state(site) == drp_before  # files and databases on the DRP server
    assert knot_answers() == dns_before


def test_run_given_an_operation_id_keeps_it(site, runner, reports: Path) -> None:
    from prefect.flow_runs import resume_flow_run

    # A new id each session: the DRP host's lock ledger remembers every operation that took
    # the site, and a drill seen there before another operation is not run again.
    op = f"drill-suspend-{int(time.time())}"
    run = _start({"operation_id": op})
    wait_for(run.id, suspended(1), "suspended at the gate")
    report = json.loads((reports / f"{op}.json").read_text())
    resume_flow_run(run.id, run_input=_answer(report["plan_hash"]))
    final = wait_for(run.id, lambda s: s.is_final(), "was finished")
    assert final.is_completed(), final.message
    report = json.loads((reports / f"{op}.json").read_text())
    assert report["outcome"] == "succeeded"


def test_a_run_cancelled_at_its_gate_does_not_keep_the_site_locked(
    site, runner, reports: Path, prefect_server
) -> None:
    """Cancelled from the UI while it waits for the order, the run never runs again: the next
    operation releases its lock (nothing was done under it), says so, and the ledger keeps why."""
    from prefect.client.orchestration import get_client
    from prefect.states import Cancelling

    from runbooks import connect, site_lock

    run = _start()
    wait_for(run.id, suspended(1), "suspended at the gate")
    with connect.HostPool(site) as pool:
        held = site_lock.read_lock(pool["drp"])
    assert held is not None and held.run == f"flow run {run.id}" and not held.ordered_by
    with get_client(sync_client=True) as client:  # what the UI's Cancel does
        client.set_flow_run_state(run.id, Cancelling())
    assert run_state(run.id).name == "Cancelled"

    op = f"drill-after-cancel-{int(time.time()) % 100000}"
    done = drp_cli(prefect_server.api_url, "drill", "-c", str(LAB_CONFIG), "--operation-id", op,
                   "--order-by", "Jane Doe", "--reference", "1STKYC-79")  # fmt: skip
    output = " ".join((done.stdout + done.stderr).split())
    assert done.returncode == 0, output
    assert (
        f"site lock of operation {held.operation_id} released: its flow run {run.id} ended "
        "cancelled, before any order, so nothing had been done under it"
    ) in output, output
    with connect.HostPool(site) as pool:
        entries = site_lock.ledger(pool["drp"])
        assert site_lock.read_lock(pool["drp"]) is None  # the drill ended and released its own
    last = [e for e in entries if e["operation_id"] == held.operation_id]
    assert last and last[-1]["event"] == "released-unordered"
    assert last[-1]["released_by"].startswith(f"operation {op} ")
