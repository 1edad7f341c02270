"""PostgreSQL: dump and restore on the hosts, counts, checksums and restore markers read directly.

Dumps (`pg_dump -Fc`) and restores (`pg_restore -j N`) run on the host that holds the dump file,
through its `CommandRunner`, and reach the database server over TCP: the data never passes
through the orchestrator, and the password travels as `PGPASSWORD` through the runner's
`secret_env`, never in argv. Row counts, checksums and markers are read with psycopg from the
orchestrator.

How a restore keeps every byte safe: unless the target is empty (then it loads straight into
it), it loads the dump into a fresh staging database (`<name>_drp_new_<hash>`), writes the
marker there last, then, in one transaction, renames the current database aside as
`<name>_before_<operation>` and the staging one into place. Nothing is dropped: the previous
content stays a live database until an operator removes it. The schema `drp` (which holds the
marker) is drp's own and is left out of dumps, counts and checksums.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime

import psycopg
from psycopg import sql

from providers.commands import CommandRunner
from providers.dbcommon import (
    DatabaseError,
    DatabaseState,
    DbEndpoint,
    DumpResult,
    Marker,
    NonEmptyDatabase,
    Password,
    RestoreDecision,
    RestoreResult,
    check_dump_sha256,
    decide_restore,
    reveal,
    run_on_host,
    scratch_name,
    swapped_in,
    write_dump,
)

__all__ = [
    "MARKER_SCHEMA",
    "MARKER_TABLE",
    "DatabaseError",
    "DbEndpoint",
    "DumpResult",
    "Marker",
    "NonEmptyDatabase",
    "RestoreResult",
    "aside_name",
    "drop_database",
    "dump",
    "pg_dump_argv",
    "pg_restore_argv",
    "read_marker",
    "read_state",
    "rename_database",
    "restore",
    "restore_decision",
    "staging_name",
    "table_checksums",
    "table_counts",
]

MARKER_SCHEMA = "drp"
MARKER_TABLE = "drp_restore_marker"
DUMP_FORMAT = "pg-custom"
MAINTENANCE_DB = "postgres"
PASSWORD_ENV = "PGPASSWORD"

# Text forms that do not depend on the session, so that a row hashes the same on both servers.
_STABLE_TEXT_SETTINGS = (
    "SET TimeZone TO 'UTC'",
    "SET DateStyle TO 'ISO, YMD'",
    "SET IntervalStyle TO 'postgres'",
    "SET extra_float_digits TO 3",
    "SET bytea_output TO 'hex'",
)

_USER_SCHEMA = sql.SQL(
    "n.nspname NOT IN ('information_schema', {marker_schema}) AND n.nspname NOT LIKE 'pg\\_%'"
).format(marker_schema=sql.Literal(MARKER_SCHEMA))

_USER_TABLES = sql.SQL(
    """
    SELECT n.nspname, c.relname
    FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE c.relkind IN ('r', 'p') AND NOT c.relispartition AND {user_schema}
    ORDER BY 1, 2
    """
).format(user_schema=_USER_SCHEMA)

# Anything a restore would have to keep besides tables: views, sequences, foreign tables,
# routines, types, extra schemas, extensions (plpgsql and `public` come with every database).
_OTHER_OBJECTS = sql.SQL(
    """
    SELECT
      (SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE c.relkind IN ('v', 'm', 'S', 'f') AND {user_schema})
    + (SELECT count(*) FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
        WHERE {user_schema})
    + (SELECT count(*) FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace
        WHERE t.typtype IN ('e', 'd', 'r', 'm') AND {user_schema})
    + (SELECT count(*) FROM pg_namespace n WHERE n.nspname <> 'public' AND {user_schema})
    + (SELECT count(*) FROM pg_extension WHERE extname <> 'plpgsql')
    """
).format(user_schema=_USER_SCHEMA)


def _log(endpoint: DbEndpoint) -> logging.Logger:
    return logging.getLogger(f"providers.postgres[{endpoint.label}]")


# -- argv (pure) ------------------------------------------------------------------------------


def _connection_options(endpoint: DbEndpoint) -> list[str]:
    return [
        f"--host={endpoint.address}",
        f"--port={endpoint.port}",
        f"--username={endpoint.user}",
        "--no-password",  # never prompt: the password comes from PGPASSWORD or not at all
    ]


def pg_dump_argv(endpoint: DbEndpoint, path: str, *, snapshot: str | None = None) -> list[str]:
    """pg_dump of one database in custom format (compressed, restorable in parallel)."""
    argv = [
        "pg_dump",
        *_connection_options(endpoint),
        f"--dbname={endpoint.dbname}",
        "--format=custom",
        "--compress=1",  # half the time of the default level, for a file about 1% larger
        f"--exclude-schema={MARKER_SCHEMA}",
        f"--file={path}",
    ]
    if snapshot is not None:
        argv.append(f"--snapshot={snapshot}")
    return argv


def pg_restore_argv(
    endpoint: DbEndpoint,
    path: str,
    *,
    jobs: int = 2,
    no_owner: bool = True,
    no_privileges: bool = False,
) -> list[str]:
    """pg_restore of a custom-format dump into `endpoint.dbname`, which must exist and be empty.

    `--no-owner` by default: the objects belong to the restoring user, because the source's
    owner roles need not exist on the target server. Grants are kept (`no_privileges=False`):
    a grant to a role missing on the target stops the restore with the role's name, rather than
    leaving an application that cannot read its tables.
    """
    if jobs < 1:
        raise ValueError(f"pg_restore jobs must be at least 1, not {jobs}")
    argv = [
        "pg_restore",
        *_connection_options(endpoint),
        f"--dbname={endpoint.dbname}",
        f"--jobs={jobs}",
        "--exit-on-error",
    ]
    if no_owner:
        argv.append("--no-owner")
    if no_privileges:
        argv.append("--no-privileges")
    argv += ["--", path]  # never an option, whatever the path
    return argv


def staging_name(dbname: str, operation_id: str) -> str:
    """The database a restore loads into before swapping it in: one per operation and database,
    whatever the attempt. A retry finds what an attempt killed half-way left there (its marker
    says which backup, loaded or not), and reuses it or drops it: callers restore under an id
    that may change from one attempt to the next (a new dump, a restore "again")."""
    digest = hashlib.sha256(operation_id.encode()).hexdigest()[:10]
    return scratch_name(dbname, "drp_new", digest)


def aside_name(dbname: str, operation_id: str, attempt: int = 1) -> str:
    """Where the previous database is kept: `<name>_before_<operation>` (then `_2`, `_3`...)."""
    extra = operation_id if attempt == 1 else f"{operation_id}_{attempt}"
    return scratch_name(dbname, "before", extra)


# -- connections and readers ------------------------------------------------------------------


# drp's own sessions never wait forever behind someone else's lock (an open transaction, a
# long query): after LOCK_TIMEOUT_SECONDS the statement fails and the step says why.
LOCK_TIMEOUT_SECONDS = 60
SESSION_OPTIONS = f"-c lock_timeout={LOCK_TIMEOUT_SECONDS * 1000}"


@contextmanager
def _connect(
    endpoint: DbEndpoint, password: str, *, autocommit: bool = False
) -> Iterator[psycopg.Connection]:
    try:
        conn = psycopg.connect(
            host=endpoint.address,
            port=endpoint.port,
            user=endpoint.user,
            password=password,
            dbname=endpoint.dbname,
            connect_timeout=10,
            application_name="drp",
            options=SESSION_OPTIONS,
            autocommit=autocommit,
        )
    except psycopg.Error as err:
        raise DatabaseError(
            f"cannot connect to PostgreSQL {endpoint.label} at {endpoint.address}:{endpoint.port} "
            f"as {endpoint.user}: {_first_line(err)}; check the server is up, the address and "
            "the password"
        ) from err
    try:
        with conn:
            yield conn
    except psycopg.Error as err:
        raise DatabaseError(f"PostgreSQL {endpoint.label}: {_first_line(err)}") from err


def _maintenance(endpoint: DbEndpoint, maintenance_db: str) -> DbEndpoint:
    return endpoint.with_dbname(maintenance_db)


def database_exists(
    endpoint: DbEndpoint, password: Password, *, maintenance_db: str = MAINTENANCE_DB
) -> bool:
    with _connect(_maintenance(endpoint, maintenance_db), reveal(password)) as conn:
        row = conn.execute(
            "SELECT 1 FROM pg_database WHERE datname = %s", (endpoint.dbname,)
        ).fetchone()
    return row is not None


def server_version(
    endpoint: DbEndpoint, password: Password, *, maintenance_db: str = MAINTENANCE_DB
) -> str:
    """The server's version (`SHOW server_version`), asked through the maintenance database:
    the endpoint's own database need not exist."""
    with _connect(
        _maintenance(endpoint, maintenance_db), reveal(password), autocommit=True
    ) as conn:
        row = conn.execute("SHOW server_version").fetchone()
    return str(row[0]) if row else ""


