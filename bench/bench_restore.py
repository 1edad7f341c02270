"""drp against the raw tools, on the lab's data: the file copy and each database restore.

Run as root from the repository root (it brings the lab up at the chosen size):

    .venv/bin/python bench/bench_restore.py [--files-mb 1024] [--rows 1000000] [--repeat 3]
                                            [--json] [--keep-lab-size]

Each operation is timed both ways on the same data, in the same run, the order rotating from
one repeat to the next:

- file copy production:srv/app/www -> drp. RAW: the very rsync command drp runs (same options,
  same inner ssh, pulling from production) started on drp by a plain `ssh` from this machine.
  DRP: `providers.rsync.copy_tree` feeding a rich progress bar, as the CLI runs it. A reference
  row also times a plain `rsync -aH` with the same transfer options but without the flags drp
  adds for its progress report (`--no-inc-recursive --info=progress2,stats2`).
- database restores, from one dump per engine made on production with drp's own dump functions
  and copied to drp. RAW: `createdb` + `pg_restore` / `CREATE DATABASE` + `mariadb < dump` over a
  plain `ssh`, with drp's flags. DRP: `providers.postgres.restore` / `providers.mysql.restore`,
  with the dump's sha256 checked first as an activation does.

Every timed run opens its own connection (an ssh process, or a new drp `SshHost`) and writes
into a new directory or database; a warm-up run first puts the source data in the page cache,
and `sync` before each run keeps one run's writeback from being charged to the next. Besides
wall time, each run records the CPU time spent on this machine (the ssh client for RAW, drp's
own process for DRP). The benchmark holds the lab's session lock (`sessions.lock` in the lab's
state directory) so that no test session uses the lab meanwhile. Everything it creates
(directories on production and drp, databases on drp) is removed at the end, failures included,
and production is seeded back to its previous size unless `--keep-lab-size`. Overhead =
(drp - raw) / raw of the medians. It exits 0 whatever the figures (it measures, it does not
judge), 1 if the benchmark itself failed.
"""

from __future__ import annotations

import argparse
import fcntl
import io
import json
import os
import resource
import shlex
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import psycopg
import pymysql
from psycopg import sql
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from lab import api, topology
from lab import seed as seeding
from providers import mysql, postgres
from providers.commands import shell_line
from providers.dbcommon import DbEndpoint, DumpResult, RestoreResult
from providers.rsync import (
    CopyOptions,
    CopyProgress,
    RemoteEndpoint,
    copy_argv,
    copy_tree,
    rsync_options,
    source_spec,
    ssh_argv,
)
from providers.ssh import SshHost, SshTarget
from runbooks import connect
from runbooks.inventory import Database, Role, Site, load_site
from runbooks.manifest import dump_extension
from runbooks.secrets import Secret

LAB_CONFIG = topology.REPO_ROOT / "config" / "lab.yaml"
THRESHOLD = 0.10  # the overhead drp must stay under
JOBS = 2  # pg_restore workers, drp's default
BACKUP_ID = "bench"
GiB = 1024**3
MiB = 1024**2
LOCK_WAIT_S = 1800.0  # how long to wait for test sessions to leave the lab


class BenchError(Exception):
    """The benchmark could not measure something (a command failed, a copy is incomplete)."""


# -- raw commands (pure) ----------------------------------------------------------------------


def ssh_command(target: SshTarget, remote: str) -> list[str]:
    """A plain OpenSSH client running `remote` on the host, as strict as drp's connections."""
    argv = ["ssh", "-F", "/dev/null", "-p", str(target.port)]
    if target.key_path is not None:
        argv += ["-i", str(target.key_path), "-o", "IdentitiesOnly=yes"]
    return [
        *argv,
        "-o",
        "BatchMode=yes",
        "-o",
        "StrictHostKeyChecking=yes",
        "-o",
        f"UserKnownHostsFile={target.known_hosts}",
        f"{target.user}@{target.address}",
        remote,
    ]


