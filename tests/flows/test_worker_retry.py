"""Workers that fail, as operators run drp: two process workers (`prefect worker start`) on one
work pool, each in its own working directory, with its own reports directory and Prefect home
(another machine, as far as drp can tell), against the session's Prefect server.

A worker killed with SIGKILL during a copy leaves its run Crashed. The UI's Retry of that run
(the same flow run, so the same derived operation id), picked up by the other worker, resumes
the operation from its record on the DRP host: the same order (not asked again), the same
backups, and the log says so; the end state is an uninterrupted run's. A Retry while the chosen
backup sets are gone fails naming them and saying how to start a new operation.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from flow_helpers import LAB_CONFIG, ensure_backups, run_logs, run_state, tickets

from lab import topology
from runbooks import connect, site_lock
from runbooks.inventory import Site, load_site
from runbooks.records import record_path
from runbooks.report import Report, load_report

pytestmark = [pytest.mark.lab, pytest.mark.prefect]

POOL = f"drp-retry-{os.getpid()}"
DEPLOYMENT = "drp-drill/retry-test"
WWW = topology.APP_FILES_DIR
COPYING = r"^rsync .*progress2"  # a copy on the DRP host (its dry runs have no progress)


# -- two workers -------------------------------------------------------------------------------
class Workers:
    """Process workers of one pool, each in a directory of its own (cwd, reports, Prefect
    home), started and killed as an operator's would be."""

    def __init__(self, root: Path, api_url: str) -> None:
        self.root, self.api_url = root, api_url
        self.processes: dict[str, subprocess.Popen[bytes]] = {}

    def home(self, name: str) -> Path:
        return self.root / name

    def reports(self, name: str) -> Path:
        return self.home(name) / "reports"

    def start(self, name: str) -> None:
        home = self.home(name)
        home.mkdir(exist_ok=True)
        env = {
            **os.environ,
            "PREFECT_API_URL": self.api_url,
            "PREFECT_HOME": str(home / "prefect"),
            "PREFECT_WORKER_QUERY_SECONDS": "1",
            "DRP_CONFIG": str(LAB_CONFIG),
            "DRP_REPORTS_DIR": str(self.reports(name)),
        }
        prefect = str(Path(sys.executable).parent / "prefect")
        with (home / "worker.log").open("ab") as log:
            self.processes[name] = subprocess.Popen(
                [prefect, "worker", "start", "--pool", POOL, "--name", name],
                cwd=home, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip

    def ensure(self, *names: str) -> None:
        for name in names:
            process = self.processes.get(name)
            if process is None or process.poll() is not None:
                self.start(name)

    def running(self) -> str:
        """The worker whose flow run process is alive (one run at a time in these tests)."""
        busy = [n for n, p in self.processes.items() if p.poll() is None and _children(p.pid)]
        assert len(busy) == 1, busy
        return busy[0]

    def kill(self, name: str) -> None:
        """SIGKILL the worker alone (not its flow run process), as the OOM killer would."""
        process = self.processes.pop(name)
        process.send_signal(signal.SIGKILL)
        process.wait()

    def stop(self) -> None:
        for process in self.processes.values():
            process.terminate()  # a process worker stops on SIGTERM (see RUNBOOK)
        for process in self.processes.values():
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()


def _children(pid: int) -> list[int]:
    found = []
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                fields = Path(entry.path, "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                found.append(int(entry.name))
    return found


# -- fixtures ----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def site(lab, prefect_server) -> Site:
    loaded = load_site(LAB_CONFIG)
    ensure_backups(loaded)
    return loaded


@pytest.fixture(scope="module")
def workers(site, prefect_server, tmp_path_factory) -> Iterator[Workers]:
    """The drill deployment on a process pool, and its two workers."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import WorkPoolCreate
    from prefect.workers.process import ProcessWorker

    from flows.drill import drp_drill

    with get_client(sync_client=True) as client:
        client.create_work_pool(
            WorkPoolCreate(
                name=POOL,
                type="process",
                base_job_template=ProcessWorker.get_default_base_job_template(),
            ),
            overwrite=True,
        )
    # The code is the checkout's, wherever each worker runs (prefect.yaml does the same).
    deployment = drp_drill.to_deployment(
        name="retry-test", job_variables={"working_dir": str(topology.REPO_ROOT)}
    )
    deployment.entrypoint = "flows/drill.py:drp_drill"
    deployment.apply(work_pool_name=POOL)
    started = Workers(tmp_path_factory.mktemp("workers"), prefect_server.api_url)
    started.ensure("a", "b")
    try:
        yield started
    finally:
        started.stop()


# -- helpers -----------------------------------------------------------------------------------
def _run(parameters: dict[str, Any]) -> Any:
    from prefect.deployments import run_deployment

    return run_deployment(DEPLOYMENT, parameters=parameters, timeout=0)


def _wait(run_id: Any, done: Callable[[Any], bool], what: str, timeout: float = 240) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        state = run_state(run_id)
        if state is not None and done(state):
            return state
        assert time.monotonic() < deadline, f"never {what}; last state {state}"
        time.sleep(0.3)


def _answer(run_id: Any) -> None:
    from flows import gate

    _wait(run_id, lambda s: s.name == "Suspended", "suspended at the gate")
    gate.answer_gate(run_id, {
        "ordered_by": "Jane Doe", "reference": "1STKYC-90", "decision": "activate",
        "data_loss_acknowledged": True, "plan_hash": gate.paused_plan_hash(run_id),
    })  # fmt: skip


def _retry(run_id: Any) -> None:
    """What the Prefect UI's Retry button sends (prefect 3.9's UI, FlowRunsApi.retryFlowRun):
    the run back to Scheduled, named AwaitingRetry; a worker then runs it again from the top."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.objects import StateType
    from prefect.states import State

    with get_client(sync_client=True) as client:
        result = client.set_flow_run_state(
            run_id,
            State(type=StateType.SCHEDULED, name="AwaitingRetry", message="Retry from the UI"),
            force=False,
        )
    assert result.status.value == "ACCEPT", result


def _operation_id(run_id: Any) -> str:
    from prefect.client.orchestration import get_client

    from runbooks.operation import derived_operation_id

    with get_client(sync_client=True) as client:
        run = client.read_flow_run(run_id)
    return derived_operation_id("drill", run.id, run.created)


def _record(site: Site, operation_id: str) -> Report | None:
    """The operation's record on the DRP host, as every worker reads it."""
    import json

    with connect.HostPool(site) as pool:
        result = pool["drp"].run(["cat", "--", record_path(operation_id)], check=False)
    return Report.from_data(json.loads(result.stdout)) if result.ok else None


def _copying(site: Site) -> bool:
    user = connect.host(site, "drp").user
    found = subprocess.run(["pgrep", "-u", user, "-f", COPYING], capture_output=True, check=False)
    return found.returncode == 0


def _empty_the_drp_tree(site: Site) -> None:
    """The DRP server without the application's files: the drill's copy has 16 MiB to send."""
    with connect.HostPool(site) as pool:
        pool["drp"].run(["rm", "-rf", "--", WWW])


def _crashed_during_the_copy(site: Site, workers: Workers, run_id: Any) -> str:
    """Once the order is given and the copy runs, the run's worker is killed; its flow run
    process, orphaned, dies at its next output and the run ends Crashed. Returns the worker.

    The kill waits until the run's log after the gate has reached the server: a process that
    is killed loses the log lines it had not yet sent (Prefect sends them every 2 s)."""
    _answer(run_id)
    deadline = time.monotonic() + 120
    resumed = "resuming operation "
    while not (_copying(site) and any(m.startswith(resumed) for m in run_logs(run_id))):
        assert time.monotonic() < deadline, "the copy never started"
        assert not run_state(run_id).is_final(), run_state(run_id)
        time.sleep(0.1)
    killed = workers.running()
    workers.kill(killed)
    crashed = _wait(run_id, lambda s: s.is_final(), "ended after its worker was killed")
    assert crashed.is_crashed(), crashed
    return killed


def _end_state(site: Site, operation_id: str) -> dict[str, Any]:
    """What a user checks after a drill: the DRP server's trees (sha256 of every file), the
    rows of every table of its databases, the tickets sent for the operation, the site lock."""
    from providers import mysql, postgres

    script = 'cd "$1" && find . -type f ! -path "./cache/*" -exec sha256sum {} + | sort'
    with connect.HostPool(site) as pool:
        trees = {
            tree: pool["drp"].run(["sh", "-c", script, "sh", tree]).stdout
            for tree in (WWW, "srv/app/config")
        }
        lock = site_lock.read_lock(pool["drp"])
    rows = {}
    for db in site.environments[0].databases:
        engine = postgres if db.engine == "postgresql" else mysql
        endpoint = connect.db_endpoint(site, db, "drp")
        rows[db.name] = engine.table_counts(endpoint, connect.database_password(site, db))
    return {
        "trees": trees,
        "rows": rows,
        "tickets": len(tickets(site, "drill-finished", operation_id)),
        "locked": lock is not None,
    }


# -- the test --------------------------------------------------------------------------------
def test_a_run_whose_worker_died_in_a_copy_is_retried_on_the_other_worker(
    site, workers: Workers
) -> None:
    """One crash, two Retries (each one a few seconds, the suite's time is counted): the first
    with the chosen backup sets gone, which fails saying so; the second with them back, which
    resumes and ends as an uninterrupted run does."""
    # An uninterrupted drill, for reference (its copy makes the tree equal to the set's).
    reference = _run({})
    _answer(reference.id)
    done = _wait(reference.id, lambda s: s.is_final(), "finished")
    assert done.is_completed(), done.message
    expected = _end_state(site, _operation_id(reference.id))
    assert expected["tickets"] == 1 and not expected["locked"]

    # The same drill, its worker killed during the copy.
    _empty_the_drp_tree(site)
    run = _run({"bwlimit_kib": 4000})  # 16 MiB at 4 MB/s: a few seconds of copy
    operation_id = _operation_id(run.id)
    killed = _crashed_during_the_copy(site, workers, run.id)
    survivor = "b" if killed == "a" else "a"
    first = _record(site, operation_id)
    assert first is not None and first.order is not None and first.backups
    # Either worker may have run the part before the gate: the survivor's copy goes, so that
    # all it knows of the operation comes from the DRP host, as on another machine.
    shutil.rmtree(workers.reports(survivor), ignore_errors=True)
    held = _lock(site)
    assert held is not None and held.operation_id == operation_id  # a crash keeps the site
    asked = sum(m.startswith("Waiting for the order") for m in run_logs(run.id))

    # Retry with the chosen sets gone (removed from the backup server): they are named, with
    # how to start a new operation, and nothing else is restored in their place.
    labels = sorted({(b["server"], b["environment"], b["set_id"]) for b in first.backups})
    moved = _set_aside(site, labels)
    try:
        _retry(run.id)
        failed = _wait(run.id, lambda s: s.is_final(), "finished after the first retry")
    finally:
        _put_back(site, moved)
    assert failed.is_failed(), failed
    message = failed.message or ""
    gone = "; ".join(f"{server}:{env}/{set_id} (no longer on {server})"
                     for server, env, set_id in labels)  # fmt: skip
    assert (
        f"the backups that operation {operation_id} chose in its first run are gone: {gone}. "
        in message
    ), message
    assert f"drp unlock -c {LAB_CONFIG} --operation-id {operation_id} --reason TEXT" in message
    assert f"`drp drill -c {LAB_CONFIG}` without --operation-id" in message
    assert "no usable backup" not in message
    assert message.count("Choose the newest verified backups:") == 1, message
    record = _record(site, operation_id)
    assert record is not None and record.outcome == "failed"
    assert f"chose in its first run are gone: {gone}" in record.message
    assert record.backups == first.backups and record.order == first.order  # still its own

    # Retry with the sets back: the survivor resumes the operation and finishes it.
    _retry(run.id)
    done = _wait(run.id, lambda s: s.is_final(), "finished after the second retry")
    assert done.is_completed(), done.message
    # A run's last lines reach the server as its process exits, after its final state.
    resuming = f"resuming operation {operation_id} from its record on the DRP host"
    deadline = time.monotonic() + 30
    while not any(m.startswith(resuming) and "last run failed" in m for m in run_logs(run.id)):
        assert time.monotonic() < deadline, run_logs(run.id)
        time.sleep(0.5)
    logs = run_logs(run.id)
    resumed = [m for m in logs if m.startswith(resuming)]
    assert len(resumed) >= 3, logs  # after the gate, and at each retry
    sets = ", ".join(sorted({f"{b['server']}:{b['set_id']}" for b in first.backups}))
    assert "order of Jane Doe (reference 1STKYC-90" in resumed[-1]
    assert f"backups {sets} (chosen " in resumed[-1] and "last run failed" in resumed[-1]
    assert any(m.startswith("Order already given by Jane Doe (reference 1STKYC-90)") for m in logs)
    assert sum(m.startswith("Waiting for the order") for m in logs) == asked  # not asked again
    assert not any("Choose the newest verified backups: Choose" in m for m in logs)

    # The survivor's copy of the record is the DRP host's; both say how it ended.
    report = load_report(workers.reports(survivor), operation_id)
    assert report.data == _record(site, operation_id).data  # type: ignore[union-attr]
    assert report.outcome == "succeeded", report.message
    assert report.order == first.order and report.backups == first.backups
    assert report.chosen_at == first.chosen_at and report.plan_hash == first.plan_hash
    assert [h.get("outcome") for h in report.history if "outcome" in h] == ["failed"]
    assert _end_state(site, operation_id) == expected


def _lock(site: Site) -> site_lock.LockInfo | None:
    with connect.HostPool(site) as pool:
        return site_lock.read_lock(pool["drp"])


def _set_aside(site: Site, labels: list[tuple[str, str, str]]) -> list[tuple[str, str, str]]:
    """Each set moved out of the backup area's listing (as if removed), to be put back."""
    moved = []
    with connect.HostPool(site) as pool:
        for server, environment, set_id in labels:
            path = f"{site.backups.area}/{environment}/{set_id}"
            aside = f"{site.backups.area}/{environment}/.test-aside-{set_id}"
            pool[connect.backup_role(site, server)].run(["mv", "-T", "--", path, aside])
            moved.append((server, path, aside))
    return moved


def _put_back(site: Site, moved: list[tuple[str, str, str]]) -> None:
    with connect.HostPool(site) as pool:
        for server, path, aside in moved:
            pool[connect.backup_role(site, server)].run(["mv", "-T", "--", aside, path])
