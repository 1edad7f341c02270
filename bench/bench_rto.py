"""The RTO of a drill on a cold and on a warm DRP server, next to the raw tools, on the lab.

Run as root from the repository root (it brings the lab up at the chosen size, and takes the
locks it needs itself: do not wrap it in `flock`):

    .venv/bin/python bench/bench_rto.py [--files-mb 1024] [--rows 1000000] [--json]
                                        [--keep-lab-size]

On the same lab data, in one run:

1. the DRP server is emptied of the environment: no stage (`drp stage --remove`), its trees
   renamed `<tree>.drp-before-bench-rto-<time>` and its databases set aside by drp's own
   database interface (PostgreSQL renamed, MySQL dumped then dropped), what waits aside listed
   in `~/.drp-bench-rto/<time>/aside/record.json` on the DRP host; all put back at the end;
2. a daily backup (`drp backup run`);
3. cold: `drp drill` on that empty DRP server (everything copied and imported after the
   order); `cold_rto_seconds` is the report's RTO, order to service verified. Drills run
   without `--cleanup`, whose record-and-set-aside step runs after the order and would count
   in the RTO; after each drill the benchmark removes what it restored (its trees, and the
   databases whose drp marker names it), so that the next one starts from the same empty
   DRP server;
4. raw: the tools drp runs, without drp, on the same backup set, all started together by plain
   `ssh` to the DRP server: the rsync of each tree from the backup server (drp's options, from
   `providers.rsync.copy_argv`, into an empty directory), and per database the fetch of its
   dump (rsync, drp's options) then `createdb` + `pg_restore -j 2` or `CREATE DATABASE` +
   `mariadb < dump`; `raw_seconds` is the wall time until the last is done. As context,
   `raw_phased_seconds`: the same, but the copies first, then the databases;
5. warm: `drp stage` (the daily set staged), then a change as a day brings it: 5% of
   production's files rewritten with new content of the same size (every 20th file in path
   order; index.html, which the URL check reads, left alone), rows inserted into the user
   database (1% of its rows, table users); then a files backup and a user-database backup. The
   chosen backups are then newer than the stage for the trees (a final delta) and the user
   database (imported from its dump), the same for the shop database (renamed in).
   `warm_rto_seconds` is a drill's RTO there;
   As context, `raw_warm_seconds`: the raw tools doing only the work that drill has left after
   the order (each tree's rsync into a hard-linked copy of its stage, the newer dump fetched
   and restored), all at once: the floor of a warm RTO in this scenario on this machine;
6. restaged: `drp stage` again, as the deployment that runs after each backup would, so that
   every part is warm; `warm_rto_restaged_seconds` is a drill's RTO then.

Which parts each drill found warm is read from its report (`details.warm` of its copy and
import steps). Ratios: warm/cold (goal at most 0.15) and cold/raw (goal at most 1.10). The
backups and stagings are timed too, as context, and the figures name the commit of drp they
were taken with (and its source files changed since, if any).

The benchmark holds the lab's development lock (`dev-tests.lock`) and its session lock
(`sessions.lock`, exclusively: test sessions wait) the whole time. At the end, failures
included: no stage is left, the site lock is free, production's files and rows are put back
(checked against their listing and row counts from the start), the benchmark's backup sets are
removed, the DRP server gets back its trees and databases, DNS is checked unchanged, and
production is seeded back to its previous size unless `--keep-lab-size`. It exits 0 whatever
the figures (it measures, it does not judge), 1 if the benchmark itself failed or could not
put the lab back.
"""

from __future__ import annotations

import argparse
import fcntl
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import dns.message
import dns.query
import psycopg
from bench_restore import (
    BenchError,
    drop_mysql,
    drop_postgres,
    human_bytes,
    lab_to_ourselves,
    mysql_load_line,
    pg_load_line,
    reading_secret,
    ssh_command,
)
from rich.console import Console
from rich.table import Table

from lab import api, topology
from lab import seed as seeding
from providers import aside, mysql, postgres
from providers.commands import shell_line
from providers.database import Aside, engine_for
from providers.rsync import CopyOptions, copy_argv
from runbooks import connect
from runbooks.activation import STAGING_DIR
from runbooks.backups import BackupSet, EnvironmentChoice, choose_sets, open_catalogue
from runbooks.inventory import Database, Environment, Site, load_site
from runbooks.site_lock import read_lock
from runbooks.warm import read_warm_state

LAB_CONFIG = topology.REPO_ROOT / "config" / "lab.yaml"
WARM_GOAL = 0.15  # warm RTO / cold RTO, at most
RAW_GOAL = 1.10  # cold RTO / raw tools, at most
CHANGE_EVERY = 20  # one production file in 20 rewritten: 5%
ROWS_SHARE = 0.01  # rows inserted into the user database, of its rows
JOBS = 2  # pg_restore workers, drp's default
LOCK_WAIT_S = 3600.0  # how long to wait for others' lab work to end
COMMAND_TIMEOUT_S = 3600.0
SCRATCH = ".drp-bench-rto"  # in the homes of production and the DRP host


# -- pure helpers ----------------------------------------------------------------------------

