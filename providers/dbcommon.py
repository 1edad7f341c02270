"""What the PostgreSQL and MySQL providers share: endpoints, errors, markers, results, the
restore decision, and the few host commands around a dump file.

A restore is guarded by the marker drp leaves in every database it restores (which backup, from
which manifest, by which operation, when). Reading the target first, then deciding with the pure
`decide_restore()`, gives the three safe answers: restore (the database is missing, empty, or
ours), skip (this very backup is already there), or refuse with `NonEmptyDatabase` (someone
else's data, unless forced; even then the old data is first made safe).
"""

from __future__ import annotations

import hashlib
import logging
import posixpath
import re
import shlex
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Literal, Protocol, runtime_checkable

from pydantic import BaseModel, ConfigDict, Field

from providers.commands import CommandResult, CommandRunner

# Database and user names go into SQL as quoted identifiers and into argv as `--opt=value`
# words; this shape keeps them unambiguous for every client (pg_dump reads a `dbname` holding
# `=` as a connection string) and short enough for both engines (PostgreSQL 63, MySQL 64).
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_$-]{0,62}")


class DatabaseError(Exception):
    """A database command or query failed; the message says which, where, and what to check."""


class NonEmptyDatabase(DatabaseError):
    """The target holds tables that drp did not restore: restoring over it needs `force=True`."""

    def __init__(self, label: str, tables: int, rows: int) -> None:
        self.label = label
        self.tables = tables
        self.rows = rows
        super().__init__(
            f"{label} is not empty ({tables} table{_s(tables)}, {rows} row{_s(rows)}) and has no "
            "drp restore marker, so drp did not restore it; refusing to restore over it. If "
            "this data may be replaced, run again with force=True (drp: --force); the current "
            "database is made safe first (kept aside, never deleted)."
        )


@runtime_checkable
class SupportsReveal(Protocol):
    def reveal(self) -> str: ...


Password = str | SupportsReveal


def reveal(password: Password) -> str:
    """The raw password, taken at the last moment from a plain str or a masked secret."""
    return password if isinstance(password, str) else password.reveal()


@dataclass(frozen=True)
class DbEndpoint:
    """One database on one server, as seen from the network (TCP, never a local socket)."""

    host_name: str  # inventory name of the host running the server, for messages
    address: str
    port: int
    user: str
    dbname: str

    def __post_init__(self) -> None:
        for field_name in ("user", "dbname"):
            value = getattr(self, field_name)
            if not _NAME.fullmatch(value):
                raise ValueError(
                    f"database {field_name} {value!r} is not usable: use 1 to 63 letters, "
                    "digits, '_', '$' or '-', starting with a letter or '_'"
                )
        if not 0 < self.port < 65536:
            raise ValueError(f"database port {self.port} is not a TCP port (1-65535)")

    @property
    def label(self) -> str:
        """`drp/app_users`: how messages and markers name this database."""
        return f"{self.host_name}/{self.dbname}"

    def with_dbname(self, dbname: str) -> DbEndpoint:
        return replace(self, dbname=dbname)


class Marker(BaseModel):
    """What drp wrote into a database it restored: which backup, and whether it finished."""

    model_config = ConfigDict(frozen=True)

    backup_id: str = Field(description="Id of the backup restored into this database.")
    manifest_digest: str = Field(description="Digest of that backup's manifest.")
    operation_id: str = Field(description="Operation (activation, return, drill) that restored it.")
    started_at: datetime = Field(description="When the restore started (UTC).")
    restored_at: datetime | None = Field(
        default=None, description="When the restore finished (UTC); None while it is running."
    )

    @property
    def complete(self) -> bool:
        return self.restored_at is not None


@dataclass(frozen=True)
class DatabaseState:
    """What a restore needs to know about its target before deciding."""

    exists: bool
    tables: int = 0  # user tables, drp's marker table excluded
    rows: int | None = None  # counted only when a refusal needs the number
    marker: Marker | None = None
    other_objects: int = 0  # views, sequences, routines, types, schemas, events...

    @property
    def empty(self) -> bool:
        """An existing database holding nothing at all: a restore may load straight into it
        (keeping what an administrator set on the database itself: owner, grants, settings)."""
        return self.exists and not self.tables and not self.other_objects and self.marker is None


def is_own(state: DatabaseState, operation_id: str) -> bool:
    """True when drp's marker says this very operation restored the database."""
    return state.marker is not None and state.marker.operation_id == operation_id


@dataclass(frozen=True)
class RestoreDecision:
    action: Literal["restore", "skip"]
    reason: str  # one sentence, shown in plans, skips and reports


