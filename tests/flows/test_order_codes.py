"""Order codes on the lab: the gate sends a one-time code to the customer's order contacts (by
e-mail, and in the ticket file), and the order is taken only with that code. Driven as people
drive it: `drp drill` waiting in a terminal that is not a prompt, `drp approve` from another."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from pathlib import Path
from typing import Any

import pytest
import yaml
from aiosmtpd.controller import Controller
from backup_lab import write_inventory
from flow_helpers import LAB_CONFIG, drp_cli, ensure_backups

from runbooks.inventory import load_site

pytestmark = [pytest.mark.lab, pytest.mark.prefect]

CONTACT = "orders@1stkyc.test"
OPS = "ops@lab.test"
CODE = re.compile(r"Order code: ([A-Z2-7]{4}-[A-Z2-7]{4})")
WAITING = re.compile(r"Waiting for the order of flow run ([0-9a-f-]{36})")


@dataclass
class Mailbox:
    """The SMTP server's mail: (envelope recipients, message) per DATA."""

    messages: list[tuple[list[str], EmailMessage]] = field(default_factory=list)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        message = BytesParser(policy=policy.default).parsebytes(envelope.content)
        assert isinstance(message, EmailMessage)
        self.messages.append((list(envelope.rcpt_tos), message))
        return "250 OK"

    def to(self, address: str) -> list[EmailMessage]:
        return [m for rcpt, m in self.messages if address in rcpt]


@pytest.fixture
def mailbox() -> Iterator[tuple[Mailbox, int]]:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = int(probe.getsockname()[1])
    box = Mailbox()
    controller = Controller(box, hostname="127.0.0.1", port=port)
    controller.start()
    yield box, port
    controller.stop()


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


def test_a_drill_is_ordered_only_with_the_code_sent_to_the_customer(
    lab, prefect_server, tmp_path: Path, mailbox: tuple[Mailbox, int]
) -> None:
    box, port = mailbox
    ensure_backups(load_site(LAB_CONFIG))
    inventory = write_inventory(tmp_path, "backups")
    data = yaml.safe_load(inventory.read_text())
    data["orders"]["codes"] = {"contacts": [CONTACT], "drills": True}
    ticket_file = tmp_path / "tickets.jsonl"
    data["tickets"] = [
        {"type": "file", "path": str(ticket_file)},
        {"type": "smtp", "host": "127.0.0.1", "port": port, "sender": "drp@lab.test",
         "recipients": [OPS], "starttls": False},
    ]  # fmt: skip
    inventory.write_text(yaml.safe_dump(data, sort_keys=False))
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
        [mail] = _until("the code's e-mail", lambda: box.to(CONTACT))
        assert mail["To"] == CONTACT  # the customer's contacts, not the ops list
        code = CODE.search(mail.get_content())[1]  # type: ignore[index]
        lines = [json.loads(x) for x in ticket_file.read_text().splitlines()]
        [line] = [x for x in lines if x["event"].startswith("order-code-")]
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
    assert len(box.to(CONTACT)) == 1  # one code: the reopened forms did not send another
    finished = [m for m in box.to(OPS) if "drill-finished" in m["Subject"]]
    assert finished and all(CONTACT not in m["To"] for m in box.to(OPS))