# Run on production (python3 is there): rewrite every Nth file of a tree, keeping the original
# (content, mode, times) in a directory of ours; or put the originals back and remove them.
CHANGE_SCRIPT = r"""
import hashlib, json, os, shutil, sys
action, root, keep = sys.argv[1:4]

def digest(paths, base):
    h = hashlib.sha256()
    for rel in paths:
        with open(os.path.join(base, rel), "rb") as f:
            h.update(rel.encode() + b"\0" + hashlib.sha256(f.read()).digest())
    return h.hexdigest()

if action == "change":
    every = int(sys.argv[4])
    names = []
    for d, dirs, files in os.walk(root):
        dirs[:] = [x for x in dirs if x != "cache"]  # excluded from the backups
        names += [os.path.relpath(os.path.join(d, f), root) for f in files]
    names = sorted(n for n in names if n != "index.html")  # the URL check reads it
    chosen = names[::every]
    before = digest(chosen, root)
    for rel in chosen:  # every original kept before the first is rewritten
        dst = os.path.join(keep, rel)
        os.makedirs(os.path.dirname(dst), exist_ok=True)
        shutil.copy2(os.path.join(root, rel), dst)
    with open(os.path.join(keep, ".chosen"), "w") as f:
        f.write("\n".join(chosen))
    size = 0
    for rel in chosen:
        n = os.path.getsize(os.path.join(root, rel))
        with open(os.path.join(root, rel), "wb") as f:
            f.write(os.urandom(n))
        size += n
    print(json.dumps({"files": len(names) + 1, "changed": len(chosen), "bytes": size,
                      "digest": before}))
elif os.path.exists(os.path.join(keep, ".chosen")):
    with open(os.path.join(keep, ".chosen")) as f:
        chosen = f.read().split("\n")
    for rel in chosen:
        shutil.copy2(os.path.join(keep, rel), os.path.join(root, rel))
    print(json.dumps({"restored": len(chosen), "digest": digest(chosen, root)}))
else:
    print(json.dumps({"restored": 0, "digest": None}))
"""


def source_version() -> dict[str, Any]:
    """The commit of drp measured, and its source files changed since (if any)."""

    def git(*args: str) -> str:
        done = subprocess.run(
            ["git", *args], capture_output=True, text=True, check=False, cwd=topology.REPO_ROOT
        )
        return done.stdout.rstrip()

    changed = git("status", "--porcelain", "--", "flows", "runbooks", "providers", "lab")
    return {
        "commit": git("rev-parse", "--short", "HEAD"),
        "subject": git("log", "-1", "--format=%s")[:120],
        "changed_since": [line[3:] for line in changed.splitlines()],
    }


def ratio(numerator: float | None, denominator: float | None) -> float | None:
    if numerator is None or not denominator:
        return None
    return round(numerator / denominator, 3)


def step_rows(report: dict[str, Any], prefix: str = "") -> list[dict[str, Any]]:
    """The copy, import and stage steps of a report: time, bytes, warm or not."""
    rows = []
    for r in report.get("timeline", []):
        if r.get("stage") not in ("copy", "import", "stage") or not r["step"].startswith(prefix):
            continue
        rows.append(
            {
                "step": r["step"],
                "outcome": r["outcome"],
                "seconds": r["seconds"],
                "bytes": r["bytes"],
                "files": r["files"],
                "warm": bool((r.get("details") or {}).get("warm")),
                "reason": r["reason"],
            }
        )
    return rows


def dns_answers() -> dict[str, list[str]]:
    """What the lab's authoritative server answers for the environment's names."""
    answers = {}
    for name in (f"{topology.ZONE}.", f"www.{topology.ZONE}."):
        response = dns.query.tcp(
            dns.message.make_query(name, "A"), topology.DNS_ADDRESS, port=topology.DNS_PORT,
            timeout=5,
        )  # fmt: skip
        answers[name] = sorted(r.to_text() for rrset in response.answer for r in rrset)
    return answers


@contextmanager
def dev_lock(say: Callable[[str], None]) -> Iterator[None]:
    """The lab's development lock, which every engineer's lab work takes (`flock`)."""
    path = topology.paths().root / "dev-tests.lock"
    with path.open("a") as handle:
        deadline = time.monotonic() + LOCK_WAIT_S
        waiting = False
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError as err:
                if not waiting:
                    say(f"waiting for the lab's development lock ({path})")
                    waiting = True
                if time.monotonic() > deadline:
                    raise BenchError(f"{path} stayed taken for {LOCK_WAIT_S:.0f} s") from err
                time.sleep(1)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


# -- the benchmark ---------------------------------------------------------------------------


@dataclass
class RawJob:
    name: str
    remote: str  # the shell line run on the DRP host (no secret in it)
    stdin: str  # the password line, or ""
    check: Callable[[], None]  # after the timing: the job did the whole work


