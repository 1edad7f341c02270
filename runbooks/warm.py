"""What the DRP server holds ready: staged trees and databases, restore certificates, rates.

A staging run (`runbooks.staging`, `drp stage`) restores the newest verified backups on the DRP
server beside what it serves; an activation or a drill then swaps them in instead of copying
and importing everything after the order. On the DRP host (paths relative to the SSH user's
home, or absolute as the inventory gives the trees):

    <tree>.drp-stage/<server>-<set id>/       a staged tree (hard links to the stage before)
    <tree>.drp-stage/<server>-<set id>.json   written once that tree is complete and checked
    <database>__drp_stage                     a staged database, on the DRP's database server,
                                              carrying drp's marker (which backup, complete)
    ~/.drp/stage/certificates.json            every set a staging run restored, or failed to:
                                              what `drp backup list` shows
    ~/.drp/stage/rates.json                   copy and restore rates the last staging measured

Everything here is read-only but `add_certificates` and `save_rates`, which a staging run
calls while it holds the site lock. Nothing here holds a secret.
"""

from __future__ import annotations

import json
import posixpath
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

from providers import aside
from providers.commands import CommandRunner
from providers.database import engine_for, stage_endpoint
from providers.dbcommon import DatabaseError
from runbooks import connect
from runbooks.backups import BackupSet
from runbooks.errors import ProviderError
from runbooks.inventory import DatabaseRole, Site
from runbooks.records import MISSING_EXIT, read_argv, write_argv

STAGE_TAG = "drp-stage"
STATE_DIR = ".drp/stage"
CERTIFICATES_FILE = f"{STATE_DIR}/certificates.json"
RATES_FILE = f"{STATE_DIR}/rates.json"
KEEP_CERTIFICATES = 500  # the newest ones; older sets are long gone from the backup servers


def stage_base(tree_path: str) -> str:
    """Where a tree's stages live: `<tree>.drp-stage`, beside the tree (same file system, so
    that the swap is a rename)."""
    return f"{aside.normalize_path(tree_path)}.{STAGE_TAG}"


def stage_dir(tree_path: str, backup_set: BackupSet) -> str:
    return f"{stage_base(tree_path)}/{backup_set.server}-{backup_set.set_id}"


def done_file(directory: str) -> str:
    """Written once the staged tree `directory` is complete and checked."""
    return f"{directory}.json"


def mark_staged(
    runner: CommandRunner, directory: str, set_label: str, files: int, size: int
) -> None:
    """Write the done file of the staged tree `directory`: it holds `set_label` as checked now.
    Raises ProviderError when it cannot be written."""
    data = {"set": set_label, "staged_at": now_text(), "files": files, "bytes": size}
    write_json(runner, done_file(directory), data)


@dataclass(frozen=True)
class StagedTree:
    environment: str
    tree_path: str  # as the inventory gives it
    directory: str  # the stage, on the DRP host
    set_label: str  # backup-even:app/20261129T020000Z-daily
    staged_at: str  # ISO time, UTC
    files: int = 0
    bytes: int = 0


@dataclass(frozen=True)
class StagedDatabase:
    environment: str
    database: str
    stage_db: str  # app_users__drp_stage
    backup_id: str  # <set id>@<server>, as the restore marker says
    staged_at: str


@dataclass(frozen=True)
class Rates:
    """What the last staging measured (None: never measured)."""

    copy_bytes_per_second: float | None = None
    restore_rows_per_second: float | None = None
    measured_at: str = ""


@dataclass
class WarmState:
    """What the DRP server holds ready, as read before an operation's order (and kept in its
    record, so that a resume plans the same operation)."""

    trees: list[StagedTree] = field(default_factory=list)
    databases: list[StagedDatabase] = field(default_factory=list)
    rates: Rates = field(default_factory=Rates)

    def tree(self, environment: str, tree_path: str) -> StagedTree | None:
        for staged in self.trees:
            if (staged.environment, staged.tree_path) == (environment, tree_path):
                return staged
        return None

    def database(self, environment: str, database: str) -> StagedDatabase | None:
        for staged in self.databases:
            if (staged.environment, staged.database) == (environment, database):
                return staged
        return None

    @property
    def empty(self) -> bool:
        return not self.trees and not self.databases

    @property
    def data(self) -> dict[str, Any]:
        return {
            "trees": [asdict(t) for t in self.trees],
            "databases": [asdict(d) for d in self.databases],
            "rates": asdict(self.rates),
        }

    @classmethod
    def from_data(cls, data: dict[str, Any]) -> WarmState:
        return cls(
            trees=[StagedTree(**t) for t in data.get("trees", [])],
            databases=[StagedDatabase(**d) for d in data.get("databases", [])],
            rates=Rates(**data.get("rates", {})),
        )


# -- reading the DRP host ------------------------------------------------------------------------
def _done_files_argv(bases: list[str]) -> list[str]:
    """Each `<base>/*.json` as `path<TAB>content` on one line."""
    script = (
        'for b in "$@"; do for f in "$b"/*.json; do [ -f "$f" ] || continue; '
        'printf "%s\\t" "$f"; tr -d "\\n" < "$f"; echo; done; done; true'
    )
    return ["sh", "-c", script, "sh", *bases]


