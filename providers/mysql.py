"""MySQL / MariaDB: dump and restore on the hosts, counts, checksums and restore markers read
directly.

Dumps (`mariadb-dump --single-transaction --routines --triggers --events`) and restores (the
`mariadb` client reading the dump file) run on the host holding the file, through its
`CommandRunner`, and reach the server over TCP: the data never passes through the orchestrator,
and the password travels as `MYSQL_PWD` through the runner's `secret_env`, never in argv. Row
counts, checksums and markers are read with pymysql from the orchestrator. On servers with the
Oracle MySQL client tools, pass `dump_program="mysqldump"` / `client_program="mysql"`.

How a restore keeps every byte safe: MySQL cannot rename a database, and moving tables between
databases breaks on views, triggers and routines, so the previous content is first dumped to a
file beside the restore's dump file (`<name>_before_<operation>.sql.gz` on the restoring host,
never replacing a file); only then is the database dropped, recreated with its character set,
marked "restore started", loaded, and marked "restored" (an empty database is loaded in
place, keeping its own settings). A retry after a crash finds its own "started" marker and
loads again (the partial content is a copy of the dump it is restoring).
The table `_drp_restore_marker` is drp's own and is left out of dumps, counts and checksums.
"""

from __future__ import annotations

import logging
import posixpath
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

import pymysql
import pymysql.cursors

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
    absent_argv,
    check_dump_sha256,
    decide_restore,
    free_sibling_path,
    reveal,
    run_on_host,
    scratch_name,
    stdin_from_file_argv,
    swapped_in,
    write_dump,
)

__all__ = [
    "MARKER_TABLE",
    "DatabaseError",
    "DbEndpoint",
    "DumpResult",
    "Marker",
    "NonEmptyDatabase",
    "RestoreResult",
    "create_database",
    "database_options",
    "drop_database",
    "dump",
    "is_compressed",
    "load",
    "marker_dump_argv",
    "mysql_client_argv",
    "mysql_dump_argv",
    "read_marker",
    "read_state",
    "restore",
    "restore_decision",
    "safety_dump_path",
    "table_checksums",
    "table_counts",
]

MARKER_TABLE = "_drp_restore_marker"
DUMP_FORMAT = "mysql-sql"
PASSWORD_ENV = "MYSQL_PWD"
DUMP_PROGRAM = "mariadb-dump"
CLIENT_PROGRAM = "mariadb"
# Table types holding rows: MariaDB reports system-versioned tables apart from base tables.
_ROW_TABLE_TYPES = ("BASE TABLE", "SYSTEM VERSIONED")


# What a database may hold besides tables (triggers belong to their tables).
_OTHER_OBJECTS = (
    "SELECT (SELECT COUNT(*) FROM information_schema.TABLES WHERE TABLE_SCHEMA = %s "
    "AND TABLE_TYPE IN ('VIEW', 'SEQUENCE')) "
    "+ (SELECT COUNT(*) FROM information_schema.ROUTINES WHERE ROUTINE_SCHEMA = %s) "
    "+ (SELECT COUNT(*) FROM information_schema.EVENTS WHERE EVENT_SCHEMA = %s)"
)


def _log(endpoint: DbEndpoint) -> logging.Logger:
    return logging.getLogger(f"providers.mysql[{endpoint.label}]")


def _ident(name: str) -> str:
    return "`" + name.replace("`", "``") + "`"


# -- argv (pure) ------------------------------------------------------------------------------


def _connection_options(endpoint: DbEndpoint) -> list[str]:
    return [
        f"--host={endpoint.address}",
        f"--port={endpoint.port}",
        f"--user={endpoint.user}",
        "--protocol=tcp",
    ]


