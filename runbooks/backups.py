"""The backup catalogue: which sets the backup servers hold, which are usable, which to restore.

Read-only. One SSH command per backup server lists its sets and their manifests
(`manifest.list_sets_argv`); a set is

- **complete** when its manifest is present and valid,
- **incomplete** when it has no manifest (the backup was interrupted, or is still running),
- **corrupt** when its manifest cannot be read, or when verification found a missing file, a
  size or checksum mismatch or a tree whose digest changed.

`Catalogue.choose()` picks, per environment, the newest complete set holding the file trees and,
per database, the newest complete set holding its dump (for a user database, a 2-hourly
user-database set may be newer than the daily one). Each chosen set is verified on its server;
one that fails is skipped with a warning saying why, and the next newest (possibly on the other
server) is used. The `Selection` gives the data-loss window if activation started now and the
bytes a restore copies.
"""

from __future__ import annotations

import base64
import binascii
import logging
from collections.abc import Callable, Collection, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from providers.commands import CommandRunner
from runbooks import manifest as mf
from runbooks.errors import ProviderError
from runbooks.manifest import DumpRecord, Manifest, SetKind, TreeRecord, TreeSection
from runbooks.render import data_loss_sentence, human_duration

if TYPE_CHECKING:
    from runbooks.inventory import Site

log = logging.getLogger(__name__)


class SetStatus(StrEnum):
    COMPLETE = "complete"
    INCOMPLETE = "incomplete"
    CORRUPT = "corrupt"


@dataclass(frozen=True)
class BackupServer:
    """A backup server as the catalogue sees it: a name, a role, its backup area, a runner."""

    name: str  # inventory host name
    role: str  # backup_even | backup_odd
    area: str  # backup area, relative to the SSH user's home (or absolute)
    runner: CommandRunner


@dataclass(frozen=True)
class BackupSet:
    """One set directory on one backup server, with what its manifest says (if anything)."""

    server: str
    area: str
    environment: str
    set_id: str
    kind: SetKind
    started: datetime  # from the set id: known even without a manifest
    status: SetStatus
    reason: str = ""  # why it is not complete; empty when complete
    manifest: Manifest | None = None
    # True once its files were checked against the manifest (`Catalogue.status`); a listing
    # alone reads the manifest only, so a damaged file still looks complete there.
    verified: bool = False

    @property
    def path(self) -> str:
        """The set's directory on its server."""
        return mf.set_dir(self.area, self.environment, self.set_id)

    def item_path(self, relpath: str) -> str:
        return f"{self.path}/{relpath}"

    @property
    def completed(self) -> datetime | None:
        return self.manifest.completed if self.manifest else None

    @property
    def bytes(self) -> int | None:
        return self.manifest.bytes if self.manifest else None

    @property
    def usable(self) -> bool:
        return self.status is SetStatus.COMPLETE

    @property
    def label(self) -> str:
        """`backup-even:app/20261129T020000Z-daily`, how messages name a set."""
        return f"{self.server}:{self.environment}/{self.set_id}"

    def age_seconds(self, now: datetime) -> float:
        return (now - self.started).total_seconds()

    def with_status(self, status: SetStatus, reason: str, *, verified: bool = False) -> BackupSet:
        return BackupSet(
            self.server,
            self.area,
            self.environment,
            self.set_id,
            self.kind,
            self.started,
            status,
            reason,
            self.manifest,
            verified,
        )

    @property
    def status_words(self) -> str:
        """What `drp backup list` shows: `complete, verified`, `complete (not verified)`,
        `incomplete: why`, `corrupt: why`."""
        if self.status is SetStatus.COMPLETE:
            return "complete, verified" if self.verified else "complete (not verified)"
        return f"{self.status.value}: {self.reason}" if self.reason else self.status.value

    @property
    def data(self) -> dict[str, Any]:
        return {
            "server": self.server,
            "environment": self.environment,
            "set_id": self.set_id,
            "kind": self.kind.value,
            "started": self.started.isoformat(),
            "completed": self.completed.isoformat() if self.completed else None,
            "status": self.status.value,
            "verified": self.verified,
            "reason": self.reason,
            "bytes": self.bytes,
            "path": self.path,
        }


