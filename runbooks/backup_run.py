"""Making backups: plain functions, one per step, sequenced by `run_job` (and by the flows).

A job writes one set (see `runbooks.manifest`) of one environment to one or two backup servers:

1. `open_set`: create the set directory on each backup server (mkdir, so two runs never share
   one) and find the previous complete set there, whose trees serve as rsync `--link-dest`;
2. `copy_tree`, per file and config tree: rsync runs on the backup server and pulls from
   production; unchanged files are hard links to the previous set; the tree's file count, bytes
   and listing digest are then computed on the backup server;
3. `stage_dump`, per database: the dump is made on production (pg_dump / mariadb-dump) into
   `STAGING_DIR` under the production user's home, with the row count of each table;
4. `fetch_dump`, per database and server: the backup server pulls the dump with rsync and checks
   its size and sha256 against the one computed on production;
5. `clear_staging`: the staged dumps are removed from production (and stale ones left by an
   interrupted run);
6. `write_manifest`: last, atomically (temporary name, then rename on the backup server): only
   now is the set complete;
7. `apply_retention`: the newest `retention` complete sets of each kind are kept per environment
   and server; older ones, and incomplete sets older than `INCOMPLETE_GRACE`, are removed.

A failure anywhere leaves the set without a manifest: the catalogue lists it as incomplete and
never restores it. Nothing here knows about Prefect; `flows.backup` turns each step into a task.
"""

from __future__ import annotations

import logging
import posixpath
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any, Literal, TypeVar

from providers.commands import CommandRunner
from providers.database import engine_for
from providers.dbcommon import DatabaseError
from providers.rsync import CopyOptions, CopyResult, RemoteEndpoint, RsyncError
from providers.rsync import copy_tree as rsync_copy
from providers.ssh import SshError
from runbooks import manifest as mf
from runbooks.backups import BackupServer, BackupSet, Catalogue, SetStatus
from runbooks.connect import (
    HostPool,
    database_password,
    db_endpoint,
    environment_trees,
    host_name,
    one_file_filter,
    remote_endpoint,
)
from runbooks.errors import ConfigError, DrpError, ProviderError, StepFailed, VerifyFailed
from runbooks.inventory import Database, Role, Site, Tree
from runbooks.manifest import DumpRecord, Manifest, Parity, SetKind, TreeRecord, TreeSection
from runbooks.render import human_duration

log = logging.getLogger(__name__)

STAGING_DIR = ".drp-staging"  # on production, under the SSH user's home
INCOMPLETE_GRACE = timedelta(hours=12)  # an incomplete set younger than this may still be running

Only = Literal["files", "databases", "user-databases"]
T = TypeVar("T")


def server_of_the_day(parity: Parity) -> Role:
    return "backup_even" if parity is Parity.EVEN else "backup_odd"


@dataclass(frozen=True)
class BackupJob:
    """One set to write: which environment, what, to which backup servers, under which id."""

    environment: str
    kind: SetKind
    servers: tuple[Role, ...]
    started: datetime
    parity: Parity

    @property
    def set_id(self) -> str:
        return mf.make_set_id(self.started, self.kind)

    @property
    def server_names(self) -> list[str]:
        return [host_name(r) for r in self.servers]

    def describe(self) -> str:
        return (
            f"{self.kind.value} backup of {self.environment} as set {self.set_id} to "
            f"{' and '.join(self.server_names)} ({self.parity.value} day)"
        )


def _now() -> datetime:
    return datetime.now(UTC)


def _environments(site: Site, names: Sequence[str] | None) -> list[str]:
    if not names:
        return [e.name for e in site.environments]
    for name in names:
        site.environment(name)  # ConfigError naming the known ones
    return list(names)


def plan_environment_backup(
    site: Site,
    *,
    environments: Sequence[str] | None = None,
    only: Only | None = None,
    parity: Parity | str | None = None,
    now: datetime | None = None,
) -> list[BackupJob]:
    """The daily backup: files, configs and every database (or `only` one part), to the
    even-day server on even days of the UTC date and to the odd-day server on odd days."""
    if only == "user-databases":
        return plan_user_database_backup(site, environments=environments, parity=parity, now=now)
    started = (now or _now()).replace(microsecond=0)
    day = Parity(parity) if parity else mf.day_parity(started)
    kind = {None: SetKind.DAILY, "files": SetKind.FILES, "databases": SetKind.DATABASES}[only]
    return [
        BackupJob(name, kind, (server_of_the_day(day),), started, day)
        for name in _environments(site, environments)
    ]


