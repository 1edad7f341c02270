"""What the flow tests share: the lab inventory, what a user can observe, and running a flow.

Flows run in a thread of the test process (answered through the resume API, as the UI does) or
as the `drp` command line in a subprocess, against the session's Prefect server; a subprocess
can be killed (SIGKILL, its whole process group) at a moment seen from outside, as a crash would.
"""

from __future__ import annotations

import contextlib
import contextvars
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from uuid import UUID

import dns.message
import dns.query
import httpx
import psycopg
import pymysql
import yaml

from lab import topology
from runbooks import connect
from runbooks.inventory import Site, expand_environment

LAB_CONFIG = topology.REPO_ROOT / "config" / "lab.yaml"
PRODUCTION = topology.host("production").address
DRP = topology.host("drp").address
NAMES = (topology.ZONE + ".", f"www.{topology.ZONE}.")
FLAG = topology.APP_MAINTENANCE_FLAG
WWW = topology.APP_FILES_DIR


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


def lab_inventory(directory: Path, provider: str) -> Path:
    """config/lab.yaml, its local paths absolute, with the DNS provider asked for."""
    data = yaml.safe_load(LAB_CONFIG.read_text())
    base = LAB_CONFIG.parent

    def absolute(value: str) -> str:
        value = expand_environment(value)
        return value if Path(value).is_absolute() else str((base / value).resolve())

    data["env_file"] = absolute(data["env_file"])
    data["known_hosts"] = absolute(data["known_hosts"])
    for host in data["hosts"].values():
        host["key"] = absolute(host["key"])
    for backend in data["tickets"]:
        if "path" in backend:  # a ticket file
            backend["path"] = absolute(backend["path"])
    if provider == "rfc2136":
        data["dns"] = {
            "provider": "rfc2136",
            "server": topology.DNS_ADDRESS,
            "port": topology.DNS_PORT,
            "tsig_key_name": topology.TSIG_KEY_NAME,
            "tsig_algorithm": topology.TSIG_ALGORITHM,
            "tsig_secret": "env:DRP_LAB_TSIG_SECRET",
            "zones": [topology.ZONE],
            "nameservers": [{"address": topology.DNS_ADDRESS, "port": topology.DNS_PORT}],
        }
    path = directory / f"lab-{provider}.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


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


def start_cli(api_url: str, log: Path, *args: str) -> subprocess.Popen[str]:
    """`drp ARGS...` started in a session of its own (so that its whole process group can be
    killed), its output appended to `log`."""
    with log.open("a") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "flows.cli", *args],
            stdout=out,
            stderr=subprocess.STDOUT,
            text=True,
            env={**os.environ, "PREFECT_API_URL": api_url},
            start_new_session=True,
        )


def kill_when(
    process: subprocess.Popen[str], ready: Callable[[], Any], what: str, timeout: float = 240
) -> None:
    """SIGKILL the process's whole group (drp and everything it runs here) once `ready()`."""
    deadline = time.monotonic() + timeout
    while not ready():
        assert process.poll() is None, f"drp ended before {what}"
        assert time.monotonic() < deadline, f"never saw {what}"
        time.sleep(0.05)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()


def host_processes(user: str) -> list[tuple[int, str]]:
    """(pid, command line) of every process of a lab host's unix user, read from /proc (fast
    enough to be polled every few milliseconds, to catch a command that lasts a fraction of a
    second)."""
    import pwd

    uid = pwd.getpwnam(user).pw_uid
    found = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            if entry.stat().st_uid != uid:
                continue
            cmdline = Path(entry.path, "cmdline").read_bytes()
        except OSError:  # gone meanwhile
            continue
        if cmdline:
            found.append((int(entry.name), cmdline.rstrip(b"\0").replace(b"\0", b" ").decode()))
    return found


def running_on(site: Site, role: str, pattern: str) -> bool:
    """A process of the host's unix user whose command line matches `pattern` (a regex)."""
    user = connect.host(site, role).user  # type: ignore[arg-type]
    return any(re.search(pattern, cmdline) for _, cmdline in host_processes(user))


def activate(api_url: str, inventory: Path, op: str) -> None:
    """A whole activation from the command line, ordered with --order-by."""
    done = drp_cli(api_url, "activate", "-c", str(inventory), "--operation-id", op,
                   "--order-by", "Jane Doe", "--reference", "1STKYC-70",
                   "--acknowledge-data-loss")  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert knot_answers() == {name: [DRP] for name in NAMES}


