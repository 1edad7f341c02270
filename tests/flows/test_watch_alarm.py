"""The alarm that prepares the order: production's sshd and web app stopped, `drp-watch` opens
the alarm ticket and starts the activation deployment, which waits at its order gate with its
brief; a second alarm while it waits starts no other; started again, production recovers and
the tickets say so.

The inventory here declares a disaster after 3 seconds (not 10 minutes) and alerts after 2
failed rounds; the activation deployment is served by a runner process, as a worker runs it.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flow_helpers import LAB_CONFIG, ensure_backups, read_form, serving

from runbooks import connect, site_lock
from runbooks.inventory import load_site

pytestmark = [pytest.mark.lab, pytest.mark.prefect]

SERVE = """
from flows.activate import drp_activate
drp_activate.serve(name="activate", limit=1)
"""
DEPLOYMENT = "drp-activate/activate"


@pytest.fixture(scope="module")
def reports(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("watch-reports")


@pytest.fixture(scope="module")
def runner(lab, prefect_server, reports: Path, tmp_path_factory) -> Iterator[Path]:
    """The activation deployment, served as a worker would run it."""
    ensure_backups(load_site(LAB_CONFIG))
    env = {
        **os.environ,
        "PREFECT_API_URL": prefect_server.api_url,
        "PREFECT_RUNNER_POLL_FREQUENCY": "1",
        "DRP_CONFIG": str(LAB_CONFIG),
        "DRP_REPORTS_DIR": str(reports / "activation"),
    }
    log = tmp_path_factory.mktemp("runner") / "runner.log"
    with serving(SERVE, env, log, DEPLOYMENT):
        yield log


def inventory(tmp_path: Path) -> Path:
    text = LAB_CONFIG.read_text()
    changes = {
        "path: ${DRP_LAB_DIR:-/var/lib/drp-lab}/tickets.jsonl": f"path: {tmp_path}/tickets.jsonl",
        "alerts: {after_failures: 3, after_recoveries: 2}": (
            "alerts: {after_failures: 2, after_recoveries: 1}"
        ),
        "disaster: {probes: [ping, ssh, url], for_seconds: 600}": (
            "disaster: {probes: [ping, ssh, url], for_seconds: 3}"
        ),
    }
    for old, new in changes.items():
        assert text.count(old) == 1, old
        text = text.replace(old, new)
    path = tmp_path / "lab.yaml"
    path.write_text(text)
    return path


# Started from a process of its own, so that the daemons are not children of the test session.
RESTART = """
import sys
from lab import sshd, topology, webapp
from lab.secrets import load_secrets
from lab.supervisor import Supervisor
paths, host = topology.paths(), topology.host("production")
make = {
    "sshd-production": lambda: sshd.sshd_daemon(paths, host),
    "web-production": lambda: webapp.web_daemon(paths, host, load_secrets(paths)),
}
Supervisor(paths).start([make[name]() for name in sys.argv[1:]])
"""


@contextlib.contextmanager
def production_stopped(lab, names: tuple[str, ...]) -> Iterator[None]:
    """Stops production's daemons named; starts again exactly those, whatever happens."""
    from lab.supervisor import Supervisor

    stopped = Supervisor(lab.paths).stop(list(names))
    assert sorted(stopped) == sorted(names), stopped
    try:
        yield
    finally:
        started = subprocess.run(
            [sys.executable, "-c", RESTART, *stopped], capture_output=True, text=True, timeout=60
        )
        assert started.returncode == 0, started.stderr


def tickets(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def watch_until(config: Path, done: Any, what: str, timeout: float = 60) -> list[dict[str, Any]]:
    """drp-watch rounds (the flow, as the deployment runs it) until `done(events)`."""
    from flows.watch import drp_watch

    seen: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout
    while True:
        result = drp_watch(config=str(config))
        seen += result["events"]
        if done(seen):
            return seen
        assert time.monotonic() < deadline, f"never {what}; events: {seen}"
        time.sleep(0.5)


def activation_runs() -> list[Any]:
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        deployment = client.read_deployment_by_name(DEPLOYMENT)
        from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterId

        return client.read_flow_runs(
            deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[deployment.id]))
        )


def wait_suspended(timeout: float = 120) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        runs = activation_runs()
        states = [r.state for r in runs if r.state is not None]
        if any(s.name == "Suspended" for s in states):
            return next(r for r in runs if r.state and r.state.name == "Suspended")
        assert not any(s.is_final() for s in states), [s.message for s in states]
        assert time.monotonic() < deadline, f"the activation never waited at its gate: {states}"
        time.sleep(0.5)


def cancel(run_id: Any) -> None:
    from prefect.client.orchestration import get_client
    from prefect.states import Cancelled

    with get_client(sync_client=True) as client:
        client.set_flow_run_state(run_id, Cancelled(), force=True)


def kinds(events: list[dict[str, Any]], kind: str) -> list[str]:
    return [e["event"] for e in events if e["kind"] == kind]


def test_production_lost_opens_one_alarm_and_one_activation_waiting_at_its_gate(
    lab, runner, reports: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DRP_REPORTS_DIR", str(reports / "watch"))
    config = inventory(tmp_path)
    ticket_file = tmp_path / "tickets.jsonl"
    site = load_site(config)
    run = None
    with lab.exclusive(), production_stopped(lab, ("sshd-production", "web-production")):
        events = watch_until(config, lambda e: kinds(e, "alarm"), "raised the alarm")
        assert kinds(events, "alarm") == ["disaster-1"]
        opened = kinds(events, "opened")
        assert "alert-production-ssh-1" in opened and "alert-production-ping-1" in opened

        run = wait_suspended()
        schema, brief = read_form(run.id)
        assert "Data loss:" in brief and "data_loss_acknowledged" in schema["properties"]
        with connect.HostPool(site) as pool:
            held = site_lock.read_lock(pool["drp"])
        assert held is not None and held.kind == "activate" and not held.ordered_by

        # The watch's state is lost (a new orchestrator): the alarm is raised again, but the
        # waiting activation holds the site, and no other is started.
        (reports / "watch" / "watch-state.json").unlink()
        events = watch_until(config, lambda e: kinds(e, "alarm"), "raised the alarm again")
        assert kinds(events, "alarm") == ["disaster-2"]
        second = next(t for t in tickets(ticket_file) if t["event"] == "disaster-2")
        assert f"no activation was started: operation {held.operation_id}" in second["body"]
        assert len(activation_runs()) == 1

    try:
        # Production is back: recovery tickets, the alarm cleared; the activation still waits.
        events = watch_until(
            config, lambda e: kinds(e, "alarm-cleared"), "cleared the alarm", timeout=60
        )
        assert kinds(events, "alarm-cleared") == ["disaster-cleared-2"]
        # The alerts opened after the state was lost close (numbered after the first ones).
        assert "recovered-production-ssh-2" in kinds(events, "closed")
        sent = [t["event"] for t in tickets(ticket_file)]
        assert sent.count("disaster-1") == 1 and sent.count("alert-production-ssh-1") == 1
        first = next(t for t in tickets(ticket_file) if t["event"] == "disaster-1")
        assert f"started {DEPLOYMENT} as flow run {run.name} ({run.id})" in first["body"]
        assert activation_runs()[0].state.name == "Suspended"  # never past the gate
    finally:
        cancel(run.id)
