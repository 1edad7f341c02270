"""The backup set: its id, its layout on a backup server, and its manifest.

A backup set is one dated directory on one backup server:

    <area>/<environment>/<set-id>/
        files/<tree>/            file trees, copied with rsync (hard links to the previous set)
        configs/<name>/          configuration trees, the same way
        databases/<db>.<ext>     dumps (.dump for pg_dump -Fc, .sql for mysqldump)
        manifest.json            written last, atomically: a set without it is incomplete

The set id is the UTC start time plus the kind (`20261129T020000Z-daily`), so ids sort by time.
The manifest says what the set holds and how to check it: per tree, the file count, the bytes and
a digest of the tree's listing (see `DIGEST_COVERS`); per dump, its size and sha256 and the row
count of every table read on the source at dump time.

The shell commands that read a set on a backup server are built here, by pure functions returning
argv lists, so that the writer (runbooks.backup_run) and the reader (runbooks.backups) agree on
them.
"""

from __future__ import annotations

import builtins
import json
import posixpath
import re
from datetime import UTC, datetime
from enum import StrEnum
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from providers.commands import path_arg

MANIFEST_FORMAT: Literal["drp-backup-manifest/1"] = "drp-backup-manifest/1"
MANIFEST_NAME = "manifest.json"
SET_ID_TIME_FORMAT = "%Y%m%dT%H%M%SZ"

# What a tree digest proves, written into every manifest so that a reader knows its limits.
DIGEST_COVERS = (
    "sha256 of the sorted listing of the tree's regular files, one line per file: "
    "relative path, size in bytes and modification time in whole seconds, tab-separated "
    "(find -type f -printf '%P\\t%s\\t%Ts\\n' | LC_ALL=C sort); it detects missing, added, "
    "truncated or re-dated files, not a byte changed in place with the same size and time, and "
    "it ignores symlinks, empty directories, owners and permissions"
)

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
_SET_ID = re.compile(r"^(?P<time>\d{8}T\d{6}Z)-(?P<kind>[a-z-]+)$")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


class SetKind(StrEnum):
    """What a set holds."""

    DAILY = "daily"  # files, configs and every database of the environment
    FILES = "files"  # files and configs only
    DATABASES = "databases"  # every database, no files
    USER_DATABASES = "user-databases"  # the user databases only (every 2 hours)

    @property
    def has_trees(self) -> bool:
        return self in (SetKind.DAILY, SetKind.FILES)

    @property
    def has_databases(self) -> bool:
        return self is not SetKind.FILES

    @property
    def user_databases_only(self) -> bool:
        return self is SetKind.USER_DATABASES


class TreeSection(StrEnum):
    FILES = "files"
    CONFIGS = "configs"


class Parity(StrEnum):
    EVEN = "even"
    ODD = "odd"


def day_parity(moment: datetime) -> Parity:
    """The parity of the day of month of `moment`'s UTC date (the 31st and the 1st are both odd)."""
    return Parity.EVEN if moment.astimezone(UTC).day % 2 == 0 else Parity.ODD


def check_name(value: str, what: str) -> str:
    """A name safe as one path component on a backup server (environment, tree, database)."""
    if not _NAME.match(value) or value in (".", ".."):
        raise ValueError(
            f"{what} {value!r} cannot name a directory in a backup set: use letters, digits, "
            "dots, dashes and underscores, starting with a letter or digit"
        )
    return value


def make_set_id(started: datetime, kind: SetKind) -> str:
    """`20261129T020000Z-daily`: the UTC start time to the second, then the kind."""
    if started.tzinfo is None:
        raise ValueError("a set id needs an aware datetime (UTC)")
    return f"{started.astimezone(UTC).strftime(SET_ID_TIME_FORMAT)}-{SetKind(kind).value}"


def parse_set_id(set_id: str) -> tuple[datetime, SetKind]:
    """The start time and kind a set id names; ValueError if it is not one of ours."""
    match = _SET_ID.match(set_id)
    if not match:
        raise ValueError(
            f"{set_id!r} is not a backup set id (expected e.g. 20261129T020000Z-daily)"
        )
    kinds = [k.value for k in SetKind]
    if match["kind"] not in kinds:
        raise ValueError(f"{set_id!r} is not a backup set id (kind not one of {', '.join(kinds)})")
    try:
        started = datetime.strptime(match["time"], SET_ID_TIME_FORMAT).replace(tzinfo=UTC)
    except ValueError:
        raise ValueError(f"{set_id!r} is not a backup set id (not a date and time)") from None
    return started, SetKind(match["kind"])


def is_set_id(name: str) -> bool:
    try:
        parse_set_id(name)
    except ValueError:
        return False
    return True


# -- layout ------------------------------------------------------------------------------------


def environment_dir(area: str, environment: str) -> str:
    return posixpath.join(area, check_name(environment, "environment"))


def set_dir(area: str, environment: str, set_id: str) -> str:
    parse_set_id(set_id)
    return posixpath.join(environment_dir(area, environment), set_id)


