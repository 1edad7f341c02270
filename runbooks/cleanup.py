"""`drp drill --cleanup`: the DRP server goes back to what it held before the drill.

Right after the order, before the drill writes anything, `SetAsideDrpState` records what the DRP
server holds where the drill will write, in `~/.drp/drills/<operation>/prior-state.json` on the
DRP server itself (so a cleanup can run from another machine, or after a crash), then moves it
out of the way:

- each tree destination and staging directory that exists is renamed
  `<path>.drp-before-<operation>` (instant; the drill then restores into an empty place, and so
  copies everything, as a real activation would);
- each PostgreSQL database that exists is renamed `<name>_before_<operation>`;
- each MySQL database that exists is dumped (its content, then drp's marker table) into
  `~/.drp/drills/<operation>/databases/` and only then dropped.

The drill's restores therefore always find a missing target: they need neither `--force` nor
their own keep-aside. After the drill's last step (its ticket), `RestoreDrpTree` and
`RestoreDrpDatabase` remove what the drill restored and put back what was there, and
`RestoreDrpState` checks the whole record (tree listings: names, sizes, modification times;
databases: existence, tables, other objects, drp marker, row counts, and a checksum of every
table of a reloaded MySQL database) before marking it "restored". A later run of the same
operation finds that mark and changes nothing: every step, the drill's own included, is skipped
with the reason.

Deleting is limited to the drill's own copies: a path that did not exist before, a path whose
previous content waits aside, a database whose drp marker names this operation. The MySQL dumps
are removed only once the reloaded database matches them table for table.
"""

from __future__ import annotations

import hashlib
import posixpath
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, Field, ValidationError

from providers import aside
from providers.database import Aside, engine_for, mysql_aside_files
from providers.dbcommon import DatabaseState, DbEndpoint, Marker
from runbooks import connect, site_lock
from runbooks.activation import Operation, RestoreDatabase, SwapInStagedTree
from runbooks.common_steps import CopyTree
from runbooks.errors import DrpError, StepFailed, UnsafePlan, VerifyFailed
from runbooks.inventory import Database, DatabaseRole
from runbooks.manifest import parse_tree_stats, tree_stats_argv
from runbooks.render import human_bytes
from runbooks.secrets import Secret
from runbooks.steps import Applied, Change, Check, ProgressCallback, Step, Write

RECORD_DIR = ".drp/drills"  # on the DRP server, relative to the SSH user's home
# The side a drill writes to and puts back: the steps take it as a role, named here only.
TARGET: DatabaseRole = "drp"


def record_dir(operation_id: str) -> str:
    return f"{RECORD_DIR}/{operation_id}"


def record_path(operation_id: str) -> str:
    return f"{record_dir(operation_id)}/prior-state.json"


def databases_aside_dir(operation_id: str) -> str:
    """Where databases set aside as files (MySQL) wait during the drill."""
    return f"{record_dir(operation_id)}/databases"


def mysql_dump_paths(operation_id: str, name: str) -> tuple[str, str]:
    """Where a MySQL database's content and marker table wait during the drill."""
    return mysql_aside_files(databases_aside_dir(operation_id), name)


# -- the record ------------------------------------------------------------------------------
class PathRecord(BaseModel):
    """A path the drill writes to, as it was before the drill."""

    path: str = Field(description="The path on the DRP server (relative to the home, or absolute).")
    existed: bool = Field(description="Whether something was there before the drill.")
    aside: str = Field(description="Where the previous content waits during the drill.")
    created: str | None = Field(
        default=None,
        description="For a missing path: its highest missing ancestor, which the drill creates "
        "and the cleanup removes.",
    )
    anchor: str = Field(description="The existing parent directory whose entries change.")
    anchor_mtime: str | None = Field(
        default=None, description="The anchor's modification time, put back at the end."
    )
    digest: str | None = Field(
        default=None, description="sha256 of `find PATH -printf '%P %s %T@\\n' | sort`."
    )
    entries: int = Field(default=0, description="Entries under the path (itself included).")
    bytes: int = Field(default=0, description="Their sizes added up.")


