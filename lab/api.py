"""The lab as one Python API: `up`, `down`, `reset`, `status` (used by `drp lab`, tests, drills).

`up` is idempotent: it creates what is missing (secrets, unix users, keys, host roots, database
clusters, seed data) and starts what is not running; a second `up` starts nothing. Production
is seeded once; `up` re-seeds it only when other sizes are asked for. The drp host starts with
its two application databases created and empty (restores go into them) and no application
files; the backup servers start with an empty backup area.

The lab's Prefect server (`lab.prefect_server`) is started first, since it takes longest to
answer, and comes up while the rest is set up; `down` stops it with the rest.

State lives under `topology.lab_dir()` (`/var/lib/drp-lab`, or `$DRP_LAB_DIR`): secrets and keys
survive `reset`, which wipes data directories, host roots and backup areas and seeds production
again; the Prefect server keeps running through it, with its database (its run history).
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import json
import os
import pwd
import shutil
import signal
import stat
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field

from lab import (
    accounts,
    mail_sink,
    mariadb,
    postgres,
    prefect_server,
    procs,
    sshd,
    sshkeys,
    topology,
    webapp,
)
from lab import seed as seeding
from lab.daemons import Daemon
from lab.errors import LabError
from lab.secrets import ensure_secrets
from lab.supervisor import Launched, RunRecord, Supervisor

LOCK_TIMEOUT_S = 600.0
EMPTY_DATABASES_MARKER = "app-databases.created"

ServiceState = Literal["running", "not answering", "stopped"]


class ServiceStatus(BaseModel):
    name: str = Field(description="Daemon name, e.g. sshd-production")
    host: str = Field(description="Lab host it serves (dns and ovh for the shared services)")
    kind: str = Field(description="sshd, postgresql, mariadb, web, dns, ovh-api or prefect")
    address: str = Field(description="Loopback address it listens on")
    port: int = Field(description="TCP port it listens on")
    pid: int | None = Field(default=None, description="Process id while running")
    state: ServiceState = Field(description="running (answers), not answering, or stopped")
    log: str = Field(description="Its log file")


class LabStatus(BaseModel):
    lab_dir: str = Field(description="Where the lab keeps its state")
    services: list[ServiceStatus] = Field(description="Every daemon the lab runs")
    seed: seeding.SeedReport | None = Field(
        default=None, description="What production was seeded with"
    )
    checkout: str | None = Field(
        default=None, description="The checkout of drp that last brought the lab up"
    )
    started: list[str] = Field(default_factory=list, description="Daemons this call started")
    stopped: list[str] = Field(default_factory=list, description="Daemons this call stopped")
    already_running: list[str] = Field(
        default_factory=list, description="Daemons that were running before this call"
    )
    seconds: float | None = Field(default=None, description="How long this call took")
    notes: list[str] = Field(default_factory=list, description="What else this call did")

    @property
    def all_running(self) -> bool:
        return all(s.state == "running" for s in self.services)

    @property
    def none_running(self) -> bool:
        return all(s.state == "stopped" for s in self.services)

    def to_json(self) -> str:
        data = self.model_dump(mode="json")
        data["all_running"] = self.all_running
        return json.dumps(data, indent=2)


# ---------------------------------------------------------------- what the lab runs


def _expected() -> list[tuple[str, str, str, str, int]]:
    """(name, host, kind, address, port) of every daemon, in start order."""
    out = []
    for h in topology.HOSTS:
        if h.databases:
            out.append((f"postgres-{h.name}", h.name, "postgresql", h.address, topology.PG_PORT))
            out.append((f"mariadb-{h.name}", h.name, "mariadb", h.address, topology.MYSQL_PORT))
    for h in topology.HOSTS:
        out.append((f"sshd-{h.name}", h.name, "sshd", h.address, topology.SSH_PORT))
    for h in topology.HOSTS:
        if h.web:
            out.append((f"web-{h.name}", h.name, "web", h.address, topology.WEB_PORT))
    out.append(("knot", "dns", "dns", topology.DNS_ADDRESS, topology.DNS_PORT))
    out.append(("ovh-emulator", "ovh", "ovh-api", topology.OVH_ADDRESS, topology.OVH_PORT))
    out.append((mail_sink.NAME, "mail", "smtp", topology.SMTP_ADDRESS, topology.SMTP_PORT))
    out.append(
        (prefect_server.NAME, "prefect", "prefect", topology.PREFECT_ADDRESS, topology.PREFECT_PORT)
    )
    return out


def host_daemons(paths: topology.LabPaths, secrets: dict[str, str]) -> list[Daemon]:
    """Databases, SSH servers and web servers of the four lab hosts."""
    daemons: list[Daemon] = []
    for h in topology.HOSTS:
        if h.databases:
            daemons.append(postgres.postgres_daemon(paths, h, secrets))
            daemons.append(mariadb.mariadb_daemon(paths, h))
    daemons += [sshd.sshd_daemon(paths, h) for h in topology.HOSTS]
    daemons += [webapp.web_daemon(paths, h, secrets) for h in topology.HOSTS if h.web]
    return daemons


def shared_daemons(paths: topology.LabPaths, secrets: dict[str, str]) -> list[Daemon]:
    """Knot DNS, then the OVH API emulator (it reads the zone from Knot on first start), and
    the mail sink."""
    # Imported here: they are the only parts of the lab that need dnspython and the ovh client.
    from lab.knot import knot_daemon
    from lab.ovh_emulator import ovh_daemon

    return [knot_daemon(paths, secrets), ovh_daemon(paths, secrets), mail_sink.mail_daemon(paths)]


# ---------------------------------------------------------------- guards


def require_root(action: str) -> None:
    if os.geteuid() != 0:
        raise LabError(
            f"`drp lab {action}` must run as root: it creates the lab's unix users and starts "
            "servers as them (and DNS on port 53); run it with sudo"
        )


# What the lab runs, by the Debian package that brings it (scripts/setup.sh installs them all).
REQUIRED_PROGRAMS: tuple[tuple[str, str], ...] = (
    (sshd.SSHD, "openssh-server"),
    ("/usr/bin/ssh-keygen", "openssh-client"),
    ("/usr/bin/rsync", "rsync"),
    (str(postgres.PG_BIN / "initdb"), "postgresql"),
    ("/usr/bin/psql", "postgresql-client"),
    (mariadb.INSTALL_DB, "mariadb-server"),
    (mariadb.MARIADBD, "mariadb-server"),
    ("/usr/bin/mariadb", "mariadb-client"),
    ("/usr/sbin/knotd", "knot"),
    ("/usr/bin/kdig", "knot-dnsutils"),
    ("/usr/bin/setpriv", "util-linux"),
)


def missing_packages(
    programs: tuple[tuple[str, str], ...] | None = None,
) -> dict[str, list[str]]:
    """Debian package -> the programs of it that are missing here (empty: all there).

    `programs` defaults to REQUIRED_PROGRAMS, looked up at each call."""
    missing: dict[str, list[str]] = {}
    for program, package in REQUIRED_PROGRAMS if programs is None else programs:
        if not os.access(program, os.X_OK):
            missing.setdefault(package, []).append(program)
    return missing


def require_packages() -> None:
    """Refuse, before anything changes, when a program the lab runs is not installed."""
    missing = missing_packages()
    if missing:
        listed = ", ".join(f"{p} ({', '.join(progs)})" for p, progs in sorted(missing.items()))
        raise LabError(
            f"the lab needs Debian packages that are not installed: {listed}. Install them "
            "with `bash scripts/setup.sh` (as root, from the repository); nothing was changed"
        )


def other_running_lab(paths: topology.LabPaths) -> Path | None:
    """The state directory of another lab whose daemons run now, if any.

    Every lab on the machine uses the same unix users (their homes point into the lab that set
    them up last) and the same addresses: a second one would take them from the first."""
    for h in topology.HOSTS:
        try:
            home = Path(pwd.getpwnam(h.user).pw_dir)
        except KeyError:
            continue
        other = home.parent.parent  # <lab>/hosts/<host>
        if other == paths.root or not (other / "run").is_dir():
            continue
        if not status(topology.LabPaths(other)).none_running:
            return other
    return None


def require_reachable(paths: topology.LabPaths) -> None:
    """Refuse, before anything is created, a lab directory the hosts' users could not enter."""
    existing = [p for p in paths.root.resolve().parents if p.exists()]
    closed = [p for p in existing if not p.stat().st_mode & stat.S_IXOTH]
    if closed:
        raise LabError(
            f"the lab directory {paths.root} is inside {closed[0]}, which other users cannot "
            "enter; the lab hosts' users need to reach their homes below it. Unset "
            f"DRP_LAB_DIR (the default is {topology.DEFAULT_LAB_DIR}) or choose one under /srv "
            "or /var/tmp; nothing was changed"
        )