def _user_tables(conn: psycopg.Connection) -> list[tuple[str, str]]:
    return [(schema, name) for schema, name in conn.execute(_USER_TABLES).fetchall()]


def _count_rows(conn: psycopg.Connection) -> dict[str, int]:
    counts: dict[str, int] = {}
    for schema, name in _user_tables(conn):
        query = sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(schema, name))
        row = conn.execute(query).fetchone()
        counts[f"{schema}.{name}"] = int(row[0]) if row else 0
    return counts


def table_counts(endpoint: DbEndpoint, password: Password) -> dict[str, int]:
    """Exact rows per user table (`schema.table` -> count(*)), read in one snapshot."""
    with _connect(endpoint, reveal(password)) as conn:
        conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
        conn.read_only = True
        counts = _count_rows(conn)
    _log(endpoint).info("counted %d rows in %d tables", sum(counts.values()), len(counts))
    return counts


def size_bytes(endpoint: DbEndpoint, password: Password) -> int:
    """The database's size on disk (`pg_database_size`): what a copy of it needs again."""
    with _connect(endpoint, reveal(password)) as conn:
        row = conn.execute("SELECT pg_database_size(current_database())").fetchone()
    return int(row[0]) if row else 0


def table_checksums(endpoint: DbEndpoint, password: Password) -> dict[str, str]:
    """A digest of each user table's content (`schema.table` -> md5 hex), read in one snapshot.

    The md5 of every row's text form, sorted and hashed again: independent of physical order
    and of primary keys (tables without one work too), equal on two servers holding the same
    rows with the same column order. Session settings that change text forms are pinned.
    """
    with _connect(endpoint, reveal(password)) as conn:
        conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
        conn.read_only = True
        for setting in _STABLE_TEXT_SETTINGS:
            conn.execute(setting)  # type: ignore[arg-type]  # constant text
        sums: dict[str, str] = {}
        for schema, name in _user_tables(conn):
            query = sql.SQL(
                "SELECT md5(coalesce(string_agg(h, '' ORDER BY h), '')) "
                "FROM (SELECT md5(ROW(t.*)::text) AS h FROM {} AS t) AS s"
            ).format(sql.Identifier(schema, name))
            row = conn.execute(query).fetchone()
            sums[f"{schema}.{name}"] = str(row[0]) if row else ""
    _log(endpoint).info("checksummed %d tables", len(sums))
    return sums