class DatabaseRecord(BaseModel):
    """A database the drill restores, as it was before the drill."""

    environment: str = Field(description="The environment the database belongs to.")
    name: str = Field(description="The database's name on the DRP server.")
    engine: Literal["postgresql", "mysql"] = Field(description="Its database server.")
    existed: bool = Field(description="Whether it existed before the drill.")
    tables: int = Field(default=0, description="User tables (drp's marker table excluded).")
    other_objects: int = Field(default=0, description="Views, routines, sequences, types...")
    marker: Marker | None = Field(default=None, description="drp's restore marker, if any.")
    counts: dict[str, int] = Field(default_factory=dict, description="Rows per table.")
    checksums: dict[str, str] = Field(
        default_factory=dict, description="MySQL: a digest of each table, to check the reload."
    )
    aside: str | None = Field(
        default=None,
        description="PostgreSQL: the name it is renamed to; MySQL: the dump of its content.",
    )
    marker_dump: str | None = Field(
        default=None, description="MySQL: the dump of drp's marker table, when there is one."
    )
    charset: str | None = Field(default=None, description="MySQL: default character set.")
    collation: str | None = Field(default=None, description="MySQL: default collation.")


class PriorState(BaseModel):
    """What the DRP server held where a drill writes, and how far the cleanup went."""

    operation_id: str = Field(description="The drill this record belongs to.")
    site: str = Field(description="The inventory's name.")
    status: Literal["setting-aside", "set-aside", "putting-back", "restored"] = Field(
        description="setting-aside: recorded, being moved away; set-aside: the drill may "
        "write; putting-back: the drill's steps must not run again; restored: everything was "
        "put back and checked."
    )
    recorded_at: datetime = Field(description="When the prior state was read (UTC).")
    set_aside_at: datetime | None = Field(default=None, description="When all was moved away.")
    putting_back_at: datetime | None = Field(default=None, description="When putting back started.")
    restored_at: datetime | None = Field(default=None, description="When all was put back.")
    paths: list[PathRecord] = Field(default_factory=list, description="Trees and staging dirs.")
    databases: list[DatabaseRecord] = Field(default_factory=list, description="Databases.")

    def path(self, path: str) -> PathRecord:
        for record in self.paths:
            if record.path == path:
                return record
        raise StepFailed(f"the record of drill {self.operation_id} does not list drp:{path}")

    def database(self, environment: str, name: str) -> DatabaseRecord:
        for record in self.databases:
            if (record.environment, record.name) == (environment, name):
                return record
        raise StepFailed(f"the record of drill {self.operation_id} does not list drp/{name}")


def _at(moment: datetime | None) -> str:
    return f"{moment:%Y-%m-%d %H:%M:%S} UTC" if moment else "?"


class PriorStateStore:
    """The record, read from and written to the DRP server (never kept only here)."""

    def __init__(self, op: Operation) -> None:
        self.op = op
        self.path = record_path(op.operation_id)
        self._returned: str | None = None
        self._frozen: str | None = None
        self._later: str | None = None

    def load(self) -> PriorState | None:
        text = aside.read_file(self.op.pool[TARGET], self.path)
        if text is None:
            return None
        try:
            return PriorState.model_validate_json(text)
        except ValidationError as err:
            raise StepFailed(
                f"drp:{self.path} is not a readable record of the DRP server's state before the "
                f"drill ({err.error_count()} problems): restore it from its .tmp file if there "
                "is one, or put the DRP server back by hand"
            ) from err

    def require(self) -> PriorState:
        state = self.load()
        if state is None:
            raise StepFailed(
                f"no record of the DRP server's state before drill {self.op.operation_id} at "
                f"drp:{self.path}: nothing can be put back"
            )
        return state

    def save(self, state: PriorState) -> None:
        aside.write_file(self.op.pool[TARGET], self.path, state.model_dump_json(indent=2) + "\n")

    def returned(self) -> str | None:
        """Why nothing more may run, once this drill put the DRP server back (else None)."""
        if self._returned is None:
            state = self.load()
            if state is not None and state.status == "restored":
                self._returned = (
                    f"drill {state.operation_id} already ended and put the DRP server back as "
                    f"it was before, at {_at(state.restored_at)} (drp:{self.path})"
                )
        return self._returned

    def frozen(self) -> str | None:
        """Why the drill's own steps may not run any more: putting back has started (they
        would write over what is put back), or is over, or another operation took the site
        since (they would write over its work). None while they may run."""
        if self._frozen is None:
            state = self.load()
            later = self._later_operations()
            if later:
                self._frozen = f"{later} took the site after this drill"
            elif state is not None and state.status == "putting-back":
                self._frozen = (
                    f"drill {state.operation_id} is putting the DRP server back as it was "
                    f"before, since {_at(state.putting_back_at)} (drp:{self.path})"
                )
            elif state is not None and state.status == "restored":
                self._frozen = self.returned()
        return self._frozen

    def _later_operations(self) -> str:
        """The operations that took the site after this drill did (the lock's ledger), in
        words; empty when none did."""
        if self._later is None:  # read once a run: none can take the site while this one holds it
            later = site_lock.taken_since(self.op.pool[TARGET], self.op.operation_id)
            self._later = ", ".join(
                f"operation {e.get('operation_id')} ({e.get('kind')})" for e in later
            )
        return self._later

    def _no_later_operation(self) -> None:
        """Refuse to put anything back when another operation took the site after this drill
        (an activation that reused its restores, another drill): putting back would undo it."""
        names = self._later_operations()
        if names:
            raise UnsafePlan(
                f"{names} took the site after drill {self.op.operation_id} set the DRP "
                "server's state aside: putting it back now would undo what came after. Nothing "
                f"was put back; what was there before the drill waits as recorded in "
                f"drp:{self.path}. Put it back by hand if that is wanted, then release the "
                "lock with `drp unlock`"
            )

    def begin_put_back(self) -> PriorState:
        """The record, marked "putting-back" before the first thing is put back."""
        state = self.require()
        if state.status == "setting-aside":
            raise StepFailed(
                f"drill {state.operation_id} never finished setting aside what the DRP server "
                f"held (drp:{self.path}): run the drill again with the same operation id"
            )
        self._no_later_operation()
        if state.status == "set-aside":
            state.status = "putting-back"
            state.putting_back_at = datetime.now(UTC)
            self.save(state)
        return state