def report_steps(reports: Path, op: str) -> dict[str, str]:
    """Step -> outcome, as the operation's report file says now (empty while there is none)."""
    try:
        data = json.loads((reports / f"{op}.json").read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return {}
    return {r["step"]: r["outcome"] for r in data.get("timeline", [])}


def dns_at(site: Site, address: str = PRODUCTION, timeout: float = 30) -> None:
    """The lab zone's switched records pointed at `address` through the DNS provider, until
    the authoritative server answers it."""
    from runbooks.services import dns_provider

    provider = dns_provider(site)
    for record in site.environments[0].dns_records:
        provider.set_records(record.zone, record.name, record.type, [address])
    provider.refresh(topology.ZONE)
    deadline = time.monotonic() + timeout
    while any(v != [address] for v in knot_answers().values()):
        assert time.monotonic() < deadline, knot_answers()
        time.sleep(0.2)


def production_serves_again(site: Site) -> None:
    """The lab as found: no maintenance on either side, DNS at production."""
    with connect.HostPool(site) as pool:
        for role in ("production", "drp"):
            pool[role].run(["rm", "-f", "--", FLAG])
    dns_at(site, PRODUCTION)


@contextlib.contextmanager
def without_stages(site: Site) -> Iterator[None]:
    """No stage on the DRP server before (`drp stage --remove`'s work), none left after."""
    from runbooks.staging import remove_stages

    with connect.HostPool(site) as pool:
        remove_stages(site, pool["drp"])
    try:
        yield
    finally:
        with connect.HostPool(site) as pool:
            remove_stages(site, pool["drp"])


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

    # `.drp` itself is left out too: drp's working directory, made by the first record.
    listing_script = (
        "{ find srv -printf '%p %s %T@\\n'; "
        "find .drp -mindepth 1 -path .drp/operations -prune -o -printf '%p %s %T@\\n'; "
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


def pg(site: Site, role: str) -> psycopg.Connection[Any]:
    """The environment's PostgreSQL database on one side."""
    db = site.environments[0].databases[0]
    endpoint = connect.db_endpoint(site, db, role)  # type: ignore[arg-type]
    return psycopg.connect(
        host=endpoint.address, port=endpoint.port, user=endpoint.user, dbname=db.name,
        password=connect.database_password(site, db).reveal(), autocommit=True,
    )  # fmt: skip


def my(site: Site, role: str) -> Any:
    """The environment's MySQL database on one side."""
    db = site.environments[0].databases[1]
    endpoint = connect.db_endpoint(site, db, role)  # type: ignore[arg-type]
    return pymysql.connect(
        host=endpoint.address, port=endpoint.port, user=endpoint.user, database=db.name,
        password=connect.database_password(site, db).reveal(), autocommit=True,
    )  # fmt: skip


def rows(site: Site, role: str) -> dict[str, list[tuple[Any, ...]]]:
    """The rows that the DRP side's writes touch, as each side holds them."""
    with pg(site, role) as conn:
        users = conn.execute(
            "SELECT id, email FROM users WHERE id >= 900000 ORDER BY id"
        ).fetchall()
        count = conn.execute("SELECT count(*) FROM users").fetchone()
    shop = my(site, role)
    with shop.cursor() as cursor:
        cursor.execute("SELECT id, sku FROM products WHERE id >= 900000 ORDER BY id")
        products = list(cursor.fetchall())
        cursor.execute("SELECT count(*) FROM products")
        products_count = cursor.fetchone()
    shop.close()
    return {"users": [*users, count], "products": [*products, products_count]}


def files(site: Site, role: str, path: str) -> dict[str, str]:
    """name -> sha256 of every file under `path` on the host (the web root's cache/ aside)."""
    with connect.HostPool(site) as pool:
        out = (
            pool[role]
            .run(
                [
                    "sh",
                    "-c",
                    'cd "$1" && find . -type f ! -path "./cache/*" -exec sha256sum {} +',
                    "sh",
                    path,
                ],
                check=False,
            )
            .stdout
        )
    pairs = (line.split(None, 1) for line in out.splitlines())
    return {name.strip().removeprefix("./"): digest for digest, name in pairs}


def exists(site: Site, role: str, path: str) -> bool:
    with connect.HostPool(site) as pool:
        return pool[role].run(["test", "-e", path], check=False).ok


def write_on_drp(site: Site) -> int:
    """What customers do while the DRP server serves: rows and files added, changed, deleted.
    Returns the first id of the rows added (new ones at each call)."""
    first = 900_000 + int(time.time() * 10) % 10_000_000
    with pg(site, "drp") as conn:
        conn.execute(
            "INSERT INTO users (id, email, full_name, password_hash, created_at, active) "
            "VALUES (%s, %s, 'New One', 'x', now(), true), (%s, %s, 'New Two', 'x', now(), true)",
            (first, f"new{first}@drp.test", first + 1, f"new{first + 1}@drp.test"),
        )
    shop = my(site, "drp")
    with shop.cursor() as cursor:
        cursor.execute(
            "INSERT INTO products (id, sku, name, price_cents, stock) "
            "VALUES (%s, %s, 'Written on DRP', 1999, 3)",
            (first, f"DRP-{first}"),
        )
    shop.close()
    # A file both sides held before the outage, deleted on the DRP server during it.
    victim = f"uploads/victim-{first}.txt"
    with connect.HostPool(site) as pool:
        for role in ("production", "drp"):
            pool[role].run(["sh", "-c", 'mkdir -p "$(dirname "$1")" && echo before > "$1"',
                            "sh", f"{WWW}/{victim}"])  # fmt: skip
        script = (
            'cd "$1" && echo "written during the outage" > drp-new.txt '
            '&& echo "changed during the outage" >> index.html && rm -- "$2" '
            '&& printf %s "$2" > ../deleted-name'
        )
        pool["drp"].run(["sh", "-c", script, "sh", WWW, victim])
    return first


def big_file_on_drp(site: Site, name: str) -> None:
    """A 6 MB file in the DRP server's web root: enough that a rate-limited copy takes seconds."""
    with connect.HostPool(site) as pool:
        pool["drp"].run(["sh", "-c", f"head -c 6000000 /dev/urandom > {WWW}/{name}"])


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


# -- a deployment served as a worker runs it -----------------------------------------------------
@contextlib.contextmanager
def serving(
    code: str, env: dict[str, str], log: Path, deployment: str
) -> Iterator[subprocess.Popen[bytes]]:
    """A runner process (`code` calls a flow's `.serve(...)`), its output in `log`, once the
    server knows its `deployment` ("flow/name": a run started before would find none); stopped
    at the end (TERM, then KILL after 20 s)."""
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-c", code], env=env, stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
    try:
        deployment_id(deployment, process, log)
        yield process
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def deployment_id(name: str, process: subprocess.Popen[bytes], log: Path) -> str:
    """The id of deployment `name` ("flow/name") on this process's Prefect server, waiting up
    to 120 s for the runner `process` to register it; fails with the end of its `log` if it
    dies first."""
    from prefect.client.orchestration import get_client
    from prefect.exceptions import ObjectNotFound

    deadline = time.monotonic() + 120
    with get_client(sync_client=True) as client:
        while True:
            try:
                return str(client.read_deployment_by_name(name).id)
            except ObjectNotFound:
                assert process.poll() is None, log.read_text()[-3000:]
                assert time.monotonic() < deadline, f"{name} never appeared: {log}"
                time.sleep(0.5)


def run_state(run_id: Any) -> Any:
    """A flow run's state, as the API has it now."""
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        return client.read_flow_run(run_id).state


def run_logs(run_id: Any) -> list[str]:
    """Every log line of a flow run, oldest first, as the UI lists them. The API answers a page
    at a time (200 lines at most): a run with progress lines has more, so they are read page by
    page until one comes back empty."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId

    messages: list[str] = []
    with get_client(sync_client=True) as client:
        while True:
            page = client.read_logs(
                LogFilter(flow_run_id=LogFilterFlowRunId(any_=[run_id])),
                limit=200,
                offset=len(messages),
            )
            if not page:
                return messages
            messages += [log.message for log in page]


def wait_for(run_id: Any, done: Callable[[Any], bool], what: str, timeout: float = 240) -> Any:
    """Until `done(state)`, read from the API; fails at once if the run ends otherwise."""
    deadline = time.monotonic() + timeout
    while True:
        state = run_state(run_id)
        if state is not None and done(state):
            return state
        assert state is None or not state.is_final(), f"ended before it {what}: {state}"
        assert time.monotonic() < deadline, f"never {what}; last state {state}"
        time.sleep(0.3)


def suspended(pause: int) -> Callable[[Any], bool]:
    """The run waits at its gate for the `pause`-th time (each answer restarts it)."""
    return lambda s: s.name == "Suspended" and s.state_details.pause_key == str(pause)