def mysql_dump_argv(
    endpoint: DbEndpoint,
    path: str,
    *,
    program: str = DUMP_PROGRAM,
    compress: bool = True,
) -> list[str]:
    """A consistent (InnoDB) dump of one database, with its routines, triggers and events.

    Without `--databases` the dump holds no CREATE DATABASE / USE, so it loads into whichever
    database the client names. drp's marker table is always left out: loading a dump made by
    drp never touches the marker of the database it loads into.
    Compressed (`gzip -1`, in the same pass) unless told not: see `is_compressed`.
    """
    argv = [
        program,
        *_connection_options(endpoint),
        "--single-transaction",
        "--routines",
        "--triggers",
        "--events",
        "--hex-blob",
        "--no-tablespaces",  # needs no PROCESS privilege, and tablespaces do not travel anyway
        "--default-character-set=utf8mb4",
    ]
    argv.append(f"--ignore-table={endpoint.dbname}.{MARKER_TABLE}")
    if not compress:
        return [*argv, f"--result-file={path}", endpoint.dbname]
    # bash for pipefail: a failing dump must fail the command, not leave a short gzip file.
    script = 'out=$1; shift; "$@" | gzip -1 > "$out"'
    return ["bash", "-o", "pipefail", "-c", script, "bash", path, *argv, endpoint.dbname]


def is_compressed(path: str) -> bool:
    """Dumps are gzip files when their name ends in `.gz` (`app_shop.sql.gz`)."""
    return path.endswith(".gz")


def mysql_client_argv(
    endpoint: DbEndpoint, dump_path: str, *, program: str = CLIENT_PROGRAM
) -> list[str]:
    """The client loading `dump_path` (read on the host, gunzipped if `.gz`) into the database."""
    client = [
        program,
        *_connection_options(endpoint),
        "--default-character-set=utf8mb4",
        "--batch",
        f"--database={endpoint.dbname}",
    ]
    if not is_compressed(dump_path):
        return stdin_from_file_argv(dump_path, client)
    script = 'f=$1; shift; gzip -dc -- "$f" | "$@"'
    return ["bash", "-o", "pipefail", "-c", script, "bash", dump_path, *client]


def safety_dump_path(dump_path: str, dbname: str, operation_id: str) -> str:
    """Where the previous content of `dbname` is dumped before a restore replaces it: beside
    the dump being restored, as `<name>_before_<operation>.sql.gz`."""
    name = f"{scratch_name(dbname, 'before', operation_id, limit=200)}.sql.gz"
    return posixpath.join(posixpath.dirname(dump_path), name)


def marker_dump_argv(endpoint: DbEndpoint, path: str, *, program: str = DUMP_PROGRAM) -> list[str]:
    """drp's marker table alone (structure and row), which content dumps leave out."""
    return [
        program,
        *_connection_options(endpoint),
        "--single-transaction",
        "--skip-triggers",
        "--no-tablespaces",
        "--default-character-set=utf8mb4",
        f"--result-file={path}",
        endpoint.dbname,
        MARKER_TABLE,
    ]


# -- connections and readers ------------------------------------------------------------------


# drp's own sessions never wait forever behind someone else's lock: the server's default for
# metadata locks (what DROP DATABASE waits for behind an open transaction) is a year.
LOCK_TIMEOUT_SECONDS = 60
LOCK_WAIT_ERRORS = (1205,)  # ER_LOCK_WAIT_TIMEOUT, metadata locks included


@contextmanager
def _connect(endpoint: DbEndpoint, password: str, *, database: bool = True) -> Iterator[Any]:
    """A pymysql connection (autocommit) to the server, in `endpoint.dbname` unless told not."""
    where = f"MySQL {endpoint.label} at {endpoint.address}:{endpoint.port} as {endpoint.user}"
    try:
        conn = pymysql.connect(
            host=endpoint.address,
            port=endpoint.port,
            user=endpoint.user,
            password=password,
            database=endpoint.dbname if database else None,
            connect_timeout=10,
            charset="utf8mb4",
            autocommit=True,
            init_command=(
                f"SET SESSION lock_wait_timeout = {LOCK_TIMEOUT_SECONDS}, "
                f"innodb_lock_wait_timeout = {LOCK_TIMEOUT_SECONDS}"
            ),
        )
    except pymysql.Error as err:
        raise DatabaseError(
            f"cannot connect to {where}: {_message(err)}; check the server is up, the address "
            "and the password"
        ) from err
    try:
        with conn:
            yield conn
    except pymysql.Error as err:
        hint = ""
        if err.args and err.args[0] in LOCK_WAIT_ERRORS:
            hint = (
                f" (waited {LOCK_TIMEOUT_SECONDS} s for a lock another session holds, such as "
                "an open transaction: end it, then run again)"
            )
        raise DatabaseError(f"MySQL {endpoint.label}: {_message(err)}{hint}") from err