# -- what a drill writes ---------------------------------------------------------------------
@dataclass(frozen=True)
class Restored:
    """What one drill step leaves at a path: a tree of a backup set (the manifest's listing
    digest, see `runbooks.manifest.DIGEST_COVERS`), one file of a set, or staged dumps."""

    label: str  # the backup set, for messages
    digest: str | None = None  # the manifest's digest of the tree (or of the single file's tree)
    file_name: str | None = None  # a single-file tree: the file (the path is its directory)
    staged: str | None = None  # a staging directory: the name of a dump the drill staged


@dataclass(frozen=True)
class DrillTargets:
    paths: tuple[str, ...]  # tree destinations and staging directories, normalized
    databases: tuple[tuple[str, Database], ...]  # (environment, database)
    restores: dict[str, tuple[Restored, ...]] = field(default_factory=dict)  # path -> content


def _tree_copy(step: Step) -> CopyTree | None:
    """The copy a step makes of a tree: itself, or the copy a staged tree's swap stands for
    (its content is the same set's, and what it falls back to)."""
    if isinstance(step, SwapInStagedTree):
        return step.cold
    return step if isinstance(step, CopyTree) else None


def _restored(step: Step) -> Restored | None:
    """What a drill step leaves at the path it writes (None: nothing cleanup can prove)."""
    copy = _tree_copy(step)
    if copy is not None and copy.source.digest is not None:
        source = copy.source
        return Restored(source.label, digest=source.digest, file_name=source.file_name)
    if isinstance(step, RestoreDatabase):
        return Restored(step.chosen.set.label, staged=step.dump_name)
    return None


def drill_targets(steps: Sequence[Step]) -> DrillTargets:
    """Every place the drill's steps write on the DRP server; refuses what cannot be set aside."""
    paths: list[str] = []
    databases: list[tuple[str, Database]] = []
    restores: dict[str, list[Restored]] = {}
    for step in steps:
        written = []
        for write in step.writes():
            if write.role != TARGET:
                continue
            if write.kind == "files":
                written.append(write.path)
            elif write.kind == "database":
                databases.append((write.environment, write.database))
        for path in written:
            try:
                clean = aside.normalize_path(path)
            except ValueError as err:
                raise UnsafePlan(f"{step.title}: {err}; run the drill without --cleanup") from err
            if clean not in paths:
                paths.append(clean)
            restored = _restored(step)
            if restored is not None and write_is_files(step, path):
                restores.setdefault(clean, []).append(restored)
    nested = nested_pair([*paths, RECORD_DIR])
    if nested:
        raise UnsafePlan(
            f"drp:{nested[0]} contains drp:{nested[1]}: --cleanup sets each destination aside "
            "whole and cannot do so for one inside another; run the drill without --cleanup, or "
            "give the trees separate destinations"
        )
    return DrillTargets(tuple(paths), tuple(databases), {p: tuple(r) for p, r in restores.items()})


def write_is_files(step: Step, path: str) -> bool:
    """The step's own files write at `path` (a tree's destination, a staging directory)."""
    return any(w.kind == "files" and w.path == path for w in step.writes())


