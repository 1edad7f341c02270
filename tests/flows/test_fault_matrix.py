"""The fault matrix: drp killed during each world-changing step, then resumed.

An activation, then a return, driven as an operator drives them (`drp activate|return` with
--order-by/--reference, against the session's Prefect server) and killed with SIGKILL, drp's whole
process group, *during* one step after another: each run is killed in the next step, the run
after it resumes the same operation (--operation-id), and the last one finishes it. "During" is
seen from outside, as an operator would see it: a command running on a lab host, a file
appearing on one, a line in the ticket file, the OVH emulator's zone. A step too short to be
caught is held open meanwhile: a copy slowed by --bwlimit and a big file, a database load paused
(SIGSTOP) until drp is dead, an OVH write held by the emulator (its faults file). After every
kill, nothing drp started on the hosts outlives it and the site stays locked by the operation.

The end state is compared with an uninterrupted run's: for the activation, an uninterrupted
activation run first (file digests of the trees on the DRP server, rows of both databases, what
Knot answers); for the return, what an uninterrupted return leaves (test_return.py): production
equal to the frozen DRP server, file by file and table by table. And for both: exactly one
ticket per event and operation in the lab's ticket file, the site lock released (`drp status`),
the report's outcome "succeeded".
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from flow_helpers import (
    DRP,
    FLAG,
    LAB_CONFIG,
    NAMES,
    PRODUCTION,
    WWW,
    activate,
    dns_at,
    drp_cli,
    ensure_backups,
    files,
    host_processes,
    knot_answers,
    my,
    pg,
    production_serves_again,
    report_steps,
    start_cli,
    tickets,
    write_on_drp,
)

from lab import topology
from lab.ovh_api import FAULTS_FILE
from providers import mysql, postgres
from runbooks import connect, site_lock
from runbooks.inventory import Site, load_site
from runbooks.report import load_report

pytestmark = [pytest.mark.lab, pytest.mark.prefect]

CONFIG = topology.APP_CONFIG_DIR
LAB = topology.paths()
OVH_STATE = LAB.data("ovh")  # the emulator's zone (state.json) and its faults file
OVH_LOG = LAB.logs / "ovh-emulator.log"
REFRESH = f"POST /1.0/domain/zone/{topology.ZONE}/refresh 200"
BIG = 6_000_000  # bytes of a big file written on the DRP server: a slowed copy takes seconds
ROLES = ("drp", "production", "backup_even", "backup_odd")
# What the steps run on the hosts that takes time (and the rsync that an rsync starts on the
# sending host); each under a guard that ends with it.
DRP_COMMANDS = re.compile(r"^(\S*/)?(rsync|pg_restore|pg_dump|mariadb|mariadb-dump|gzip) ")


def _copy(key: str) -> str:
    """A copy step's rsync actually copying (its dry runs, which only check, show no progress)."""
    return rf"^rsync (?=.*--info=progress2)(?=.*/partial/{key}\b)"


PG_LOAD = r"^(\S*/)?pg_restore "  # Debian's wrapper runs it by its full path
MYSQL_LOAD = r"^mariadb --.*--database=app_shop"


# -- the lab, as found and as left -------------------------------------------------------------
@pytest.fixture(scope="module")
def reports(lab, prefect_server, tmp_path_factory) -> Iterator[Path]:
    directory = tmp_path_factory.mktemp("fault-reports")
    os.environ["DRP_REPORTS_DIR"] = str(directory)
    ensure_backups(load_site(LAB_CONFIG))
    yield directory
    os.environ.pop("DRP_REPORTS_DIR", None)


@pytest.fixture
def site(reports) -> Site:
    return load_site(LAB_CONFIG)


@pytest.fixture(scope="module")
def lab_as_found(reports) -> Iterator[None]:
    """The lab ends as it was found: DNS at production, no maintenance on either side. (The
    return reverses what the activation did: the lab is put back after both.)"""
    yield
    production_serves_again(load_site(LAB_CONFIG))


