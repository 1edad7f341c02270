"""Set aside what a host holds, and put it back: paths, PostgreSQL and MySQL databases.

A drill that must leave the DRP server as it found it first moves each thing it will write out
of the way, restores into the empty place, then removes its own copies and puts the originals
back. Nothing that was there before is ever deleted:

- a directory (or file) is renamed `<path>.drp-before-<operation>` beside itself (a rename on
  the same file system: instant whatever its size) and renamed back;
- a PostgreSQL database is renamed (`ALTER DATABASE ... RENAME`: owner, grants and settings go
  with it) and renamed back;
- a MySQL database cannot be renamed: its content is dumped to a file on the host, drp's marker
  table in a second file (ordinary dumps leave it out), and only then is it dropped; putting it
  back creates it with its character set and collation and loads both files.

What a drill restored is deleted only when it is provably the drill's own: a database whose
drp marker names the operation, a path that did not exist before. Paths are relative to the
SSH user's home unless absolute; they reach the host as positional parameters, never as shell
text.
"""

from __future__ import annotations

import posixpath
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import psycopg
import pymysql
from psycopg import sql

from providers import mysql, postgres
from providers.commands import CommandRunner
from providers.dbcommon import (
    DatabaseError,
    DatabaseState,
    DbEndpoint,
    Password,
    mkdir_argv,
    reveal,
    run_on_host,
)
from providers.rsync import home_relative

ASIDE_TAG = "drp-before"
MISSING_FILE_EXIT = 3  # what `read_file_argv` exits with when the file does not exist


class AsideError(Exception):
    """Setting aside or putting back failed; the message says what was left where."""


# -- paths: argv (pure) ----------------------------------------------------------------------


def normalize_path(path: str) -> str:
    """The path as drp writes it on the host: `~/` dropped, no trailing slash, no `.` parts.

    Refuses the home directory and the root, whose renaming would take the whole host away."""
    clean = posixpath.normpath(home_relative(path))
    if clean in (".", "/", "..") or clean.startswith("../"):
        raise ValueError(f"{path!r} cannot be set aside: name a directory inside the home or /")
    if clean.startswith("/") and clean.count("/") < 2:
        raise ValueError(f"{path!r} cannot be set aside: a top-level directory is the system's")
    return clean


def aside_path(path: str, operation_id: str) -> str:
    """Where `path` waits during the drill: `<path>.drp-before-<operation>`, beside itself."""
    return f"{normalize_path(path)}.{ASIDE_TAG}-{operation_id}"


def ancestors(path: str) -> list[str]:
    """`srv/app/www` -> [`srv/app/www`, `srv/app`, `srv`] (the home and `/` are not listed)."""
    found = []
    current = normalize_path(path)
    while current not in ("", ".", "/"):
        found.append(current)
        current = posixpath.dirname(current)
    return found


def exists_argv(paths: Sequence[str]) -> list[str]:
    """One line per path, in order: `1` if something (even a dangling link) is there, else `0`."""
    script = 'for p in "$@"; do if [ -e "$p" ] || [ -L "$p" ]; then echo 1; else echo 0; fi; done'
    return ["sh", "-c", script, "sh", *paths]


def listing_argv(path: str) -> list[str]:
    """The digest of `find <path> -printf '%P %s %T@\\n' | sort` (names, sizes, modification
    times, relative to the path, so a renamed tree keeps its digest), then `<entries> <bytes>`."""
    script = (
        "l=$(find \"$1\" -printf '%P %s %T@\\n' | LC_ALL=C sort) || exit 1\n"
        "printf '%s\\n' \"$l\" | sha256sum | cut -d' ' -f1\n"
        "printf '%s\\n' \"$l\" | awk '{n++; s+=$(NF-1)} END {print n+0, s+0}'"
    )
    return ["bash", "-o", "pipefail", "-c", script, "bash", path]


def mtime_argv(path: str) -> list[str]:
    """The modification time of `path` itself, in seconds with its fraction (`find %T@`)."""
    return ["find", path, "-maxdepth", "0", "-printf", "%T@"]


def touch_argv(path: str, mtime: str) -> list[str]:
    """Put back the modification time of a directory whose entries were renamed."""
    return ["touch", "-m", "-c", "-d", f"@{mtime}", "--", path]


def rename_argv(source: str, target: str) -> list[str]:
    # -T: never move into a directory of that name; -n: never replace it (checked after).
    return ["mv", "-T", "-n", "--", source, target]


def remove_argv(path: str) -> list[str]:
    """Only for what the drill itself put there (callers check it is theirs first)."""
    return ["rm", "-rf", "--", path]


def read_file_argv(path: str) -> list[str]:
    return ["sh", "-c", f'[ -e "$1" ] || exit {MISSING_FILE_EXIT}; exec cat -- "$1"', "sh", path]