# -- reading a server's listing (pure) ---------------------------------------------------------


def parse_listing(server: str, area: str, stdout: str, now: datetime) -> list[BackupSet]:
    """The sets in the output of `manifest.list_sets_argv`, newest first.

    Directories whose names are not set ids are not sets (an operator's notes, a temp dir) and
    are left out."""
    sets: list[BackupSet] = []
    for line in stdout.splitlines():
        if not line.strip():
            continue
        where, _, encoded = line.partition("\t")
        environment, _, set_id = where.partition("/")
        try:
            started, kind = mf.parse_set_id(set_id)
        except ValueError:
            continue
        sets.append(_classify(server, area, environment, set_id, kind, started, encoded, now))
    return sorted(sets, key=lambda s: (s.started, s.server), reverse=True)


def _classify(
    server: str,
    area: str,
    environment: str,
    set_id: str,
    kind: SetKind,
    started: datetime,
    encoded: str,
    now: datetime,
) -> BackupSet:
    def make(status: SetStatus, reason: str = "", manifest: Manifest | None = None) -> BackupSet:
        return BackupSet(server, area, environment, set_id, kind, started, status, reason, manifest)

    if not encoded.strip():
        age = _words((now - started).total_seconds())
        return make(
            SetStatus.INCOMPLETE,
            f"no {mf.MANIFEST_NAME}: the backup was interrupted or is still running "
            f"(started {age} ago)",
        )
    try:
        text = base64.b64decode(encoded, validate=True)
        manifest = Manifest.from_json(text)
    except (binascii.Error, ValueError) as err:
        reason = str(err) if "manifest" in str(err) else f"unreadable manifest: {err}"
        return make(SetStatus.CORRUPT, reason)
    if manifest.set_id != set_id or manifest.environment != environment:
        return make(
            SetStatus.CORRUPT,
            f"manifest describes {manifest.environment}/{manifest.set_id}, "
            f"not the directory {environment}/{set_id} it is in",
        )
    return make(SetStatus.COMPLETE, "", manifest)


def _words(seconds: float) -> str:
    return human_duration(seconds)


# -- verification ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Verification:
    set: BackupSet
    problems: tuple[str, ...]

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def reason(self) -> str:
        return "; ".join(self.problems) if self.problems else "every file matches the manifest"


def compare_tree(record: TreeRecord, digest: str, files: int, size: int) -> list[str]:
    """What differs between a tree's manifest record and what is on disk now."""
    problems = []
    if files != record.files:
        problems.append(f"{record.path}: {files} files, manifest says {record.files}")
    if size != record.bytes:
        problems.append(f"{record.path}: {size} bytes, manifest says {record.bytes}")
    if digest != record.digest and not problems:
        problems.append(
            f"{record.path}: listing digest differs from the manifest "
            "(a file was renamed, replaced or re-dated)"
        )
    return problems


def compare_dump(record: DumpRecord, found: tuple[int, str] | None) -> list[str]:
    if found is None:
        return [f"{record.path}: missing"]
    size, digest = found
    if size != record.size:
        return [f"{record.path}: {size} bytes, manifest says {record.size}"]
    if digest != record.sha256:
        return [f"{record.path}: sha256 mismatch (file is damaged)"]
    return []


VERIFY_COMMANDS_AT_ONCE = 4  # well under sshd's 10 sessions per connection