# -- what is observed --------------------------------------------------------------------------
def _databases(site: Site, role: str) -> dict[str, Any]:
    """Rows and content of every table of both databases on one side (drp's markers aside)."""
    found: dict[str, Any] = {}
    for db in site.environments[0].databases:
        engine = postgres if db.engine == "postgresql" else mysql
        endpoint = connect.db_endpoint(site, db, role)  # type: ignore[arg-type]
        password = connect.database_password(site, db)
        found[db.name] = (
            engine.table_counts(endpoint, password),
            engine.table_checksums(endpoint, password),
        )
    return found


def _state(site: Site, role: str) -> dict[str, Any]:
    """What a user of that side sees: the trees' file digests and the databases' rows."""
    return {
        "www": files(site, role, WWW),
        "config": files(site, role, CONFIG),
        "databases": _databases(site, role),
    }


def _staging_databases(site: Site, role: str) -> set[str]:
    """PostgreSQL databases a restore loads into before swapping them in."""
    with pg(site, role) as conn:
        found = conn.execute("SELECT datname FROM pg_database WHERE datname LIKE '%_drp_new_%'")
        return {str(name) for (name,) in found.fetchall()}


def _emulator_zone() -> dict[str, list[str]]:
    """What the OVH emulator holds (written, refreshed or not) for the switched names."""
    records = json.loads((OVH_STATE / "state.json").read_text())["records"]
    return {
        name: sorted(
            r["target"] for r in records if r["subDomain"] == sub and r["fieldType"] == "A"
        )
        for name, sub in zip(NAMES, ("", "www"), strict=True)
    }


def _refreshes() -> int:
    return OVH_LOG.read_text(errors="replace").count(REFRESH)


def _fault(**fault: Any) -> Path:
    path = OVH_STATE / FAULTS_FILE
    path.write_text(json.dumps(fault))
    return path


def _local(role: str, path: str) -> Path:
    """A path on a lab host, seen from this machine (the host's home is a local directory)."""
    return LAB.host_root(topology.host(role.replace("_", "-")).name) / path


def _tree_bytes(root: Path) -> int:
    """Bytes of the files under `root` now (a copy's temporary files come and go meanwhile)."""
    total = 0
    for directory, _, names in os.walk(root):
        for name in names:
            with contextlib.suppress(FileNotFoundError):
                total += (Path(directory) / name).stat().st_size
    return total


def _receiving(role: str, directory: str, name: str) -> int:
    """Bytes of `name` received so far by an rsync into `directory` (its temporary file)."""
    total = 0
    for temporary in _local(role, directory).glob(f".{name}.*"):
        with contextlib.suppress(FileNotFoundError):  # complete meanwhile: renamed into place
            total += temporary.stat().st_size
    return total


def _write_as(role: str, path: str, data: bytes) -> None:
    """A file written on a lab host at once (as its user would: same owner)."""
    target = _local(role, path)
    home = _local(role, ".").stat()
    partial = target.with_name(f".{target.name}.writing")
    partial.write_bytes(data)
    os.chown(partial, home.st_uid, home.st_gid)
    partial.rename(target)


def _ticket_sent(site: Site, event: str, op: str) -> Callable[[], bool]:
    path = Path(site.tickets[0].path)
    start = path.stat().st_size if path.exists() else 0
    key = f'"operation_id": "{op}"'

    def sent() -> bool:
        with path.open("rb") as handle:
            handle.seek(start)
            tail = handle.read().decode(errors="replace")
        return any(key in line and f'"{event}"' in line for line in tail.splitlines())

    return sent


def _term_pending(pid: int) -> bool | None:
    """Whether SIGTERM waits to be delivered to a (paused) process; None when it is gone."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    if "\nState:\tZ" in status:
        return None
    masks = (int(line.split()[1], 16) for line in status.splitlines() if "Pnd:" in line)
    return any(mask & (1 << (signal.SIGTERM - 1)) for mask in masks)


def _sent(site: Site, event: str, op: str) -> dict[str, int]:
    """How many times each ticket backend holds the ticket: the ticket file's lines, and when
    the inventory also emails tickets, the messages in the lab's mail sink (a Maildir)."""
    import mailbox

    sent = {"file": len(tickets(site, event, op))}
    if any(t.type == "smtp" for t in site.tickets):
        box = mailbox.Maildir(LAB.data("mail"), create=False)
        sent["email"] = sum(
            1 for m in box if (m["X-DRP-Operation"], m["X-DRP-Event"]) == (op, event)
        )
    return sent