_MARKER_QUERY = sql.SQL(
    "SELECT backup_id, manifest_digest, operation_id, started_at, restored_at "
    "FROM {} ORDER BY started_at DESC LIMIT 1"
).format(sql.Identifier(MARKER_SCHEMA, MARKER_TABLE))


def _read_marker(conn: psycopg.Connection) -> Marker | None:
    present = conn.execute(
        "SELECT to_regclass(%s) IS NOT NULL", (f"{MARKER_SCHEMA}.{MARKER_TABLE}",)
    ).fetchone()
    if not present or not present[0]:
        return None
    row = conn.execute(_MARKER_QUERY).fetchone()
    if row is None:
        return None
    return Marker(
        backup_id=row[0],
        manifest_digest=row[1],
        operation_id=row[2],
        started_at=row[3].astimezone(UTC),
        restored_at=row[4].astimezone(UTC) if row[4] is not None else None,
    )


def read_marker(
    endpoint: DbEndpoint, password: Password, *, maintenance_db: str = MAINTENANCE_DB
) -> Marker | None:
    """Which backup drp restored into this database (None: missing database, or not drp's)."""
    pw = reveal(password)
    if not database_exists(endpoint, pw, maintenance_db=maintenance_db):
        return None
    with _connect(endpoint, pw) as conn:
        return _read_marker(conn)