def plan_user_database_backup(
    site: Site,
    *,
    environments: Sequence[str] | None = None,
    parity: Parity | str | None = None,
    both: bool | None = None,
    now: datetime | None = None,
) -> list[BackupJob]:
    """The 2-hourly backup of the user databases, to the server of the day or to both servers
    (`backups.user_db_to_both_servers`, overridden by `both`). Environments without a user
    database are left out."""
    started = (now or _now()).replace(microsecond=0)
    day = Parity(parity) if parity else mf.day_parity(started)
    to_both = site.backups.user_db_to_both_servers if both is None else both
    servers: tuple[Role, ...] = (
        ("backup_even", "backup_odd") if to_both else (server_of_the_day(day),)
    )
    return [
        BackupJob(name, SetKind.USER_DATABASES, servers, started, day)
        for name in _environments(site, environments)
        if any(db.user_database for db in site.environment(name).databases)
    ]


def job_databases(site: Site, job: BackupJob) -> list[Database]:
    if not job.kind.has_databases:
        return []
    dbs = site.environment(job.environment).databases
    return [db for db in dbs if db.user_database] if job.kind.user_databases_only else list(dbs)


def job_trees(site: Site, job: BackupJob) -> list[tuple[TreeSection, str, Tree]]:
    return environment_trees(site.environment(job.environment)) if job.kind.has_trees else []


# -- context -----------------------------------------------------------------------------------

Say = Callable[[str], None]
Progress = Callable[[str, float], None]  # (what, percent 0-100)


class BackupContext:
    """The site, open connections, and where to report; passed to every step."""

    def __init__(
        self,
        site: Site,
        pool: HostPool | None = None,
        *,
        say: Say | None = None,
        progress: Progress | None = None,
    ) -> None:
        self.site = site
        self.pool = pool or HostPool(site)
        self.say: Say = say or (lambda message: log.info("%s", message))
        self.progress: Progress = progress or (lambda what, percent: None)

    def runner(self, role: Role) -> CommandRunner:
        """The host's runner for the backup's long work: copies, tree statistics, dumps
        (`timeouts.copy_seconds` per command)."""
        return self.pool.copying(role)

    def close(self) -> None:
        self.pool.close()

    @property
    def area(self) -> str:
        return self.site.backups.area


# -- results -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class OpenedSet:
    """A set directory created on one backup server."""

    server: Role
    environment: str
    set_id: str
    path: str
    previous: dict[str, str] = field(default_factory=dict)  # tree relpath -> previous set id


@dataclass(frozen=True)
class StagedDump:
    """A dump waiting on production for the backup servers to pull it."""

    database: str
    engine: Literal["postgresql", "mysql"]
    user_database: bool
    staging_dir: str  # holds only this dump
    filename: str
    size: int
    sha256: str
    format: str
    dumped_at: datetime
    tables: dict[str, int]
    counts_exact: bool

    @property
    def path(self) -> str:
        return f"{self.staging_dir}/{self.filename}"


@dataclass(frozen=True)
class Removal:
    set_id: str
    reason: str


@dataclass(frozen=True)
class RetentionResult:
    server: str
    environment: str
    kept: tuple[str, ...]
    removed: tuple[Removal, ...]

    def summary(self) -> str:
        head = f"retention on {self.server}/{self.environment}: kept {len(self.kept)} sets"
        if not self.removed:
            return f"{head}, removed none"
        gone = "; ".join(f"{r.set_id} ({r.reason})" for r in self.removed)
        return f"{head}, removed {len(self.removed)}: {gone}"


@dataclass
class JobOutcome:
    job: BackupJob
    manifests: dict[str, Manifest] = field(default_factory=dict)  # server -> manifest
    retention: list[RetentionResult] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    seconds: float = 0.0
    error: str | None = None  # why the job failed (its set keeps no manifest)

    def summary(self) -> str:
        if self.error:
            return f"{self.job.describe()} FAILED: {self.error}"
        sample = next(iter(self.manifests.values()), None)
        if sample is None:
            return f"{self.job.describe()}: nothing written"
        trees = ", ".join(f"{t.path} {t.files} files" for t in sample.trees)
        dumps = ", ".join(f"{d.database} {d.size} bytes" for d in sample.databases)
        parts = [p for p in (trees, dumps) if p]
        return (
            f"{sample.environment}: set {sample.set_id} complete on {', '.join(self.manifests)} "
            f"({'; '.join(parts)}; {sample.bytes} bytes) in {self.seconds:.1f} s"
        )

    @property
    def data(self) -> dict[str, Any]:
        return {
            "environment": self.job.environment,
            "set_id": self.job.set_id,
            "kind": self.job.kind.value,
            "servers": list(self.manifests),
            "bytes": {s: m.bytes for s, m in self.manifests.items()},
            "removed": {r.server: [x.set_id for x in r.removed] for r in self.retention},
            "warnings": list(self.warnings),
            "seconds": round(self.seconds, 3),
            "error": self.error,
        }