def _lock_holder(site: Site) -> str | None:
    with connect.HostPool(site) as pool:
        held = site_lock.read_lock(pool["drp"])
    return held.operation_id if held else None


def _drp_status(api_url: str) -> Any:
    done = drp_cli(api_url, "status", "-c", str(LAB_CONFIG), "--json")
    assert done.returncode == 0, done.stdout + done.stderr
    return json.loads(done.stdout)["lock"]


# -- one operation, killed step after step -----------------------------------------------------
@dataclass
class Chain:
    """One operation run again and again, each run killed during the next step; what each kill
    found is kept for the matrix."""

    api_url: str
    site: Site
    reports: Path
    kind: str  # activate | return
    op: str
    log: Path
    order: tuple[str, ...]
    matrix: list[dict[str, str]] = field(default_factory=list)
    run: subprocess.Popen[str] | None = None
    frozen: list[int] = field(default_factory=list)

    def start(self, *extra: str) -> subprocess.Popen[str]:
        self.run = start_cli(self.api_url, self.log, self.kind, "-c", str(LAB_CONFIG),
                             "--operation-id", self.op, *self.order, *extra)  # fmt: skip
        return self.run

    def finish(self, *extra: str) -> int:
        """A run left to end by itself; its exit code."""
        run = self.start(*extra)
        code = run.wait(timeout=600)
        self.run = None
        return code

    def kill_during(
        self,
        steps: list[str],
        what: str,
        ready: Callable[[], bool] = lambda: True,
        *,
        hold: tuple[str, ...] = (),
        on: str = "drp",
        extra: tuple[str, ...] = (),
        poll: float = 0.005,
        resume: str = "",
    ) -> None:
        """Start a run and SIGKILL it once `ready()`, after every command matching one of the
        `hold` patterns on host `on` has been seen and paused (SIGSTOP) there: it then ends, or
        not, as drp's death makes it end. `steps` are the steps killed during."""
        run = self.start(*extra)
        user = connect.host(self.site, on).user  # type: ignore[arg-type]
        seen: set[str] = set()
        deadline = time.monotonic() + 240
        while not (seen >= set(hold) and ready()):
            for pid, cmdline in host_processes(user) if hold else ():
                for pattern in hold:
                    if pid not in self.frozen and re.search(pattern, cmdline):
                        os.kill(pid, signal.SIGSTOP)
                        self.frozen.append(pid)
                        seen.add(pattern)
            assert run.poll() is None, f"drp ended before {what}: {self.tail()}"
            assert time.monotonic() < deadline, f"never saw {what}"
            time.sleep(poll)
        os.killpg(run.pid, signal.SIGKILL)
        run.wait()
        self.run = None
        # The guards on the hosts see their channels close and signal what they run: a paused
        # command has the guard's TERM pending, and ends with it once it goes on.
        deadline = time.monotonic() + 5
        while waiting := [pid for pid in self.frozen if _term_pending(pid) is False]:
            assert time.monotonic() < deadline, f"no TERM from the guard for {waiting}"
            time.sleep(0.05)
        self.thaw()
        self._after_kill(steps, what, resume)

    def thaw(self) -> None:
        for pid in self.frozen:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)
        self.frozen.clear()

    def _after_kill(self, steps: list[str], what: str, resume: str) -> None:
        """Nothing drp started outlives it on the hosts; the site stays locked by the operation;
        the killed steps have not ended (no record but a failed one: the kill landed inside
        them)."""
        users = [connect.host(self.site, role).user for role in ROLES]  # type: ignore[arg-type]
        deadline = time.monotonic() + 5  # a copy slowed down would take longer to end by itself
        while left := [c for u in users for _, c in host_processes(u) if DRP_COMMANDS.search(c)]:
            assert time.monotonic() < deadline, f"outlived the killed drp: {left}"
            time.sleep(0.1)
        assert _lock_holder(self.site) == self.op
        recorded = report_steps(self.reports, self.op)
        assert not [s for s in steps if recorded.get(s) in ("applied", "skipped")], (what, recorded)
        self.note(steps, what, resume)

    def note(self, steps: list[str], what: str, resume: str = "") -> None:
        """A row of the matrix; what the resume did is the steps' records (as the run that
        ended them wrote them) unless `resume` says it."""
        self.collect()
        self.matrix.append({"steps": ", ".join(steps), "killed": what, "resume": resume})

    def collect(self) -> None:
        """The records of the steps killed earlier, once a later run has ended them."""
        records = {r.step: r for r in load_report(self.reports, self.op).timeline}
        for row in self.matrix:
            steps = row["steps"].split(", ")
            ended = [records.get(s) for s in steps]
            if row["resume"] or not all(r and r.outcome.value != "failed" for r in ended):
                continue
            row["resume"] = "; ".join(
                f"{s}: {r.outcome.value}: {r.reason[:200]}"
                for s, r in zip(steps, ended, strict=True)
                if r is not None
            )

    def tail(self) -> str:
        return self.log.read_text()[-4000:]

    def close(self) -> None:
        if self.run is not None and self.run.poll() is None:
            os.killpg(self.run.pid, signal.SIGKILL)
            self.run.wait()
        self.thaw()

    def table(self, state: str) -> str:
        """The matrix as markdown: each kill, and what the resume did."""
        self.collect()
        lines = ["| step | killed / fault | what the resume did | end state |", "|---|---|---|---|"]
        for row in self.matrix:
            lines.append(f"| {row['steps']} | {row['killed']} | {row['resume']} | {state} |")
        return "\n".join(lines)