def verify_set(runner: CommandRunner, backup_set: BackupSet) -> Verification:
    """Check on its server that every file of the set's manifest is present and unchanged."""
    if backup_set.manifest is None:
        return Verification(backup_set, (backup_set.reason or "no manifest",))
    manifest = backup_set.manifest
    paths = [backup_set.item_path(d.path) for d in manifest.databases]
    # The trees and the dumps are read side by side, each command on its own channel.
    with ThreadPoolExecutor(max_workers=VERIFY_COMMANDS_AT_ONCE) as readers:
        trees = [
            readers.submit(
                runner.run, mf.tree_stats_argv(backup_set.item_path(t.path)), check=False
            )
            for t in manifest.trees
        ]
        dumps = (
            readers.submit(runner.run, mf.file_stats_argv(paths), check=False) if paths else None
        )
    problems: list[str] = []
    for tree, reading in zip(manifest.trees, trees, strict=True):
        result = reading.result()
        if not result.ok:
            problems.append(f"{tree.path}: missing")
            continue
        problems += compare_tree(tree, *mf.parse_tree_stats(result.stdout))
    if dumps is not None:
        result = dumps.result()
        if not result.ok:
            raise ProviderError(
                f"cannot read the dumps of {backup_set.label}: {result.stderr.strip()[:300]}"
            )
        found = mf.parse_file_stats(result.stdout)
        for dump, path in zip(manifest.databases, paths, strict=True):
            problems += compare_dump(dump, found.get(path))
    return Verification(backup_set, tuple(problems))


# -- choosing ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class WantedDatabase:
    name: str
    user_database: bool


@dataclass(frozen=True)
class WantedEnvironment:
    """What a restore of one environment needs, from the inventory."""

    name: str
    trees: tuple[tuple[TreeSection, str], ...]  # (section, tree name)
    databases: tuple[WantedDatabase, ...]


@dataclass(frozen=True)
class ChosenTree:
    set: BackupSet
    tree: TreeRecord

    @property
    def path(self) -> str:
        """The tree's directory on the backup server."""
        return self.set.item_path(self.tree.path)

    @property
    def captured(self) -> datetime:
        return self.tree.copied_at


@dataclass(frozen=True)
class ChosenDump:
    set: BackupSet
    dump: DumpRecord

    @property
    def path(self) -> str:
        """The dump file on the backup server."""
        return self.set.item_path(self.dump.path)

    @property
    def captured(self) -> datetime:
        return self.dump.dumped_at


@dataclass
class EnvironmentChoice:
    """What to restore for one environment, and what is missing."""

    environment: str
    now: datetime
    trees: list[ChosenTree] = field(default_factory=list)
    dumps: list[ChosenDump] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)  # sentences: "no usable backup of ..."

    @property
    def complete(self) -> bool:
        return not self.missing

    @property
    def oldest_capture(self) -> datetime | None:
        times = [t.captured for t in self.trees] + [d.captured for d in self.dumps]
        return min(times) if times else None

    @property
    def data_loss_seconds(self) -> float | None:
        """Now minus the oldest of the chosen backups: what activation now would lose."""
        oldest = self.oldest_capture
        return None if oldest is None else (self.now - oldest).total_seconds()

    @property
    def data_loss_words(self) -> str:
        oldest = self.oldest_capture
        if oldest is None:
            return f"no usable backup of environment {self.environment}"
        return data_loss_sentence(oldest, self.now)

    @property
    def copy_bytes(self) -> int:
        """Bytes a restore copies, from the manifests."""
        return sum(t.tree.bytes for t in self.trees) + sum(d.dump.size for d in self.dumps)

    @property
    def sets(self) -> list[BackupSet]:
        seen: dict[str, BackupSet] = {}
        items: list[ChosenTree | ChosenDump] = [*self.trees, *self.dumps]
        for item in items:
            seen.setdefault(item.set.label, item.set)
        return sorted(seen.values(), key=lambda s: s.started, reverse=True)

    def tree(self, section: TreeSection, name: str) -> ChosenTree | None:
        return next(
            (t for t in self.trees if (t.tree.section, t.tree.name) == (section, name)), None
        )

    def dump(self, database: str) -> ChosenDump | None:
        return next((d for d in self.dumps if d.dump.database == database), None)

    @property
    def data(self) -> dict[str, Any]:
        return {
            "environment": self.environment,
            "trees": [
                {
                    "section": t.tree.section.value,
                    "name": t.tree.name,
                    "server": t.set.server,
                    "set_id": t.set.set_id,
                    "path": t.path,
                    "files": t.tree.files,
                    "bytes": t.tree.bytes,
                    "captured": t.captured.isoformat(),
                }
                for t in self.trees
            ],
            "databases": [
                {
                    "database": d.dump.database,
                    "engine": d.dump.engine,
                    "server": d.set.server,
                    "set_id": d.set.set_id,
                    "path": d.path,
                    "bytes": d.dump.size,
                    "sha256": d.dump.sha256,
                    "captured": d.captured.isoformat(),
                }
                for d in self.dumps
            ],
            "missing": list(self.missing),
            "data_loss_seconds": self.data_loss_seconds,
            "data_loss": self.data_loss_words,
            "copy_bytes": self.copy_bytes,
        }