def staged_trees(site: Site, runner: CommandRunner) -> list[StagedTree]:
    """The complete stages of every directory tree of the inventory (one command)."""
    wanted: dict[str, tuple[str, str]] = {}  # base -> (environment, tree path)
    for env in site.environments:
        for _section, _name, tree in connect.environment_trees(env):
            wanted[stage_base(tree.path)] = (env.name, tree.path)
    result = runner.run(_done_files_argv(list(wanted)), check=False, timeout=60)
    if not result.ok:
        raise ProviderError(
            f"cannot list the stages on {runner.name}: {result.stderr.strip()[:200]}"
        )
    found = []
    for line in result.stdout.splitlines():
        path, _, text = line.partition("\t")
        base, name = posixpath.split(path)
        directory = f"{base}/{name.removesuffix('.json')}"
        if base not in wanted:
            continue
        try:
            data = json.loads(text)
            environment, tree_path = wanted[base]
            found.append(
                StagedTree(
                    environment, tree_path, directory, str(data["set"]), str(data["staged_at"]),
                    int(data.get("files", 0)), int(data.get("bytes", 0)),
                )
            )  # fmt: skip
        except (ValueError, KeyError, TypeError):
            continue  # a damaged done file: that stage is not used
    # One stage per tree is kept; if a run died before removing the older one, the newest.
    newest: dict[tuple[str, str], StagedTree] = {}
    for staged in sorted(found, key=lambda s: s.staged_at):
        newest[(staged.environment, staged.tree_path)] = staged
    return list(newest.values())


def staged_databases(site: Site, role: DatabaseRole = "drp") -> list[StagedDatabase]:
    """The staged databases whose restore is complete, as their markers say."""
    found = []
    for env in site.environments:
        for db in env.databases:
            endpoint = stage_endpoint(connect.db_endpoint(site, db, role))
            try:
                marker = engine_for(db.engine).read_marker(
                    endpoint, connect.database_password(site, db)
                )
            except DatabaseError:
                continue  # the server does not answer: the preflight says so on its own
            if marker is None or not marker.complete or marker.restored_at is None:
                continue
            found.append(
                StagedDatabase(
                    env.name, db.name, endpoint.dbname, marker.backup_id,
                    marker.restored_at.astimezone(UTC).isoformat(timespec="seconds"),
                )
            )  # fmt: skip
    return found


def read_json(runner: CommandRunner, path: str) -> Any:
    """The JSON file at `path` on the host (None: no such file)."""
    result = runner.run(read_argv(path), check=False, timeout=60)
    if result.exit_code == MISSING_EXIT:
        return None
    if not result.ok:
        raise ProviderError(f"cannot read {runner.name}:{path}: {result.stderr.strip()[:200]}")
    try:
        return json.loads(result.stdout)
    except ValueError:
        return None


def write_json(runner: CommandRunner, path: str, data: Any) -> None:
    result = runner.run(
        write_argv(path), stdin=json.dumps(data, indent=1) + "\n", check=False, timeout=60
    )
    if not result.ok:
        raise ProviderError(f"cannot write {runner.name}:{path}: {result.stderr.strip()[:200]}")


def read_rates(runner: CommandRunner) -> Rates:
    data = read_json(runner, RATES_FILE)
    try:
        return Rates(**data) if isinstance(data, dict) else Rates()
    except TypeError:
        return Rates()


def save_rates(runner: CommandRunner, rates: Rates) -> None:
    write_json(runner, RATES_FILE, asdict(rates))


def read_warm_state(site: Site, runner: CommandRunner) -> WarmState:
    """What the DRP host holds ready (read-only)."""
    return WarmState(staged_trees(site, runner), staged_databases(site), read_rates(runner))


# -- certificates --------------------------------------------------------------------------------
@dataclass(frozen=True)
class Certificate:
    """A set restored on the DRP server by a staging run, and how that went."""

    set: str  # backup-even:app/20261129T020000Z-daily
    tested_at: str  # ISO time, UTC
    host: str  # the DRP host's name
    ok: bool
    parts: tuple[str, ...] = ()  # "files www", "database app_users (2 tables, 15000 rows)"
    why: str = ""  # what failed

    @property
    def words(self) -> str:
        at = self.tested_at.replace("T", " ")[:16]
        if self.ok:
            return f"restore-tested at {at} UTC on {self.host} (rows match)"
        return f"FAILED to restore at {at} UTC on {self.host}: {self.why}"

    @property
    def data(self) -> dict[str, Any]:
        return {**asdict(self), "parts": list(self.parts)}

    @classmethod
    def from_data(cls, data: dict[str, Any]) -> Certificate:
        return cls(
            set=str(data["set"]),
            tested_at=str(data["tested_at"]),
            host=str(data["host"]),
            ok=bool(data["ok"]),
            parts=tuple(data.get("parts", ())),
            why=str(data.get("why", "")),
        )


def read_certificates(runner: CommandRunner) -> list[Certificate]:
    data = read_json(runner, CERTIFICATES_FILE)
    found = []
    for item in data if isinstance(data, list) else []:
        try:
            found.append(Certificate.from_data(item))
        except (KeyError, TypeError, ValueError):
            continue
    return found


def add_certificates(runner: CommandRunner, new: list[Certificate]) -> None:
    """Append (under the site lock: one writer at a time), keeping the newest ones."""
    if not new:
        return
    kept = [*read_certificates(runner), *new][-KEEP_CERTIFICATES:]
    write_json(runner, CERTIFICATES_FILE, [c.data for c in kept])


def latest_certificates(certificates: list[Certificate]) -> dict[str, Certificate]:
    """Set label -> its newest certificate."""
    latest: dict[str, Certificate] = {}
    for certificate in sorted(certificates, key=lambda c: c.tested_at):
        latest[certificate.set] = certificate
    return latest


def now_text() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")