def write_file_argv(path: str) -> list[str]:
    """Write standard input to `path` whole or not at all (a temporary file, then a rename)."""
    script = 'mkdir -p -- "$(dirname -- "$1")" && cat > "$1.tmp" && mv -f -- "$1.tmp" "$1"'
    return ["sh", "-c", script, "sh", path]


@dataclass(frozen=True)
class Listing:
    """What `listing_argv` says of a tree: enough to tell it is the same tree afterwards."""

    digest: str
    entries: int
    bytes: int


def parse_listing(stdout: str) -> Listing:
    lines = stdout.strip().splitlines()
    if len(lines) != 2 or len(lines[0]) != 64 or len(lines[1].split()) != 2:
        raise AsideError(f"unexpected output from the listing command: {stdout[:200]!r}")
    entries, size = lines[1].split()
    return Listing(lines[0], int(entries), int(size))


def parse_exists(stdout: str, paths: Sequence[str]) -> dict[str, bool]:
    lines = stdout.split()
    if len(lines) != len(paths) or set(lines) - {"0", "1"}:
        raise AsideError(f"unexpected output from the existence check: {stdout[:200]!r}")
    return {p: line == "1" for p, line in zip(paths, lines, strict=True)}


def created_root(path: str, exists: dict[str, bool]) -> str:
    """The highest missing ancestor of a missing `path`: what writing there creates."""
    root = normalize_path(path)
    for candidate in ancestors(path):
        if exists[candidate]:
            break
        root = candidate
    return root


# -- paths: on the host ----------------------------------------------------------------------


def _run(runner: CommandRunner, argv: list[str], what: str, stdin: str | None = None) -> str:
    result = runner.run(argv, stdin=stdin, check=False, timeout=3600)
    if not result.ok:
        tail = result.stderr.strip().splitlines()[-3:]
        raise AsideError(
            f"{what} failed on {runner.name} (exit {result.exit_code}): "
            f"{' / '.join(tail) or 'no error output'}"
        )
    return result.stdout


def probe(runner: CommandRunner, paths: Sequence[str]) -> dict[str, bool]:
    """Which of `paths` exist on the host (one command for all)."""
    if not paths:
        return {}
    return parse_exists(_run(runner, exists_argv(paths), "checking which paths exist"), paths)


def listing(runner: CommandRunner, path: str) -> Listing:
    return parse_listing(_run(runner, listing_argv(path), f"listing {path}"))


def mtime(runner: CommandRunner, path: str) -> str:
    return _run(runner, mtime_argv(path), f"reading the modification time of {path}").strip()


def restore_mtime(runner: CommandRunner, path: str, value: str | None) -> bool:
    """Best effort: a directory owned by someone else keeps its new time (nothing is lost)."""
    return value is not None and runner.run(touch_argv(path, value), check=False).ok


def set_aside_path(runner: CommandRunner, path: str, aside: str) -> bool:
    """Rename `path` to `aside`. True if it moved now, False if it was already aside."""
    there = probe(runner, [path, aside])
    if not there[path] and there[aside]:
        return False
    if there[aside]:
        raise AsideError(
            f"{runner.name}:{aside} already exists, so {path} cannot be set aside there: move "
            "it away (or finish what left it), then run again"
        )
    if not there[path]:
        raise AsideError(f"{runner.name}:{path} has disappeared: nothing to set aside")
    _run(runner, rename_argv(path, aside), f"renaming {path} to {aside}")
    after = probe(runner, [path, aside])
    if after[path] or not after[aside]:
        raise AsideError(f"{runner.name}:{path} was not renamed to {aside}; check both by hand")
    return True


def put_back_path(runner: CommandRunner, path: str, aside: str) -> None:
    """Remove the drill's copy at `path`, then rename `aside` back to `path`."""
    there = probe(runner, [path, aside])
    if not there[aside]:
        raise AsideError(f"{runner.name}:{aside} is missing: nothing to put back at {path}")
    if there[path]:
        _run(runner, remove_argv(path), f"removing the drill's copy at {path}")
    _run(runner, rename_argv(aside, path), f"renaming {aside} back to {path}")
    after = probe(runner, [path, aside])
    if not after[path] or after[aside]:
        raise AsideError(f"{runner.name}:{aside} was not renamed back to {path}; check by hand")


def remove_created(runner: CommandRunner, path: str) -> None:
    """Remove a path that did not exist before the drill (its own copy)."""
    _run(runner, remove_argv(path), f"removing the drill's copy at {path}")


def make_dir(runner: CommandRunner, path: str) -> None:
    _run(runner, mkdir_argv(path), f"creating {path}")