@dataclass
class Selection:
    """The backups an activation (or drill) restores, chosen at `now`."""

    now: datetime
    environments: dict[str, EnvironmentChoice]
    warnings: list[str] = field(default_factory=list)  # sets skipped, and why
    # With a choice to keep (`Catalogue.choose(only=...)`): each kept set that is no longer
    # usable, as "label (why)". A resumed operation restores its first choice or nothing.
    gone: list[str] = field(default_factory=list)

    def __getitem__(self, environment: str) -> EnvironmentChoice:
        return self.environments[environment]

    @property
    def complete(self) -> bool:
        return all(choice.complete for choice in self.environments.values())

    @property
    def missing(self) -> list[str]:
        return [m for choice in self.environments.values() for m in choice.missing]

    @property
    def oldest_capture(self) -> datetime | None:
        """The oldest data any environment would be restored from: where the loss starts."""
        known = [c.oldest_capture for c in self.environments.values() if c.oldest_capture]
        return min(known) if known else None

    @property
    def data_loss_seconds(self) -> float | None:
        """The worst window over all environments."""
        values = [c.data_loss_seconds for c in self.environments.values()]
        known = [v for v in values if v is not None]
        return max(known) if known else None

    @property
    def copy_bytes(self) -> int:
        return sum(c.copy_bytes for c in self.environments.values())

    @property
    def data(self) -> dict[str, Any]:
        return {
            "now": self.now.isoformat(),
            "environments": {name: c.data for name, c in sorted(self.environments.items())},
            "warnings": list(self.warnings),
            "data_loss_seconds": self.data_loss_seconds,
            "copy_bytes": self.copy_bytes,
        }


def data_loss_window(selection: Selection, environment: str) -> tuple[float | None, str]:
    """(seconds, sentence) that activation started at `selection.now` would lose."""
    choice = selection[environment]
    return choice.data_loss_seconds, choice.data_loss_words


