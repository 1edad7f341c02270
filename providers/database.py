"""One interface for the database servers drp restores: PostgreSQL and MySQL behind it.

Callers hold a `DatabaseEngine` (`engine_for(db.engine)`) and never ask which server it is:
read (existence, state, marker, row counts, checksums), decide (`restore_decision`), dump,
restore, set a database aside and put it back, drop drp's own restore. The engines delegate to
`providers.postgres` and `providers.mysql`, which keep the pure argv builders and the SQL.

What every engine guarantees:

- **Nothing is lost.** `restore` never writes over a non-empty database that drp did not
  restore unless forced, and then keeps the previous content aside first; `set_aside` moves the
  whole database out of the way (renamed, or dumped then dropped) and `put_back` brings back
  exactly that content; `drop_own` only drops a database whose drp marker names the operation.
- **Idempotent.** Each writer can be run again after a crash at any point: it finds what the
  previous attempt did (marker, staging database, set-aside copy) and finishes the job.
- **Secrets stay masked.** Passwords reach the clients through the runner's `secret_env` (never
  argv) and the readers' connections; no result, log or message holds one.

How each engine keeps a database aside differs, and shows only in `Aside.kept`:
a PostgreSQL database is renamed `<name>_before_<operation>` on its server (owner, grants and
settings go with it; instant); a MySQL database cannot be renamed, so its content is dumped to
`<aside_dir>/<name>.sql.gz` on the host, drp's marker table (which content dumps leave out) to
`<aside_dir>/<name>.marker.sql`, and only then is the database dropped; putting it back creates
it with its character set and collation, loads both files, and proves the reload with table
checksums before removing them.
"""

from __future__ import annotations

import posixpath
from abc import ABC, abstractmethod
from typing import ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field

from providers import aside as paths
from providers import mysql, postgres
from providers.commands import CommandRunner
from providers.dbcommon import (
    DatabaseError,
    DatabaseState,
    DbEndpoint,
    DumpResult,
    Marker,
    Password,
    RestoreDecision,
    RestoreResult,
    decide_restore,
    is_own,
    reveal,
    scratch_name,
    write_dump,
)

EngineName = Literal["postgresql", "mysql"]
# Operation ids of staging runs start with this: their databases are drp's derived copies.
STAGE_OPERATION_PREFIX = "stage-"

__all__ = [
    "Aside",
    "AsideMissing",
    "DatabaseEngine",
    "EngineName",
    "MysqlEngine",
    "NotOwnDatabase",
    "PostgresEngine",
    "engine_for",
    "mysql_aside_files",
    "stage_endpoint",
]


class NotOwnDatabase(DatabaseError):
    """`drop_own` was asked to drop a database whose drp marker does not name the operation."""

    def __init__(self, label: str, operation_id: str, marker: Marker | None) -> None:
        owner = (
            f"its drp marker names {marker.operation_id}" if marker is not None else "no drp marker"
        )
        super().__init__(
            f"{label} is not the restore of {operation_id} ({owner}): nothing was deleted; "
            "check who wrote it, move it away, then run again"
        )


class AsideMissing(DatabaseError):
    """`put_back` found neither the content from before nor its set-aside copy: it changed
    nothing."""


class Aside(BaseModel):
    """Where a database's content waits while set aside, and what putting it back needs.

    Built by `DatabaseEngine.aside_for` before anything moves, so that a caller can record it
    (on the host that survives) first; `set_aside`, `aside_parts` and `put_back` take it back.
    """

    model_config = ConfigDict(frozen=True)

    engine: EngineName = Field(description="The engine that set it aside.")
    database: str = Field(description="The database set aside, as host/dbname.")
    kept: str = Field(
        description="PostgreSQL: the name it is renamed to, on the same server; MySQL: the "
        "dump of its content, on the runner's host."
    )
    marker_dump: str | None = Field(
        default=None, description="MySQL: the dump of drp's marker table, when there is one."
    )
    charset: str | None = Field(default=None, description="MySQL: default character set.")
    collation: str | None = Field(default=None, description="MySQL: default collation.")
    tables: int = Field(default=0, description="User tables before (to tell it is back).")
    other_objects: int = Field(default=0, description="Views, routines... before.")
    marker: Marker | None = Field(default=None, description="drp's marker before.")
    checksums: dict[str, str] = Field(
        default_factory=dict,
        description="MySQL: each table's checksum before, the proof of a reload (PostgreSQL "
        "puts back the very database, renamed).",
    )