def read_file(runner: CommandRunner, path: str) -> str | None:
    result = runner.run(read_file_argv(path), check=False, timeout=60)
    if result.exit_code == MISSING_FILE_EXIT:
        return None
    if not result.ok:
        raise AsideError(f"cannot read {runner.name}:{path}: {result.stderr.strip()[:200]}")
    return result.stdout


def write_file(runner: CommandRunner, path: str, text: str) -> None:
    _run(runner, write_file_argv(path), f"writing {path}", stdin=text)


# -- databases -------------------------------------------------------------------------------


def is_own(state: DatabaseState, operation_id: str) -> bool:
    """True when drp's marker says this very operation restored the database."""
    return state.marker is not None and state.marker.operation_id == operation_id


def mysql_marker_dump_argv(
    endpoint: DbEndpoint, path: str, *, program: str = mysql.DUMP_PROGRAM
) -> list[str]:
    """drp's marker table alone (structure and row), which content dumps leave out."""
    return [
        program,
        f"--host={endpoint.address}",
        f"--port={endpoint.port}",
        f"--user={endpoint.user}",
        "--protocol=tcp",
        "--single-transaction",
        "--skip-triggers",
        "--no-tablespaces",
        "--default-character-set=utf8mb4",
        f"--result-file={path}",
        endpoint.dbname,
        mysql.MARKER_TABLE,
    ]


@contextmanager
def _pg_admin(endpoint: DbEndpoint, password: Password) -> Iterator[psycopg.Connection]:
    where = f"PostgreSQL {endpoint.label} at {endpoint.address}:{endpoint.port}"
    try:
        conn = psycopg.connect(
            host=endpoint.address,
            port=endpoint.port,
            user=endpoint.user,
            password=reveal(password),
            dbname=postgres.MAINTENANCE_DB,
            connect_timeout=10,
            application_name="drp",
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


def pg_rename(endpoint: DbEndpoint, password: Password, new_name: str) -> None:
    target = endpoint.with_dbname(new_name)  # checks the new name's shape
    with _pg_admin(endpoint, password) as conn:
        conn.execute(
            sql.SQL("ALTER DATABASE {} RENAME TO {}").format(
                sql.Identifier(endpoint.dbname), sql.Identifier(target.dbname)
            )
        )


def pg_drop(endpoint: DbEndpoint, password: Password) -> None:
    with _pg_admin(endpoint, password) as conn:
        conn.execute(sql.SQL("DROP DATABASE {}").format(sql.Identifier(endpoint.dbname)))


@contextmanager
def _mysql_admin(endpoint: DbEndpoint, password: Password) -> Iterator[Any]:
    where = f"MySQL {endpoint.label} at {endpoint.address}:{endpoint.port}"
    try:
        conn = pymysql.connect(
            host=endpoint.address,
            port=endpoint.port,
            user=endpoint.user,
            password=reveal(password),
            connect_timeout=10,
            charset="utf8mb4",
            autocommit=True,
        )
    except pymysql.Error as err:
        raise DatabaseError(f"cannot connect to {where} as {endpoint.user}: {err}") from err
    with conn:
        try:
            with conn.cursor() as cursor:
                yield cursor
        except pymysql.Error as err:
            raise DatabaseError(f"{where}: {err}") from err


def _ident(name: str) -> str:
    return "`" + name.replace("`", "``") + "`"


def mysql_options(endpoint: DbEndpoint, password: Password) -> tuple[str, str] | None:
    """The database's default character set and collation (None: no such database)."""
    with _mysql_admin(endpoint, password) as cursor:
        cursor.execute(
            "SELECT DEFAULT_CHARACTER_SET_NAME, DEFAULT_COLLATION_NAME "
            "FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = %s",
            (endpoint.dbname,),
        )
        row = cursor.fetchone()
    return (str(row[0]), str(row[1])) if row else None


def mysql_drop(endpoint: DbEndpoint, password: Password) -> None:
    with _mysql_admin(endpoint, password) as cursor:
        cursor.execute(f"DROP DATABASE {_ident(endpoint.dbname)}")


def mysql_create(endpoint: DbEndpoint, password: Password, charset: str, collation: str) -> None:
    with _mysql_admin(endpoint, password) as cursor:
        cursor.execute(
            f"CREATE DATABASE {_ident(endpoint.dbname)} CHARACTER SET {_ident(charset)} "
            f"COLLATE {_ident(collation)}"
        )


def mysql_load(runner: CommandRunner, endpoint: DbEndpoint, password: Password, path: str) -> None:
    """Load a SQL file (gzipped if `.gz`) that lies on the runner's host into the database."""
    run_on_host(
        runner,
        mysql.mysql_client_argv(endpoint, path),
        f"loading {runner.name}:{path} into {endpoint.label}",
        secret_env={mysql.PASSWORD_ENV: reveal(password)},
    )


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__