@pytest.fixture
def chains() -> Iterator[list[Chain]]:
    """The test's chains: whatever happens, no drp run is left running, no command on a host
    left paused, no fault left for the emulator."""
    made: list[Chain] = []
    yield made
    for chain in made:
        chain.close()
    (OVH_STATE / FAULTS_FILE).unlink(missing_ok=True)


# -- the activation ----------------------------------------------------------------------------
ACTIVATED: dict[str, str] = {}  # the activation the return reverses, when the first test ran


def _disaster(site: Site) -> None:
    """The DRP server as it might be found on the day: no web root, a configuration changed
    and a file added to it, databases written to since they were last restored; DNS at
    production."""
    with connect.HostPool(site) as pool:
        pool["drp"].run(["sh", "-c", 'rm -rf -- "$1" && echo "# changed" >> "$2/app.ini" '
                         '&& echo stray > "$2/stray.conf"', "sh", WWW, CONFIG])  # fmt: skip
    stamp = 800_000_000 + int(time.time()) % 1_000_000
    with pg(site, "drp") as conn:
        conn.execute(
            "INSERT INTO users (id, email, full_name, password_hash, created_at, active) "
            "VALUES (%s, %s, 'Since the drill', 'x', now(), true)",
            (stamp, f"since-{stamp}@drp.test"),
        )
    shop = my(site, "drp")
    with shop.cursor() as cursor:
        cursor.execute(
            "INSERT INTO products (id, sku, name, price_cents, stock) "
            "VALUES (%s, %s, 'Since the drill', 1, 1)",
            (stamp, f"SINCE-{stamp}"),
        )
    shop.close()
    dns_at(site, PRODUCTION)