# -- steps -------------------------------------------------------------------------------------


def _server(ctx: BackupContext, role: Role) -> BackupServer:
    return BackupServer(host_name(role), role, ctx.area, ctx.pool[role])  # short listings


def _sets_on(ctx: BackupContext, role: Role, environment: str) -> list[BackupSet]:
    catalogue = Catalogue([_server(ctx, role)])
    sets = catalogue.sets(environment)
    if catalogue.unreachable:
        raise ProviderError(
            f"cannot list the backup sets on {host_name(role)}: {catalogue.unreachable}"
        )
    return sets


def open_set(ctx: BackupContext, job: BackupJob, role: Role) -> OpenedSet:
    """Create the set directory (refusing one that exists) and find the trees to link to."""
    runner = ctx.runner(role)
    path = mf.set_dir(ctx.area, job.environment, job.set_id)
    previous: dict[str, str] = {}
    if job.kind.has_trees:
        for s in _sets_on(ctx, role, job.environment):  # newest first
            if s.status is SetStatus.COMPLETE and s.manifest is not None:
                for tree in s.manifest.trees:
                    previous.setdefault(tree.path, s.set_id)
    # mkdir (not -p) of the set itself: of two runs that pick the same id, only one goes on.
    script = 'mkdir -p -- "$1" && mkdir -- "$2" && { [ "$3" = no ] || mkdir -- "$2/databases"; }'
    dbs = "yes" if job.kind.has_databases else "no"
    argv = ["sh", "-c", script, "sh", posixpath.dirname(path), path, dbs]
    result = runner.run(argv, check=False)
    if not result.ok:
        raise StepFailed(
            f"cannot create the set directory {host_name(role)}:{path}: "
            f"{result.stderr.strip() or 'exit ' + str(result.exit_code)}; if it exists, another "
            "backup of this kind started in the same second: run again"
        )
    ctx.say(f"{host_name(role)}: opened set {job.environment}/{job.set_id}")
    return OpenedSet(role, job.environment, job.set_id, path, previous)


def source_kind_argv(path: str) -> list[str]:
    """Prints `dir`, `file` or `missing` for `path` on the host."""
    script = (
        'if [ -d "$1" ]; then echo dir; elif [ -e "$1" ]; then echo file; else echo missing; fi'
    )
    return ["sh", "-c", script, "sh", path]


def tree_copy_options(tree: Tree, *, link_dest: str | None, only_name: str | None) -> CopyOptions:
    """How a tree is pulled into a set: exactly the source (`--delete`, for a retry into the same
    set), its excludes, unchanged files hard-linked to the previous set, and for a single-file
    tree, that one file of its directory."""
    if only_name is not None:
        includes, excludes = one_file_filter(only_name)
        return CopyOptions(delete=True, includes=includes, excludes=excludes, link_dest=link_dest)
    return CopyOptions(delete=True, excludes=tuple(tree.exclude), link_dest=link_dest)


def _pull(
    ctx: BackupContext,
    role: Role,
    source: RemoteEndpoint,
    dest: str,
    options: CopyOptions,
    what: str,
) -> CopyResult:
    """rsync on the backup server pulling from production, with progress; StepFailed on error."""
    options = replace(options, io_timeout=round(ctx.site.timeouts.copy_idle_seconds))
    try:
        result = rsync_copy(
            ctx.runner(role),
            source,
            dest,
            options,
            on_progress=lambda p: ctx.progress(what, float(p.percent)),
        )
    except RsyncError as err:
        raise StepFailed(str(err)) from err
    ctx.progress(what, 100.0)
    if result.vanished_files:
        changed = f"changed on {source.name}"
        ctx.say(f"{what}: files vanished during the copy ({changed}): {result.warnings[:200]}")
    return result