class Catalogue:
    """The sets of both backup servers, read once, verified on demand (each set at most once)."""

    def __init__(
        self,
        servers: Sequence[BackupServer],
        now: datetime | None = None,
        *,
        on_close: Callable[[], None] | None = None,
    ) -> None:
        self.servers = {s.name: s for s in servers}
        self.now = now or datetime.now(UTC)
        self._sets: list[BackupSet] | None = None
        self._verified: dict[str, Verification] = {}
        self._on_close = on_close
        self.unreachable: dict[str, str] = {}  # server -> why it could not be read

    def close(self) -> None:
        """Close the connections the catalogue opened (`open_catalogue`); idempotent."""
        if self._on_close is not None:
            self._on_close()
            self._on_close = None

    def __enter__(self) -> Catalogue:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def sets(self, environment: str | None = None) -> list[BackupSet]:
        """Every set on every reachable server, newest first. An unreachable server is noted
        in `unreachable` (activation goes on with the other one)."""
        if self._sets is None:
            # Both servers at once: each listing is a round trip, and the first one a login.
            with ThreadPoolExecutor(max_workers=max(1, len(self.servers))) as readers:
                listings = list(readers.map(self._read_server, self.servers.values()))
            found = [s for sets in listings for s in sets]
            self._sets = sorted(found, key=lambda s: (s.started, s.server), reverse=True)
        if environment is None:
            return list(self._sets)
        return [s for s in self._sets if s.environment == environment]

    def _read_server(self, server: BackupServer) -> list[BackupSet]:
        try:
            result = server.runner.run(mf.list_sets_argv(server.area), check=False)
        except Exception as err:  # one server down must not hide the other's backups
            seconds = getattr(err, "timed_out_after", None)
            if seconds is not None:
                self.unreachable[server.name] = (
                    f"did not answer within {seconds:g} s while listing {server.area} (a hung "
                    "file system or disk?); its sets are not considered. The wait is "
                    "timeouts.command_seconds in the inventory"
                )
                log.warning("backup server %s did not answer: %s", server.name, err)
                return []
            self.unreachable[server.name] = f"{type(err).__name__}: {err}"
            log.warning("backup server %s unreachable: %s", server.name, err)
            return []
        if not result.ok:
            self.unreachable[server.name] = (
                result.stderr.strip()[:300] or f"exit {result.exit_code}"
            )
            return []
        return parse_listing(server.name, server.area, result.stdout, self.now)

    def verify(self, backup_set: BackupSet) -> Verification:
        key = backup_set.label
        if key not in self._verified:
            server = self.servers[backup_set.server]
            self._verified[key] = verify_set(server.runner, backup_set)
        return self._verified[key]

    def status(self, backup_set: BackupSet) -> BackupSet:
        """The set with its status after verification (corrupt + reason when it failed)."""
        if not backup_set.usable:
            return backup_set
        check = self.verify(backup_set)
        if check.ok:
            return backup_set.with_status(SetStatus.COMPLETE, "", verified=True)
        return backup_set.with_status(SetStatus.CORRUPT, check.reason, verified=True)

    def choose(
        self,
        wanted: Iterable[WantedEnvironment],
        *,
        verify: bool = True,
        not_after: datetime | None = None,
        only: Collection[str] | None = None,
    ) -> Selection:
        """The newest usable sets for each environment; with `not_after`, only sets started
        by then; with `only`, only those sets (labels): a resumed operation keeps the choice its
        first run made, and `Selection.gone` names each of them that is no longer usable."""
        warnings: list[str] = []
        warned: set[str] = set()

        def usable(candidate: BackupSet) -> bool:
            if not verify:
                return True
            check = self.verify(candidate)
            if not check.ok and candidate.label not in warned:
                warned.add(candidate.label)
                warnings.append(f"skipping {candidate.label}: {check.reason}")
                log.warning("skipping %s: %s", candidate.label, check.reason)
            return check.ok

        self.sets()  # read both servers first: an unreachable one is the first warning
        for server, why in self.unreachable.items():
            warnings.append(f"backup server {server} could not be read: {why}")
        kept = set(only) if only is not None else None
        gone = self._gone(sorted(kept), verify) if kept is not None else []
        candidates = [(env, self._complete(env.name, not_after, kept)) for env in wanted]
        if verify:
            self._verify_first_choices(candidates)
        environments: dict[str, EnvironmentChoice] = {}
        for env, complete in candidates:
            choice = EnvironmentChoice(env.name, self.now)
            _choose_trees(env, complete, usable, choice)
            _choose_dumps(env, complete, usable, choice)
            environments[env.name] = choice
        return Selection(self.now, environments, warnings, gone)

    def _complete(
        self, environment: str, not_after: datetime | None, kept: set[str] | None
    ) -> list[BackupSet]:
        """The environment's sets a choice may take, newest first."""
        return [
            s
            for s in self.sets(environment)
            if s.usable
            and s.manifest is not None
            and (not_after is None or s.started <= not_after)
            and (kept is None or s.label in kept)
        ]

    def _verify_first_choices(
        self, candidates: list[tuple[WantedEnvironment, list[BackupSet]]]
    ) -> None:
        """Verify side by side the sets a choice takes first, should they all verify: the
        choice then reads their results, and goes on to older sets, one at a time, only past
        a corrupt one."""
        first: dict[str, BackupSet] = {}

        def taken(candidate: BackupSet) -> bool:
            first[candidate.label] = candidate
            return True

        for env, complete in candidates:
            _choose_trees(env, complete, taken, EnvironmentChoice(env.name, self.now))
            _choose_dumps(env, complete, taken, EnvironmentChoice(env.name, self.now))
        # Two sets at a time, each with up to VERIFY_COMMANDS_AT_ONCE commands: at most 8
        # sessions on one server's connection (sshd allows 10 by default).
        with ThreadPoolExecutor(max_workers=2) as verifiers:
            list(verifiers.map(self.verify, first.values()))

    def _gone(self, labels: Iterable[str], verify: bool) -> list[str]:
        """Each of these sets that cannot be restored any more, as "label (why)"."""
        known = {s.label: s for s in self.sets()}
        gone = []
        for label in labels:
            found = known.get(label)
            server = label.split(":", 1)[0]
            if found is None:
                why = (
                    f"backup server {server} could not be read"
                    if server in self.unreachable
                    else f"no longer on {server}"
                )
            elif not found.usable:
                why = found.status_words
            elif verify and not (check := self.verify(found)).ok:
                why = f"corrupt: {check.reason}"
            else:
                continue
            gone.append(f"{label} ({why})")
        return gone