def own_content_problem(
    runner: Any, path: str, restores: Sequence[Restored], operation_id: str
) -> str:
    """Why the content at `path` is not provably what the drill restored there (empty: it is).

    A tree is the drill's when its listing digest is the manifest's; a directory holding
    single files, when it holds exactly those files, each as in the manifest; a staging
    directory, when it holds nothing but the dumps the drill staged there."""
    where = f"drp:{path}"
    trees = [r for r in restores if r.digest is not None and r.file_name is None]
    files = [r for r in restores if r.file_name is not None]
    staged = {r.staged for r in restores if r.staged is not None}
    if not restores:
        return f"{where}: no step of drill {operation_id} restores a known content there"
    if trees and (files or staged or len(trees) > 1):
        return f"{where}: several restores of drill {operation_id} share it; check it by hand"
    if trees:
        tree = trees[0]
        result = runner.run(tree_stats_argv(path), check=False, timeout=3600)
        if not result.ok:
            return f"{where} cannot be read: {result.stderr.strip()[:200]}"
        digest, count, size = parse_tree_stats(result.stdout)
        if digest != tree.digest:
            return (
                f"{where} is not the drill's restore of {tree.label}: its listing ({count} "
                f"files, {human_bytes(size)}, digest {digest[:12]}) differs from the manifest's "
                f"(digest {(tree.digest or '')[:12]}); it was written after the drill"
            )
        return ""
    result = runner.run(_listing_argv(path), check=False, timeout=3600)
    if not result.ok:
        return f"{where} cannot be read: {result.stderr.strip()[:200]}"
    lines = {line.split("\t", 1)[0]: line for line in result.stdout.splitlines() if line}
    if staged and not files:
        others = sorted(set(lines) - staged)
        if others:
            shown = ", ".join(others[:5]) + (", ..." if len(others) > 5 else "")
            return (
                f"{where} holds {len(others)} file(s) drill {operation_id} did not stage "
                f"({shown}); it was written after the drill"
            )
        return ""
    wrong = []
    expected = {r.file_name: r for r in files if r.file_name}
    for name, restored in expected.items():
        line = lines.get(name)
        if line is None:
            wrong.append(f"{name} is missing")
        elif hashlib.sha256(f"{line}\n".encode()).hexdigest() != restored.digest:
            wrong.append(f"{name} is not as in {restored.label} ({line.replace(chr(9), ' ')})")
    extra = sorted(set(lines) - set(expected) - staged)
    if extra:
        wrong.append(f"{len(extra)} other file(s): {', '.join(extra[:5])}")
    if wrong:
        return f"{where} is not the drill's restore: " + "; ".join(wrong)
    return ""


def _listing_argv(path: str) -> list[str]:
    """`relative path<TAB>size<TAB>mtime` of every regular file, as the manifest lists them."""
    script = "find \"$1\" -type f -printf '%P\\t%s\\t%Ts\\n' | LC_ALL=C sort"
    return ["bash", "-o", "pipefail", "-c", script, "bash", path]


def nested_pair(paths: Sequence[str]) -> tuple[str, str] | None:
    """The first (outer, inner) pair of normalized paths where one lies inside the other."""
    for outer in paths:
        for inner in paths:
            if inner.startswith(outer.rstrip("/") + "/"):
                return outer, inner
    return None


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "-", text).strip("-").lower()


class _Db:
    """One database of the drill on the DRP server: endpoint, password, engine."""

    def __init__(self, op: Operation, environment: str, db: Database) -> None:
        self.op, self.environment, self.db = op, environment, db
        self.name = db.name
        self.engine = engine_for(db.engine)

    @property
    def endpoint(self) -> DbEndpoint:
        return connect.db_endpoint(self.op.site, self.db, TARGET)

    @property
    def password(self) -> Secret:
        return connect.database_password(self.op.site, self.db)

    @property
    def aside_dir(self) -> str:
        return databases_aside_dir(self.op.operation_id)

    def state(self) -> DatabaseState:
        return self.engine.read_state(self.endpoint, self.password)

    def counts(self) -> dict[str, int]:
        return self.engine.table_counts(self.endpoint, self.password)

    def exists(self) -> bool:
        return self.engine.exists(self.endpoint, self.password)

    def aside_name(self) -> str:
        return self.engine.aside_name(self.endpoint, self.op.operation_id, self.aside_dir)

    def aside_of(self, record: DatabaseRecord) -> Aside:
        """The set-aside reference the record keeps (as recorded before anything moved)."""
        return Aside(
            engine=record.engine,
            database=self.endpoint.label,
            kept=record.aside or "",
            marker_dump=record.marker_dump,
            charset=record.charset,
            collation=record.collation,
            tables=record.tables,
            other_objects=record.other_objects,
            marker=record.marker,
            checksums=record.checksums,
        )

    def aside_parts(self, record: DatabaseRecord) -> dict[str, bool]:
        drp = self.op.pool.database_work(TARGET)
        return self.engine.aside_parts(drp, self.endpoint, self.password, self.aside_of(record))