def _tree(ctx: BackupContext, job: BackupJob, section: TreeSection, name: str) -> Tree:
    for s, n, tree in job_trees(ctx.site, job):
        if (s, n) == (section, name):
            return tree
    raise ConfigError(f"environment {job.environment} has no {section.value} tree named {name!r}")


def copy_tree(
    ctx: BackupContext, job: BackupJob, opened: OpenedSet, section: TreeSection, name: str
) -> TreeRecord:
    """Pull one tree from production into the set, then measure it on the backup server."""
    tree = _tree(ctx, job, section, name)
    production = ctx.runner("production")
    found = production.run(source_kind_argv(tree.path)).stdout.strip()
    if found == "missing":
        raise StepFailed(
            f"{tree.path} does not exist on production: fix the path of this {section.value} "
            f"tree of {job.environment} in the inventory, or create it"
        )
    is_file = found == "file"
    rel = mf.tree_relpath(section, name)
    dest = f"{opened.path}/{rel}"
    source_dir = (posixpath.dirname(tree.path) or ".") if is_file else tree.path
    source = remote_endpoint(ctx.site, "production", source_dir, receiver=opened.server)
    previous = opened.previous.get(rel)
    # Relative to the destination: <area>/<env>/<set>/<section>/<tree> -> up three levels.
    link_dest = f"../../../{previous}/{rel}" if previous else None
    only = posixpath.basename(tree.path) if is_file else None
    options = tree_copy_options(tree, link_dest=link_dest, only_name=only)
    copied_at = _now()
    what = f"{host_name(opened.server)}: {rel}"
    sent = _pull(ctx, opened.server, source, dest, options, what).bytes_transferred
    stats = ctx.runner(opened.server).run(mf.tree_stats_argv(dest))
    digest, files, size = mf.parse_tree_stats(stats.stdout)
    linked = f", unchanged files linked to {previous}" if previous else ""
    ctx.say(f"{what}: {files} files, {size} bytes ({sent} bytes copied{linked})")
    return TreeRecord(
        section=section,
        name=name,
        source=tree.path,
        path=rel,
        source_is_file=is_file,
        files=files,
        bytes=size,
        digest=digest,
        copied_at=copied_at,
        linked_to=previous,
        transferred_bytes=sent,
    )


def _database(ctx: BackupContext, job: BackupJob, name: str) -> Database:
    for db in job_databases(ctx.site, job):
        if db.name == name:
            return db
    raise ConfigError(
        f"environment {job.environment} has no database {name!r} in a {job.kind.value} backup"
    )


def stage_dump(ctx: BackupContext, job: BackupJob, database: str) -> StagedDump:
    """Dump one database on production into the staging directory, counting its rows."""
    db = _database(ctx, job, database)
    production = ctx.pool.database_work("production")
    staging = f"{STAGING_DIR}/{job.environment}/{job.set_id}/{db.name}"
    production.run(mf.remove_tree_argv(staging))  # a retry starts clean
    filename = posixpath.basename(mf.dump_relpath(db.name, db.engine))
    path = f"{staging}/{filename}"
    endpoint = db_endpoint(ctx.site, db, "production")
    password = database_password(ctx.site, db)
    dumped_at = _now()
    try:
        result = engine_for(db.engine).dump(production, endpoint, password, path)
    except DatabaseError as err:
        raise StepFailed(f"dump of {endpoint.label}: {err}") from err
    tables = dict(result.table_counts or {})
    ctx.say(
        f"production: dumped {db.name} ({db.engine}), {result.size_bytes} bytes, "
        f"{len(tables)} tables, {sum(tables.values())} rows"
    )
    return StagedDump(
        database=db.name,
        engine=db.engine,
        user_database=db.user_database,
        staging_dir=staging,
        filename=filename,
        size=result.size_bytes,
        sha256=result.sha256,
        format=result.format,
        dumped_at=dumped_at,
        tables=tables,
        counts_exact=result.counts_exact,
    )