class Bench:
    def __init__(self, site: Site, work: Path, say: Callable[[str], None]) -> None:
        self.site, self.work, self.say = site, work, say
        self.stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
        self.op = f"bench-rto-{self.stamp}"  # names what the benchmark sets aside
        self.scratch = f"{SCRATCH}/{self.stamp}"
        self.reports = work / "reports"
        self.reports.mkdir()
        self.db_prefix = f"bench_rto_{os.getpid()}_"
        self.env: Environment = site.environments[0]
        self.operations: list[str] = []  # drills started
        self.to_reset: list[str] = []  # drills whose restores are still on the DRP server
        self.created_sets: list[BackupSet] = []
        self.backups: list[dict[str, Any]] = []
        self.stagings: list[dict[str, Any]] = []
        self.notes: list[str] = []
        self.moved_trees: list[tuple[str, str]] = []  # (tree, where it waits) on the DRP host
        self.asides: list[tuple[Database, Aside]] = []
        self.change: dict[str, Any] | None = None
        self.inserted: tuple[int, int] | None = None  # first and last id added to users
        self.production_before: dict[str, Any] = {}
        self.drp_before: dict[str, Any] = {}
        self.dns_before: dict[str, list[str]] = {}

    # ---- running drp

    def drp(self, *args: str) -> tuple[float, str]:
        """`drp ARGS` as an operator runs it (the lab's Prefect server, found in lab.env)."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
        env.update(
            DRP_REPORTS_DIR=str(self.reports), COLUMNS="200", DO_NOT_TRACK="1",
            PREFECT_HOME=str(self.work / "prefect-home"),
            PREFECT_SERVER_ANALYTICS_ENABLED="false",
        )  # fmt: skip
        started = time.perf_counter()
        done = subprocess.run(
            [sys.executable, "-m", "flows.cli", *args],
            capture_output=True, text=True, timeout=COMMAND_TIMEOUT_S, check=False, env=env,
            cwd=topology.REPO_ROOT,
        )  # fmt: skip
        seconds = time.perf_counter() - started
        self.say(f"  drp {' '.join(args[:2])}: exit {done.returncode} in {seconds:.1f} s")
        if done.returncode != 0:
            tail = (done.stdout + done.stderr).strip().splitlines()[-15:]
            raise BenchError(f"drp {' '.join(args)} failed:\n" + "\n".join(tail))
        return seconds, done.stdout

    def config(self) -> str:
        return str(LAB_CONFIG)

    # ---- reading the lab

    def sets(self) -> dict[str, BackupSet]:
        with open_catalogue(self.site) as catalogue:
            return {s.label: s for s in catalogue.sets(self.env.name)}

    def choice(self) -> EnvironmentChoice:
        return choose_sets(self.site, environments=[self.env.name], verify=False)[self.env.name]

    def tree_listing(self, role: Any, path: str) -> str | None:
        with connect.HostPool(self.site) as pool:
            found = pool[role].run(aside.listing_argv(path), check=False, timeout=600)
        return found.stdout.strip() if found.ok else None

    def database_state(self, db: Database, role: Any) -> dict[str, Any]:
        engine = engine_for(db.engine)
        endpoint = connect.db_endpoint(self.site, db, role)
        password = connect.database_password(self.site, db)
        if not engine.exists(endpoint, password):
            return {"exists": False}
        marker = engine.read_marker(endpoint, password)
        return {
            "exists": True,
            "rows": engine.table_counts(endpoint, password),
            "marker": marker.backup_id if marker else None,
        }

    def state(self, role: Any) -> dict[str, Any]:
        """Trees (listing digests) and databases (rows, marker) of the environment there."""
        return {
            "trees": {
                t.path: self.tree_listing(role, t.path)
                for _s, _n, t in connect.environment_trees(self.env)
            },
            "databases": {db.name: self.database_state(db, role) for db in self.env.databases},
        }

    # ---- backups and stagings

    def backup(self, what: str, *extra: str) -> None:
        before = set(self.sets())
        seconds, _ = self.drp("backup", "run", "-c", self.config(), *extra)
        new = [s for label, s in sorted(self.sets().items()) if label not in before]
        if not new:
            raise BenchError(f"drp backup run {' '.join(extra)} made no new set")
        self.created_sets += new
        entry = {
            "what": what,
            "command": " ".join(["drp backup run", *extra]),
            "seconds": round(seconds, 2),
            "sets": [
                {
                    "set": s.label,
                    "kind": s.kind.value,
                    "bytes": s.bytes,
                    "complete": s.usable,
                    "seconds": round((s.completed - s.started).total_seconds(), 1)
                    if s.completed
                    else None,
                }
                for s in new
            ],
        }
        self.backups.append(entry)
        sizes = ", ".join(f"{s['set']} {human_bytes(s['bytes'] or 0)}" for s in entry["sets"])
        self.say(f"  {what}: {sizes}")

    def stage(self, what: str) -> None:
        before = set(self.reports.glob("stage-*.json"))
        seconds, _ = self.drp("stage", "-c", self.config())
        new = sorted(set(self.reports.glob("stage-*.json")) - before)
        report = json.loads(new[-1].read_text()) if new else {}
        steps = step_rows(report, "stage-")
        self.stagings.append(
            {
                "what": what,
                "seconds": round(seconds, 2),
                "operation_id": report.get("operation_id"),
                "outcome": report.get("outcome"),
                "bytes": sum(r["bytes"] for r in steps),
                "steps": steps,
            }
        )
        problems = self.staged_problems()
        if problems:
            raise BenchError(f"{what}: drp stage did not stage the chosen sets: {problems}")
        moved = sum(r["bytes"] for r in steps)
        self.say(f"  {what}: {human_bytes(moved)} moved, staged in {seconds:.1f} s")

    def staged_problems(self) -> list[str]:
        """What the DRP host holds staged, against the sets an activation would choose now."""
        choice = self.choice()
        with connect.HostPool(self.site) as pool:
            warm = read_warm_state(self.site, pool["drp"])
        problems = []
        for section, name, tree in connect.environment_trees(self.env):
            chosen = choice.tree(section, name)
            if chosen is None or chosen.tree.source_is_file:
                continue
            staged = warm.tree(self.env.name, tree.path)
            if staged is None or staged.set_label != chosen.set.label:
                held = staged.set_label if staged else "nothing"
                problems.append(f"{tree.path}: staged {held}, chosen {chosen.set.label}")
        for db in self.env.databases:
            dump = choice.dump(db.name)
            staged_db = warm.database(self.env.name, db.name)
            if dump is None:
                continue
            wanted = f"{dump.set.set_id}@{dump.set.server}"
            if staged_db is None or staged_db.backup_id != wanted:
                held = staged_db.backup_id if staged_db else "nothing"
                problems.append(f"{db.name}: staged {held}, chosen {wanted}")
        return problems

    # ---- drills

    def drill(self, name: str) -> dict[str, Any]:
        """A drill on the empty DRP server (without --cleanup, whose record-and-set-aside step
        runs after the order and would count in the RTO); what it restored is removed after."""
        if not self.drp_empty():
            raise BenchError("the DRP server holds the environment before a drill")
        operation = f"drill-{self.op}-{name}"
        self.operations.append(operation)
        self.to_reset.append(operation)
        os.sync()  # what earlier steps wrote is on disk before the drill starts
        seconds, _ = self.drp(
            "drill", "-c", self.config(), "--operation-id", operation,
            "--order-by", "Bench operator", "--reference", f"BENCH-RTO-{self.stamp}",
        )  # fmt: skip
        failed = self.reset_drp(operation)
        if failed:
            raise BenchError(f"what drill {operation} restored was not removed: {failed}")
        report = json.loads((self.reports / f"{operation}.json").read_text())
        if report.get("rto_seconds") is None:
            raise BenchError(f"drill {operation} reports no RTO ({report.get('outcome')})")
        steps = step_rows(report)
        found = {
            "operation_id": operation,
            "rto_seconds": round(report["rto_seconds"], 3),
            "wall_seconds": round(seconds, 2),
            "outcome": report.get("outcome"),
            "backups": [f"{b['what']}: {b['server']}:{b['set_id']}" for b in report["backups"]],
            "warm_parts": [r["step"] for r in steps if r["warm"]],
            "cold_parts": [r["step"] for r in steps if not r["warm"]],
            "steps": steps,
        }
        warm = ", ".join(found["warm_parts"]) or "none"
        self.say(f"  {name} drill: RTO {found['rto_seconds']:.2f} s; warm: {warm}")
        return found

    def expect_warm(self, drill: dict[str, Any], cold_parts: set[str]) -> None:
        """A note when a drill's warm parts are not those its set-up leads to expect."""
        if set(drill["cold_parts"]) != cold_parts:
            self.notes.append(
                f"{drill['operation_id']}: not warm {sorted(drill['cold_parts'])}, expected "
                f"{sorted(cold_parts)}"
            )

    def drp_empty(self) -> bool:
        state = self.state("drp")
        trees = any(v is not None for v in state["trees"].values())
        return not trees and not any(d["exists"] for d in state["databases"].values())

    def reset_drp(self, operation: str) -> list[str]:
        """What a drill restored on the DRP server, emptied by the benchmark before it, removed:
        its trees, what it kept aside of them if that holds no file, its databases (only those
        whose drp marker names it)."""
        failed = []
        with connect.HostPool(self.site) as pool:
            runner = pool["drp"]
            for _section, _name, tree in connect.environment_trees(self.env):
                path = aside.normalize_path(tree.path)
                kept = aside.aside_path(tree.path, operation)
                script = (
                    'rm -rf -- "$1" && if [ -d "$2" ]; then '
                    'if [ -z "$(find "$2" -type f -print -quit)" ]; then rm -rf -- "$2"; '
                    'else echo "$2 holds files: left there"; fi; fi'
                )
                done = runner.run(["sh", "-c", script, "sh", path, kept], check=False, timeout=3600)
                if not done.ok or done.stdout.strip():
                    failed.append(f"drp:{path}: {(done.stdout + done.stderr).strip()}")
        for db in self.env.databases:
            endpoint = connect.db_endpoint(self.site, db, "drp")
            password = connect.database_password(self.site, db)
            try:
                engine_for(db.engine).drop_own(endpoint, password, operation)
            except Exception as err:
                failed.append(str(err))
        if not failed:
            self.to_reset.remove(operation)
        return failed

    # ---- the DRP server emptied of the environment, and put back

    def empty_drp(self) -> None:
        self.drp("stage", "-c", self.config(), "--remove")
        self.drp_before = self.state("drp")
        record_dir = f"{self.scratch}/aside"
        with connect.HostPool(self.site) as pool:
            runner = pool["drp"]
            runner.run(["mkdir", "-p", "--", f"{record_dir}/databases"], timeout=60)
            for _section, _name, tree in connect.environment_trees(self.env):
                path = aside.normalize_path(tree.path)
                kept = aside.aside_path(tree.path, self.op)
                script = 'if [ -e "$1" ] || [ -L "$1" ]; then mv -T -n -- "$1" "$2"; echo moved; fi'
                moved = runner.run(["sh", "-c", script, "sh", path, kept], timeout=600)
                if "moved" in moved.stdout:
                    self.moved_trees.append((path, kept))
                    self.say(f"  drp:{path} set aside as {kept}")
            for db in self.env.databases:
                engine = engine_for(db.engine)
                endpoint = connect.db_endpoint(self.site, db, "drp")
                password = connect.database_password(self.site, db)
                if not engine.exists(endpoint, password):
                    continue
                kept_aside = engine.aside_for(
                    runner, endpoint, password, self.op, f"{record_dir}/databases"
                )
                self.asides.append((db, kept_aside))
                self.write_aside_record(runner, record_dir)  # before anything moves
                engine.set_aside(runner, endpoint, password, kept_aside)
                self.say(f"  {endpoint.label} set aside as {kept_aside.kept}")
            self.write_aside_record(runner, record_dir)
        left = self.state("drp")
        if any(v is not None for v in left["trees"].values()) or any(
            d["exists"] for d in left["databases"].values()
        ):
            raise BenchError(f"the DRP server still holds the environment: {left}")

    def write_aside_record(self, runner: Any, record_dir: str) -> None:
        """What waits aside, on the DRP host: a crashed benchmark is put back by hand from it."""
        record = {
            "trees": [{"tree": t, "kept_as": k} for t, k in self.moved_trees],
            "databases": [{"database": d.name, "aside": a.model_dump()} for d, a in self.asides],
        }
        runner.run(
            ["sh", "-c", 'cat > "$1"', "sh", f"{record_dir}/record.json"],
            stdin=json.dumps(record, indent=1, default=str), timeout=60,
        )  # fmt: skip

    def put_back_drp(self) -> list[str]:
        failed = []
        with connect.HostPool(self.site) as pool:
            runner = pool["drp"]
            for path, kept in list(self.moved_trees):
                script = 'if [ -e "$1" ] || [ -L "$1" ]; then exit 3; fi; mv -T -n -- "$2" "$1"'
                result = runner.run(["sh", "-c", script, "sh", path, kept], check=False)
                if result.ok:
                    self.moved_trees.remove((path, kept))
                else:
                    failed.append(f"drp:{kept} not put back as {path} (something is there now)")
            for db, kept_aside in list(self.asides):
                endpoint = connect.db_endpoint(self.site, db, "drp")
                password = connect.database_password(self.site, db)
                try:
                    engine_for(db.engine).put_back(runner, endpoint, password, kept_aside, self.op)
                    self.asides.remove((db, kept_aside))
                except Exception as err:
                    failed.append(f"{endpoint.label} not put back from {kept_aside.kept}: {err}")
        if failed:
            failed.append(f"what waits aside is listed in drp:{self.scratch}/aside/record.json")
        return failed

    # ---- production changed as a day changes it, and put back

    def change_production(self) -> None:
        self.production_before = self.state("production")
        keep = f"{self.scratch}/files-before"
        self.change = {}  # from now on, the end puts production's files back
        with connect.HostPool(self.site) as pool:
            result = pool["production"].run(
                ["python3", "-c", CHANGE_SCRIPT, "change", topology.APP_FILES_DIR, keep,
                 str(CHANGE_EVERY)],
                timeout=3600,
            )  # fmt: skip
        self.change = json.loads(result.stdout)
        self.say(
            f"  production: {self.change['changed']} of {self.change['files']} files rewritten "
            f"({human_bytes(self.change['bytes'])})"
        )
        users_db = next(db for db in self.env.databases if db.user_database)
        users_rows = engine_for(users_db.engine).table_counts(
            connect.db_endpoint(self.site, users_db, "production"),
            connect.database_password(self.site, users_db),
        )
        count = max(100, round(sum(users_rows.values()) * ROWS_SHARE))
        with self.pg("production", users_db) as conn:
            first = int(conn.execute("SELECT coalesce(max(id), 0) + 1 FROM users").fetchone()[0])
            self.inserted = (first, first + count - 1)
            conn.execute(
                "INSERT INTO users (id, email, full_name, password_hash, created_at, active) "
                "SELECT g, 'bench-rto-' || g || '@test', 'Bench', 'x', now(), true "
                "FROM generate_series(%s::bigint, %s::bigint) g",
                self.inserted,
            )
        self.change.update(rows_inserted=count, rows_table=f"{users_db.name}.users")
        self.say(f"  production: {count:,} rows inserted into {users_db.name}.users")

    def pg(self, role: Any, db: Database) -> psycopg.Connection[Any]:
        endpoint = connect.db_endpoint(self.site, db, role)
        return psycopg.connect(
            host=endpoint.address, port=endpoint.port, user=endpoint.user, dbname=db.name,
            password=connect.database_password(self.site, db).reveal(), autocommit=True,
        )  # fmt: skip

    def revert_production(self) -> list[str]:
        failed = []
        if self.change is not None and "put_back" not in self.change:
            keep = f"{self.scratch}/files-before"
            with connect.HostPool(self.site) as pool:
                result = pool["production"].run(
                    ["python3", "-c", CHANGE_SCRIPT, "restore", topology.APP_FILES_DIR, keep],
                    check=False, timeout=3600,
                )  # fmt: skip
            if result.ok and json.loads(result.stdout)["digest"] == self.change.get("digest"):
                self.change["put_back"] = True
            else:
                failed.append(f"production files not put back from production:{keep}")
        if self.inserted is not None:
            users_db = next(db for db in self.env.databases if db.user_database)
            with self.pg("production", users_db) as conn:
                conn.execute(
                    "DELETE FROM users WHERE id BETWEEN %s AND %s AND email LIKE 'bench-rto-%%'",
                    self.inserted,
                )
            self.inserted = None
        if self.production_before and not failed:
            now = self.state("production")
            if now != self.production_before:
                failed.append(
                    f"production differs from the start: {now} != {self.production_before}"
                )
        return failed

    # ---- the raw tools

    def raw(self, label: str, phased: bool, *, over_stage: bool = False) -> dict[str, Any]:
        """The copies and restores drp runs for the chosen sets, run by plain ssh on the DRP
        host, all at once (or copies first, then databases); checked, then removed.

        `over_stage`: only the work a warm drill has left after the order, as the raw tools
        would do it: each tree's rsync goes into a hard-linked copy of its stage (made before
        the clock starts), a tree staged from the chosen set itself is not copied, and only the
        databases whose chosen dump is not the staged one are fetched and restored (a rename
        costs next to nothing)."""
        choice = self.choice()
        target = connect.ssh_target(self.site, "drp")
        base = f"{self.scratch}/{label}"
        with connect.HostPool(self.site) as pool:
            home = pool["drp"].run(["pwd"], timeout=60).stdout.strip()
            pool["drp"].run(["mkdir", "-p", "--", base], timeout=60)
            warm = read_warm_state(self.site, pool["drp"]) if over_stage else None
        prepare: list[list[str]] = []  # run before the clock starts
        idle = round(self.site.timeouts.copy_idle_seconds)
        copies: list[RawJob] = []
        loads: list[RawJob] = []
        for section, name, tree in connect.environment_trees(self.env):
            chosen = choice.tree(section, name)
            if chosen is None or chosen.tree.source_is_file:
                continue
            key = f"{section.value}-{name}"
            dest = f"{base}/{key}"
            if warm is not None:
                staged = warm.tree(self.env.name, tree.path)
                if staged is None:
                    raise BenchError(f"no stage of {tree.path} for the raw tools over the stage")
                if staged.set_label == chosen.set.label:
                    continue
                prepare.append(["cp", "-al", "--", staged.directory, dest])
            source = connect.remote_endpoint(
                self.site, connect.backup_role(self.site, chosen.set.server), chosen.path,
                receiver="drp",
            )  # fmt: skip
            options = CopyOptions(  # as runbooks.common_steps.CopyTree builds them
                excludes=tuple(tree.exclude), delete=True, io_timeout=idle,
                partial_dir=f"{home}/{base}/partial/{key}",
                # a stage's replaced files are not kept (it is not served), as drp's delta
                backup_dir=None if warm is not None else f"{home}/{base}/aside/{key}",
            )  # fmt: skip
            copies.append(
                RawJob(
                    f"copy {section.value}/{name}",
                    shell_line(copy_argv(source, dest, options)),
                    "",
                    self.tree_check(dest, chosen.tree.files, chosen.tree.bytes),
                )
            )
        for db in self.env.databases:
            dump = choice.dump(db.name)
            if dump is None:
                continue
            staged_db = warm.database(self.env.name, db.name) if warm is not None else None
            if staged_db is not None and staged_db.backup_id == (
                f"{dump.set.set_id}@{dump.set.server}"
            ):
                continue
            dumps_dir, dump_name = dump.path.rsplit("/", 1)
            includes, excludes = connect.one_file_filter(dump_name)
            source = connect.remote_endpoint(
                self.site, connect.backup_role(self.site, dump.set.server), dumps_dir,
                receiver="drp",
            )  # fmt: skip
            fetch_options = CopyOptions(
                includes=includes, excludes=excludes, io_timeout=idle,
                partial_dir=f"{home}/{base}/partial/{db.name}",
            )  # fmt: skip
            dest = f"{base}/dumps-{db.name}"
            endpoint = connect.db_endpoint(self.site, db, "drp").with_dbname(
                f"{self.db_prefix}{label}_{db.engine}"
            )
            is_pg = db.engine == "postgresql"
            load = (pg_load_line if is_pg else mysql_load_line)(endpoint, f"{dest}/{dump_name}")
            fetch = shell_line(copy_argv(source, dest, fetch_options))
            secret = postgres.PASSWORD_ENV if is_pg else mysql.PASSWORD_ENV
            password = connect.database_password(self.site, db)
            loads.append(
                RawJob(
                    f"fetch + restore {db.name}",
                    reading_secret(secret, f"{fetch} && {load}"),
                    f"{password.reveal()}\n",
                    self.db_check(db, endpoint, dump.dump.tables),
                )
            )
        groups = [copies, loads] if phased else [copies + loads]
        groups = [group for group in groups if group]
        seconds: dict[str, float] = {}
        try:
            if prepare:
                with connect.HostPool(self.site) as pool:
                    for argv in prepare:
                        pool["drp"].run(argv, timeout=3600)
            os.sync()  # what earlier steps wrote is on disk before the clock starts
            started = time.perf_counter()
            for group in groups:
                with ThreadPoolExecutor(max_workers=len(group)) as pool_:
                    futures = [pool_.submit(self.run_raw, target, job, started) for job in group]
                    for job, future in zip(group, futures, strict=True):
                        seconds[job.name] = round(future.result(), 2)
            wall = time.perf_counter() - started
            for job in copies + loads:
                job.check()
        finally:
            with connect.HostPool(self.site) as pool:
                pool["drp"].run(["rm", "-rf", "--", base], check=False, timeout=3600)
            self.drop_scratch_databases()
        how = "copies, then databases" if phased else "all at once"
        how += ", over the stage" if over_stage else ""
        self.say(f"  raw tools ({how}): {wall:.2f} s " + str(seconds))
        return {
            "seconds": round(wall, 3),
            "backups": sorted(s.label for s in choice.sets),
            "jobs_seconds": seconds,
            "commands": {job.name: job.remote for job in copies + loads},
        }

    def run_raw(self, target: Any, job: RawJob, started: float) -> float:
        done = subprocess.run(
            ssh_command(target, job.remote), input=job.stdin, capture_output=True, text=True,
            check=False, timeout=COMMAND_TIMEOUT_S,
        )  # fmt: skip
        ended = time.perf_counter() - started
        if done.returncode != 0:
            tail = "\n".join(done.stderr.strip().splitlines()[-8:])
            raise BenchError(f"raw {job.name} failed on drp (exit {done.returncode}): {tail}")
        return ended

    def tree_check(self, dest: str, files: int, size: int) -> Callable[[], None]:
        def check() -> None:
            script = "find \"$1\" -type f -printf '%s\\n' | awk '{n++; s+=$1} END {print n+0, s+0}'"
            with connect.HostPool(self.site) as pool:
                out = pool["drp"].run(["sh", "-c", script, "sh", dest], timeout=600).stdout
            found = tuple(int(x) for x in out.split())
            if found != (files, size):
                raise BenchError(f"raw copy: drp:{dest} holds {found}, the set {(files, size)}")

        return check

    def db_check(self, db: Database, endpoint: Any, tables: dict[str, int]) -> Callable[[], None]:
        def check() -> None:
            password = connect.database_password(self.site, db)
            counts = engine_for(db.engine).table_counts(endpoint, password)
            if any(counts.get(t) != n for t, n in tables.items()):
                raise BenchError(f"raw restore: {endpoint.label} holds {counts}, not {tables}")

        return check

    def drop_scratch_databases(self) -> None:
        like = self.db_prefix.replace("_", "\\_") + "%"
        for db in self.env.databases:
            endpoint = connect.db_endpoint(self.site, db, "drp")
            password = connect.database_password(self.site, db)
            (drop_postgres if db.engine == "postgresql" else drop_mysql)(endpoint, password, like)

    # ---- the end, failures included

    def cleanup(self) -> list[str]:
        """Put the lab back; returns what could not be."""
        failed: list[str] = []

        def attempt(what: str, call: Callable[[], list[str] | None]) -> None:
            try:
                failed.extend(call() or [])
            except Exception as err:  # keep putting the rest back
                failed.append(f"{what}: {err}")

        attempt("site lock", self.release_site_lock)
        for operation in list(self.to_reset):
            attempt(f"drill {operation}", lambda op=operation: self.reset_drp(op))
        attempt("stages", self.remove_stages)
        attempt("production", self.revert_production)
        attempt("backup sets", self.remove_sets)
        attempt("DRP server", self.put_back_drp)
        attempt("DRP server", self.compare_drp)
        attempt("scratch", self.remove_scratch)
        attempt("DNS", self.compare_dns)
        return failed

    def remove_stages(self) -> list[str]:
        self.drp("stage", "-c", self.config(), "--remove")
        return []

    def release_site_lock(self) -> list[str]:
        with connect.HostPool(self.site) as pool:
            held = read_lock(pool["drp"])
        if held is None:
            return []
        if held.operation_id not in self.operations:
            return [f"the site lock is held by {held.operation_id}, not by this benchmark"]
        self.drp(
            "unlock", "-c", self.config(), "--operation-id", held.operation_id,
            "--reason", "the RTO benchmark ended without this drill's end",
        )  # fmt: skip
        return []

    def remove_sets(self) -> list[str]:
        failed = []
        with connect.HostPool(self.site) as pool:
            for s in self.created_sets:
                result = pool[connect.backup_role(self.site, s.server)].run(
                    ["rm", "-rf", "--", s.path], check=False, timeout=3600
                )
                if not result.ok:
                    failed.append(f"backup set {s.label} not removed: {result.stderr.strip()}")
                # where drills fetched this set's dumps (emptied as each was verified)
                fetched = f"{STAGING_DIR}/{s.environment}/{s.set_id}"
                pool["drp"].run(["rm", "-rf", "--", fetched], check=False, timeout=600)
        self.created_sets = []
        return failed

    def compare_drp(self) -> list[str]:
        if not self.drp_before or self.moved_trees or self.asides:
            return []
        now = self.state("drp")
        if now != self.drp_before:
            return [f"the DRP server differs from the start: {now} != {self.drp_before}"]
        return []

    def remove_scratch(self) -> list[str]:
        with connect.HostPool(self.site) as pool:
            pool["production"].run(["rm", "-rf", "--", self.scratch], check=False, timeout=600)
            if not self.moved_trees and not self.asides:  # else the aside record is needed
                pool["drp"].run(["rm", "-rf", "--", self.scratch], check=False, timeout=600)
            for role in ("production", "drp"):
                pool[role].run(["rmdir", "--", SCRATCH], check=False, timeout=60)
        return []

    def compare_dns(self) -> list[str]:
        now = dns_answers()
        return [] if now == self.dns_before else [f"DNS answers {now}, before {self.dns_before}"]

    # ---- the whole run

    def run(self) -> dict[str, Any]:
        self.dns_before = dns_answers()
        with connect.HostPool(self.site) as pool:
            held = read_lock(pool["drp"])
        if held is not None:
            raise BenchError(f"the site lock is held by {held.operation_id}: {held.holder}")
        self.say("the DRP server emptied of the environment")
        self.empty_drp()
        self.say("daily backup")
        self.backup("daily backup")
        self.say("cold drill (nothing staged, nothing of the environment on the DRP server)")
        cold = self.drill("cold")
        self.say("raw tools, same backup set, all started together")
        raw = self.raw("raw", phased=False)
        self.say("raw tools, copies then databases")
        phased = self.raw("phased", phased=True)
        self.say("staging the daily backup")
        self.stage("stage of the daily backup")
        users = next(db for db in self.env.databases if db.user_database)
        self.say("a day's change on production, then a files and a user-database backup")
        self.change_production()
        self.backup("files backup", "--only", "files")
        self.backup("user-database backup", "--only", "user-databases")
        self.say("raw tools, the warm drill's work: final deltas into the stages, newer dumps")
        raw_warm = self.raw("rawwarm", phased=False, over_stage=True)
        self.say("warm drill (stage one set older than the chosen files and user database)")
        warm = self.drill("warm")
        self.say("staging again after those backups")
        self.stage("stage after the files and user-database backups")
        self.say("warm drill, restaged")
        restaged = self.drill("restaged")
        self.expect_warm(warm, cold_parts={f"restore-{self.env.name}-{users.name}"})
        self.expect_warm(restaged, cold_parts=set())
        return {
            "cold": cold,
            "warm": warm,
            "restaged": restaged,
            "raw": raw,
            "raw_phased": phased,
            "raw_warm": raw_warm,
        }