def decide_restore(
    state: DatabaseState, label: str, backup_id: str, *, force: bool = False
) -> RestoreDecision:
    """Restore, skip (with the reason) or raise `NonEmptyDatabase`; reads and writes nothing."""
    marker = state.marker
    if not state.exists:
        return RestoreDecision("restore", f"{label} does not exist; restore backup {backup_id}")
    if marker is not None and marker.complete and marker.backup_id == backup_id:
        at = marker.restored_at.isoformat(timespec="seconds") if marker.restored_at else "?"
        return RestoreDecision(
            "skip", f"backup {backup_id} already restored on {label} at {at}, marker present"
        )
    if marker is not None:
        if marker.complete:
            why = f"holds backup {marker.backup_id} restored by drp"
        else:
            why = f"holds an unfinished drp restore of backup {marker.backup_id}"
        return RestoreDecision(
            "restore", f"{label} {why}; keep it aside, then restore backup {backup_id}"
        )
    if state.empty:
        return RestoreDecision("restore", f"{label} is empty; restore backup {backup_id} into it")
    if state.tables == 0:
        others = state.other_objects
        return RestoreDecision(
            "restore",
            f"{label} has no tables but {others} other object{_s(others)} (views, routines...); "
            f"keep it aside, then restore backup {backup_id}",
        )
    if not force:
        raise NonEmptyDatabase(label, state.tables, state.rows or 0)
    return RestoreDecision(
        "restore",
        f"{label} holds {state.tables} table{_s(state.tables)} ({state.rows or 0} rows) not "
        f"restored by drp; forced: keep it aside, then restore backup {backup_id}",
    )


class DumpResult(BaseModel):
    """A dump file on a host, described for the backup manifest."""

    model_config = ConfigDict(frozen=True)

    host_name: str = Field(description="Host whose disk holds the dump file.")
    path: str = Field(description="Path of the dump file on that host.")
    database: str = Field(description="Database dumped, as host/dbname.")
    format: str = Field(
        description="pg-custom (for pg_restore), mysql-sql or mysql-sql+gzip (mysql client)."
    )
    size_bytes: int = Field(description="Size of the dump file.")
    sha256: str = Field(description="SHA-256 of the dump file, computed on its host.")
    seconds: float = Field(description="Time taken by the dump command.")
    table_counts: dict[str, int] | None = Field(
        default=None, description="Rows per table at dump time (None when not counted)."
    )
    counts_exact: bool = Field(
        default=False,
        description="True when table_counts are the dump's own (PostgreSQL: counted in the "
        "dump's snapshot) or did not move while it ran (MySQL: same counts before and after).",
    )


class RestoreResult(BaseModel):
    """What a restore did, or why it did nothing."""

    model_config = ConfigDict(frozen=True)

    action: Literal["restored", "skipped"] = Field(description="What happened.")
    reason: str = Field(description="One sentence: why, or what was done.")
    database: str = Field(description="Target database, as host/dbname.")
    backup_id: str = Field(description="Backup asked for.")
    seconds: float = Field(default=0.0, description="Time spent loading data into the target.")
    kept_as: str | None = Field(
        default=None,
        description="Where the previous content was kept: a database name (PostgreSQL) or a "
        "dump file on the restoring host (MySQL).",
    )
    marker: Marker | None = Field(default=None, description="The marker now in the target.")


def swapped_in(
    stage: DbEndpoint,
    endpoint: DbEndpoint,
    staged: Marker,
    *,
    how: str,
    seconds: float,
    kept: str,
    kept_as: str | None,
    marker: Marker | None,
) -> RestoreResult:
    """What putting a staged database in place did (`DatabaseEngine.swap_in`), logged."""
    reason = (
        f"{how} the staged {stage.dbname} (backup {staged.backup_id}) in as {endpoint.label} "
        f"in {seconds:.1f} s{kept if kept_as else ''}"
    )
    logging.getLogger(f"providers.dbcommon[{endpoint.label}]").info("%s", reason)
    return RestoreResult(
        action="restored",
        reason=reason,
        database=endpoint.label,
        backup_id=staged.backup_id,
        seconds=round(seconds, 3),
        kept_as=kept_as,
        marker=marker,
    )


def scratch_name(base: str, tag: str, extra: str, *, limit: int = 63) -> str:
    """`<base>_<tag>_<extra>` as a safe identifier of at most `limit` characters.

    `extra` (an operation id, say) is reduced to lowercase letters, digits and `_`; a name that
    would be too long is shortened and ends in a hash of the full name, so two different inputs
    never share a name (PostgreSQL would silently truncate instead).
    """
    clean = re.sub(r"[^a-z0-9_]+", "_", extra.lower()).strip("_")
    name = f"{base}_{tag}_{clean}" if clean else f"{base}_{tag}"
    if len(name) <= limit:
        return name
    digest = hashlib.sha256(name.encode()).hexdigest()[:10]
    return f"{name[: limit - len(digest) - 1]}_{digest}"


# -- host commands around a dump file ---------------------------------------------------------


def absent_argv(path: str) -> list[str]:
    """Exits 0 when nothing exists at `path` (a dump never replaces a file)."""
    return ["test", "!", "-e", path]


def mkdir_argv(directory: str) -> list[str]:
    return ["mkdir", "-p", "--", directory]


def move_argv(source: str, target: str) -> list[str]:
    # -n: an existing target (a race with another dump) is never replaced; checked afterwards.
    return ["mv", "-n", "--", source, target]


def remove_argv(path: str) -> list[str]:
    """Removes a partial dump only (callers pass `<path>.partial`)."""
    return ["rm", "-f", "--", path]