def fetch_dump(ctx: BackupContext, opened: OpenedSet, staged: StagedDump) -> DumpRecord:
    """Pull a staged dump into the set; its size and sha256 must match production's."""
    source = remote_endpoint(ctx.site, "production", staged.staging_dir, receiver=opened.server)
    dest = f"{opened.path}/databases"
    what = f"{host_name(opened.server)}: databases/{staged.filename}"
    _pull(ctx, opened.server, source, dest, CopyOptions(delete=False), what)
    rel = f"databases/{staged.filename}"
    found = mf.parse_file_stats(
        ctx.runner(opened.server).run(mf.file_stats_argv([f"{opened.path}/{rel}"])).stdout
    )
    actual = next(iter(found.values()), None)
    if actual != (staged.size, staged.sha256):
        raise VerifyFailed(
            f"{what}: after the copy the file is {actual or 'missing'}, production had "
            f"({staged.size}, {staged.sha256}); the set stays incomplete: run the backup again"
        )
    ctx.say(f"{what}: copied, sha256 verified")
    return DumpRecord(
        database=staged.database,
        engine=staged.engine,
        user_database=staged.user_database,
        path=rel,
        format=staged.format,
        size=staged.size,
        sha256=staged.sha256,
        dumped_at=staged.dumped_at,
        tables=staged.tables,
        counts_exact=staged.counts_exact,
    )


def clear_staging_argv(environment: str, set_id: str, stale_minutes: int) -> list[str]:
    """Removes this set's staged dumps and any staged set older than `stale_minutes`."""
    script = (
        'rm -rf -- "$1/$2/$3"; '
        '[ -d "$1/$2" ] && find "$1/$2" -mindepth 1 -maxdepth 1 -type d -mmin +"$4" '
        "-exec rm -rf -- {} + ; "
        'rmdir -- "$1/$2" "$1" 2>/dev/null; true'
    )
    return ["sh", "-c", script, "sh", STAGING_DIR, environment, set_id, str(stale_minutes)]