def _choose_trees(
    env: WantedEnvironment,
    complete: list[BackupSet],
    usable: Any,
    choice: EnvironmentChoice,
) -> None:
    if not env.trees:
        return
    for candidate in complete:  # newest first
        assert candidate.manifest is not None
        if not candidate.kind.has_trees or not candidate.manifest.trees:
            continue
        if not usable(candidate):
            continue
        for section, name in env.trees:
            record = candidate.manifest.tree(section, name)
            if record is None:
                choice.missing.append(
                    f"{env.name}: tree {section.value}/{name} is not in the newest usable set "
                    f"{candidate.label} (added to the inventory since?)"
                )
            else:
                choice.trees.append(ChosenTree(candidate, record))
        return
    choice.missing.append(f"{env.name}: no usable backup of the files on any backup server")


def _choose_dumps(
    env: WantedEnvironment,
    complete: list[BackupSet],
    usable: Any,
    choice: EnvironmentChoice,
) -> None:
    for database in env.databases:
        holders = [
            (record, s)
            for s in complete
            if s.manifest is not None and (record := s.manifest.dump(database.name)) is not None
        ]
        holders.sort(key=lambda pair: (pair[0].dumped_at, pair[1].started), reverse=True)
        for record, candidate in holders:
            if usable(candidate):
                choice.dumps.append(ChosenDump(candidate, record))
                break
        else:
            choice.missing.append(
                f"{env.name}: no usable backup of database {database.name} on any backup server"
            )


# -- from the inventory ------------------------------------------------------------------------


def wanted_environments(
    site: Site, environments: Iterable[str] | None = None
) -> list[WantedEnvironment]:
    """What a restore of each environment (all by default) needs, from the inventory."""
    from runbooks.connect import environment_trees

    names = set(environments) if environments is not None else None
    result = []
    for env in site.environments:
        if names is not None and env.name not in names:
            continue
        trees = tuple((section, name) for section, name, _ in environment_trees(env))
        dbs = tuple(WantedDatabase(db.name, bool(db.user_database)) for db in env.databases)
        result.append(WantedEnvironment(env.name, trees, dbs))
    return result


def open_catalogue(site: Site, now: datetime | None = None) -> Catalogue:
    """A catalogue of the site's backup servers, connected over SSH (close it, or use `with`)."""
    from runbooks.connect import HostPool, backup_servers

    pool = HostPool(site)
    return Catalogue(backup_servers(site, pool), now, on_close=pool.close)


def choose_sets(
    site: Site,
    now: datetime | None = None,
    environments: Iterable[str] | None = None,
    *,
    verify: bool = True,
) -> Selection:
    """The backups to restore for each environment, across both backup servers."""
    with open_catalogue(site, now) as catalogue:
        return catalogue.choose(wanted_environments(site, environments), verify=verify)