def plain_rsync_argv(source: RemoteEndpoint, dest: str, options: CopyOptions) -> list[str]:
    """rsync with drp's transfer options and inner ssh, but without what drp adds for its
    progress report (`--no-inc-recursive --info=progress2,stats2`): what an operator types."""
    return [
        "rsync",
        *rsync_options(options),
        "-e",
        shlex.join(ssh_argv(source)),
        "--",
        source_spec(source),
        f"{dest.rstrip('/')}/",
    ]


def reading_secret(name: str, script: str) -> str:
    """`script` run after reading the secret `name` from the first line of stdin (never argv)."""
    return f"IFS= read -r {name}; export {name}; {script}"


def pg_load_line(endpoint: DbEndpoint, dump_path: str) -> str:
    """createdb, then pg_restore with the flags drp uses (the password in the environment)."""
    createdb = [
        "createdb",
        f"--host={endpoint.address}",
        f"--port={endpoint.port}",
        f"--username={endpoint.user}",
        "--no-password",
        "--template=template0",
        "--",
        endpoint.dbname,
    ]
    restore = postgres.pg_restore_argv(endpoint, dump_path, jobs=JOBS)
    return f"{shell_line(createdb)} && {shell_line(restore)}"


def mysql_load_line(endpoint: DbEndpoint, dump_path: str) -> str:
    """CREATE DATABASE, then `mariadb DB < dump`, as drp loads it (the password in the
    environment)."""
    client = [
        mysql.CLIENT_PROGRAM,
        f"--host={endpoint.address}",
        f"--port={endpoint.port}",
        f"--user={endpoint.user}",
        "--protocol=tcp",
        "--default-character-set=utf8mb4",
        "--batch",
    ]
    create = [*client, "-e", f"CREATE DATABASE `{endpoint.dbname}`"]
    load = [*client, f"--database={endpoint.dbname}"]
    return f"{shell_line(create)} && {shell_line(load)} < {shlex.quote(dump_path)}"


def raw_pg_restore(endpoint: DbEndpoint, dump_path: str) -> str:
    """`pg_load_line`, the password read from stdin."""
    return reading_secret(postgres.PASSWORD_ENV, pg_load_line(endpoint, dump_path))


def raw_mysql_restore(endpoint: DbEndpoint, dump_path: str) -> str:
    """`mysql_load_line`, the password read from stdin."""
    return reading_secret(mysql.PASSWORD_ENV, mysql_load_line(endpoint, dump_path))


# -- figures ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Sample:
    """One timed run."""

    seconds: float  # wall time
    cpu: float  # CPU time on this machine: the ssh client's (raw), drp's own process (drp)


Run = Callable[[int], Sample]


@dataclass
class Result:
    """One operation timed both ways."""

    what: str
    data: str  # the size of what it works on, in words
    raw_command: str  # the remote command of the raw run (no secret in it)
    drp_call: str
    raw: list[Sample] = field(default_factory=list)
    drp: list[Sample] = field(default_factory=list)
    reference: bool = False  # raw is not drp's own command: shown, but not held to THRESHOLD

    @property
    def raw_median(self) -> float:
        return statistics.median(s.seconds for s in self.raw)

    @property
    def drp_median(self) -> float:
        return statistics.median(s.seconds for s in self.drp)

    @property
    def overhead(self) -> float:
        return (self.drp_median - self.raw_median) / self.raw_median

    @property
    def within_threshold(self) -> bool:
        return self.reference or self.overhead < THRESHOLD

    def as_dict(self) -> dict[str, Any]:
        return {
            "what": self.what,
            "data": self.data,
            "raw_seconds": [round(s.seconds, 3) for s in self.raw],
            "drp_seconds": [round(s.seconds, 3) for s in self.drp],
            "raw_median": round(self.raw_median, 3),
            "drp_median": round(self.drp_median, 3),
            "raw_min": round(min(s.seconds for s in self.raw), 3),
            "drp_min": round(min(s.seconds for s in self.drp), 3),
            "overhead_percent": round(self.overhead * 100, 1),
            "raw_local_cpu_seconds": [round(s.cpu, 3) for s in self.raw],
            "drp_local_cpu_seconds": [round(s.cpu, 3) for s in self.drp],
            "reference_only": self.reference,
            "within_threshold": self.within_threshold,
            "raw_command": self.raw_command,
            "drp_call": self.drp_call,
        }