# -- output -----------------------------------------------------------------------------------


def figures_of(
    args: argparse.Namespace,
    seed: seeding.SeedReport,
    bench: Bench,
    runs: dict[str, Any],
    load: tuple[float, float],
    version: dict[str, Any],
) -> dict[str, Any]:
    cold = runs["cold"]["rto_seconds"]
    warm = runs["warm"]["rto_seconds"]
    restaged = runs["restaged"]["rto_seconds"]
    raw = runs["raw"]["seconds"]
    return {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "drp": version,
        "files_mb": args.files_mb,
        "rows": args.rows,
        "data": {
            "files": seed.file_count,
            "file_bytes": seed.file_bytes,
            "postgresql_rows": sum(seed.postgresql_rows.values()),
            "mysql_rows": sum(seed.mysql_rows.values()),
        },
        "machine": {"cpus": os.cpu_count(), "load_before": load[0], "load_after": load[1]},
        "cold_rto_seconds": cold,
        "warm_rto_seconds": warm,
        "warm_rto_restaged_seconds": restaged,
        "raw_seconds": raw,
        "raw_phased_seconds": runs["raw_phased"]["seconds"],
        "raw_warm_seconds": runs["raw_warm"]["seconds"],
        "ratios": {
            "warm_over_cold": ratio(warm, cold),
            "warm_over_cold_goal": WARM_GOAL,
            "warm_restaged_over_cold": ratio(restaged, cold),
            "cold_over_raw": ratio(cold, raw),
            "cold_over_raw_goal": RAW_GOAL,
            "cold_over_raw_phased": ratio(cold, runs["raw_phased"]["seconds"]),
            "raw_warm_over_cold": ratio(runs["raw_warm"]["seconds"], cold),
            "warm_over_raw_warm": ratio(warm, runs["raw_warm"]["seconds"]),
        },
        "warm_parts": {
            name: {"warm": runs[name]["warm_parts"], "not_warm": runs[name]["cold_parts"]}
            for name in ("cold", "warm", "restaged")
        },
        "change": bench.change,
        "drills": {name: runs[name] for name in ("cold", "warm", "restaged")},
        "raw": runs["raw"],
        "raw_phased": runs["raw_phased"],
        "raw_warm": runs["raw_warm"],
        "backups": bench.backups,
        "stagings": bench.stagings,
        "notes": bench.notes,
    }