def test_an_activation_killed_in_each_step_ends_as_an_uninterrupted_one(
    site: Site, reports: Path, prefect_server, tmp_path: Path, lab_as_found, chains
) -> None:
    api = prefect_server.api_url
    stamp = int(time.time()) % 1_000_000
    # The reference: an uninterrupted activation.
    reference_op = f"activate-whole-{stamp}"
    activate(api, LAB_CONFIG, reference_op)
    reference = _state(site, "drp")
    assert set(_sent(site, "drp-finalized", reference_op).values()) == {1}
    assert load_report(reports, reference_op).outcome == "succeeded"

    _disaster(site)
    staging = _staging_databases(site, "drp")
    op = f"activate-faults-{stamp}"
    chain = Chain(api, site, reports, "activate", op, tmp_path / "activate.log",
                  ("--order-by", "Jane Doe", "--reference", "1STKYC-90",
                   "--acknowledge-data-loss"))  # fmt: skip
    chains.append(chain)
    www_total = _www_bytes(site)

    # 1-2. The copies and the imports, which run side by side: the configuration's copy held
    # open, the web root's (slowed) well under way, each database held in the middle of its load.
    chain.kill_during(
        ["copy-app-configs-config", "copy-app-files-www", "restore-app-app_users",
         "restore-app-app_shop"],
        "rsync copying into drp:srv/app/config (held) and drp:srv/app/www (--bwlimit 2000, 40% "
        "in), pg_restore and the mariadb client loading on drp (both held)",
        lambda: _tree_bytes(_local("drp", WWW)) > www_total * 0.4,
        hold=(_copy("copy-app-configs-config"), PG_LOAD, MYSQL_LOAD),
        extra=("--bwlimit", "2000"),
    )  # fmt: skip
    assert _tree_bytes(_local("drp", WWW)) < www_total
    marker = mysql.read_marker(*_db(site, "app_shop", "drp"))
    assert marker is not None and not marker.complete  # the MySQL load was cut half-way
    assert postgres.staging_name("app_users", op) in _staging_databases(site, "drp")  # PG's too
    # 3. The ticket: killed as soon as it is in the ticket file, before the step is recorded.
    chain.kill_during(
        ["ticket-drp-finalized"],
        "right after the ticket's line reached the ticket file",
        _ticket_sent(site, "drp-finalized", op),
        poll=0.001,
    )
    assert _sent(site, "drp-finalized", op)["file"] == 1
    # 4. OVH fails the zone's second write: the first is put back, nothing is refreshed.
    refreshes = _refreshes()
    faults = _fault(method="PUT", **{"pass": 1, "fail": 1})
    failed = chain.start()
    assert failed.wait(timeout=600) == 1, chain.tail()
    assert "were put back and nothing was refreshed" in chain.tail()
    assert not faults.exists(), "the fault was used"
    assert _emulator_zone() == knot_answers() == {name: [PRODUCTION] for name in NAMES}
    assert _refreshes() == refreshes
    assert _lock_holder(site) == op  # a failed operation keeps the site for its resume
    assert load_report(reports, op).outcome == "failed"
    chain.note(
        ["dns-switch-drp-lab.test"],
        "fault: OVH answers 500 to the zone's 2nd PUT (no kill): the run fails, the 1st PUT put "
        "back, no refresh",
        "read the zone again (both production) and wrote it again (then held, below)",
    )
    # 5. The zone half-written: the first record written, the second held by OVH.
    faults = _fault(method="PUT", stall_seconds=30, fail=1, **{"pass": 1})
    chain.kill_during(
        ["dns-switch-drp-lab.test"],
        "OVH holding the zone's 2nd PUT (the 1st written, no refresh)",
        lambda: not faults.exists() and _emulator_zone()[NAMES[0]] == [DRP],
        poll=0.01,
        resume="read the zone again (@ at DRP, www at production): wrote www only, then "
        "refreshed (held, below)",
    )
    assert _emulator_zone() == {NAMES[0]: [DRP], NAMES[1]: [PRODUCTION]}
    assert knot_answers() == {name: [PRODUCTION] for name in NAMES}
    assert _refreshes() == refreshes
    # 6. Both records written, the refresh held by OVH.
    faults = _fault(method="POST", path="/refresh", stall_seconds=30, fail=1)
    chain.kill_during(
        ["dns-switch-drp-lab.test", "dns-propagation-drp-lab.test"],
        "OVH holding the zone's refresh (both records written)",
        lambda: not faults.exists(),
        poll=0.01,
    )
    assert _emulator_zone() == {name: [DRP] for name in NAMES}
    assert knot_answers() == {name: [PRODUCTION] for name in NAMES}
    # 7. The last run finishes.
    assert chain.finish() == 0, chain.tail()

    assert _state(site, "drp") == reference
    assert _staging_databases(site, "drp") == staging  # no half-loaded copy left behind
    assert knot_answers() == {name: [DRP] for name in NAMES}
    assert set(_sent(site, "drp-finalized", op).values()) == {1}  # one per backend
    assert _drp_status(api) is None
    report = load_report(reports, op)
    assert report.outcome == "succeeded"
    # The MySQL load resumed names the dump of what it replaced, not one of its own half-load.
    kept = {r.step: r.details.get("kept_as", "") for r in report.timeline}
    assert kept["restore-app-app_shop"].endswith("/" + _mysql_kept(op))
    print(f"\nactivation {op}\n" + chain.table("= uninterrupted"))
    ACTIVATED["op"] = op