def tree_relpath(section: TreeSection, name: str) -> str:
    return f"{TreeSection(section).value}/{check_name(name, 'tree')}"


def tree_names(paths: list[str]) -> list[str]:
    """Directory names in a set for trees at `paths` on the source (one section's trees).

    The last path component (`srv/app/www` -> `www`) when it is unique in the section, else the
    whole path with `/` turned into `_` (`etc_nginx_sites-enabled`), so names never collide."""
    bases = [posixpath.basename(p.rstrip("/")) or "root" for p in paths]
    names = []
    for path, base in zip(paths, bases, strict=True):
        name = base if bases.count(base) == 1 else path.strip("/").replace("/", "_")
        names.append(re.sub(r"[^A-Za-z0-9._-]", "_", name).lstrip("._-") or "tree")
    for name in names:
        if names.count(name) > 1:
            raise ValueError(f"two trees of one section would share the name {name!r}: {paths}")
    return names


def dump_extension(engine: str) -> str:
    return {"postgresql": "dump", "mysql": "sql"}[engine]


def dump_relpath(database: str, engine: str) -> str:
    return f"databases/{check_name(database, 'database')}.{dump_extension(engine)}"


# -- the manifest ------------------------------------------------------------------------------


class TreeRecord(BaseModel):
    """One file or configuration tree of a set."""

    model_config = ConfigDict(extra="forbid")

    section: TreeSection = Field(description="`files` or `configs`")
    name: str = Field(description="The tree's name, its directory under the section")
    source: str = Field(description="The tree's path on the source host (relative to its home)")
    path: str = Field(description="The tree's path in the set, e.g. files/www")
    source_is_file: bool = Field(
        default=False,
        description="True when the source is a single file, kept as <path>/<its name>; "
        "a directory's content is <path>/ itself",
    )
    files: int = Field(ge=0, description="Number of regular files")
    bytes: int = Field(ge=0, description="Sum of the regular files' sizes")
    digest: str = Field(description="sha256 of the tree's listing (hex); see `digest_covers`")
    copied_at: datetime = Field(description="When the copy of this tree started (UTC)")
    linked_to: str | None = Field(
        default=None, description="Set id used as rsync --link-dest (unchanged files hard-linked)"
    )
    transferred_bytes: int | None = Field(
        default=None, description="Bytes rsync actually copied (the rest was linked or unchanged)"
    )

    @field_validator("digest")
    @classmethod
    def _hex(cls, value: str) -> str:
        if not _SHA256.match(value):
            raise ValueError("expected 64 lowercase hexadecimal digits")
        return value


class DumpRecord(BaseModel):
    """One database dump of a set."""

    model_config = ConfigDict(extra="forbid")

    database: str = Field(description="Database name on the source server")
    engine: Literal["postgresql", "mysql"] = Field(description="Database engine")
    user_database: bool = Field(description="True for a user database (backed up every 2 hours)")
    path: str = Field(description="The dump's path in the set, e.g. databases/app_users.dump")
    format: str = Field(description="How it was made, e.g. `pg_dump -Fc` or `mysqldump`")
    size: int = Field(ge=0, description="Size of the dump in bytes")
    sha256: str = Field(description="sha256 of the dump (hex), checked on the backup server")
    dumped_at: datetime = Field(description="When the dump started (UTC)")
    tables: dict[str, int] = Field(
        description="Row count per table (schema.table for PostgreSQL), read on the source at "
        "dump time"
    )
    counts_exact: bool = Field(
        default=True,
        description="True when `tables` are exactly the dump's rows (PostgreSQL: counted in the "
        "dump's snapshot; MySQL: no count moved during the dump)",
    )

    @field_validator("sha256")
    @classmethod
    def _hex(cls, value: str) -> str:
        if not _SHA256.match(value):
            raise ValueError("expected 64 lowercase hexadecimal digits")
        return value


