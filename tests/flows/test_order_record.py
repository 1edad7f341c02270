"""The order a drill keeps, on the lab under a real Prefect server: signed with the lab's order
secret, the channel it came through, --force in the plan, and a resume that asks again (saying
why) when the stored order was changed by hand or has expired."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from flow_helpers import LAB_CONFIG, FlowInThread, ensure_backups, read_form, resume

from runbooks.gate import order_mac
from runbooks.inventory import Site, load_site
from runbooks.report import load_report
from runbooks.services import reports_dir

pytestmark = [pytest.mark.lab, pytest.mark.prefect]


@pytest.fixture(scope="module")
def site(lab, prefect_server, tmp_path_factory) -> Iterator[Site]:
    os.environ["DRP_REPORTS_DIR"] = str(tmp_path_factory.mktemp("reports"))
    loaded = load_site(LAB_CONFIG)
    ensure_backups(loaded)
    yield loaded
    os.environ.pop("DRP_REPORTS_DIR", None)


def drill(op: str, **params: Any) -> FlowInThread:
    from flows.drill import drp_drill

    return FlowInThread(
        drp_drill, config=str(LAB_CONFIG), operation_id=op, gate_timeout_seconds=300, **params
    )


def answer(plan_hash: str, **extra: Any) -> dict[str, Any]:
    return {"ordered_by": "Jane Doe", "reference": "ORD-1", "decision": "activate",
            "data_loss_acknowledged": True, "plan_hash": plan_hash, **extra}  # fmt: skip


def edit_order(site: Site, op: str, change: Any) -> None:
    """Someone edits the stored order: in the operation's record on the DRP host (where a
    resume reads it) and in the orchestrator's copy."""
    from providers import aside
    from runbooks import connect, records

    path = Path(reports_dir(site)) / f"{op}.json"
    data = json.loads(path.read_text())
    change(data["order"])
    path.write_text(json.dumps(data))
    with connect.HostPool(site) as pool:
        remote = records.record_path(op)
        text = aside.read_file(pool["drp"], remote)
        assert text is not None, f"no record of {op} on the DRP host"
        data = json.loads(text)
        change(data["order"])
        aside.write_file(pool["drp"], remote, json.dumps(data))


def test_the_order_is_signed_its_channel_recorded_and_a_changed_one_asked_again(site, lab) -> None:
    op = f"drill-order-{time.strftime('%H%M%S')}"
    run = drill(op)
    run_id = run.wait_paused()
    schema, brief = read_form(run_id)
    assert schema["properties"]["channel"]["default"] == "Prefect UI"
    assert "option --force" in brief and "option --cleanup" in brief
    plan_hash = load_report(reports_dir(site), op).plan_hash
    resume(run_id, answer(plan_hash))  # an API call that does not say its channel
    assert run.join()["outcome"] == "succeeded"
    order = load_report(reports_dir(site), op).order
    assert order is not None
    assert order["via"] == "Prefect API"
    key = lab.secrets["DRP_LAB_ORDER_SECRET"].encode()
    assert order["hmac"] == order_mac(key, op, order)

    # Someone writes another name into the report: the resume asks for the order again.
    edit_order(site, op, lambda o: o.update(ordered_by="Mallory"))
    again = drill(op)
    run_id = again.wait_paused()
    _schema, brief = read_form(run_id)
    assert "Order asked for again" in brief
    assert "does not carry a valid signature" in brief
    resume(run_id, answer(plan_hash, channel="drp approve"))
    assert again.join()["outcome"] == "succeeded"
    order = load_report(reports_dir(site), op).order
    assert (order["ordered_by"], order["via"]) == ("Jane Doe", "drp approve")

    # An order older than orders.valid_hours (24 h in the lab), properly signed: asked again.
    def age(o: dict[str, Any]) -> None:
        o["answered_at"] = (datetime.now(UTC) - timedelta(hours=25)).isoformat()
        o["hmac"] = order_mac(key, op, o)

    edit_order(site, op, age)
    late = drill(op)
    run_id = late.wait_paused()
    _schema, brief = read_form(run_id)
    assert "expired at" in brief and "orders.valid_hours: 24" in brief
    resume(run_id, answer(plan_hash, channel="Prefect UI"))
    assert late.join()["outcome"] == "succeeded"
    assert load_report(reports_dir(site), op).order["via"] == "Prefect UI"

    # The same operation resumed with --force is another plan: asked again; refused here.
    forced = drill(op, force=True)
    run_id = forced.wait_paused()
    _schema, brief = read_form(run_id)
    assert "option --force: yes" in brief.replace("**", "")
    new_hash = load_report(reports_dir(site), op).plan_hash
    assert new_hash != plan_hash
    assert "the order stored was for plan" in brief
    resume(run_id, answer(new_hash, decision="refuse"))
    assert forced.join()["outcome"] == "refused"