def timed(call: Callable[[], object], who: int) -> Sample:
    """Wall time of `call`, and the CPU time `who` (RUSAGE_SELF or _CHILDREN) spent on it."""
    before = resource.getrusage(who)
    started = time.perf_counter()
    call()
    seconds = time.perf_counter() - started
    after = resource.getrusage(who)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return Sample(seconds, cpu)


def human_bytes(n: float) -> str:
    return f"{n / GiB:.2f} GiB" if n >= GiB else f"{n / MiB:.1f} MiB"


def tool_versions() -> dict[str, str]:
    """The tools' versions (the lab hosts run this machine's binaries)."""
    versions = {}
    for tool, argv in {
        "rsync": ["rsync", "--version"],
        "openssh": ["ssh", "-V"],
        "pg_restore": ["/usr/lib/postgresql/15/bin/pg_restore", "--version"],
        "mariadb": ["mariadb", "--version"],
    }.items():
        done = subprocess.run(argv, capture_output=True, text=True, check=False)
        versions[tool] = " ".join((done.stdout or done.stderr).split()[:6])
    return versions


@contextmanager
def lab_to_ourselves(say: Callable[[str], None]) -> Iterator[None]:
    """Hold the lab's session lock exclusively for the whole benchmark.

    Test sessions hold the lab's `sessions.lock` shared while they use the lab. The benchmark
    re-seeds production and needs a quiet lab for fair figures, so it waits for running
    sessions to end, and new ones wait for it.
    """
    path = topology.paths().root / "sessions.lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as handle:
        deadline = time.monotonic() + LOCK_WAIT_S
        waiting = False
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError as err:
                if not waiting:
                    say(f"waiting for the test sessions that use the lab to end ({path})")
                    waiting = True
                if time.monotonic() > deadline:
                    raise BenchError(
                        f"the lab stayed in use by test sessions for {LOCK_WAIT_S:.0f} s ({path})"
                    ) from err
                time.sleep(1)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


@contextmanager
def progress_bar(events: list[CopyProgress]) -> Iterator[Callable[[CopyProgress], None]]:
    """A rich progress bar fed by every update, as `drp activate` shows a copy; drawn into a
    buffer (same work, 10 frames a second) so that it does not clutter the benchmark's output.
    """
    console = Console(file=io.StringIO(), force_terminal=True, width=100)
    bar = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.percentage:>5.1f}%"),
        TimeElapsedColumn(),
        console=console,
    )
    task = bar.add_task("copy", total=100)

    def on_progress(update: CopyProgress) -> None:
        events.append(update)
        bar.update(task, completed=update.percent)

    with bar:
        yield on_progress


# -- the benchmark ----------------------------------------------------------------------------