def clear_staging(ctx: BackupContext, job: BackupJob) -> None:
    minutes = int(INCOMPLETE_GRACE.total_seconds() // 60)
    ctx.runner("production").run(clear_staging_argv(job.environment, job.set_id, minutes))


def write_manifest(
    ctx: BackupContext,
    job: BackupJob,
    opened: OpenedSet,
    trees: Sequence[TreeRecord],
    dumps: Sequence[DumpRecord],
) -> Manifest:
    """Write the manifest last, atomically; refuse if anything the job promised is missing."""
    want_trees = {mf.tree_relpath(s, n) for s, n, _ in job_trees(ctx.site, job)}
    want_dbs = {db.name for db in job_databases(ctx.site, job)}
    missing = sorted(want_trees - {t.path for t in trees}) + sorted(
        want_dbs - {d.database for d in dumps}
    )
    if missing:
        raise StepFailed(
            f"set {opened.set_id} on {host_name(opened.server)} lacks {', '.join(missing)}; "
            "no manifest written, so it stays incomplete"
        )
    manifest = Manifest(
        set_id=job.set_id,
        kind=job.kind,
        environment=job.environment,
        source_host=host_name("production"),
        backup_host=host_name(opened.server),
        started=job.started,
        completed=_now(),
        trees=list(trees),
        databases=list(dumps),
    )
    target = f"{opened.path}/{mf.MANIFEST_NAME}"
    ctx.runner(opened.server).run(mf.write_file_atomically_argv(target), stdin=manifest.to_json())
    ctx.say(
        f"{host_name(opened.server)}: set {job.environment}/{job.set_id} complete, manifest written"
    )
    return manifest


# -- retention ---------------------------------------------------------------------------------


def retention_plan(
    sets: Sequence[BackupSet], keep: int, now: datetime, grace: timedelta = INCOMPLETE_GRACE
) -> tuple[list[BackupSet], list[tuple[BackupSet, str]]]:
    """(kept, removed with reasons) for the sets of ONE environment on ONE server.

    Complete sets: the `keep` newest of each kind are kept. The newest complete set is never
    removed. A set without a valid manifest is removed only when it is older than `grace`
    (younger, it may still be being written) and a newer complete set exists.
    """
    if keep < 1:
        raise ValueError("retention must keep at least one set")
    ordered = sorted(sets, key=lambda s: s.started, reverse=True)
    complete = [s for s in ordered if s.status is SetStatus.COMPLETE]
    newest_complete = complete[0] if complete else None
    removed: list[tuple[BackupSet, str]] = []
    per_kind: dict[SetKind, int] = {}
    for s in complete:
        per_kind[s.kind] = per_kind.get(s.kind, 0) + 1
        if per_kind[s.kind] > keep and s is not newest_complete:
            removed.append((s, f"older than the {keep} newest complete {s.kind.value} sets"))
    for s in ordered:
        if s.status is SetStatus.COMPLETE:
            continue
        age = now - s.started
        if age < grace:
            continue
        if newest_complete is None or newest_complete.started < s.started:
            continue  # nothing newer to fall back on: keep it for an operator to look at
        what = f"no {mf.MANIFEST_NAME}" if s.status is SetStatus.INCOMPLETE else s.reason
        removed.append((s, f"{s.status.value} ({what}), started {_words(age)} ago"))
    gone = {s.set_id for s, _ in removed}
    return [s for s in ordered if s.set_id not in gone], removed


def _words(delta: timedelta) -> str:
    return human_duration(delta.total_seconds())


def apply_retention(
    ctx: BackupContext, role: Role, environment: str, *, now: datetime | None = None
) -> RetentionResult:
    sets = _sets_on(ctx, role, environment)
    kept, removed = retention_plan(sets, ctx.site.backups.retention, now or _now())
    runner = ctx.runner(role)
    for s, reason in removed:
        runner.run(mf.remove_tree_argv(s.path))
        ctx.say(f"{host_name(role)}: removed set {environment}/{s.set_id}: {reason}")
    return RetentionResult(
        host_name(role),
        environment,
        tuple(s.set_id for s in kept),
        tuple(Removal(s.set_id, reason) for s, reason in removed),
    )


# -- the whole job -----------------------------------------------------------------------------

Call = Callable[..., Any]  # call(step_name, function, *args) -> result


def direct_call(name: str, function: Callable[..., T], *args: Any) -> T:
    return function(*args)


def run_job(ctx: BackupContext, job: BackupJob, call: Call = direct_call) -> JobOutcome:
    """Every step of a job in order. `call` runs one step (the flows make it a Prefect task).

    A failing step raises `StepFailed` naming it; the set it was writing keeps no manifest."""

    def step(name: str, function: Callable[..., T], *args: Any) -> T:
        try:
            return call(name, function, *args)  # type: ignore[no-any-return]
        except (DrpError, SshError, RsyncError, DatabaseError) as err:
            raise StepFailed(f"step {name} failed: {err}") from err

    started = _now()
    outcome = JobOutcome(job)
    ctx.say(f"start: {job.describe()}")
    opened = [step(f"open-set-{host_name(r)}", open_set, ctx, job, r) for r in job.servers]
    trees: dict[Role, list[TreeRecord]] = {o.server: [] for o in opened}
    for section, name, _ in job_trees(ctx.site, job):
        for o in opened:
            key = f"copy-{section.value}-{name}-{host_name(o.server)}"
            trees[o.server].append(step(key, copy_tree, ctx, job, o, section, name))
    dumps: dict[Role, list[DumpRecord]] = {o.server: [] for o in opened}
    try:
        for db in job_databases(ctx.site, job):
            staged = step(f"dump-{db.name}", stage_dump, ctx, job, db.name)
            for o in opened:
                key = f"fetch-{db.name}-{host_name(o.server)}"
                dumps[o.server].append(step(key, fetch_dump, ctx, o, staged))
    finally:
        if job.kind.has_databases:
            try:
                step("clear-staging", clear_staging, ctx, job)
            except StepFailed as err:  # a warning: never hide the failure that brought us here
                outcome.warnings.append(f"could not clear the staged dumps on production: {err}")
    for o in opened:
        key = f"manifest-{host_name(o.server)}"
        manifest = step(key, write_manifest, ctx, job, o, trees[o.server], dumps[o.server])
        outcome.manifests[host_name(o.server)] = manifest
    for o in opened:
        key = f"retention-{host_name(o.server)}"
        outcome.retention.append(step(key, apply_retention, ctx, o.server, job.environment))
    outcome.seconds = (_now() - started).total_seconds()
    ctx.say(outcome.summary())
    return outcome


def run_jobs(
    ctx: BackupContext, jobs: Sequence[BackupJob], call: Call = direct_call
) -> list[JobOutcome]:
    """Every job, one after the other; a failed job does not stop the next (another
    environment's backup): its outcome carries the error instead."""
    outcomes = []
    for job in jobs:
        try:
            outcomes.append(run_job(ctx, job, call))
        except DrpError as err:
            ctx.say(f"FAILED: {job.describe()}: {err}")
            outcomes.append(JobOutcome(job, error=str(err)))
    return outcomes


def failures(outcomes: Sequence[JobOutcome]) -> list[str]:
    return [f"{o.job.describe()}: {o.error}" for o in outcomes if o.error]