def _mysql_kept(op: str) -> str:
    """The name of the dump that keeps what a MySQL restore of `op` replaced."""
    return mysql.safety_dump_path("dumps/app_shop.sql", "app_shop", op).rsplit("/", 1)[1]


def _www_bytes(site: Site) -> int:
    """The web root's size in the backup set the activations restore (its manifest)."""
    from runbooks.backups import choose_sets

    choice = next(iter(choose_sets(site).environments.values()))
    return next(t.tree.bytes for t in choice.trees if t.tree.name == "www")


def _db(site: Site, name: str, role: str) -> tuple[Any, Any]:
    db = next(d for d in site.environments[0].databases if d.name == name)
    return connect.db_endpoint(site, db, role), connect.database_password(site, db)  # type: ignore[arg-type]


# -- the return --------------------------------------------------------------------------------
def test_a_return_killed_in_each_step_ends_as_an_uninterrupted_one(
    site: Site, reports: Path, prefect_server, tmp_path: Path, lab_as_found, chains
) -> None:
    api = prefect_server.api_url
    stamp = int(time.time()) % 1_000_000
    if "op" not in ACTIVATED:  # run alone: the activation this return reverses
        activate(api, LAB_CONFIG, f"activate-for-return-{stamp}")
    # While the DRP server serves, customers write: rows, files (one deleted), the configuration.
    write_on_drp(site)
    with connect.HostPool(site) as pool:
        pool["drp"].run(["sh", "-c", 'head -c "$1" /dev/urandom > "$2/fault-big-1.bin" && '
                         'echo "# changed on drp" >> "$3/app.ini"', "sh", str(BIG), WWW,
                         CONFIG])  # fmt: skip
    staging = _staging_databases(site, "production")
    op = f"return-faults-{stamp}"
    chain = Chain(api, site, reports, "return", op, tmp_path / "return.log",
                  ("--order-by", "Jane Doe", "--reference", "1STKYC-91"))  # fmt: skip
    chains.append(chain)

    # 1. The pre-sync (the DRP server still serves): the configuration's held open, the web
    # root's (slowed) a third into the big file.
    chain.kill_during(
        ["pre-sync-app-configs-config", "pre-sync-app-files-www"],
        "rsync copying into production:srv/app/config (held) and production:srv/app/www "
        "(--bwlimit 2000, a third into a 6 MB file)",
        lambda: _receiving("production", WWW, "fault-big-1.bin") > BIG // 3,
        hold=(_copy("pre-sync-app-configs-config"),),
        on="production",
        extra=("--bwlimit", "2000"),
    )
    assert not _local("drp", FLAG).exists() and not _local("production", FLAG).exists()
    # 2. Production entering maintenance: killed once its flag is there.
    chain.kill_during(
        ["maintenance-on-app-production"],
        "production's maintenance flag just created",
        _local("production", FLAG).exists,
        poll=0.001,
    )
    assert not _local("drp", FLAG).exists()  # not frozen yet: customers still write on DRP
    # 3. The final sync (the DRP server frozen), slowed, a third into a file that landed on the
    # DRP server as it froze (a write in flight: a resumed pre-sync would take one made before).
    landed: list[bool] = []

    def final_sync_under_way() -> bool:
        if not landed and _local("drp", FLAG).exists():
            _write_as("drp", f"{WWW}/fault-big-2.bin", os.urandom(BIG))
            landed.append(True)
        return bool(landed) and _receiving("production", WWW, "fault-big-2.bin") > BIG // 3

    chain.kill_during(
        ["final-sync-app-files-www"],
        "rsync copying into production:srv/app/www (--bwlimit 2000, a third into a 6 MB file)",
        final_sync_under_way,
        extra=("--bwlimit", "2000"),
        poll=0.002,
    )
    assert _local("drp", FLAG).exists() and _local("production", FLAG).exists()
    frozen = _state(site, "drp")  # nothing is written there any more
    # 4. Both databases moving, each held in the middle of its load on production.
    chain.kill_during(
        ["move-db-app-app_users", "move-db-app-app_shop"],
        "pg_restore and the mariadb client loading on production (both held)",
        hold=(PG_LOAD, MYSQL_LOAD),
        on="production",
    )
    assert _local("production", FLAG).exists()  # half-restored, in maintenance
    # 5. The ticket.
    chain.kill_during(
        ["ticket-return-to-production"],
        "right after the ticket's line reached the ticket file",
        _ticket_sent(site, "return-to-production", op),
        poll=0.001,
    )
    assert _sent(site, "return-to-production", op)["file"] == 1
    # 6. DNS back, half-written: the first record written, the second held by OVH, which
    # applies it after drp is dead (nothing refreshed).
    refreshes = _refreshes()
    faults = _fault(method="PUT", stall_seconds=3, **{"pass": 1})
    chain.kill_during(
        ["dns-switch-drp-lab.test"],
        "OVH holding the zone's 2nd PUT (the 1st written, no refresh); the held one lands "
        "after drp is dead",
        lambda: not faults.exists() and _emulator_zone()[NAMES[0]] == [PRODUCTION],
        poll=0.01,
        resume="found both records written (the held one had landed), nothing served: "
        "skipped the switch, refreshed the zone (dns-propagation applied)",
    )
    assert _emulator_zone() == {NAMES[0]: [PRODUCTION], NAMES[1]: [DRP]}
    assert knot_answers() == {name: [DRP] for name in NAMES}
    deadline = time.monotonic() + 10
    while _emulator_zone()[NAMES[1]] != [PRODUCTION]:  # the held write lands
        assert time.monotonic() < deadline, _emulator_zone()
        time.sleep(0.1)
    assert knot_answers() == {name: [DRP] for name in NAMES}
    assert _refreshes() == refreshes
    # 7. Production's maintenance lifted: killed once its flag is gone.
    chain.kill_during(
        ["maintenance-off-app-production"],
        "production's maintenance flag just removed",
        lambda: not _local("production", FLAG).exists(),
        poll=0.001,
    )
    # 8. The last run finishes.
    assert chain.finish() == 0, chain.tail()

    assert _state(site, "production") == frozen
    assert _staging_databases(site, "production") == staging  # no half-loaded copy left
    assert knot_answers() == {name: [PRODUCTION] for name in NAMES}
    assert not _local("production", FLAG).exists() and _local("drp", FLAG).exists()
    assert set(_sent(site, "return-to-production", op).values()) == {1}  # one per backend
    assert _drp_status(api) is None
    report = load_report(reports, op)
    assert report.outcome == "succeeded" and report.downtime_seconds is not None
    records = {r.step: r for r in report.timeline}
    # Resumed after the freeze, the final sync went on with its half-sent file (the pre-sync,
    # run again, would have sent it whole, during the downtime)...
    assert "what is left is the final sync's" in records["pre-sync-app-files-www"].reason
    assert 0 < records["final-sync-app-files-www"].bytes < BIG * 3 // 4
    # ... and resumed after its maintenance was lifted, production did not enter it again.
    assert "already lifted" in records["maintenance-on-app-production"].reason
    assert records["move-db-app-app_shop"].details["kept_as"].endswith("/" + _mysql_kept(op))
    print(f"\nreturn {op}\n" + chain.table("= uninterrupted"))