class Bench:
    """Runs the measurements in scratch places named after this process, and cleans them up."""

    def __init__(self, site: Site, repeat: int, say: Callable[[str], None]) -> None:
        self.site = site
        self.repeat = repeat
        self.say = say
        self.scratch = f"bench-{os.getpid()}"  # directory in the homes of production and drp
        self.db_prefix = f"bench_{os.getpid()}_"  # databases on drp
        self.drp_target = connect.ssh_target(site, "drp")
        self.env = site.environments[0]

    # ---- helpers

    @contextmanager
    def host(self, role: Role) -> Iterator[SshHost]:
        with connect.ssh_host(self.site, role) as host:
            yield host

    def raw_ssh(self, remote: str, stdin: str = "") -> Sample:
        """Run `remote` on drp with a plain ssh, timed."""
        argv = ssh_command(self.drp_target, remote)
        done: list[subprocess.CompletedProcess[str]] = []

        def call() -> None:
            done.append(
                subprocess.run(argv, input=stdin, capture_output=True, text=True, check=False)
            )

        sample = timed(call, resource.RUSAGE_CHILDREN)
        if done[0].returncode != 0:
            tail = "\n".join(done[0].stderr.strip().splitlines()[-8:])
            raise BenchError(f"raw command failed on drp (exit {done[0].returncode}): {tail}")
        return sample

    def measure(self, what: str, runs: dict[str, Run]) -> dict[str, list[Sample]]:
        """`repeat` runs of each, the order rotating from one repeat to the next."""
        samples: dict[str, list[Sample]] = {label: [] for label in runs}
        labels = list(runs)
        for n in range(1, self.repeat + 1):
            shift = (n - 1) % len(labels)
            for label in labels[shift:] + labels[:shift]:
                os.sync()  # the previous run's dirty pages are written before the clock starts
                sample = runs[label](n)
                samples[label].append(sample)
                self.say(
                    f"  {what} #{n}: {label} {sample.seconds:.2f} s (local CPU {sample.cpu:.2f} s)"
                )
        return samples

    def count_files(self, host: SshHost, path: str) -> int:
        found = host.run(["sh", "-c", 'find "$1" -type f | wc -l', "sh", path])
        return int(found.stdout.strip())

    def remove_on(self, host: SshHost, path: str) -> None:
        host.run(["rm", "-rf", "--", path])

    # ---- file copy

    def file_copy(self, seed: seeding.SeedReport) -> list[Result]:
        """drp's copy against the very rsync command it runs, and against a plain `rsync -aH`."""
        source = connect.remote_endpoint(
            self.site, "production", topology.APP_FILES_DIR, receiver="drp"
        )
        options = CopyOptions()
        data = f"{seed.file_count:,} files, {human_bytes(seed.file_bytes)}"
        drp_call = (
            "providers.rsync.copy_tree(drp, production:srv/app/www, "
            f"{self.scratch}/drp-N, CopyOptions(), <rich progress bar>)"
        )
        with self.host("drp") as drp:
            drp.run(["mkdir", "-p", "--", self.scratch])

            def checked(dest: str) -> None:  # every way must have done the whole job
                count = self.count_files(drp, dest)
                if count != seed.file_count:
                    raise BenchError(f"{dest} holds {count} files, not {seed.file_count}")
                self.remove_on(drp, dest)

            def raw_run(build: Callable[[str], list[str]], name: str) -> Run:
                def run(n: int) -> Sample:
                    dest = f"{self.scratch}/{name}-{n}"
                    sample = self.raw_ssh(shell_line(build(dest)))
                    checked(dest)
                    return sample

                return run

            def with_drp(n: int) -> Sample:
                dest = f"{self.scratch}/drp-{n}"
                events: list[CopyProgress] = []

                def call() -> None:
                    with self.host("drp") as receiver, progress_bar(events) as on_progress:
                        copy_tree(receiver, source, dest, options, on_progress)

                sample = timed(call, resource.RUSAGE_SELF)
                if not events:
                    raise BenchError("copy_tree reported no progress")
                checked(dest)
                return sample

            same = raw_run(lambda dest: copy_argv(source, dest, options), "raw")
            plain = raw_run(lambda dest: plain_rsync_argv(source, dest, options), "plain")
            self.say("file copy: warm-up copy (untimed) to bring the source into page cache")
            same(0)
            samples = self.measure("file copy", {"raw": same, "plain": plain, "drp": with_drp})
        return [
            Result(
                what="file copy",
                data=data,
                raw_command=shell_line(copy_argv(source, f"{self.scratch}/raw-N", options)),
                drp_call=drp_call,
                raw=samples["raw"],
                drp=samples["drp"],
            ),
            Result(
                what="file copy vs plain rsync -aH (reference)",
                data=data,
                raw_command=shell_line(
                    plain_rsync_argv(source, f"{self.scratch}/plain-N", options)
                ),
                drp_call=drp_call,
                raw=samples["plain"],
                drp=samples["drp"],
                reference=True,
            ),
        ]

    # ---- database restores

    def dumps(self) -> dict[str, DumpResult]:
        """One dump per database, made on production by drp's dump functions, copied to drp."""
        directory = f"{self.scratch}/dumps"
        made: dict[str, DumpResult] = {}
        with self.host("production") as production:
            for db in self.env.databases:
                engine = postgres if db.engine == "postgresql" else mysql
                path = f"{directory}/{db.name}.{dump_extension(db.engine)}"
                made[db.name] = engine.dump(
                    production,
                    connect.db_endpoint(self.site, db, "production"),
                    connect.database_password(self.site, db),
                    path,
                )
                self.say(f"dumped {db.name}: {human_bytes(made[db.name].size_bytes)}")
        source = connect.remote_endpoint(self.site, "production", directory, receiver="drp")
        with self.host("drp") as drp:
            copy_tree(drp, source, directory)
        return made

    def restore(self, db: Database, dump: DumpResult) -> Result:
        is_pg = db.engine == "postgresql"
        engine = postgres if is_pg else mysql
        base = connect.db_endpoint(self.site, db, "drp")
        password = connect.database_password(self.site, db)
        stdin = f"{password.reveal()}\n"
        rows = sum((dump.table_counts or {}).values())
        raw_script = raw_pg_restore if is_pg else raw_mysql_restore
        what = f"restore {db.engine} ({db.name})"

        def checked(endpoint: DbEndpoint) -> None:
            counts = engine.table_counts(endpoint, password)
            if counts != dump.table_counts:
                raise BenchError(f"{endpoint.label} holds {counts}, not {dump.table_counts}")
            self.drop_databases(db, endpoint.dbname)

        def raw(n: int) -> Sample:
            endpoint = base.with_dbname(f"{self.db_prefix}{db.engine}_raw_{n}")
            sample = self.raw_ssh(raw_script(endpoint, dump.path), stdin=stdin)
            checked(endpoint)
            return sample

        def with_drp(n: int) -> Sample:
            endpoint = base.with_dbname(f"{self.db_prefix}{db.engine}_drp_{n}")
            extra: dict[str, Any] = {"jobs": JOBS} if is_pg else {}
            done: list[RestoreResult] = []

            def call() -> None:
                with self.host("drp") as drp:
                    done.append(
                        engine.restore(
                            drp,
                            dump.path,
                            endpoint,
                            password,
                            backup_id=BACKUP_ID,
                            manifest_digest=BACKUP_ID,
                            operation_id=f"bench-{os.getpid()}",
                            expected_sha256=dump.sha256,
                            **extra,
                        )
                    )

            sample = timed(call, resource.RUSAGE_SELF)
            if done[0].action != "restored":
                raise BenchError(f"drp did not restore {endpoint.label}: {done[0].reason}")
            checked(endpoint)
            return sample

        self.say(f"{what}: warm-up restore (untimed)")
        raw(0)
        samples = self.measure(what, {"raw": raw, "drp": with_drp})
        return Result(
            what=what,
            data=f"{rows:,} rows, dump {human_bytes(dump.size_bytes)}",
            raw_command=raw_script(
                base.with_dbname(f"{self.db_prefix}{db.engine}_raw_N"), dump.path
            ),
            drp_call=f"providers.{engine.__name__.rsplit('.', 1)[-1]}.restore(drp, {dump.path}, "
            f"drp/{self.db_prefix}{db.engine}_drp_N"
            + (f", jobs={JOBS}" if is_pg else "")
            + ", expected_sha256=<the dump's>)",
            raw=samples["raw"],
            drp=samples["drp"],
        )

    def restores(self) -> list[Result]:
        made = self.dumps()
        return [self.restore(db, made[db.name]) for db in self.env.databases]

    # ---- clean-up

    def drop_databases(self, db: Database, prefix: str) -> list[str]:
        """Drop the databases on drp whose name starts with `prefix`; returns their names."""
        endpoint = connect.db_endpoint(self.site, db, "drp")
        password = connect.database_password(self.site, db)
        like = prefix.replace("\\", "\\\\").replace("_", "\\_").replace("%", "\\%") + "%"
        if db.engine == "postgresql":
            return drop_postgres(endpoint, password, like)
        return drop_mysql(endpoint, password, like)

    def cleanup(self) -> list[str]:
        """Remove everything the benchmark made; returns what could not be removed."""
        failed = []
        for db in self.env.databases:
            try:
                dropped = self.drop_databases(db, self.db_prefix)
                if dropped:
                    self.say(f"dropped leftover databases: {', '.join(dropped)}")
            except Exception as err:  # keep cleaning the rest
                failed.append(f"databases {self.db_prefix}* ({db.engine}) on drp: {err}")
        for role in ("drp", "production"):
            try:
                with self.host(role) as host:
                    self.remove_on(host, self.scratch)
            except Exception as err:
                failed.append(f"{role}:{self.scratch}: {err}")
        return failed