def require_no_other_lab(paths: topology.LabPaths) -> None:
    """Refuse, before anything changes, to set up a lab while another one runs."""
    other = other_running_lab(paths)
    if other is not None:
        raise LabError(
            f"another lab runs on this machine, from {other}: its servers hold the lab's "
            f"addresses and use the lab hosts' unix users, which this one ({paths.root}) would "
            f"take over. Use that lab (unset DRP_LAB_DIR, or set it to {other}), or stop it "
            f"first: `sudo DRP_LAB_DIR={other} drp lab down`; nothing was changed"
        )


def _read_checkout(paths: topology.LabPaths) -> str:
    try:
        return paths.checkout.read_text().strip()
    except FileNotFoundError:
        return ""


def _checkout_note(paths: topology.LabPaths, running: bool) -> str | None:
    """Say so when the lab belongs to another checkout of drp on this machine; record ours."""
    here = str(topology.REPO_ROOT)
    owner = _read_checkout(paths)
    if owner and owner != here and Path(owner).exists() and running:
        return (
            f"this lab ({paths.root}) is running, brought up from the checkout {owner}; this "
            f"checkout ({here}) shares it as it is: one lab runs per machine, on fixed "
            "addresses. To bring it up from this checkout instead, run `drp lab down`, "
            "then `drp lab up` here (see lab/README.md)"
        )
    paths.checkout.write_text(here + "\n")
    if owner and owner != here:
        return f"this lab ({paths.root}) was last brought up from {owner}; now from {here}"
    return None