def _state_problems(record: DatabaseRecord, state: DatabaseState, counts: dict[str, int]) -> str:
    """What differs between a database now and its record (empty: the same)."""
    if not record.existed:
        return f"drp/{record.name} exists, but did not before the drill" if state.exists else ""
    if not state.exists:
        return f"drp/{record.name} is missing"
    wrong = []
    if state.tables != record.tables or state.other_objects != record.other_objects:
        wrong.append(
            f"{state.tables} tables and {state.other_objects} other objects, before "
            f"{record.tables} and {record.other_objects}"
        )
    if state.marker != record.marker:
        now = state.marker.backup_id if state.marker else "none"
        was = record.marker.backup_id if record.marker else "none"
        wrong.append(f"drp marker {now}, before {was}")
    if counts != record.counts:
        moved = sorted(
            t for t in set(counts) | set(record.counts) if counts.get(t) != record.counts.get(t)
        )
        wrong.append(f"row counts differ in {', '.join(moved)}")
    return f"drp/{record.name}: " + "; ".join(wrong) if wrong else ""


# -- before the drill ------------------------------------------------------------------------
class SetAsideDrpState(Step):
    """Record what the DRP server holds where the drill writes, then move it out of the way."""

    phase = 15

    def __init__(self, op: Operation, store: PriorStateStore, targets: DrillTargets) -> None:
        super().__init__("cleanup-set-aside", "Record and set aside what the DRP server holds")
        self.op, self.store, self.targets = op, store, targets
        self.dbs = [_Db(op, env, db) for env, db in targets.databases]

    def describe(self) -> list[Change]:
        op_id = self.op.operation_id
        changes = [Change("record", f"drp:{self.store.path}", "the DRP server's state now")]
        for path in self.targets.paths:
            changes.append(
                Change(
                    "set-aside",
                    f"drp:{path}",
                    f"if present: renamed {aside.aside_path(path, op_id)}",
                )
            )
        for db in self.dbs:
            how = db.engine.describe_set_aside(db.endpoint, op_id, db.aside_dir)
            changes.append(Change("set-aside", f"drp/{db.name}", f"if present: {how}"))
        return changes

    def check(self) -> Check:
        state = self.store.load()
        if state is None:
            return Check(False, "the DRP server's state before the drill is not recorded yet")
        if state.status == "restored":
            return Check(True, self.store.returned() or "already put back")
        if state.status in ("set-aside", "putting-back"):
            held = sum(p.existed for p in state.paths) + sum(d.existed for d in state.databases)
            return Check(
                True,
                f"the DRP server's state was recorded at {_at(state.recorded_at)} and {held} "
                f"thing(s) set aside at {_at(state.set_aside_at)} (drp:{self.store.path})",
            )
        return Check(False, f"setting aside was interrupted: resuming from drp:{self.store.path}")

    def apply(self, progress: ProgressCallback | None = None) -> Applied:
        state = self.store.load()
        if state is None:  # never read again once recorded: a resume goes by the record
            state = self._record()
            self.store.save(state)
        drp = self.op.pool.copying(TARGET)
        moved: list[str] = []
        for record in state.paths:
            if record.existed and aside.set_aside_path(drp, record.path, record.aside):
                moved.append(f"drp:{record.path} -> {record.aside}")
        for db in self.dbs:
            kept = state.database(db.environment, db.name)
            if kept.existed and self._set_aside_database(db, kept):
                moved.append(f"drp/{db.name} -> {kept.aside}")
        state.status = "set-aside"
        state.set_aside_at = datetime.now(UTC)
        self.store.save(state)
        missing = [p.path for p in state.paths if not p.existed]
        missing += [d.name for d in state.databases if not d.existed]
        summary = f"set aside {len(moved)}: " + ("; ".join(moved) or "nothing")
        if missing:
            summary += f" (absent before the drill: {', '.join(missing)})"
        return Applied(summary, details={"record": self.store.path, "set_aside": moved})

    def verify(self) -> Check:
        state = self.store.require()
        drp = self.op.pool[TARGET]
        problems = []
        existing = [p for p in state.paths if p.existed]
        there = aside.probe(drp, [x for p in existing for x in (p.path, p.aside)])
        for record in existing:
            if there[record.path] or not there[record.aside]:
                problems.append(f"drp:{record.path} is not set aside at {record.aside}")
            elif aside.listing(drp, record.aside).digest != record.digest:
                problems.append(f"drp:{record.aside} differs from drp:{record.path} before")
        for db in self.dbs:
            db_record = state.database(db.environment, db.name)
            kept = db_record.aside or ""
            if db.exists():
                problems.append(f"drp/{db.name} still exists")
            elif not db_record.existed:
                continue
            elif not all(db.aside_parts(db_record).values()):
                problems.append(f"the set-aside copy {kept} of drp/{db.name} is missing")
        if problems:
            return Check(False, "; ".join(problems))
        return self.check()

    def _record(self) -> PriorState:
        drp = self.op.pool[TARGET]
        op_id = self.op.operation_id
        aside.make_dir(drp, record_dir(op_id))
        asides = {p: aside.aside_path(p, op_id) for p in self.targets.paths}
        asked = list(
            dict.fromkeys(
                [a for p in self.targets.paths for a in aside.ancestors(p)] + list(asides.values())
            )
        )
        exists = aside.probe(drp, asked)
        paths = []
        for path in self.targets.paths:
            record = PathRecord(path=path, existed=exists[path], aside=asides[path], anchor=".")
            if record.existed:
                if exists[record.aside]:
                    raise StepFailed(
                        f"drp:{record.aside} already exists, so drp:{path} cannot be set aside "
                        "there: move it away, then run again"
                    )
                found = aside.listing(drp, path)
                record.digest, record.entries, record.bytes = (
                    found.digest,
                    found.entries,
                    found.bytes,
                )
                top = path
            else:
                record.created = aside.created_root(path, exists)
                top = record.created
            record.anchor = posixpath.dirname(top) or "."
            record.anchor_mtime = aside.mtime(drp, record.anchor)
            paths.append(record)
        databases = [self._record_database(db) for db in self.dbs]
        return PriorState(
            operation_id=op_id,
            site=self.op.site.name,
            status="setting-aside",
            recorded_at=datetime.now(UTC),
            paths=paths,
            databases=databases,
        )

    def _record_database(self, db: _Db) -> DatabaseRecord:
        state = db.state()
        record = DatabaseRecord(
            environment=db.environment,
            name=db.name,
            engine=db.engine.name,
            existed=state.exists,
        )
        if not state.exists:
            return record
        record.tables, record.other_objects, record.marker = (
            state.tables,
            state.other_objects,
            state.marker,
        )
        record.counts = db.counts()
        kept = db.engine.aside_for(
            self.op.pool[TARGET], db.endpoint, db.password, self.op.operation_id, db.aside_dir
        )
        record.aside, record.marker_dump, record.checksums = (
            kept.kept,
            kept.marker_dump,
            kept.checksums,
        )
        record.charset, record.collation = kept.charset, kept.collation
        return record

    def _set_aside_database(self, db: _Db, record: DatabaseRecord) -> bool:
        """Move one database out of the way; False when it already was."""
        drp = self.op.pool.database_work(TARGET)
        return db.engine.set_aside(drp, db.endpoint, db.password, db.aside_of(record))