def drop_postgres(endpoint: DbEndpoint, password: Secret, like: str) -> list[str]:
    with psycopg.connect(
        host=endpoint.address,
        port=endpoint.port,
        user=endpoint.user,
        password=password.reveal(),
        dbname=postgres.MAINTENANCE_DB,
        autocommit=True,
    ) as conn:
        names = [
            row[0]
            for row in conn.execute(
                "SELECT datname FROM pg_database WHERE datname LIKE %s", (like,)
            ).fetchall()
        ]
        for name in names:
            conn.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name)))
    return names


def drop_mysql(endpoint: DbEndpoint, password: Secret, like: str) -> list[str]:
    conn = pymysql.connect(
        host=endpoint.address,
        port=endpoint.port,
        user=endpoint.user,
        password=password.reveal(),
        autocommit=True,
    )
    with conn, conn.cursor() as cursor:
        cursor.execute(
            "SELECT SCHEMA_NAME FROM information_schema.SCHEMATA WHERE SCHEMA_NAME LIKE %s",
            (like,),
        )
        names = [str(row[0]) for row in cursor.fetchall()]
        for name in names:
            cursor.execute(f"DROP DATABASE `{name}`")
    return names


# -- output -----------------------------------------------------------------------------------


def verdict(results: Sequence[Result]) -> str:
    held = [r for r in results if not r.reference]
    over = [f"{r.what} {r.overhead:+.1%}" for r in held if not r.within_threshold]
    if not over:
        return f"every drp overhead is under {THRESHOLD:.0%}"
    return f"drp overhead is {THRESHOLD:.0%} or more for: {', '.join(over)}"