@contextlib.contextmanager
def _locked(paths: topology.LabPaths) -> Iterator[None]:
    """One lab operation at a time (a test session and a terminal may both ask)."""
    paths.root.mkdir(parents=True, exist_ok=True)
    with (paths.root / "lock").open("w") as handle:
        deadline = time.monotonic() + LOCK_TIMEOUT_S
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError as err:
                if time.monotonic() > deadline:
                    raise LabError(
                        f"another lab operation holds {paths.root / 'lock'} since more than "
                        f"{LOCK_TIMEOUT_S:.0f} s"
                    ) from err
                time.sleep(0.1)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


# ---------------------------------------------------------------- set-up


def _prepare(paths: topology.LabPaths) -> tuple[dict[str, str], list[str]]:
    """Directories, secrets, unix users, keys and host roots; returns (secrets, notes)."""
    notes: list[str] = []
    require_reachable(paths)
    for directory in (paths.root, paths.root / "hosts", paths.root / "data", paths.logs):
        directory.mkdir(parents=True, exist_ok=True)
        directory.chmod(0o755)  # the hosts' users must reach their homes below
    paths.run.mkdir(parents=True, exist_ok=True)
    webapp.install_code(paths)
    secrets = ensure_secrets(paths)
    for h in topology.HOSTS:
        if accounts.ensure_user(h, paths.host_root(h.name)):
            notes.append(f"unix user {h.user} set up")
    made = sshkeys.ensure_all_keys(paths)
    if made:
        notes.append("generated " + ", ".join(made))
    for h in topology.HOSTS:
        accounts.make_owned_dir(paths.host_root(h.name), h.user, 0o750)
        sshkeys.install_user_ssh(paths, h)
        accounts.make_owned_dir(paths.data(h.name), h.user, 0o755)
        if not h.databases and not h.web:
            accounts.make_owned_dir(paths.host_root(h.name) / topology.BACKUP_AREA, h.user)
    return secrets, notes


def _init_databases(paths: topology.LabPaths, secrets: dict[str, str]) -> list[str]:
    """initdb / mariadb-install-db where missing, in parallel (each takes about a second)."""
    jobs = []
    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=4) as pool:
        for h in topology.HOSTS:
            if h.databases:
                pg_pw, my_pw = secrets[postgres.PASSWORD_NAME], secrets[mariadb.PASSWORD_NAME]
                jobs.append(
                    (f"PostgreSQL {h.name}", pool.submit(postgres.init_cluster, paths, h, pg_pw))
                )
                jobs.append(
                    (f"MariaDB {h.name}", pool.submit(mariadb.init_server, paths, h, my_pw))
                )
        made = [label for label, job in jobs if job.result()]
    seconds = time.monotonic() - started
    return [f"initialized {', '.join(made)} in {seconds:.1f} s"] if made else []