def read_state(
    endpoint: DbEndpoint, password: Password, *, maintenance_db: str = MAINTENANCE_DB
) -> DatabaseState:
    """Exists? how many user tables? drp's marker? (rows are counted only for an unknown
    non-empty database, whose refusal message gives them)."""
    pw = reveal(password)
    if not database_exists(endpoint, pw, maintenance_db=maintenance_db):
        return DatabaseState(exists=False)
    with _connect(endpoint, pw) as conn:
        marker = _read_marker(conn)
        tables = len(_user_tables(conn))
        rows = sum(_count_rows(conn).values()) if tables and marker is None else None
        found = conn.execute(_OTHER_OBJECTS).fetchone()
        others = int(found[0]) if found else 0
    return DatabaseState(exists=True, tables=tables, rows=rows, marker=marker, other_objects=others)


def restore_decision(
    endpoint: DbEndpoint,
    password: Password,
    backup_id: str,
    *,
    force: bool = False,
    maintenance_db: str = MAINTENANCE_DB,
) -> RestoreDecision:
    """What `restore()` would do, read-only (raises `NonEmptyDatabase` as restore would)."""
    state = read_state(endpoint, password, maintenance_db=maintenance_db)
    return decide_restore(state, endpoint.label, backup_id, force=force)


# -- dump -------------------------------------------------------------------------------------


def dump(
    runner: CommandRunner,
    endpoint: DbEndpoint,
    password: Password,
    path: str,
    *,
    count_rows: bool = True,
    timeout: float | None = None,
) -> DumpResult:
    """Dump `endpoint` with pg_dump run on `runner`'s host into `path` (a new file there).

    With `count_rows`, the rows per table are counted in the very snapshot pg_dump uses
    (exported from the counting transaction), so the manifest's counts are exactly the dump's.
    """
    pw = reveal(password)
    log = _log(endpoint)
    secret_env = {PASSWORD_ENV: pw}
    what = f"pg_dump of {endpoint.label}"
    counts: dict[str, int] | None = None
    if count_rows:
        with _connect(endpoint, pw) as conn:
            conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
            conn.read_only = True
            row = conn.execute("SELECT pg_export_snapshot()").fetchone()
            snapshot = str(row[0]) if row else None
            counts = _count_rows(conn)
            # The transaction stays open while pg_dump runs: its snapshot must outlive the import.
            seconds, size, sha256 = write_dump(
                runner,
                path,
                lambda p: pg_dump_argv(endpoint, p, snapshot=snapshot),
                what,
                secret_env=secret_env,
                timeout=timeout,
            )
    else:
        seconds, size, sha256 = write_dump(
            runner,
            path,
            lambda p: pg_dump_argv(endpoint, p),
            what,
            secret_env=secret_env,
            timeout=timeout,
        )
    log.info("dumped to %s:%s, %d bytes in %.2f s", runner.name, path, size, seconds)
    return DumpResult(
        host_name=runner.name,
        path=path,
        database=endpoint.label,
        format=DUMP_FORMAT,
        size_bytes=size,
        sha256=sha256,
        seconds=round(seconds, 3),
        table_counts=counts,
        counts_exact=counts is not None,
    )


# -- restore ----------------------------------------------------------------------------------