def print_report(out: Console, figures: dict[str, Any]) -> None:
    d, v = figures["data"], figures["drp"]
    changed = (
        f" (source changed since: {', '.join(v['changed_since'])})" if v["changed_since"] else ""
    )
    out.print(f"drp {v['commit']}: {v['subject']}{changed}", highlight=False)
    out.print(
        f"data: {d['files']:,} files, {human_bytes(d['file_bytes'])}; PostgreSQL "
        f"{d['postgresql_rows']:,} rows, MariaDB {d['mysql_rows']:,} rows; "
        f"{figures['machine']['cpus']} CPUs, load {figures['machine']['load_before']:.2f} -> "
        f"{figures['machine']['load_after']:.2f}"
    )
    c = figures["change"] or {}
    out.print(
        f"change before the warm drills: {c.get('changed', 0):,} of {c.get('files', 0):,} files "
        f"rewritten ({human_bytes(c.get('bytes', 0))}), {c.get('rows_inserted', 0):,} rows "
        f"inserted into {c.get('rows_table', '-')}"
    )
    t = Table(title="RTO: order to service verified on the DRP server")
    for column in ("what", "seconds", "warm parts", "not warm"):
        t.add_column(column, justify="right" if column == "seconds" else "left")
    for key, what in (
        ("cold", "cold drill (DRP empty, no stage)"),
        ("warm", "warm drill (stage older than files and user DB)"),
        ("restaged", "warm drill, restaged after the backups"),
    ):
        parts = figures["warm_parts"][key]
        t.add_row(
            what,
            f"{figures['drills'][key]['rto_seconds']:.2f}",
            ", ".join(parts["warm"]) or "-",
            ", ".join(parts["not_warm"]) or "-",
        )
    t.add_row("raw tools, all at once", f"{figures['raw_seconds']:.2f}", "", "")
    t.add_row("raw tools, copies then databases", f"{figures['raw_phased_seconds']:.2f}", "", "")
    t.add_row(
        "raw tools, the warm drill's work (deltas into the stages, newer dumps)",
        f"{figures['raw_warm_seconds']:.2f}",
        "",
        ", ".join(figures["raw_warm"]["jobs_seconds"]),
    )
    out.print(t)
    r = figures["ratios"]
    out.print(
        f"warm/cold {r['warm_over_cold']} (goal <= {r['warm_over_cold_goal']}); "
        f"restaged/cold {r['warm_restaged_over_cold']}; cold/raw {r['cold_over_raw']} "
        f"(goal <= {r['cold_over_raw_goal']}); cold/raw phased {r['cold_over_raw_phased']}; "
        f"raw warm work/cold {r['raw_warm_over_cold']}; warm/raw warm work "
        f"{r['warm_over_raw_warm']}"
    )
    for name, drill in figures["drills"].items():
        steps = "; ".join(
            f"{s['step']} {s['seconds']:.2f} s{' (warm)' if s['warm'] else ''}"
            for s in drill["steps"]
        )
        out.print(f"{name} drill steps: {steps}", highlight=False)
    for name in ("raw", "raw_phased", "raw_warm"):
        jobs = "; ".join(f"{k} {v:.2f} s" for k, v in figures[name]["jobs_seconds"].items())
        out.print(f"{name} jobs (done at): {jobs}", highlight=False)
    for b in figures["backups"]:
        sets = ", ".join(f"{s['set']} {human_bytes(s['bytes'] or 0)}" for s in b["sets"])
        out.print(f"{b['what']}: {b['seconds']:.1f} s ({sets})", highlight=False)
    for s in figures["stagings"]:
        out.print(
            f"{s['what']}: {s['seconds']:.1f} s, {human_bytes(s['bytes'])} moved", highlight=False
        )
    for note in figures["notes"]:
        out.print(f"note: {note}", highlight=False)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="RTO of a drill on a cold and a warm DRP server, and the raw tools, on the lab."
    )
    parser.add_argument("--files-mb", type=int, default=1024, help="MiB of files (default 1024)")
    parser.add_argument(
        "--rows", type=int, default=1_000_000, help="rows over both databases (default 1000000)"
    )
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    parser.add_argument(
        "--keep-lab-size",
        action="store_true",
        help="leave production seeded at the benchmark's size afterwards",
    )
    return parser.parse_args(argv)


