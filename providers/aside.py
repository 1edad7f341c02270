"""Set aside what a host holds, and put it back: paths (databases: `providers.database`).

A drill that must leave the DRP server as it found it first moves each thing it will write out
of the way, restores into the empty place, then removes its own copies and puts the originals
back. Nothing that was there before is ever deleted:

- a directory (or file) is renamed `<path>.drp-before-<operation>` beside itself (a rename on
  the same file system: instant whatever its size) and renamed back;
- a database is set aside and put back by its engine (`DatabaseEngine.set_aside` and
  `put_back` in `providers.database`), with these path functions for its files.

What a drill restored is deleted only when it is provably the drill's own: a database whose
drp marker names the operation, a path that did not exist before. Paths are relative to the
SSH user's home unless absolute; they reach the host as positional parameters, never as shell
text.
"""

from __future__ import annotations

import posixpath
from collections.abc import Sequence
from dataclasses import dataclass

from providers.commands import CommandRunner, path_arg
from providers.dbcommon import mkdir_argv
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
    return ["bash", "-o", "pipefail", "-c", script, "bash", path_arg(path)]


def mtime_argv(path: str) -> list[str]:
    """The modification time of `path` itself, in seconds with its fraction (`find %T@`)."""
    return ["find", path_arg(path), "-maxdepth", "0", "-printf", "%T@"]


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