def _wanted_size(
    current: seeding.SeedReport | None, files_mb: int | None, rows: int | None
) -> seeding.SeedSize:
    base = current.size if current else seeding.SeedSize()
    return seeding.SeedSize(
        files_mb=files_mb if files_mb is not None else base.files_mb,
        rows=rows if rows is not None else base.rows,
    )


def _create_drp_databases(paths: topology.LabPaths, secrets: dict[str, str]) -> list[str]:
    """The drp host's application databases, created empty once (restores go into them)."""
    drp = topology.host("drp")
    marker = paths.data(drp.name) / EMPTY_DATABASES_MARKER
    if marker.exists():
        return []
    postgres.ensure_database(drp, secrets, topology.APP_PG_DB)
    mariadb.ensure_database(drp, secrets, topology.APP_MYSQL_DB)
    marker.write_text("empty application databases created on first start\n")
    return [f"created empty {topology.APP_PG_DB} and {topology.APP_MYSQL_DB} on drp"]


def _seed_production(
    paths: topology.LabPaths, secrets: dict[str, str], files_mb: int | None, rows: int | None
) -> list[str]:
    current = seeding.read_seed(paths)
    wanted = _wanted_size(current, files_mb, rows)
    if current is not None and current.size == wanted:
        return []
    report = seeding.seed_production(paths, secrets, wanted)
    was = "" if current is None else f" (was {current.size.files_mb} MiB, {current.size.rows} rows)"
    return [
        f"seeded production with {report.file_count} files ({wanted.files_mb} MiB) and "
        f"{wanted.rows} rows in {report.seconds:.1f} s{was}"
    ]


def _seed(
    paths: topology.LabPaths, secrets: dict[str, str], files_mb: int | None, rows: int | None
) -> list[str]:
    with ThreadPoolExecutor(max_workers=2) as pool:
        drp = pool.submit(_create_drp_databases, paths, secrets)
        production = pool.submit(_seed_production, paths, secrets, files_mb, rows)
        return drp.result() + production.result()


# ---------------------------------------------------------------- the API


def _service_status(
    sup: Supervisor,
    name: str,
    host: str,
    kind: str,
    address: str,
    port: int,
    record: RunRecord | None,
) -> ServiceStatus:
    state: ServiceState = "stopped"
    pid = None
    if record is not None and sup.is_running(record):
        pid = record.pid
        state = "running" if procs.is_listening(address, port) else "not answering"
    return ServiceStatus(
        name=name,
        host=host,
        kind=kind,
        address=address,
        port=port,
        pid=pid,
        state=state,
        log=str(sup.log_path(name)),
    )


def status(paths: topology.LabPaths | None = None) -> LabStatus:
    """What runs now (needs no root: it only reads the run records and /proc)."""
    paths = paths or topology.paths()
    sup = Supervisor(paths)
    records = {r.name: r for r in sup.records()} if paths.run.exists() else {}
    by_host = {r.host: r for r in records.values() if r.host in ("dns", "ovh")}
    services = []
    for name, host, kind, address, port in _expected():
        record = records.pop(name, None)
        if record is None and host in by_host:  # the shared services may name themselves
            record = records.pop(by_host[host].name, None)
            name = record.name if record else name
        services.append(_service_status(sup, name, host, kind, address, port, record))
    for record in records.values():  # anything else we started
        services.append(
            _service_status(
                sup, record.name, record.host, "other", record.address, record.port, record
            )
        )
    return LabStatus(
        lab_dir=str(paths.root),
        services=services,
        seed=seeding.read_seed(paths),
        checkout=_read_checkout(paths) or None,
    )