def _create_database(endpoint: DbEndpoint, password: str, maintenance_db: str) -> None:
    with _connect(_maintenance(endpoint, maintenance_db), password, autocommit=True) as conn:
        conn.execute(
            sql.SQL("CREATE DATABASE {} TEMPLATE template0").format(sql.Identifier(endpoint.dbname))
        )


def _drop_staging(endpoint: DbEndpoint, password: str, maintenance_db: str) -> None:
    with _connect(_maintenance(endpoint, maintenance_db), password, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE {}").format(sql.Identifier(endpoint.dbname)))


def _write_marker(endpoint: DbEndpoint, password: str, marker: Marker) -> None:
    table = sql.Identifier(MARKER_SCHEMA, MARKER_TABLE)
    with _connect(endpoint, password) as conn:
        conn.execute(
            sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(MARKER_SCHEMA))
        )
        conn.execute(
            sql.SQL(
                "CREATE TABLE IF NOT EXISTS {} (backup_id text NOT NULL, "
                "manifest_digest text NOT NULL, operation_id text NOT NULL, "
                "started_at timestamptz NOT NULL, restored_at timestamptz)"
            ).format(table)
        )
        conn.execute(sql.SQL("DELETE FROM {}").format(table))
        conn.execute(
            sql.SQL(
                "INSERT INTO {} (backup_id, manifest_digest, operation_id, started_at, "
                "restored_at) VALUES (%s, %s, %s, %s, %s)"
            ).format(table),
            (
                marker.backup_id,
                marker.manifest_digest,
                marker.operation_id,
                marker.started_at,
                marker.restored_at,
            ),
        )


def _finish_marker(endpoint: DbEndpoint, password: str, started: Marker) -> Marker:
    """Rewrite the marker as a finished restore (written last, after the data)."""
    _write_marker(endpoint, password, started.model_copy(update={"restored_at": datetime.now(UTC)}))
    with _connect(endpoint, password) as conn:
        marker = _read_marker(conn)
    if marker is None:
        raise DatabaseError(f"the restore marker of {endpoint.label} could not be read back")
    return marker


def _prepare_staging(
    staging: DbEndpoint, password: str, marker: Marker, maintenance_db: str
) -> bool:
    """Create the staging database with a started marker; True if a previous attempt already
    loaded this backup completely there (so only the swap is left)."""
    if database_exists(staging, password, maintenance_db=maintenance_db):
        with _connect(staging, password) as conn:
            found = _read_marker(conn)
            tables = len(_user_tables(conn))
        if found is not None and found.backup_id == marker.backup_id and found.complete:
            return True
        if found is None and tables:
            raise DatabaseError(
                f"{staging.label} exists with {tables} tables but no drp marker; drp uses this "
                "name for its restores: rename or drop that database, then run again"
            )
        # What an earlier attempt of this operation left (a load cut half-way, or another
        # backup's): nothing to keep, its content is a dump's that still exists.
        _drop_staging(staging, password, maintenance_db)
    _create_database(staging, password, maintenance_db)
    _write_marker(staging, password, marker)
    return False


def _free_aside_name(
    endpoint: DbEndpoint, password: str, operation_id: str, maintenance_db: str
) -> str:
    for attempt in range(1, 100):
        name = aside_name(endpoint.dbname, operation_id, attempt)
        if not database_exists(endpoint.with_dbname(name), password, maintenance_db=maintenance_db):
            return name
    raise DatabaseError(f"no free name to keep {endpoint.label} aside (tried 99)")


def _swap(
    endpoint: DbEndpoint,
    password: str,
    staging: str,
    kept_as: str | None,
    maintenance_db: str,
) -> None:
    """Rename the current database aside and the staging one into place, in one transaction."""
    rename = sql.SQL("ALTER DATABASE {} RENAME TO {}")
    target = sql.Identifier(endpoint.dbname)
    try:
        with _connect(_maintenance(endpoint, maintenance_db), password) as conn:
            if kept_as is not None:
                conn.execute(rename.format(target, sql.Identifier(kept_as)))
            conn.execute(rename.format(sql.Identifier(staging), target))
    except DatabaseError as err:
        cause = err.__cause__
        if isinstance(cause, psycopg.errors.ObjectInUse):
            raise DatabaseError(
                f"cannot swap the restored data into {endpoint.label}: {_first_line(cause)}. "
                "Stop what is connected to it (put the application in maintenance), then run "
                f"again: the restored data waits in {staging} and is reused"
            ) from cause
        raise