class DatabaseEngine(ABC):
    """A database server drp can read, dump, restore, set aside and put back.

    Every method takes the database as a `DbEndpoint` (TCP, never a socket) and its password as
    a plain or masked value; methods that run a client on a host take that host's
    `CommandRunner` (dump files live there, never on the orchestrator). Failures raise
    `DatabaseError` (or a subclass) whose message names the database, what failed and what to
    do; a refused restore raises `NonEmptyDatabase`.
    """

    name: ClassVar[EngineName]

    # -- readers: change nothing ---------------------------------------------------------------

    @abstractmethod
    def exists(self, endpoint: DbEndpoint, password: Password) -> bool:
        """Whether the server has a database named `endpoint.dbname`."""

    @abstractmethod
    def read_state(self, endpoint: DbEndpoint, password: Password) -> DatabaseState:
        """Existence, user tables, other objects and drp's marker (rows counted only for a
        non-empty database without a marker, whose refusal message gives them)."""

    @abstractmethod
    def read_marker(self, endpoint: DbEndpoint, password: Password) -> Marker | None:
        """The marker drp left in the database (None: missing database, or not drp's)."""

    @abstractmethod
    def table_counts(self, endpoint: DbEndpoint, password: Password) -> dict[str, int]:
        """Exact rows per user table, read in one snapshot; drp's marker table left out."""

    @abstractmethod
    def table_checksums(self, endpoint: DbEndpoint, password: Password) -> dict[str, str]:
        """A digest of each user table's content: equal digests, equal rows."""

    @abstractmethod
    def size_bytes(self, endpoint: DbEndpoint, password: Password) -> int:
        """The database's size on disk: about what restoring a copy of it takes again."""

    @abstractmethod
    def server_version(self, endpoint: DbEndpoint, password: Password) -> str:
        """The version of the server that holds (or would hold) the database, as it says it;
        the database itself need not exist."""

    def restore_decision(
        self, endpoint: DbEndpoint, password: Password, backup_id: str, *, force: bool = False
    ) -> RestoreDecision:
        """What `restore()` would do, read-only: restore or skip (with the reason), or raise
        `NonEmptyDatabase` as restore would."""
        state = self.read_state(endpoint, password)
        return decide_restore(state, endpoint.label, backup_id, force=force)

    # -- dump and restore ----------------------------------------------------------------------

    @abstractmethod
    def dump(
        self,
        runner: CommandRunner,
        endpoint: DbEndpoint,
        password: Password,
        path: str,
        *,
        count_rows: bool = True,
        timeout: float | None = None,
    ) -> DumpResult:
        """Dump the database into `path`, a new file on `runner`'s host.

        Never replaces a file (an existing `path` is refused); a file at `path` is always a
        finished dump (written as `<path>.partial`, then moved). With `count_rows` the result
        carries rows per table, and `counts_exact` says whether they are exactly the dump's.
        drp's marker is left out of the dump.
        """

    @abstractmethod
    def restore(
        self,
        runner: CommandRunner,
        dump_path: str,
        endpoint: DbEndpoint,
        password: Password,
        *,
        backup_id: str,
        manifest_digest: str,
        operation_id: str,
        force: bool = False,
        expected_sha256: str | None = None,
        timeout: float | None = None,
    ) -> RestoreResult:
        """Restore the dump at `runner`'s `dump_path` as `endpoint.dbname`, and mark it.

        - Skips (action "skipped", with the reason) when the marker says this backup is
          already there, complete.
        - Raises `NonEmptyDatabase` over a non-empty database drp did not restore, unless
          `force`; forced, or over a previous drp restore, it keeps the previous content aside
          first (`RestoreResult.kept_as`) and never deletes it.
        - Loads an existing database holding nothing at all in place (keeping its settings).
        - Refuses a dump whose sha256 differs from `expected_sha256`, before changing anything.
        - Writes the marker (backup, manifest, operation, times) last: a database with a
          complete marker is a complete restore. A retry after a crash finishes the job.
        """

    # -- set aside, put back, drop ---------------------------------------------------------------

    @abstractmethod
    def aside_name(self, endpoint: DbEndpoint, operation_id: str, aside_dir: str) -> str:
        """Where `set_aside` would keep the database (`Aside.kept`); pure, for plans."""

    @abstractmethod
    def describe_set_aside(self, endpoint: DbEndpoint, operation_id: str, aside_dir: str) -> str:
        """How the database is set aside, for plans ("renamed x_before_op"); pure."""

    @abstractmethod
    def describe_put_back(self, endpoint: DbEndpoint, operation_id: str, aside_dir: str) -> str:
        """How it is put back, for plans ("rename x_before_op back"); pure."""

    @abstractmethod
    def aside_for(
        self,
        runner: CommandRunner,
        endpoint: DbEndpoint,
        password: Password,
        operation_id: str,
        aside_dir: str,
    ) -> Aside:
        """Read-only: where the existing database would be kept aside and what putting it back
        will need (record it before calling `set_aside`). Refuses a place already taken."""

    @abstractmethod
    def set_aside(
        self, runner: CommandRunner, endpoint: DbEndpoint, password: Password, aside: Aside
    ) -> bool:
        """Move the whole database out of the way, to `aside`: afterwards no database of that
        name exists and its content waits in `aside.kept`. True if it moved now, False if it
        already had (a repeated call). The content is safe before the database goes."""

    @abstractmethod
    def aside_parts(
        self, runner: CommandRunner, endpoint: DbEndpoint, password: Password, aside: Aside
    ) -> dict[str, bool]:
        """Each part of the set-aside copy (`drp/x_before_op`, `drp:path.sql.gz`...) and
        whether it is there now."""

    @abstractmethod
    def put_back(
        self,
        runner: CommandRunner,
        endpoint: DbEndpoint,
        password: Password,
        aside: Aside,
        operation_id: str,
    ) -> str:
        """Bring back the content set aside as `endpoint.dbname`, then remove the set-aside copy.

        What stands in its place is dropped only if it is `operation_id`'s own restore (see
        `drop_own`); otherwise `NotOwnDatabase` and nothing changes. Raises `AsideMissing` when
        the set-aside copy is gone and the content is not back either. The content put back is
        the content set aside (the same database, or a reload proved by table checksums); a
        repeated call finds it back and only removes what is left of the copy. Returns what was
        done, as one sentence.
        """

    def drop_own(self, endpoint: DbEndpoint, password: Password, operation_id: str) -> bool:
        """Drop the database only if drp's marker says `operation_id` restored it (else raise
        `NotOwnDatabase`, dropping nothing). False when there is no such database."""
        state = self.read_state(endpoint, password)
        if not state.exists:
            return False
        if not is_own(state, operation_id):
            raise NotOwnDatabase(endpoint.label, operation_id, state.marker)
        self._drop(endpoint, password)
        return True

    # -- the warm DRP server: staged databases ------------------------------------------------
    @abstractmethod
    def swap_in(
        self, stage: DbEndpoint, endpoint: DbEndpoint, password: Password, *, operation_id: str
    ) -> RestoreResult:
        """Put the staged database `stage` (a complete restore, see `stage_endpoint`) in place
        as `endpoint.dbname`, in seconds whatever its size; what held that name is kept aside
        (renamed, never dumped or dropped). Raises `DatabaseError` when the stage cannot be
        moved; the caller then restores from the dump."""

    def drop_stage(self, stage: DbEndpoint, password: Password) -> bool:
        """Drop a staged database, only if drp's marker says a staging run restored it (its
        operation id starts with `stage-`); else `NotOwnDatabase`. False: there was none."""
        state = self.read_state(stage, password)
        if not state.exists:
            return False
        marker = state.marker
        if marker is None or not marker.operation_id.startswith(STAGE_OPERATION_PREFIX):
            raise NotOwnDatabase(stage.label, "a staging run", marker)
        self._drop(stage, password)
        return True

    @abstractmethod
    def _drop(self, endpoint: DbEndpoint, password: Password) -> None:
        """Drop the database, no questions asked (callers check it may go)."""

    def _differences(self, endpoint: DbEndpoint, password: Password, aside: Aside) -> str:
        """What differs between the database now and the content set aside (empty: the same):
        tables, other objects, drp's marker, and the table checksums when recorded."""
        state = self.read_state(endpoint, password)
        if not state.exists:
            return f"{endpoint.label} is missing"
        wrong = []
        if (state.tables, state.other_objects) != (aside.tables, aside.other_objects):
            wrong.append(
                f"{state.tables} tables and {state.other_objects} other objects, before "
                f"{aside.tables} and {aside.other_objects}"
            )
        if state.marker != aside.marker:
            now = state.marker.backup_id if state.marker else "none"
            was = aside.marker.backup_id if aside.marker else "none"
            wrong.append(f"drp marker {now}, before {was}")
        checked = not wrong and aside.checksums
        if checked and self.table_checksums(endpoint, password) != aside.checksums:
            wrong.append("table checksums differ")
        return f"{endpoint.label}: " + "; ".join(wrong) if wrong else ""