def table(results: Sequence[Result], repeat: int) -> Table:
    t = Table(title=f"drp vs raw tools: wall time, median of {repeat} runs (and min)")
    columns = ("what", "data", "raw", "drp", "overhead", "raw min", "drp min", "local CPU raw/drp")
    for column in columns:
        t.add_column(column, justify="left" if column in ("what", "data") else "right")
    for r in results:
        style = "dim" if r.reference else "green" if r.within_threshold else "red"
        cpu_raw = statistics.median(s.cpu for s in r.raw)
        cpu_drp = statistics.median(s.cpu for s in r.drp)
        t.add_row(
            r.what,
            r.data,
            f"{r.raw_median:.2f} s",
            f"{r.drp_median:.2f} s",
            f"[{style}]{r.overhead:+.1%}[/{style}]",
            f"{min(s.seconds for s in r.raw):.2f} s",
            f"{min(s.seconds for s in r.drp):.2f} s",
            f"{cpu_raw:.2f} / {cpu_drp:.2f} s",
        )
    return t


def print_report(out: Console, figures: dict[str, Any], results: Sequence[Result]) -> None:
    machine = figures["machine"]
    out.print()
    out.print(f"machine: {machine['cpus']} CPUs; " + "; ".join(machine["tools"].values()))
    out.print(
        f"load average before/after: {machine['load_before']:.2f} / {machine['load_after']:.2f} "
        "(anything else running on the machine skews the figures)"
    )
    out.print(figures["method"])
    out.print(table(results, figures["repeat"]))
    for r in results:
        out.print(f"[bold]{r.what}[/bold]", highlight=False)
        out.print(f"  raw: ssh drp {r.raw_command}", highlight=False, markup=False)
        out.print(f"  drp: {r.drp_call}", highlight=False, markup=False)
    style = "green" if figures["all_under_threshold"] else "red"
    out.print(f"[{style}]{figures['verdict']}[/{style}]")


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Time drp against the raw tools (rsync, pg_restore, mariadb) on lab data."
    )
    parser.add_argument("--files-mb", type=int, default=1024, help="MiB of files (default 1024)")
    parser.add_argument(
        "--rows", type=int, default=1_000_000, help="rows over both databases (default 1000000)"
    )
    parser.add_argument("--repeat", type=int, default=3, help="timed runs of each (default 3)")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    parser.add_argument(
        "--keep-lab-size",
        action="store_true",
        help="leave production seeded at the benchmark's size afterwards",
    )
    args = parser.parse_args(argv)
    if args.repeat < 1:
        parser.error("--repeat must be at least 1")
    return args