def restore(
    runner: CommandRunner,
    dump_path: str,
    endpoint: DbEndpoint,
    password: Password,
    *,
    backup_id: str,
    manifest_digest: str,
    operation_id: str,
    jobs: int = 2,
    force: bool = False,
    expected_sha256: str | None = None,
    no_privileges: bool = False,
    timeout: float | None = None,
    maintenance_db: str = MAINTENANCE_DB,
) -> RestoreResult:
    """Restore the custom-format dump at `runner`'s `dump_path` as `endpoint.dbname`.

    Skips (with the reason) when the marker says this backup is already there; raises
    `NonEmptyDatabase` over a database drp did not restore unless `force`; otherwise loads into
    a staging database, marks it, and swaps it in, keeping the previous database renamed aside.
    A retry after a crash reuses a completely loaded staging database. An existing database
    holding nothing at all is loaded in place (no staging, nothing to keep aside).
    """
    pw = reveal(password)
    log = _log(endpoint)
    state = read_state(endpoint, pw, maintenance_db=maintenance_db)
    decision = decide_restore(state, endpoint.label, backup_id, force=force)
    if decision.action == "skip":
        log.info("skip: %s", decision.reason)
        return RestoreResult(
            action="skipped",
            reason=decision.reason,
            database=endpoint.label,
            backup_id=backup_id,
            marker=state.marker,
        )
    log.info("restore: %s", decision.reason)
    check_dump_sha256(runner, dump_path, expected_sha256)
    started = Marker(
        backup_id=backup_id,
        manifest_digest=manifest_digest,
        operation_id=operation_id,
        started_at=datetime.now(UTC),
    )
    began = time.monotonic()
    if state.empty:
        # Loading straight into it keeps what was set on the database itself (owner, grants,
        # settings); a crash leaves a started marker, and the retry then keeps the partial
        # load aside like any other content.
        _write_marker(endpoint, pw, started)
        _load(runner, dump_path, endpoint, pw, jobs, no_privileges, timeout)
        _finish_marker(endpoint, pw, started)
        reused, kept_as = False, None
    else:
        staging = endpoint.with_dbname(staging_name(endpoint.dbname, operation_id))
        reused = _prepare_staging(staging, pw, started, maintenance_db)
        if reused:
            log.info("reusing %s, loaded by a previous attempt", staging.dbname)
        else:
            _load(runner, dump_path, staging, pw, jobs, no_privileges, timeout)
            _finish_marker(staging, pw, started)
        kept_as = (
            _free_aside_name(endpoint, pw, operation_id, maintenance_db) if state.exists else None
        )
        _swap(endpoint, pw, staging.dbname, kept_as, maintenance_db)
    seconds = time.monotonic() - began
    marker = read_marker(endpoint, pw, maintenance_db=maintenance_db)
    kept = f"; the previous database is kept as {kept_as}" if kept_as else ""
    how = "loaded by an earlier attempt" if reused else f"in {seconds:.1f} s"
    reason = f"restored backup {backup_id} on {endpoint.label} ({how}){kept}"
    log.info("%s", reason)
    return RestoreResult(
        action="restored",
        reason=reason,
        database=endpoint.label,
        backup_id=backup_id,
        seconds=round(seconds, 3),
        kept_as=kept_as,
        marker=marker,
    )


def _load(
    runner: CommandRunner,
    dump_path: str,
    into: DbEndpoint,
    password: str,
    jobs: int,
    no_privileges: bool,
    timeout: float | None,
) -> None:
    run_on_host(
        runner,
        pg_restore_argv(into, dump_path, jobs=jobs, no_privileges=no_privileges),
        f"pg_restore of {runner.name}:{dump_path} into {into.label}",
        secret_env={PASSWORD_ENV: password},
        timeout=timeout,
    )


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


