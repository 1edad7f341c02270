"""Order codes on the lab: the gate sends a one-time code to the customer's order contacts (by
e-mail, and in the ticket file), and the order is taken only with that code. Driven as people
drive it: `drp drill` waiting in a terminal that is not a prompt, `drp approve` from another; the
code read where the customer gets it, from the lab's mail sink."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
import yaml
from backup_lab import write_inventory
from flow_helpers import LAB_CONFIG, drp_cli, ensure_backups

from lab import mail_sink
from runbooks.inventory import load_site

pytestmark = [pytest.mark.lab, pytest.mark.prefect]

CONTACT = "orders@1stkyc.test"
OPS = "ops@drp-lab.test"
CODE = re.compile(r"Order code: ([A-Z2-7]{4}-[A-Z2-7]{4})")
WAITING = re.compile(r"Waiting for the order of flow run ([0-9a-f-]{36})")


def _until(what: str, found: Any, timeout: float = 120) -> Any:
    deadline = time.monotonic() + timeout
    while not (value := found()):
        assert time.monotonic() < deadline, f"never saw {what}"
        time.sleep(0.3)
    return value


def _state(run_id: str) -> Any:
    from uuid import UUID

    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        return client.read_flow_run(UUID(run_id)).state


def _mail(op: str, to: str) -> list[EmailMessage]:
    """What the lab's mail sink received for this operation, addressed to `to`."""
    return [m for m in mail_sink.messages() if m["X-DRP-Operation"] == op and to in m["To"]]


def test_a_drill_is_ordered_only_with_the_code_sent_to_the_customer(
    lab, prefect_server, tmp_path: Path
) -> None:
    ensure_backups(load_site(LAB_CONFIG))
    inventory = write_inventory(tmp_path, "backups")  # the lab's tickets: a file, the mail sink
    data = yaml.safe_load(inventory.read_text())
    data["orders"]["codes"] = {"contacts": [CONTACT], "drills": True}
    inventory.write_text(yaml.safe_dump(data, sort_keys=False))
    ticket_file = Path(data["tickets"][0]["path"])
    reports = tmp_path / "reports"
    op = f"drill-codes-{int(time.time()) % 100000}"
    log = tmp_path / "drill.log"
    env = {**os.environ, "PREFECT_API_URL": prefect_server.api_url,
           "DRP_REPORTS_DIR": str(reports)}  # fmt: skip
    with log.open("w") as out:
        drill = subprocess.Popen(
            [sys.executable, "-m", "flows.cli", "drill", "-c", str(inventory), "--operation-id",
             op], stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, env=env,
        )  # fmt: skip
    try:
        run_id = _until("the run waiting", lambda: WAITING.search(log.read_text()))[1]
        assert f"drp approve {run_id} --by NAME --reference REF --code CODE" in " ".join(
            log.read_text().split()
        )
        [mail] = _until("the code's e-mail", lambda: _mail(op, CONTACT))
        assert mail["To"] == CONTACT  # the customer's contacts, not the ops list
        code = CODE.search(mail.get_content())[1]  # type: ignore[index]
        lines = [json.loads(x) for x in ticket_file.read_text().splitlines()]
        [line] = [x for x in lines if x["operation_id"] == op and "order-code" in x["event"]]
        assert line["to"] == CONTACT and code in line["body"]

        def approve(*extra: str) -> None:
            done = drp_cli(prefect_server.api_url, "approve", run_id, "--by", "Jane Doe",
                           "--reference", "1STKYC-81", "--acknowledge-data-loss",
                           *extra)  # fmt: skip
            assert done.returncode == 0, done.stdout + done.stderr

        def reopened_saying(text: str) -> Any:
            return _until(
                f"the form reopened saying {text!r}",
                lambda: (s := _state(run_id)) and s.is_paused() and text in (s.message or ""),
            )

        approve("--code", "AAAA-AAAA")
        reopened_saying("the order code is wrong")
        approve()
        reopened_saying("the order code is missing (field 'Order code') (an order code was sent")
        assert drill.poll() is None  # still waiting: nothing was done
        approve("--code", code.lower())
        assert drill.wait(timeout=300) == 0, log.read_text()[-3000:]
    finally:
        if drill.poll() is None:
            drill.kill()
    report = json.loads((reports / f"{op}.json").read_text())
    assert report["outcome"] == "succeeded"
    assert report["order"]["code"].startswith(f"order code sent to {CONTACT} at ")
    assert code not in json.dumps(report)  # the code itself is never stored
    assert len(_mail(op, CONTACT)) == 1  # one code: the reopened forms did not send another
    finished = [m for m in _mail(op, OPS) if m["X-DRP-Event"] == "drill-finished"]
    assert len(finished) == 1 and finished[0]["To"] == OPS  # tickets: the ops, not the customer