def _fetchall(conn: Any, query: str, args: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    with conn.cursor() as cursor:
        cursor.execute(query, args)
        return list(cursor.fetchall())


def database_exists(endpoint: DbEndpoint, password: Password) -> bool:
    with _connect(endpoint, reveal(password), database=False) as conn:
        rows = _fetchall(
            conn,
            "SELECT 1 FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = %s",
            (endpoint.dbname,),
        )
    return bool(rows)


def server_version(endpoint: DbEndpoint, password: Password) -> str:
    """The server's version (`SELECT VERSION()`), asked outside any database: the endpoint's
    own database need not exist."""
    with _connect(endpoint, reveal(password), database=False) as conn:
        rows = _fetchall(conn, "SELECT VERSION()")
    return str(rows[0][0]) if rows else ""


def _user_tables(conn: Any, dbname: str) -> list[str]:
    rows = _fetchall(
        conn,
        "SELECT TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA = %s "
        "AND TABLE_TYPE IN %s AND TABLE_NAME <> %s ORDER BY TABLE_NAME",
        (dbname, _ROW_TABLE_TYPES, MARKER_TABLE),
    )
    return [str(row[0]) for row in rows]


def _count_rows(conn: Any, dbname: str) -> dict[str, int]:
    counts: dict[str, int] = {}
    for name in _user_tables(conn, dbname):
        rows = _fetchall(conn, f"SELECT COUNT(*) FROM {_ident(dbname)}.{_ident(name)}")
        counts[name] = int(rows[0][0])
    return counts


def table_counts(endpoint: DbEndpoint, password: Password) -> dict[str, int]:
    """Exact rows per table (`table` -> COUNT(*)), read in one consistent snapshot."""
    with _connect(endpoint, reveal(password)) as conn:
        _fetchall(conn, "START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY")
        counts = _count_rows(conn, endpoint.dbname)
        conn.rollback()
    _log(endpoint).info("counted %d rows in %d tables", sum(counts.values()), len(counts))
    return counts


def size_bytes(endpoint: DbEndpoint, password: Password) -> int:
    """The database's data and indexes on disk (information_schema): what a copy needs again."""
    with _connect(endpoint, reveal(password)) as conn:
        rows = _fetchall(
            conn,
            "SELECT COALESCE(SUM(data_length + index_length), 0) FROM information_schema.TABLES "
            "WHERE table_schema = %s",
            (endpoint.dbname,),
        )
    return int(rows[0][0]) if rows else 0


def table_checksums(endpoint: DbEndpoint, password: Password) -> dict[str, str]:
    """`CHECKSUM TABLE` of each table (`table` -> checksum as text).

    Cheap and exact for comparing a restore with its source on the same server software; two
    different server versions or row formats may checksum equal data differently.
    """
    with _connect(endpoint, reveal(password)) as conn:
        names = _user_tables(conn, endpoint.dbname)
        sums: dict[str, str] = {}
        if names:
            listed = ", ".join(f"{_ident(endpoint.dbname)}.{_ident(n)}" for n in names)
            for qualified, checksum in _fetchall(conn, f"CHECKSUM TABLE {listed}"):
                sums[str(qualified).split(".", 1)[1]] = str(checksum)
    _log(endpoint).info("checksummed %d tables", len(sums))
    return sums


def _marker_exists(conn: Any, dbname: str) -> bool:
    return bool(
        _fetchall(
            conn,
            "SELECT 1 FROM information_schema.TABLES WHERE TABLE_SCHEMA = %s AND TABLE_NAME = %s",
            (dbname, MARKER_TABLE),
        )
    )


def _utc(value: datetime | None) -> datetime | None:
    return value.replace(tzinfo=UTC) if value is not None else None


def _read_marker(conn: Any, dbname: str) -> Marker | None:
    if not _marker_exists(conn, dbname):
        return None
    rows = _fetchall(
        conn,
        "SELECT backup_id, manifest_digest, operation_id, started_at, restored_at "
        f"FROM {_ident(dbname)}.{_ident(MARKER_TABLE)} ORDER BY started_at DESC LIMIT 1",
    )
    if not rows:
        return None
    backup_id, digest, operation_id, started_at, restored_at = rows[0]
    return Marker(
        backup_id=backup_id,
        manifest_digest=digest,
        operation_id=operation_id,
        started_at=started_at.replace(tzinfo=UTC),
        restored_at=_utc(restored_at),
    )


def read_marker(endpoint: DbEndpoint, password: Password) -> Marker | None:
    """Which backup drp restored into this database (None: missing database, or not drp's)."""
    with _connect(endpoint, reveal(password), database=False) as conn:
        return _read_marker(conn, endpoint.dbname)


def read_state(endpoint: DbEndpoint, password: Password) -> DatabaseState:
    """Exists? how many tables? drp's marker? (rows are counted only for an unknown non-empty
    database, whose refusal message gives them)."""
    with _connect(endpoint, reveal(password), database=False) as conn:
        exists = _fetchall(
            conn,
            "SELECT 1 FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = %s",
            (endpoint.dbname,),
        )
        if not exists:
            return DatabaseState(exists=False)
        marker = _read_marker(conn, endpoint.dbname)
        tables = len(_user_tables(conn, endpoint.dbname))
        rows = (
            sum(_count_rows(conn, endpoint.dbname).values()) if tables and marker is None else None
        )
        others = _fetchall(conn, _OTHER_OBJECTS, (endpoint.dbname,) * 3)
    return DatabaseState(
        exists=True, tables=tables, rows=rows, marker=marker, other_objects=int(others[0][0])
    )


def restore_decision(
    endpoint: DbEndpoint, password: Password, backup_id: str, *, force: bool = False
) -> RestoreDecision:
    """What `restore()` would do, read-only (raises `NonEmptyDatabase` as restore would)."""
    state = read_state(endpoint, password)
    return decide_restore(state, endpoint.label, backup_id, force=force)


# -- dump -------------------------------------------------------------------------------------


def dump(
    runner: CommandRunner,
    endpoint: DbEndpoint,
    password: Password,
    path: str,
    *,
    count_rows: bool = True,
    program: str = DUMP_PROGRAM,
    timeout: float | None = None,
) -> DumpResult:
    """Dump `endpoint` with mariadb-dump run on `runner`'s host into `path` (a new file there).

    A `path` ending in `.gz` gets a gzip-compressed dump (`gzip -1`: about 5 times smaller for
    a few percent more time), any other name a plain SQL file. The dump's snapshot cannot be
    shared, so with `count_rows` the rows are counted just before
    and just after it: `counts_exact` says whether no count moved in between.
    """
    pw = reveal(password)
    compressed = is_compressed(path)
    before = table_counts(endpoint, pw) if count_rows else None
    seconds, size, sha256 = write_dump(
        runner,
        path,
        lambda p: mysql_dump_argv(endpoint, p, program=program, compress=compressed),
        f"{program} of {endpoint.label}",
        secret_env={PASSWORD_ENV: pw},
        timeout=timeout,
    )
    exact = False
    if before is not None:
        after = table_counts(endpoint, pw)
        exact = after == before
        if not exact:
            moved = sorted(t for t in set(before) | set(after) if before.get(t) != after.get(t))
            _log(endpoint).warning(
                "row counts moved during the dump (%s): the manifest keeps those from before it",
                ", ".join(moved),
            )
    _log(endpoint).info("dumped to %s:%s, %d bytes in %.2f s", runner.name, path, size, seconds)
    return DumpResult(
        host_name=runner.name,
        path=path,
        database=endpoint.label,
        format=f"{DUMP_FORMAT}+gzip" if compressed else DUMP_FORMAT,
        size_bytes=size,
        sha256=sha256,
        seconds=round(seconds, 3),
        table_counts=before,
        counts_exact=exact,
    )


# -- restore ----------------------------------------------------------------------------------


def _write_marker(conn: Any, dbname: str, marker: Marker) -> None:
    table = f"{_ident(dbname)}.{_ident(MARKER_TABLE)}"
    with conn.cursor() as cursor:
        cursor.execute(
            f"CREATE TABLE IF NOT EXISTS {table} (backup_id VARCHAR(255) NOT NULL, "
            "manifest_digest VARCHAR(255) NOT NULL, operation_id VARCHAR(255) NOT NULL, "
            "started_at DATETIME(6) NOT NULL, restored_at DATETIME(6) NULL) "
            "ENGINE=InnoDB DEFAULT CHARSET=utf8mb4"
        )
        conn.begin()
        cursor.execute(f"DELETE FROM {table}")
        cursor.execute(
            f"INSERT INTO {table} (backup_id, manifest_digest, operation_id, started_at, "
            "restored_at) VALUES (%s, %s, %s, %s, %s)",
            (
                marker.backup_id,
                marker.manifest_digest,
                marker.operation_id,
                _naive_utc(marker.started_at),
                _naive_utc(marker.restored_at),
            ),
        )
        conn.commit()


def _naive_utc(value: datetime | None) -> datetime | None:
    return value.astimezone(UTC).replace(tzinfo=None) if value is not None else None


def _recreate_database(conn: Any, dbname: str) -> None:
    """Drop and create `dbname` with the same default character set (the caller has made its
    content safe), or create it with the server's defaults if missing."""
    rows = _fetchall(
        conn,
        "SELECT DEFAULT_CHARACTER_SET_NAME, DEFAULT_COLLATION_NAME "
        "FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = %s",
        (dbname,),
    )
    with conn.cursor() as cursor:
        if rows:
            charset, collation = rows[0]
            cursor.execute(f"DROP DATABASE {_ident(dbname)}")
            cursor.execute(
                f"CREATE DATABASE {_ident(dbname)} CHARACTER SET {_ident(charset)} "
                f"COLLATE {_ident(collation)}"
            )
        else:
            cursor.execute(f"CREATE DATABASE {_ident(dbname)}")


def restore(
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
    dump_program: str = DUMP_PROGRAM,
    client_program: str = CLIENT_PROGRAM,
    timeout: float | None = None,
) -> RestoreResult:
    """Restore the SQL dump at `runner`'s `dump_path` as `endpoint.dbname`.

    Skips (with the reason) when the marker says this backup is already there; raises
    `NonEmptyDatabase` over a database drp did not restore unless `force`; otherwise dumps the
    current content beside `dump_path` (kept, never replaced), then recreates the database,
    marks the restore started, loads the dump and marks it restored. An existing database
    holding nothing at all is loaded in place.
    """
    pw = reveal(password)
    log = _log(endpoint)
    state = read_state(endpoint, pw)
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
    marker = state.marker
    # A load of this operation cut half-way (resumed, maybe under another backup id): what it
    # holds is drp's own; what it replaced was dumped before that load began.
    own_partial = (
        marker is not None
        and not marker.complete
        and (marker.backup_id == backup_id or marker.operation_id == operation_id)
    )
    kept_as = None
    if own_partial:
        earlier = safety_dump_path(dump_path, endpoint.dbname, operation_id)
        kept_as = None if runner.run(absent_argv(earlier), check=False).ok else earlier
    elif state.exists and not state.empty:
        kept_as = free_sibling_path(
            runner, safety_dump_path(dump_path, endpoint.dbname, operation_id)
        )
        safety = dump(
            runner,
            endpoint,
            pw,
            kept_as,
            count_rows=False,
            program=dump_program,
            timeout=timeout,
        )
        log.info(
            "kept the previous content in %s:%s (%d bytes)", runner.name, kept_as, safety.size_bytes
        )
    started = Marker(
        backup_id=backup_id,
        manifest_digest=manifest_digest,
        operation_id=operation_id,
        started_at=_now(),
    )
    began = time.monotonic()
    with _connect(endpoint, pw, database=False) as conn:
        if not state.empty:  # an empty database keeps its own settings: load straight into it
            _recreate_database(conn, endpoint.dbname)
        _write_marker(conn, endpoint.dbname, started)
    run_on_host(
        runner,
        mysql_client_argv(endpoint, dump_path, program=client_program),
        f"{client_program} loading {runner.name}:{dump_path} into {endpoint.label}",
        secret_env={PASSWORD_ENV: pw},
        timeout=timeout,
    )
    with _connect(endpoint, pw, database=False) as conn:
        # Rewritten whole, not updated: whatever the dump did to that table, the marker says
        # exactly this restore.
        _write_marker(conn, endpoint.dbname, started.model_copy(update={"restored_at": _now()}))
        done = _read_marker(conn, endpoint.dbname)
    seconds = time.monotonic() - began
    kept = f"; the previous content is kept in {runner.name}:{kept_as}" if kept_as else ""
    reason = f"restored backup {backup_id} on {endpoint.label} (in {seconds:.1f} s){kept}"
    log.info("%s", reason)
    return RestoreResult(
        action="restored",
        reason=reason,
        database=endpoint.label,
        backup_id=backup_id,
        seconds=round(seconds, 3),
        kept_as=kept_as,
        marker=done,
    )


def _now() -> datetime:
    # Microseconds are what DATETIME(6) keeps: a marker read back equals the one written.
    return datetime.now(UTC)


def _message(err: BaseException) -> str:
    args: tuple[object, ...] = tuple(getattr(err, "args", ()))
    if len(args) == 2 and isinstance(args[0], int):
        return f"({args[0]}) {args[1]}"
    return str(err) or type(err).__name__


# -- whole databases (set aside, put back, drop) ----------------------------------------------


def database_options(endpoint: DbEndpoint, password: Password) -> tuple[str, str] | None:
    """The database's default character set and collation (None: no such database)."""
    with _connect(endpoint, reveal(password), database=False) as conn:
        rows = _fetchall(
            conn,
            "SELECT DEFAULT_CHARACTER_SET_NAME, DEFAULT_COLLATION_NAME "
            "FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = %s",
            (endpoint.dbname,),
        )
    return (str(rows[0][0]), str(rows[0][1])) if rows else None


def drop_database(endpoint: DbEndpoint, password: Password) -> None:
    """Drop the database; callers first make its content safe or make sure it is drp's own."""
    with _connect(endpoint, reveal(password), database=False) as conn:
        _fetchall(conn, f"DROP DATABASE {_ident(endpoint.dbname)}")


def create_database(endpoint: DbEndpoint, password: Password, charset: str, collation: str) -> None:
    with _connect(endpoint, reveal(password), database=False) as conn:
        _fetchall(
            conn,
            f"CREATE DATABASE {_ident(endpoint.dbname)} CHARACTER SET {_ident(charset)} "
            f"COLLATE {_ident(collation)}",
        )


def load(
    runner: CommandRunner,
    endpoint: DbEndpoint,
    password: Password,
    path: str,
    *,
    program: str = CLIENT_PROGRAM,
    timeout: float | None = None,
) -> None:
    """Load a SQL file (gzipped if `.gz`) that lies on the runner's host into the database."""
    run_on_host(
        runner,
        mysql_client_argv(endpoint, path, program=program),
        f"loading {runner.name}:{path} into {endpoint.label}",
        secret_env={PASSWORD_ENV: reveal(password)},
        timeout=timeout,
    )


# -- a staged database swapped in (warm DRP server) --------------------------------------------


def _schema_options(conn: Any, dbname: str) -> tuple[str, str] | None:
    rows = _fetchall(
        conn,
        "SELECT DEFAULT_CHARACTER_SET_NAME, DEFAULT_COLLATION_NAME "
        "FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = %s",
        (dbname,),
    )
    return (str(rows[0][0]), str(rows[0][1])) if rows else None


def _all_tables(conn: Any, dbname: str) -> list[str]:
    """Every table of the schema, drp's marker table included (what RENAME TABLE moves)."""
    rows = _fetchall(
        conn,
        "SELECT TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA = %s "
        "AND TABLE_TYPE IN %s ORDER BY TABLE_NAME",
        (dbname, _ROW_TABLE_TYPES),
    )
    return [str(row[0]) for row in rows]


def _move_tables(conn: Any, source: str, target: str, tables: list[str]) -> None:
    """Every table of `source` into `target` in one RENAME TABLE (all or none)."""
    if not tables:
        return
    pairs = ", ".join(
        f"{_ident(source)}.{_ident(t)} TO {_ident(target)}.{_ident(t)}" for t in tables
    )
    _fetchall(conn, f"RENAME TABLE {pairs}")


def _create_schema(conn: Any, dbname: str, options: tuple[str, str] | None) -> None:
    if options is None:
        _fetchall(conn, f"CREATE DATABASE {_ident(dbname)}")
    else:
        charset, collation = options
        _fetchall(
            conn,
            f"CREATE DATABASE {_ident(dbname)} CHARACTER SET {_ident(charset)} "
            f"COLLATE {_ident(collation)}",
        )


def swap_in(
    stage: DbEndpoint, endpoint: DbEndpoint, password: Password, *, operation_id: str
) -> RestoreResult:
    """The staged schema's tables moved into `endpoint.dbname` with RENAME TABLE (instant,
    all tables in one statement); the tables that name held are first moved the same way into
    `<name>_before_<operation>` (nothing is dumped or dropped), then the emptied stage schema is
    dropped. Views, routines, triggers and events do not move across schemas: a stage or a
    database holding any is refused (the caller restores from the dump instead)."""
    pw = reveal(password)
    began = time.monotonic()
    with _connect(stage, pw, database=False) as conn:
        staged = _read_marker(conn, stage.dbname)
        if staged is None or not staged.complete:
            raise DatabaseError(f"{stage.label} holds no complete staged restore to swap in")
        for name in (stage.dbname, endpoint.dbname):
            others = int(_fetchall(conn, _OTHER_OBJECTS, (name,) * 3)[0][0])
            if others:
                raise DatabaseError(
                    f"MySQL {name} has {others} views, routines, triggers or events, which "
                    "RENAME TABLE cannot move between schemas"
                )
        _write_marker(conn, stage.dbname, staged.model_copy(update={"operation_id": operation_id}))
        options = _schema_options(conn, endpoint.dbname)
        kept_as = None
        current = _all_tables(conn, endpoint.dbname) if options is not None else []
        if current:
            for attempt in range(1, 100):
                extra = operation_id if attempt == 1 else f"{operation_id}_{attempt}"
                kept_as = scratch_name(endpoint.dbname, "before", extra)
                if _schema_options(conn, kept_as) is None:
                    break
            else:
                raise DatabaseError(f"no free name to keep {endpoint.label} aside (tried 99)")
            _create_schema(conn, kept_as, options)
            _move_tables(conn, endpoint.dbname, kept_as, current)
        if options is None:
            _create_schema(conn, endpoint.dbname, _schema_options(conn, stage.dbname))
        _move_tables(conn, stage.dbname, endpoint.dbname, _all_tables(conn, stage.dbname))
        if not _all_tables(conn, stage.dbname):
            _fetchall(conn, f"DROP DATABASE {_ident(stage.dbname)}")
        done = _read_marker(conn, endpoint.dbname)
    return swapped_in(
        stage,
        endpoint,
        staged,
        how="moved",
        seconds=time.monotonic() - began,
        kept=f"; the tables it held are kept in {kept_as}",
        kept_as=kept_as,
        marker=done,
    )