# -- whole databases (set aside, put back, drop) ----------------------------------------------


@contextmanager
def _admin(
    endpoint: DbEndpoint, password: Password, maintenance_db: str = MAINTENANCE_DB
) -> Iterator[psycopg.Connection]:
    """An autocommit connection to the maintenance database, for statements on whole databases."""
    where = f"PostgreSQL {endpoint.label} at {endpoint.address}:{endpoint.port}"
    try:
        conn = psycopg.connect(
            host=endpoint.address,
            port=endpoint.port,
            user=endpoint.user,
            password=reveal(password),
            dbname=maintenance_db,
            connect_timeout=10,
            application_name="drp",
            options=SESSION_OPTIONS,
            autocommit=True,
        )
    except psycopg.Error as err:
        raise DatabaseError(f"cannot connect to {where} as {endpoint.user}: {err}") from err
    with conn:
        try:
            yield conn
        except psycopg.errors.ObjectInUse as err:
            raise DatabaseError(
                f"{endpoint.label}: {_first_line(err)}; stop what is connected to it (put the "
                "application in maintenance), then run again"
            ) from err
        except psycopg.Error as err:
            raise DatabaseError(f"{where}: {_first_line(err)}") from err


def rename_database(
    endpoint: DbEndpoint,
    password: Password,
    new_name: str,
    *,
    maintenance_db: str = MAINTENANCE_DB,
) -> None:
    """`ALTER DATABASE ... RENAME`: owner, grants and settings go with the database."""
    target = endpoint.with_dbname(new_name)  # checks the new name's shape
    with _admin(endpoint, password, maintenance_db) as conn:
        conn.execute(
            sql.SQL("ALTER DATABASE {} RENAME TO {}").format(
                sql.Identifier(endpoint.dbname), sql.Identifier(target.dbname)
            )
        )


def drop_database(
    endpoint: DbEndpoint, password: Password, *, maintenance_db: str = MAINTENANCE_DB
) -> None:
    """Drop the database; callers first make sure it is drp's own (`DatabaseEngine.drop_own`)."""
    with _admin(endpoint, password, maintenance_db) as conn:
        conn.execute(sql.SQL("DROP DATABASE {}").format(sql.Identifier(endpoint.dbname)))


# -- a staged database swapped in (warm DRP server) --------------------------------------------


def swap_in(
    stage: DbEndpoint,
    endpoint: DbEndpoint,
    password: Password,
    *,
    operation_id: str,
    maintenance_db: str = MAINTENANCE_DB,
) -> RestoreResult:
    """The staged database `stage` (restored earlier, marker complete) renamed into place as
    `endpoint`; what held that name is renamed `<name>_before_<operation>` first, in the same
    transaction. The marker is rewritten with this operation's id before the renames, so that a
    retry after a crash finds either the stage (and swaps it) or the swapped database (done)."""
    pw = reveal(password)
    began = time.monotonic()
    staged = None
    if database_exists(stage, pw, maintenance_db=maintenance_db):
        with _connect(stage, pw) as conn:
            staged = _read_marker(conn)
    if staged is None or not staged.complete:
        raise DatabaseError(f"{stage.label} holds no complete staged restore to swap in")
    _write_marker(stage, pw, staged.model_copy(update={"operation_id": operation_id}))
    exists = database_exists(endpoint, pw, maintenance_db=maintenance_db)
    kept_as = _free_aside_name(endpoint, pw, operation_id, maintenance_db) if exists else None
    _swap(endpoint, pw, stage.dbname, kept_as, maintenance_db)
    return swapped_in(
        stage,
        endpoint,
        staged,
        how="renamed",
        seconds=time.monotonic() - began,
        kept=f"; the previous database is kept as {kept_as}",
        kept_as=kept_as,
        marker=read_marker(endpoint, pw, maintenance_db=maintenance_db),
    )