# -- after the drill -------------------------------------------------------------------------
class RestoreDrpTree(Step):
    """Remove the drill's copy at one path and put back what was there (or nothing)."""

    phase = 90

    def __init__(
        self,
        op: Operation,
        store: PriorStateStore,
        path: str,
        restores: Sequence[Restored] = (),
    ) -> None:
        super().__init__(f"cleanup-path-{_slug(path)}", f"Put drp:{path} back as before the drill")
        self.op, self.store, self.path, self.restores = op, store, path, tuple(restores)

    def _not_own(self, target: str, record: PathRecord) -> str:
        """Why the drill's copy at `target` may not be removed (empty: it is provably its own)."""
        problem = own_content_problem(
            self.op.pool[TARGET], target, self.restores, self.op.operation_id
        )
        if not problem:
            return ""
        waits = f"; what was there before the drill waits in drp:{record.aside}" * record.existed
        return (
            f"{problem}. Nothing was removed nor put back{waits} (record drp:{self.store.path}). "
            "If another operation restored it, keep it; otherwise move it away by hand and run "
            "the cleanup again"
        )

    def describe(self) -> list[Change]:
        return [
            Change(
                "put-back",
                f"drp:{self.path}",
                "remove the drill's copy; rename "
                f"{aside.aside_path(self.path, self.op.operation_id)} back if it was set aside",
            )
        ]

    def problems(self, record: PathRecord) -> str:
        """What differs from before the drill (empty: the same)."""
        drp = self.op.pool[TARGET]
        if not record.existed:
            target = record.created or record.path
            if aside.probe(drp, [target])[target]:
                return f"drp:{target} holds the drill's copy (it was absent before)"
            return ""
        there = aside.probe(drp, [record.path, record.aside])
        if there[record.aside]:
            return (
                f"drp:{record.path} holds the drill's copy; the previous content waits in "
                f"{record.aside}"
            )
        if not there[record.path]:
            return f"drp:{record.path} is missing"
        now = aside.listing(drp, record.path)
        if now.digest != record.digest:
            return (
                f"drp:{record.path} differs from before the drill ({now.entries} entries, "
                f"{human_bytes(now.bytes)}; before {record.entries}, {human_bytes(record.bytes)})"
            )
        return ""

    def check(self) -> Check:
        record = self.store.require().path(self.path)
        problem = self.problems(record)
        if problem:
            return Check(False, problem)
        if not record.existed:
            return Check(True, f"drp:{self.path} absent, as before the drill")
        return Check(
            True,
            f"drp:{self.path} as before the drill ({record.entries} entries, "
            f"{human_bytes(record.bytes)}, listing {record.digest and record.digest[:12]})",
        )

    def apply(self, progress: ProgressCallback | None = None) -> Applied:
        record = self.store.begin_put_back().path(self.path)
        drp = self.op.pool.copying(TARGET)
        if not record.existed:
            target = record.created or record.path
            if aside.probe(drp, [record.path])[record.path]:
                refused = self._not_own(record.path, record)
                if refused:
                    raise UnsafePlan(refused)
            aside.remove_created(drp, target)
            done = f"removed the drill's copy drp:{target}"
        elif aside.probe(drp, [record.aside])[record.aside]:
            if aside.probe(drp, [record.path])[record.path]:
                refused = self._not_own(record.path, record)
                if refused:
                    raise UnsafePlan(refused)
            aside.put_back_path(drp, record.path, record.aside)
            done = f"removed the drill's copy and renamed {record.aside} back to drp:{record.path}"
        else:
            raise StepFailed(
                f"{self.problems(record)}, and nothing waits at drp:{record.aside}: nothing was "
                "deleted; compare by hand with the record drp:" + self.store.path
            )
        aside.restore_mtime(drp, record.anchor, record.anchor_mtime)
        return Applied(done)


