"""What the flow tests share: the lab inventory, what a user can observe, and running a flow.

Flows run in a thread of the test process (answered through the resume API, as the UI does) or
as the `drp` command line in a subprocess, against the session's Prefect server.
"""

from __future__ import annotations

import contextvars
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from uuid import UUID

import dns.message
import dns.query
import httpx

from lab import topology
from runbooks import connect
from runbooks.inventory import Site

LAB_CONFIG = topology.REPO_ROOT / "config" / "lab.yaml"
PRODUCTION = topology.host("production").address
DRP = topology.host("drp").address
NAMES = (topology.ZONE + ".", f"www.{topology.ZONE}.")


# -- the lab -----------------------------------------------------------------------------------
def ensure_backups(site: Site) -> None:
    """A complete set of verified backups to restore (taken now if there is none)."""
    from runbooks.backups import choose_sets

    if not choose_sets(site).complete:
        done = subprocess.run(
            [sys.executable, "-m", "flows.cli", "backup", "run", "-c", str(LAB_CONFIG)],
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        assert done.returncode == 0, done.stdout + done.stderr


def drp_cli(api_url: str, *args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    """`drp ARGS...` in a subprocess, against the session's Prefect server."""
    return subprocess.run(
        [sys.executable, "-m", "flows.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        env={**os.environ, "PREFECT_API_URL": api_url},
    )


# -- what a user can observe -------------------------------------------------------------------
def knot_answers() -> dict[str, list[str]]:
    """What the lab's authoritative server answers for the switched names."""
    answers = {}
    for name in NAMES:
        response = dns.query.tcp(
            dns.message.make_query(name, "A"),
            topology.DNS_ADDRESS,
            port=topology.DNS_PORT,
            timeout=5,
        )
        answers[name] = sorted(r.to_text() for rrset in response.answer for r in rrset)
    return answers


def drp_state(site: Site) -> dict[str, Any]:
    """The DRP server's application files and databases, as a comparable value. The records
    of operations (`~/.drp/operations/*/report.json`) are left out: every operation writes its
    own, a refused one too."""
    from providers import mysql, postgres

    listing_script = (
        "{ find srv .drp -path .drp/operations -prune -o -printf '%P %s %T@\\n'; "
        "find .drp/operations -type f ! -name 'report.json*' -printf '%P %s %T@\\n'; } "
        "2>/dev/null | sort; true"
    )
    with connect.HostPool(site) as pool:
        listing = pool["drp"].run(["sh", "-c", listing_script]).stdout
    databases = {}
    for db in site.environments[0].databases:
        endpoint = connect.db_endpoint(site, db, "drp")
        password = connect.database_password(site, db)
        engine = postgres if db.engine == "postgresql" else mysql
        state = engine.read_state(endpoint, password)
        databases[db.name] = (state.exists, state.tables, state.marker)
    return {"files": listing, "databases": databases}


def web_page(address: str) -> str:
    response = httpx.get(
        f"http://{address}:{topology.WEB_PORT}/",
        headers={"Host": f"www.{topology.ZONE}"},
        timeout=10,
    )
    assert response.status_code == 200, response.text[:300]
    return response.text


def tickets(site: Site, event: str, operation_id: str) -> list[dict[str, Any]]:
    path = Path(site.tickets[0].path)
    if not path.exists():
        return []
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return [r for r in rows if r.get("event") == event and r.get("operation_id") == operation_id]


# -- a flow in a thread ------------------------------------------------------------------------
class FlowInThread:
    """Runs a flow in a thread of this process and learns its flow run id at the gate."""

    def __init__(self, fn: Callable[..., Any], **params: Any) -> None:
        from flows import gate

        self.run_id: UUID | None = None
        self.result: Any = None
        self.error: BaseException | None = None
        self._gate = gate
        gate.add_gate_listener(self._listen)
        # A new thread starts with an empty context: carry Prefect's settings (the API URL).
        context = contextvars.copy_context()
        self.thread = threading.Thread(
            target=context.run, args=(self._run, fn, params), daemon=True
        )
        self.thread.start()

    def _listen(self, run_id: UUID, plan_hash: str, brief: str) -> None:
        self.run_id = run_id

    def _run(self, fn: Callable[..., Any], params: dict[str, Any]) -> None:
        try:
            self.result = fn(**params)
        except BaseException as err:
            self.error = err
        finally:
            self._gate.remove_gate_listener(self._listen)

    def wait_paused(self, timeout: float = 120, after: int = 0) -> UUID:
        """Until the run waits for the order (the `after`+1-th time it opens the gate)."""
        from prefect.client.orchestration import get_client

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.thread.is_alive() or self.run_id, f"the flow ended early: {self.error!r}"
            if self.run_id is not None:
                with get_client(sync_client=True) as client:
                    state = client.read_flow_run(self.run_id).state
                if state and state.is_paused() and _pause_count(state) > after:
                    return self.run_id
            time.sleep(0.3)
        raise AssertionError("the flow never paused for the order")

    def join(self, timeout: float = 300) -> Any:
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "the flow is still running"
        return self.result


def _pause_count(state: Any) -> int:
    key = state.state_details.pause_key or "0"
    return int(key) if key.isdigit() else 1


def read_form(run_id: UUID) -> tuple[dict[str, Any], str]:
    """The schema the UI renders the form from, and the markdown shown above it."""
    from prefect.client.orchestration import get_client
    from prefect.input.run_input import keyset_from_paused_state

    with get_client(sync_client=True) as client:
        state = client.read_flow_run(run_id).state
        keyset = keyset_from_paused_state(state)
        schema = json.loads(client.read_flow_run_input(run_id, keyset["schema"]))
        description = json.loads(client.read_flow_run_input(run_id, keyset["description"]))
    return schema, description


def resume(run_id: UUID, answer: dict[str, Any]) -> None:
    """What the UI's Resume button does."""
    from prefect.flow_runs import resume_flow_run

    resume_flow_run(run_id, run_input=answer)