class PostgresEngine(DatabaseEngine):
    """PostgreSQL: `pg_dump -Fc` / `pg_restore -j N` on the hosts; restores load into a staging
    database swapped in by renames; set aside by renaming the database on its server."""

    name: ClassVar[EngineName] = "postgresql"

    def __init__(
        self,
        *,
        jobs: int = 2,
        no_privileges: bool = False,
        maintenance_db: str = postgres.MAINTENANCE_DB,
    ) -> None:
        self.jobs, self.no_privileges, self.maintenance_db = jobs, no_privileges, maintenance_db

    def exists(self, endpoint: DbEndpoint, password: Password) -> bool:
        return postgres.database_exists(endpoint, password, maintenance_db=self.maintenance_db)

    def read_state(self, endpoint: DbEndpoint, password: Password) -> DatabaseState:
        return postgres.read_state(endpoint, password, maintenance_db=self.maintenance_db)

    def read_marker(self, endpoint: DbEndpoint, password: Password) -> Marker | None:
        return postgres.read_marker(endpoint, password, maintenance_db=self.maintenance_db)

    def table_counts(self, endpoint: DbEndpoint, password: Password) -> dict[str, int]:
        return postgres.table_counts(endpoint, password)

    def table_checksums(self, endpoint: DbEndpoint, password: Password) -> dict[str, str]:
        return postgres.table_checksums(endpoint, password)

    def size_bytes(self, endpoint: DbEndpoint, password: Password) -> int:
        return postgres.size_bytes(endpoint, password)

    def server_version(self, endpoint: DbEndpoint, password: Password) -> str:
        return postgres.server_version(endpoint, password, maintenance_db=self.maintenance_db)

    def dump(
        self,
        runner: CommandRunner,
        endpoint: DbEndpoint,
        password: Password,
        path: str,
        *,
        count_rows: bool = True,
        timeout: float | None = None,
    ) -> DumpResult:
        return postgres.dump(
            runner, endpoint, password, path, count_rows=count_rows, timeout=timeout
        )

    def restore(
        self,
        runner: CommandRunner,
        dump_path: str,
        endpoint: DbEndpoint,
        password: Password,
        *,
        backup_id: str,
        manifest_digest: str,
        operation_id: str,
        force: bool = False,
        expected_sha256: str | None = None,
        timeout: float | None = None,
    ) -> RestoreResult:
        return postgres.restore(
            runner,
            dump_path,
            endpoint,
            password,
            backup_id=backup_id,
            manifest_digest=manifest_digest,
            operation_id=operation_id,
            jobs=self.jobs,
            force=force,
            expected_sha256=expected_sha256,
            no_privileges=self.no_privileges,
            timeout=timeout,
            maintenance_db=self.maintenance_db,
        )

    def aside_name(self, endpoint: DbEndpoint, operation_id: str, aside_dir: str) -> str:
        return postgres.aside_name(endpoint.dbname, operation_id)

    def describe_set_aside(self, endpoint: DbEndpoint, operation_id: str, aside_dir: str) -> str:
        return f"renamed {self.aside_name(endpoint, operation_id, aside_dir)}"

    def describe_put_back(self, endpoint: DbEndpoint, operation_id: str, aside_dir: str) -> str:
        return f"rename {self.aside_name(endpoint, operation_id, aside_dir)} back"

    def aside_for(
        self,
        runner: CommandRunner,
        endpoint: DbEndpoint,
        password: Password,
        operation_id: str,
        aside_dir: str,
    ) -> Aside:
        kept = self.aside_name(endpoint, operation_id, aside_dir)
        if not self.exists(endpoint, password):
            raise DatabaseError(f"{endpoint.label} does not exist: nothing to set aside")
        if self.exists(endpoint.with_dbname(kept), password):
            raise DatabaseError(
                f"{endpoint.host_name}/{kept} already exists, so {endpoint.label} cannot be set "
                "aside under that name: rename or drop it, then run again"
            )
        state = self.read_state(endpoint, password)
        return Aside(
            engine=self.name,
            database=endpoint.label,
            kept=kept,
            tables=state.tables,
            other_objects=state.other_objects,
            marker=state.marker,
        )

    def set_aside(
        self, runner: CommandRunner, endpoint: DbEndpoint, password: Password, aside: Aside
    ) -> bool:
        if not self.exists(endpoint, password):
            if self.exists(endpoint.with_dbname(aside.kept), password):
                return False
            raise DatabaseError(f"{endpoint.label} disappeared before it could be set aside")
        postgres.rename_database(endpoint, password, aside.kept, maintenance_db=self.maintenance_db)
        return True

    def aside_parts(
        self, runner: CommandRunner, endpoint: DbEndpoint, password: Password, aside: Aside
    ) -> dict[str, bool]:
        kept = endpoint.with_dbname(aside.kept)
        return {kept.label: self.exists(kept, password)}

    def put_back(
        self,
        runner: CommandRunner,
        endpoint: DbEndpoint,
        password: Password,
        aside: Aside,
        operation_id: str,
    ) -> str:
        kept = endpoint.with_dbname(aside.kept)
        if not self.exists(kept, password):
            differs = self._differences(endpoint, password, aside)
            if not differs:
                return f"{endpoint.label} already holds its content from before"
            raise AsideMissing(
                f"{differs}, and {kept.label} is missing: nothing was deleted; compare by hand "
                "with what was recorded before setting it aside"
            )
        dropped = self.drop_own(endpoint, password, operation_id)
        postgres.rename_database(
            kept, password, endpoint.dbname, maintenance_db=self.maintenance_db
        )
        done = f"renamed {kept.label} back to {endpoint.dbname}"
        return f"dropped the restore of {operation_id}; {done}" if dropped else done

    def _drop(self, endpoint: DbEndpoint, password: Password) -> None:
        postgres.drop_database(endpoint, password, maintenance_db=self.maintenance_db)

    def swap_in(
        self, stage: DbEndpoint, endpoint: DbEndpoint, password: Password, *, operation_id: str
    ) -> RestoreResult:
        return postgres.swap_in(
            stage, endpoint, password, operation_id=operation_id, maintenance_db=self.maintenance_db
        )