def file_facts_argv(path: str) -> list[str]:
    """Size and SHA-256 of a file, computed on its host: `<bytes>`, then `<sha256>  <path>`."""
    return ["sh", "-c", 'stat -c %s -- "$1" && sha256sum -- "$1"', "sh", path]


def parse_file_facts(stdout: str) -> tuple[int, str]:
    lines = stdout.strip().splitlines()
    if len(lines) != 2 or not lines[0].isdigit():
        raise DatabaseError(f"unexpected output from stat/sha256sum: {stdout[:200]!r}")
    digest = lines[1].split()[0].lstrip("\\")  # sha256sum escapes odd names with a leading '\'
    if not re.fullmatch(r"[0-9a-f]{64}", digest):
        raise DatabaseError(f"unexpected output from sha256sum: {lines[1][:200]!r}")
    return int(lines[0]), digest


def stdin_from_file_argv(path: str, argv: Sequence[str]) -> list[str]:
    """argv run with its standard input read from `path` on the host (the path is a positional
    parameter, never part of the shell text)."""
    return ["sh", "-c", 'f=$1; shift; exec "$@" < "$f"', "sh", path, *argv]


def run_on_host(
    runner: CommandRunner,
    argv: Sequence[str],
    what: str,
    *,
    secret_env: Mapping[str, str] | None = None,
    timeout: float | None = None,
) -> CommandResult:
    """Run argv; a failure becomes a DatabaseError naming the host, the action and the end of
    stderr (database clients never print the password they were given)."""
    result = runner.run(argv, secret_env=secret_env, timeout=timeout, check=False)
    if not result.ok:
        tail = "\n".join(result.stderr.strip().splitlines()[-8:]) or "(no error output)"
        raise DatabaseError(
            f"{what} failed on {runner.name} (exit {result.exit_code}): {tail}\n"
            f"command: {shlex.join(argv)}"
        )
    return result


def dump_file_facts(runner: CommandRunner, path: str) -> tuple[int, str]:
    result = run_on_host(runner, file_facts_argv(path), f"reading size and sha256 of {path}")
    return parse_file_facts(result.stdout)


def check_dump_sha256(runner: CommandRunner, path: str, expected: str | None) -> None:
    """Refuse to restore a dump file that is not the one the manifest describes."""
    if expected is None:
        return
    _, actual = dump_file_facts(runner, path)
    if actual != expected.lower():
        raise DatabaseError(
            f"dump file {runner.name}:{path} has sha256 {actual}, but its manifest says "
            f"{expected}: the file is damaged or not this backup; copy it again from the backup "
            "server before restoring"
        )


def reserve_new_path(runner: CommandRunner, path: str) -> None:
    """Make sure `path` is free and its directory exists; a dump never replaces a file."""
    free = runner.run(absent_argv(path), check=False)
    if not free.ok:
        raise DatabaseError(
            f"{runner.name}:{path} already exists; a dump never replaces a file: choose another "
            "path, or move the existing file away if it is not needed"
        )
    run_on_host(
        runner, mkdir_argv(posixpath.dirname(path) or "."), f"creating the directory of {path}"
    )


def write_dump(
    runner: CommandRunner,
    path: str,
    build_argv: Callable[[str], list[str]],
    what: str,
    *,
    secret_env: Mapping[str, str],
    timeout: float | None = None,
) -> tuple[float, int, str]:
    """Run a dump command writing `<path>.partial`, then move it to `path`: a file at `path`
    is always a finished dump. Returns (seconds, size in bytes, sha256)."""
    reserve_new_path(runner, path)
    partial = f"{path}.partial"
    run_on_host(runner, remove_argv(partial), f"removing an old partial dump {partial}")
    started = time.monotonic()
    try:
        run_on_host(runner, build_argv(partial), what, secret_env=secret_env, timeout=timeout)
    except BaseException:
        runner.run(remove_argv(partial), check=False)
        raise
    seconds = time.monotonic() - started
    run_on_host(runner, move_argv(partial, path), f"moving {partial} to {path}")
    if not runner.run(absent_argv(partial), check=False).ok:
        raise DatabaseError(
            f"another file appeared at {runner.name}:{path} during the dump; the new dump is "
            f"left at {partial}: compare the two and keep the right one"
        )
    size, sha256 = dump_file_facts(runner, path)
    return seconds, size, sha256


def free_sibling_path(runner: CommandRunner, path: str) -> str:
    """`path`, or `path` with `-2`, `-3`... before its extensions (`x-2.sql.gz`), whichever does
    not exist yet on the host."""
    directory, name = posixpath.split(path)
    stem, dot, extensions = name.partition(".")
    for n in range(1, 100):
        candidate = path if n == 1 else posixpath.join(directory, f"{stem}-{n}{dot}{extensions}")
        if runner.run(absent_argv(candidate), check=False).ok:
            return candidate
    raise DatabaseError(f"no free file name next to {runner.name}:{path} (tried 99)")


def _s(n: int) -> str:
    return "" if n == 1 else "s"