def run_bench(args: argparse.Namespace, say: Callable[[str], None]) -> dict[str, Any]:
    version = source_version()
    previous = seeding.read_seed(topology.paths())
    say(f"lab: up with {args.files_mb} MiB of files and {args.rows:,} rows (seeds if needed)")
    seed = api.up(files_mb=args.files_mb, rows=args.rows).seed
    if seed is None:
        raise BenchError("the lab reports no seeding of production")
    load_before = os.getloadavg()[0]
    failed: list[str] = []
    with tempfile.TemporaryDirectory(prefix="bench-rto-") as tmp:
        bench = Bench(load_site(LAB_CONFIG), Path(tmp), say)
        try:
            runs = bench.run()
        finally:
            say("putting the lab back")
            failed = bench.cleanup()
            for line in failed:
                say(f"[red]could not put back[/red] {line}")
            if previous is not None and previous.size != seed.size and not args.keep_lab_size:
                say(
                    f"lab: seeding production back to {previous.size.files_mb} MiB, "
                    f"{previous.size.rows:,} rows"
                )
                api.up(files_mb=previous.size.files_mb, rows=previous.size.rows)
    if failed:
        raise BenchError(f"the lab was not fully put back ({len(failed)} problems, above)")
    return figures_of(args, seed, bench, runs, (load_before, os.getloadavg()[0]), version)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    out = Console() if sys.stdout.isatty() else Console(width=160)
    say = Console(stderr=True).print if args.json else out.print
    try:
        with dev_lock(say), lab_to_ourselves(say):
            figures = run_bench(args, say)
    except (Exception, KeyboardInterrupt) as err:
        say(f"[red]benchmark failed:[/red] {err}")
        return 1
    if args.json:
        print(json.dumps(figures, indent=2))
    else:
        print_report(out, figures)
    return 0


if __name__ == "__main__":
    sys.exit(main())