def _up(
    paths: topology.LabPaths, files_mb: int | None, rows: int | None, started_at: float
) -> LabStatus:
    running = not status(paths).none_running
    secrets, notes = _prepare(paths)
    shared = _checkout_note(paths, running)
    if shared:
        notes.insert(0, shared)
    sup = Supervisor(paths)
    # The Prefect server takes longest to answer (3-20 s: its imports, its database): it starts
    # first and comes up while the rest is set up; it is waited for last. If it cannot start,
    # the rest of the lab still comes up: the status shows it stopped and a note says why.
    orchestrator: Launched | None = None
    try:
        orchestrator = sup.launch([prefect_server.prefect_daemon(paths, secrets)])
    except LabError as err:
        notes.append(f"the lab's Prefect server is not running: {err}")
    notes += _init_databases(paths, secrets)
    hosts = sup.start(host_daemons(paths, secrets))
    notes += _seed(paths, secrets, files_mb, rows)
    started, already = list(hosts.started), list(hosts.already_running)
    for daemon in shared_daemons(paths, secrets):  # one by one: the emulator needs Knot
        result = sup.start([daemon])
        started += result.started
        already += result.already_running
    if orchestrator is not None:
        try:
            result = sup.wait(orchestrator)
            started += result.started
            already += result.already_running
        except LabError as err:
            notes.append(f"the lab's Prefect server is not running: {err}")
    final = status(paths)
    final.started, final.already_running, final.notes = started, already, notes
    final.seconds = round(time.monotonic() - started_at, 2)
    return final


def up(files_mb: int | None = None, rows: int | None = None) -> LabStatus:
    """Brings the whole lab up (idempotent); sizes apply when production is (re-)seeded."""
    require_root("up")
    require_packages()
    started_at = time.monotonic()
    paths = topology.paths()
    require_reachable(paths)
    require_no_other_lab(paths)
    with _locked(paths):
        return _up(paths, files_mb, rows, started_at)


def _is_dead(pid: int) -> bool:
    return not procs.is_alive(pid)


def _wait_until(condition: Callable[[], bool], seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.05)


def _stop_everything(paths: topology.LabPaths, keep: tuple[str, ...] = ()) -> list[str]:
    """Stops every daemon but those named in `keep`."""
    sup = Supervisor(paths)
    stopped = []
    if paths.run.exists():
        stopped = sup.stop([r.name for r in sup.records() if r.name not in keep] if keep else None)
    leftovers = []
    for name, _, _, address, port in _expected():
        if name in keep:
            continue
        for holder in procs.port_holders(address, port):
            # A lab daemon whose run record was lost (its command line names our directory).
            if str(paths.root) in holder.cmdline:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(holder.pid, signal.SIGKILL)
                _wait_until(functools.partial(_is_dead, holder.pid), seconds=5)
                stopped.append(f"{name} (unrecorded pid {holder.pid})")
            else:
                leftovers.append(f"{address}:{port} ({procs.describe_holders([holder])})")
    if leftovers:
        raise LabError(
            "the lab is stopped but other processes listen on lab addresses: "
            + "; ".join(leftovers)
        )
    return stopped


def down() -> LabStatus:
    """Stops every lab daemon; afterwards nothing listens on the lab's addresses."""
    require_root("down")
    started_at = time.monotonic()
    paths = topology.paths()
    with _locked(paths):
        stopped = _stop_everything(paths)
    final = status(paths)
    final.stopped = stopped
    final.seconds = round(time.monotonic() - started_at, 2)
    return final


def reset(files_mb: int | None = None, rows: int | None = None) -> LabStatus:
    """Back to the seeded state: stop, wipe data, host roots and backup areas, up again.

    Keys, secrets and unix users are kept, and so is the Prefect server, running, with its
    database: it holds no lab host's data. Sizes default to those of the previous seeding.
    """
    require_root("reset")
    require_packages()
    started_at = time.monotonic()
    paths = topology.paths()
    require_reachable(paths)
    require_no_other_lab(paths)
    with _locked(paths):
        previous = seeding.read_seed(paths)
        kept = (prefect_server.NAME,)
        stopped = _stop_everything(paths, keep=kept)
        for directory in (paths.root / "data", paths.root / "hosts"):
            shutil.rmtree(directory, ignore_errors=True)
        if paths.run.exists():  # the run records of what was stopped
            for record in paths.run.iterdir():
                if record.stem not in kept:
                    record.unlink()
        size = _wanted_size(previous, files_mb, rows)
        final = _up(paths, size.files_mb, size.rows, started_at)
    final.stopped = stopped
    final.notes.insert(0, "wiped data directories, host roots and backup areas")
    return final