def mysql_aside_files(aside_dir: str, dbname: str) -> tuple[str, str]:
    """Where a MySQL database set aside waits: its content, then drp's marker table."""
    base = posixpath.join(aside_dir, dbname)
    return f"{base}.sql.gz", f"{base}.marker.sql"


class MysqlEngine(DatabaseEngine):
    """MySQL / MariaDB: `mariadb-dump` / the `mariadb` client on the hosts; restores keep the
    previous content in a dump file first; set aside by dumping to files, then dropping."""

    name: ClassVar[EngineName] = "mysql"

    def __init__(
        self,
        *,
        dump_program: str = mysql.DUMP_PROGRAM,
        client_program: str = mysql.CLIENT_PROGRAM,
    ) -> None:
        self.dump_program, self.client_program = dump_program, client_program

    def exists(self, endpoint: DbEndpoint, password: Password) -> bool:
        return mysql.database_exists(endpoint, password)

    def read_state(self, endpoint: DbEndpoint, password: Password) -> DatabaseState:
        return mysql.read_state(endpoint, password)

    def read_marker(self, endpoint: DbEndpoint, password: Password) -> Marker | None:
        return mysql.read_marker(endpoint, password)

    def table_counts(self, endpoint: DbEndpoint, password: Password) -> dict[str, int]:
        return mysql.table_counts(endpoint, password)

    def table_checksums(self, endpoint: DbEndpoint, password: Password) -> dict[str, str]:
        return mysql.table_checksums(endpoint, password)

    def size_bytes(self, endpoint: DbEndpoint, password: Password) -> int:
        return mysql.size_bytes(endpoint, password)

    def server_version(self, endpoint: DbEndpoint, password: Password) -> str:
        return mysql.server_version(endpoint, password)

    def dump(
        self,
        runner: CommandRunner,
        endpoint: DbEndpoint,
        password: Password,
        path: str,
        *,
        count_rows: bool = True,
        timeout: float | None = None,
    ) -> DumpResult:
        return mysql.dump(
            runner,
            endpoint,
            password,
            path,
            count_rows=count_rows,
            program=self.dump_program,
            timeout=timeout,
        )

    def restore(
        self,
        runner: CommandRunner,
        dump_path: str,
        endpoint: DbEndpoint,
        password: Password,
        *,
        backup_id: str,
        manifest_digest: str,
        operation_id: str,
        force: bool = False,
        expected_sha256: str | None = None,
        timeout: float | None = None,
    ) -> RestoreResult:
        return mysql.restore(
            runner,
            dump_path,
            endpoint,
            password,
            backup_id=backup_id,
            manifest_digest=manifest_digest,
            operation_id=operation_id,
            force=force,
            expected_sha256=expected_sha256,
            dump_program=self.dump_program,
            client_program=self.client_program,
            timeout=timeout,
        )

    def aside_name(self, endpoint: DbEndpoint, operation_id: str, aside_dir: str) -> str:
        return mysql_aside_files(aside_dir, endpoint.dbname)[0]

    def describe_set_aside(self, endpoint: DbEndpoint, operation_id: str, aside_dir: str) -> str:
        kept = self.aside_name(endpoint, operation_id, aside_dir)
        return f"dumped to {endpoint.host_name}:{kept}, then dropped"

    def describe_put_back(self, endpoint: DbEndpoint, operation_id: str, aside_dir: str) -> str:
        kept = self.aside_name(endpoint, operation_id, aside_dir)
        return f"recreate it and load {endpoint.host_name}:{kept}"

    def aside_for(
        self,
        runner: CommandRunner,
        endpoint: DbEndpoint,
        password: Password,
        operation_id: str,
        aside_dir: str,
    ) -> Aside:
        content, marker_file = mysql_aside_files(aside_dir, endpoint.dbname)
        state = self.read_state(endpoint, password)
        if not state.exists:
            raise DatabaseError(f"{endpoint.label} does not exist: nothing to set aside")
        options = mysql.database_options(endpoint, password)
        charset, collation = options if options is not None else (None, None)
        return Aside(
            engine=self.name,
            database=endpoint.label,
            kept=content,
            marker_dump=marker_file if state.marker is not None else None,
            charset=charset,
            collation=collation,
            tables=state.tables,
            other_objects=state.other_objects,
            marker=state.marker,
            checksums=self.table_checksums(endpoint, password),
        )

    def _files(self, aside: Aside) -> list[str]:
        return [f for f in (aside.kept, aside.marker_dump) if f]

    def set_aside(
        self, runner: CommandRunner, endpoint: DbEndpoint, password: Password, aside: Aside
    ) -> bool:
        files = self._files(aside)
        if not self.exists(endpoint, password):
            if paths.probe(runner, [aside.kept])[aside.kept]:
                return False
            raise DatabaseError(
                f"{endpoint.label} disappeared before it could be set aside, and no dump of it "
                f"is at {runner.name}:{aside.kept}"
            )
        # The database is still there, so dumps left by an interrupted attempt are spare copies:
        # dump again, now.
        for path in files:
            paths.remove_created(runner, path)
        self.dump(runner, endpoint, password, aside.kept, count_rows=False)
        if aside.marker_dump:
            write_dump(
                runner,
                aside.marker_dump,
                lambda p: mysql.marker_dump_argv(endpoint, p, program=self.dump_program),
                f"dump of drp's marker table of {endpoint.label}",
                secret_env={mysql.PASSWORD_ENV: reveal(password)},
            )
        mysql.drop_database(endpoint, password)
        return True

    def aside_parts(
        self, runner: CommandRunner, endpoint: DbEndpoint, password: Password, aside: Aside
    ) -> dict[str, bool]:
        there = paths.probe(runner, self._files(aside))
        return {f"{runner.name}:{path}": found for path, found in there.items()}

    def put_back(
        self,
        runner: CommandRunner,
        endpoint: DbEndpoint,
        password: Password,
        aside: Aside,
        operation_id: str,
    ) -> str:
        files = self._files(aside)
        flag = f"{aside.kept}.reloading"  # says a database there is this put-back's partial reload
        there = paths.probe(runner, [*files, flag])
        differs = self._differences(endpoint, password, aside)
        if not differs:
            done = f"{endpoint.label} already holds its content from before"
        else:
            if not all(there[f] for f in files):
                raise AsideMissing(
                    f"{differs}, and the set-aside dump {runner.name}:{aside.kept} is missing: "
                    "nothing was deleted"
                )
            if aside.charset is None or aside.collation is None:
                raise DatabaseError(
                    f"the character set of {endpoint.label} was not recorded: create the "
                    f"database by hand, load {runner.name}:{aside.kept} into it, then run again"
                )
            if not there[flag]:
                self.drop_own(endpoint, password, operation_id)
            elif self.exists(endpoint, password):
                self._drop(endpoint, password)  # this put-back's own partial reload
            paths.write_file(runner, flag, "")
            mysql.create_database(endpoint, password, aside.charset, aside.collation)
            for path in files:
                mysql.load(runner, endpoint, password, path, program=self.client_program)
            problem = self._differences(endpoint, password, aside)
            if problem:
                raise DatabaseError(
                    f"{endpoint.label} reloaded from {runner.name}:{aside.kept} but differs from "
                    f"before it was set aside ({problem}): the dump is kept; check by hand"
                )
            done = (
                f"reloaded {endpoint.label} from its set-aside dump (same tables, rows and "
                "checksums)"
            )
            there[flag] = True
        for path in [flag, *files]:
            if there[path]:
                paths.remove_created(runner, path)
        return f"{done}; removed the dump"

    def _drop(self, endpoint: DbEndpoint, password: Password) -> None:
        mysql.drop_database(endpoint, password)

    def swap_in(
        self, stage: DbEndpoint, endpoint: DbEndpoint, password: Password, *, operation_id: str
    ) -> RestoreResult:
        return mysql.swap_in(stage, endpoint, password, operation_id=operation_id)


def stage_endpoint(endpoint: DbEndpoint) -> DbEndpoint:
    """Where a staging run restores `endpoint`'s database on the same server:
    `<name>__drp_stage` (shortened with a hash when too long)."""
    return endpoint.with_dbname(scratch_name(endpoint.dbname, "_drp_stage", ""))


_ENGINES: dict[str, type[DatabaseEngine]] = {
    PostgresEngine.name: PostgresEngine,
    MysqlEngine.name: MysqlEngine,
}


def engine_for(name: str) -> DatabaseEngine:
    """The engine of an inventory's `engine` value ("postgresql" or "mysql")."""
    try:
        return _ENGINES[name]()
    except KeyError:
        raise ValueError(
            f"unknown database engine {name!r}: use one of {', '.join(sorted(_ENGINES))}"
        ) from None