def run_bench(
    args: argparse.Namespace, say: Callable[[str], None]
) -> tuple[dict[str, Any], list[Result]]:
    """Seed, measure, clean up, seed back; the figures, and the results they come from."""
    previous = seeding.read_seed(topology.paths())
    say(f"lab: up with {args.files_mb} MiB of files and {args.rows:,} rows (seeds if needed)")
    seed = api.up(files_mb=args.files_mb, rows=args.rows).seed
    if seed is None:
        raise BenchError("the lab reports no seeding of production")
    pg_rows, my_rows = sum(seed.postgresql_rows.values()), sum(seed.mysql_rows.values())
    say(
        f"data: {seed.file_count:,} files, {seed.file_bytes:,} bytes "
        f"({human_bytes(seed.file_bytes)}); PostgreSQL {topology.APP_PG_DB} {pg_rows:,} rows, "
        f"MariaDB {topology.APP_MYSQL_DB} {my_rows:,} rows"
    )
    load_before = os.getloadavg()[0]
    bench = Bench(load_site(LAB_CONFIG), args.repeat, say)
    try:
        results = bench.file_copy(seed) + bench.restores()
    finally:
        for line in bench.cleanup():
            say(f"[red]could not clean up[/red] {line}")
        if previous is not None and previous.size != seed.size and not args.keep_lab_size:
            say(
                f"lab: seeding production back to {previous.size.files_mb} MiB, "
                f"{previous.size.rows:,} rows"
            )
            api.up(files_mb=previous.size.files_mb, rows=previous.size.rows)
    figures = {
        "machine": {
            "cpus": os.cpu_count(),
            "load_before": load_before,
            "load_after": os.getloadavg()[0],
            "tools": tool_versions(),
        },
        "data": {
            "files": seed.file_count,
            "file_bytes": seed.file_bytes,
            "postgresql_rows": pg_rows,
            "mysql_rows": my_rows,
        },
        "repeat": args.repeat,
        "method": "each operation: one untimed warm-up run, then the ways in turn, the order "
        "rotating from one repeat to the next; each run opens its own connection and writes "
        "to a new directory or database",
        "results": [r.as_dict() for r in results],
        "threshold_percent": THRESHOLD * 100,
        "all_under_threshold": all(r.within_threshold for r in results),
        "verdict": verdict(results),
    }
    return figures, results


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    # A log file gets the table at a readable width, not rich's 80 columns.
    out = Console() if sys.stdout.isatty() else Console(width=140)
    say = Console(stderr=True).print if args.json else out.print
    try:
        with lab_to_ourselves(say):
            figures, results = run_bench(args, say)
    except (Exception, KeyboardInterrupt) as err:
        say(f"[red]benchmark failed:[/red] {err}")
        return 1
    if args.json:
        print(json.dumps(figures, indent=2))
    else:
        print_report(out, figures, results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