class RestoreDrpDatabase(Step):
    """Drop the drill's restore of one database and put back what was there (or nothing)."""

    phase = 91

    def __init__(
        self, op: Operation, store: PriorStateStore, environment: str, db: Database
    ) -> None:
        super().__init__(
            f"cleanup-db-{environment}-{db.name}", f"Put drp/{db.name} back as before the drill"
        )
        self.op, self.store, self.db = op, store, _Db(op, environment, db)

    def _record(self) -> DatabaseRecord:
        return self.store.require().database(self.db.environment, self.db.name)

    def describe(self) -> list[Change]:
        db = self.db
        back = db.engine.describe_put_back(db.endpoint, self.op.operation_id, db.aside_dir)
        how = f"drop the drill's restore; {back} if it was set aside"
        return [Change("put-back", f"drp/{self.db.name}", how)]

    def problems(self, record: DatabaseRecord) -> str:
        state = self.db.state()
        counts = self.db.counts() if state.exists and record.existed else {}
        problem = _state_problems(record, state, counts)
        if problem or not record.existed:
            return problem
        left = [part for part, there in self.db.aside_parts(record).items() if there]
        if left:
            return f"the set-aside copy {', '.join(left)} is still there"
        return ""

    def check(self) -> Check:
        record = self._record()
        problem = self.problems(record)
        if problem:
            return Check(False, problem)
        if not record.existed:
            return Check(True, f"drp/{self.db.name} absent, as before the drill")
        marker = record.marker.backup_id if record.marker else "no drp marker"
        return Check(
            True,
            f"drp/{self.db.name} as before the drill ({record.tables} tables, "
            f"{sum(record.counts.values())} rows, {marker})",
        )

    def apply(self, progress: ProgressCallback | None = None) -> Applied:
        record = self.store.begin_put_back().database(self.db.environment, self.db.name)
        db = self.db
        if not record.existed:
            db.engine.drop_own(db.endpoint, db.password, self.op.operation_id)
            return Applied(f"dropped the drill's restore of drp/{db.name}")
        runner = self.op.pool.database_work(TARGET)
        done = db.engine.put_back(
            runner, db.endpoint, db.password, db.aside_of(record), self.op.operation_id
        )
        return Applied(done)