class Manifest(BaseModel):
    """What a complete backup set holds. Written last: its presence means the set is complete."""

    model_config = ConfigDict(extra="forbid")

    format: Literal["drp-backup-manifest/1"] = Field(
        default=MANIFEST_FORMAT, description="Manifest format and version"
    )
    set_id: str = Field(description="UTC start time and kind, e.g. 20261129T020000Z-daily")
    kind: SetKind = Field(description="daily, files, databases or user-databases")
    environment: str = Field(description="The environment backed up")
    source_host: str = Field(description="Inventory name of the host the data came from")
    backup_host: str = Field(description="Inventory name of the backup server holding the set")
    started: datetime = Field(description="When the backup started (UTC)")
    completed: datetime = Field(description="When the manifest was written (UTC)")
    trees: list[TreeRecord] = Field(default_factory=list, description="File and config trees")
    databases: list[DumpRecord] = Field(default_factory=list, description="Database dumps")
    digest_covers: str = Field(default=DIGEST_COVERS, description="What a tree digest proves")

    @field_validator("set_id")
    @classmethod
    def _set_id(cls, value: str) -> str:
        parse_set_id(value)
        return value

    @property
    def bytes(self) -> int:
        """Bytes a restore of the whole set copies."""
        return sum(t.bytes for t in self.trees) + sum(d.size for d in self.databases)

    @property
    def files(self) -> int:
        return sum(t.files for t in self.trees) + len(self.databases)

    def tree(self, section: TreeSection, name: str) -> TreeRecord | None:
        return next((t for t in self.trees if t.section == section and t.name == name), None)

    def dump(self, database: str) -> DumpRecord | None:
        return next((d for d in self.databases if d.database == database), None)

    def to_json(self) -> str:
        return json.dumps(self.model_dump(mode="json"), indent=2, sort_keys=False) + "\n"

    @classmethod
    def from_json(cls, text: str | builtins.bytes) -> Manifest:
        """Parse a manifest; ValueError with a one-line reason if it is not a valid one."""
        try:
            return cls.model_validate_json(text)
        except ValidationError as err:
            first = err.errors()[0]
            where = ".".join(str(p) for p in first["loc"]) or "manifest"
            more = f" (and {err.error_count() - 1} more problems)" if err.error_count() > 1 else ""
            raise ValueError(f"invalid manifest: {where}: {first['msg']}{more}") from None


# -- commands run on a backup server -----------------------------------------------------------

# Listing, sorted bytewise so that two hosts with different locales agree on the order.
_TREE_STATS = (
    "L=$(mktemp) && trap 'rm -f \"$L\"' EXIT && "
    'find "$1" -type f -printf \'%P\\t%s\\t%Ts\\n\' | LC_ALL=C sort > "$L" && '
    'sha256sum < "$L" | cut -d" " -f1 && wc -l < "$L" && '
    "awk -F'\\t' '{s += $2} END {printf \"%.0f\\n\", s}' \"$L\""
)


def tree_stats_argv(path: str) -> list[str]:
    """Prints three lines for the tree at `path`: listing digest, file count, total bytes."""
    return [
        "sh",
        "-c",
        f'test -d "$1" || {{ echo "no such directory: ${{1#./}}" >&2; exit 3; }}; {_TREE_STATS}',
        "sh",
        path_arg(path),
    ]


def parse_tree_stats(stdout: str) -> tuple[str, int, int]:
    """(digest, files, bytes) from the output of `tree_stats_argv`."""
    lines = stdout.split()
    if len(lines) != 3 or not _SHA256.match(lines[0]):
        raise ValueError(f"unexpected tree statistics output: {stdout.strip()[:200]!r}")
    return lines[0], int(lines[1]), int(lines[2])


def file_stats_argv(paths: list[str]) -> list[str]:
    """For each path, one line `size<TAB>sha256<TAB>path`, or `missing<TAB>-<TAB>path`."""
    script = (
        'for f in "$@"; do if [ -f "$f" ]; then '
        'printf "%s\\t%s\\t%s\\n" "$(stat -c %s -- "$f")" '
        '"$(sha256sum < "$f" | cut -d" " -f1)" "$f"; '
        'else printf "missing\\t-\\t%s\\n" "$f"; fi; done'
    )
    return ["sh", "-c", script, "sh", *paths]


def parse_file_stats(stdout: str) -> dict[str, tuple[int, str] | None]:
    """path -> (size, sha256), or None when the file is missing."""
    result: dict[str, tuple[int, str] | None] = {}
    for line in stdout.splitlines():
        if not line:
            continue
        size, digest, path = line.split("\t", 2)
        result[path] = None if size == "missing" else (int(size), digest)
    return result


def list_sets_argv(area: str) -> list[str]:
    """One line per set directory under `area`: `environment/set-id<TAB>base64 manifest or empty`.

    One round trip per server, whatever the number of sets. Directories whose names are not set
    ids are listed too (the reader ignores them)."""
    script = (
        'cd "$1" 2>/dev/null || exit 0; '
        'for d in */*/; do [ -d "$d" ] || continue; d=${d%/}; '
        'if [ -f "$d/manifest.json" ]; then '
        'printf "%s\\t%s\\n" "$d" "$(base64 -w0 "$d/manifest.json")"; '
        'else printf "%s\\t\\n" "$d"; fi; done'
    )
    return ["sh", "-c", script, "sh", path_arg(area)]


def write_file_atomically_argv(path: str) -> list[str]:
    """Writes stdin to `path` through a temporary name in the same directory, then renames it, so
    a reader sees either no file or the whole file (rename is atomic within a file system)."""
    script = (
        'set -e; t="$1.tmp.$$"; cat > "$t"; sync -- "$t" 2>/dev/null || true; mv -f -- "$t" "$1"'
    )
    return ["sh", "-c", script, "sh", path]


def remove_tree_argv(path: str) -> list[str]:
    return ["rm", "-rf", "--", path]