class RestoreDrpState(Step):
    """Check the whole DRP server against the record, then close the record."""

    phase = 99

    def __init__(
        self,
        op: Operation,
        store: PriorStateStore,
        trees: list[RestoreDrpTree],
        databases: list[RestoreDrpDatabase],
    ) -> None:
        super().__init__("cleanup-check", "Check the DRP server is as before the drill")
        self.op, self.store, self.trees, self.databases = op, store, trees, databases

    def describe(self) -> list[Change]:
        return [
            Change(
                "check",
                connect.host_name(TARGET),
                f"{len(self.trees)} paths and {len(self.databases)} databases as recorded "
                f"in drp:{self.store.path}",
            )
        ]

    def check(self) -> Check:
        reason = self.store.returned()
        if reason:
            return Check(True, reason)
        return Check(False, "the DRP server was not checked against its state before the drill")

    def apply(self, progress: ProgressCallback | None = None) -> Applied:
        state = self.store.require()
        problems = [t.problems(state.path(t.path)) for t in self.trees]
        problems += [
            d.problems(state.database(d.db.environment, d.db.name)) for d in self.databases
        ]
        wrong = [p for p in problems if p]
        if wrong:
            raise VerifyFailed(
                "the DRP server is not as before the drill: " + "; ".join(wrong) + f" (record: "
                f"drp:{self.store.path}; run again to retry the put-back steps)"
            )
        drp = self.op.pool[TARGET]
        for record in state.paths:  # the last renames changed them again
            aside.restore_mtime(drp, record.anchor, record.anchor_mtime)
        state.status = "restored"
        state.restored_at = datetime.now(UTC)
        self.store.save(state)
        return Applied(
            f"the DRP server is as before the drill: {len(state.paths)} paths and "
            f"{len(state.databases)} databases match drp:{self.store.path}"
        )


class UnlessReturned(Step):
    """A drill step that must not run again once the drill started putting the DRP server back
    (a resumed or repeated run): it would write over what was put back, or check a service that
    is no longer the drill's. Otherwise the step itself, unchanged (same key, title, phase and
    plan)."""

    def __init__(self, inner: Step, store: PriorStateStore) -> None:
        super().__init__(inner.key, inner.title)
        self.inner, self.store = inner, store
        self.phase, self.changes_world, self.log = inner.phase, inner.changes_world, inner.log
        self.parallel, self.proves, self.stage = inner.parallel, inner.proves, inner.stage
        self.memory = inner.memory

    def describe(self) -> list[Change]:
        return self.inner.describe()

    def writes(self) -> list[Write]:
        return self.inner.writes()

    def remember(self) -> dict[str, Any]:
        return self.inner.remember()

    def check(self) -> Check:
        reason = self.store.frozen()
        if reason:
            return Check(True, f"not run again: {reason}", checked=False)
        return self.inner.check()

    def apply(self, progress: ProgressCallback | None = None) -> Applied:
        return self.inner.apply(progress)

    def verify(self) -> Check:
        return self.inner.verify()


def with_cleanup(op: Operation, steps: list[Step]) -> list[Step]:
    """The drill's steps between setting aside what the DRP server holds and putting it back."""
    if op.kind != "drill":
        raise DrpError(f"--cleanup is for drills only, not for a {op.kind}")
    targets = drill_targets(steps)
    store = PriorStateStore(op)
    for step in steps:
        copy = _tree_copy(step)
        if copy is not None and copy.aside_root:
            # The whole destination is set aside before the drill: what its copy replaces
            # there is the drill's own. Kept in the drill's record directory, never beside the
            # destination, where the set-aside original waits and must stay as recorded.
            copy.aside_root = f"{record_dir(op.operation_id)}/replaced/{copy.key}"
    trees = [
        RestoreDrpTree(op, store, path, targets.restores.get(path, ())) for path in targets.paths
    ]
    databases = [RestoreDrpDatabase(op, store, env, db) for env, db in targets.databases]
    return [
        SetAsideDrpState(op, store, targets),
        *(UnlessReturned(step, store) for step in steps),
        *trees,
        *databases,
        RestoreDrpState(op, store, trees, databases),
    ]
