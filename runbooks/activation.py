"""The steps of the plan's activation method, built from the inventory and the chosen backups.

  preflight (read-only): DRP host and databases reachable, restore targets safe, disk space,
                         backups chosen, DNS credentials
  -- the customer's order --
  copy files and configurations  backup server -> DRP server (rsync on the DRP server)
  import the databases           dump pulled to the DRP server, restored there, counts checked
  verify the service             URL checks sent to the DRP address with the site's Host
  information ticket             "DRP finalized"
  switch DNS                     per zone, every record to the DRP address at once (all or
                                 nothing); every authoritative server asked until all agree
  verify again                   URL checks through the name, as the servers now answer it

A drill runs the same steps without the DNS switch (and with a "drill finished" ticket).
"""

from __future__ import annotations

import hashlib
import re
from datetime import UTC, datetime
from typing import Any

from providers.database import engine_for
from providers.dbcommon import DbEndpoint, NonEmptyDatabase
from runbooks import connect
from runbooks.backups import ChosenDump, ChosenTree, Selection
from runbooks.common_steps import (
    CheckService,
    CopyTree,
    DnsCredentials,
    HostReachable,
    RecordSwitch,
    SendTicket,
    SwitchZone,
    TreeSource,
    WaitPropagation,
    aside_root,
    operation_dir,
    switch_zones,
)
from runbooks.context import OperationContext
from runbooks.inventory import Database, DatabaseRole, Environment, Site, Tree
from runbooks.render import human_bytes
from runbooks.secrets import Secret
from runbooks.steps import (
    Applied,
    Change,
    Check,
    Milestone,
    ProgressCallback,
    ReadOnlyStep,
    Step,
    Write,
)

# The side an activation restores to. The steps take it as a role: only this module, which
# builds the activation's runbook, names it.
TARGET: DatabaseRole = "drp"
STAGING_DIR = ".drp/staging"  # on the target, relative to the SSH user's home
ASSUMED_COPY_RATE = 100e6  # bytes/s, for the copy-time estimate until drills measure one

__all__ = [
    "CheckService",
    "CopyTree",
    "Operation",
    "RecordSwitch",
    "RestoreDatabase",
    "SwitchZone",
    "WaitPropagation",
    "activation_steps",
    "drill_steps",
    "plan_facts",
    "preflight_steps",
]


# -- the operation's shared context ------------------------------------------------------------
class Operation(OperationContext):
    """An activation's or a drill's context: the shared one, plus the chosen backups."""

    def __init__(
        self,
        site: Site,
        operation_id: str,
        kind: str,
        selection: Selection,
        force: bool = False,
        bwlimit_kib: int | None = None,
    ) -> None:
        super().__init__(site, operation_id, kind, force=force, bwlimit_kib=bwlimit_kib)
        self.selection = selection

    @property
    def drp_ip(self) -> str:
        return self.public_address(TARGET)


# -- preflight (read-only) ---------------------------------------------------------------------
class RestoreTargetSafe(ReadOnlyStep):
    """The target's database server answers and the database may be restored over."""

    phase = 11

    def __init__(
        self,
        op: Operation,
        env: Environment,
        db: Database,
        chosen: ChosenDump,
        target: DatabaseRole,
    ) -> None:
        name = connect.host_name(target)
        super().__init__(
            f"preflight-db-{env.name}-{db.name}", f"Check database {db.name} on {name}"
        )
        self.op, self.db, self.chosen, self.target, self.where = op, db, chosen, target, name

    def describe(self) -> list[Change]:
        return [
            Change(
                "check",
                f"{self.where}/{self.db.name}",
                f"{self.db.engine} reachable, safe to restore over",
            )
        ]

    def check(self) -> Check:
        endpoint = connect.db_endpoint(self.op.site, self.db, self.target)
        password = connect.database_password(self.op.site, self.db)
        try:
            decision = engine_for(self.db.engine).restore_decision(
                endpoint, password, backup_id(self.chosen), force=self.op.force
            )
        except NonEmptyDatabase as err:
            return Check(False, f"{err}")
        return Check(True, f"{self.where}/{self.db.name} reachable: {decision.reason}")


class DiskSpace(ReadOnlyStep):
    phase = 12

    def __init__(self, op: Operation, target: DatabaseRole) -> None:
        name = connect.host_name(target)
        super().__init__("preflight-disk", f"Check free disk space on {name}")
        self.op, self.target, self.where = op, target, name
        # Trees arrive whole (what they replace is kept aside, not overwritten in place). The
        # imports run together, so every dump is staged at once (each removed once its
        # database is verified), and a database takes about as much room as its dump again.
        choices = op.selection.environments.values()
        self.trees = sum(t.tree.bytes for c in choices for t in c.trees)
        self.dumps = sum(d.dump.size for c in choices for d in c.dumps)
        self.needed = self.trees + 2 * self.dumps

    def describe(self) -> list[Change]:
        return [Change("check", f"{self.where} free space", f"at least {human_bytes(self.needed)}")]

    def check(self) -> Check:
        # Dumps already staged (by an interrupted run) already take their room: not counted
        # twice. The staging area is listed too, so that leftovers are seen.
        script = (
            "df -Pk . | tail -n 1 | awk '{print $4 * 1024}'; "
            'du -sb -- "$1" 2>/dev/null | cut -f1 || true'
        )
        result = self.op.pool[self.target].run(["sh", "-c", script, "sh", STAGING_DIR], timeout=60)
        lines = result.stdout.split()
        available = int(lines[0])
        staged = int(lines[1]) if len(lines) > 1 else 0
        needed = max(self.needed - min(staged, self.dumps), 0)
        words = (
            f"{human_bytes(available)} free on {self.where}, {human_bytes(needed)} needed "
            f"(trees {human_bytes(self.trees)}, dumps staged {human_bytes(self.dumps)}, "
            f"databases restored {human_bytes(self.dumps)})"
        )
        if staged:
            words += f"; {human_bytes(staged)} already in {self.where}:{STAGING_DIR}"
        return Check(available >= needed, words)


class BackupsChosen(ReadOnlyStep):
    phase = 13

    def __init__(self, op: Operation) -> None:
        super().__init__("preflight-backups", "Choose the newest verified backups")
        self.op = op

    def describe(self) -> list[Change]:
        return [
            Change("check", s.label, "verified against its manifest")
            for s in _sets(self.op.selection)
        ]

    def check(self) -> Check:
        selection = self.op.selection
        if selection.gone:
            return Check(False, chosen_sets_gone(self.op, selection.gone))
        if not selection.complete:
            why = "; ".join(selection.missing + selection.warnings)
            return Check(False, f"{why}. See `drp backup list`; take one with `drp backup run`")
        chosen = ", ".join(s.label for s in _sets(selection))
        skipped = f" (skipped: {'; '.join(selection.warnings)})" if selection.warnings else ""
        return Check(True, f"verified {chosen}{skipped}")


def chosen_sets_gone(op: Operation, gone: list[str]) -> str:
    """Why a resumed operation cannot go on without the backups its first run chose, and how
    to start a new one instead."""
    config = f" -c {op.site.source}" if op.site.source else ""
    return (
        f"the backups that operation {op.operation_id} chose in its first run are gone: "
        f"{'; '.join(gone)}. It restores those or nothing (its plan and its order are for "
        "them), so it cannot go on. Start a new operation, which chooses among the backups "
        f"there now: if `drp status{config}` shows {op.operation_id} holding the site lock, "
        f"release it with `drp unlock{config} --operation-id {op.operation_id} --reason TEXT`; "
        f"then run `drp {op.kind}{config}` without --operation-id, or start a new run of the "
        f"deployment (drp-{op.kind}/{op.kind}) with Run in the Prefect UI: a Retry keeps this "
        "operation"
    )


class RestoreDatabase(Step):
    """One database: its dump pulled to the target, restored, checked against the manifest."""

    phase = 30
    parallel = True
    stage = "import"

    def __init__(
        self,
        op: Operation,
        env: Environment,
        db: Database,
        chosen: ChosenDump,
        target: DatabaseRole,
    ) -> None:
        super().__init__(
            f"restore-{env.name}-{db.name}", f"Import database {db.name} of {env.name}"
        )
        self.op, self.db, self.chosen, self.target = op, db, chosen, target
        self.where = connect.host_name(target)
        self.engine = engine_for(db.engine)
        set_ = chosen.set
        self.staging = f"{STAGING_DIR}/{set_.environment}/{set_.set_id}/databases"
        self.dump_name = chosen.dump.path.rsplit("/", 1)[-1]
        self.dump_path = f"{self.staging}/{self.dump_name}"
        dumps_dir = chosen.path.rsplit("/", 1)[0]
        # Only this database's dump is fetched (not the set's whole databases/ directory); a
        # half-fetched dump waits in the operation's area, outside the staging directory.
        self.fetch = CopyTree(
            op,
            f"{self.key}-fetch",
            f"Fetch the dump of {db.name}",
            TreeSource(connect.backup_role(op.site, set_.server), dumps_dir, set_.label),
            target,
            self.staging,
            includes=(f"/{_rsync_literal(self.dump_name)}",),
            excludes=("*",),
        )

    def _endpoint(self) -> DbEndpoint:
        return connect.db_endpoint(self.op.site, self.db, self.target)

    def writes(self) -> list[Write]:
        env = self.chosen.set.environment
        return [
            Write(self.target, "files", self.staging, env),
            Write(self.target, "database", self.db.name, env, self.db),
        ]

    def describe(self) -> list[Change]:
        d = self.chosen.dump
        rows = sum(d.tables.values())
        return [
            Change(
                "restore",
                f"{self.where}/{self.db.name}",
                f"{self.db.engine} from {self.chosen.set.label} "
                f"({len(d.tables)} tables, {rows} rows)",
                d.size,
            )
        ]

    def _marker_of_this_backup(self) -> bool:
        """drp's marker says this very backup was restored here (possibly restored again)."""
        marker = self.engine.read_marker(self._endpoint(), self._password)
        base = backup_id(self.chosen)
        return bool(
            marker
            and marker.complete
            and (marker.backup_id == base or marker.backup_id.startswith(f"{base}/again-"))
        )

    @property
    def _password(self) -> Secret:
        return connect.database_password(self.op.site, self.db)

    def _differences(self) -> str:
        """Tables whose rows differ from the manifest's (empty: as in the manifest)."""
        counts = self.engine.table_counts(self._endpoint(), self._password)
        expected = self.chosen.dump.tables
        return ", ".join(
            f"{t}: {counts.get(t)} rows, manifest {n}"
            for t, n in expected.items()
            if counts.get(t) != n
        )

    def check(self) -> Check:
        """Done when drp's marker names this backup AND the rows are the manifest's: a marker
        alone would skip a database written to since it was restored (after a drill)."""
        if not self._marker_of_this_backup():
            decision = self.engine.restore_decision(
                self._endpoint(), self._password, backup_id(self.chosen), force=self.op.force
            )
            return Check(decision.action == "skip", decision.reason)
        differ = self._differences()
        where = f"{self.where}/{self.db.name}"
        if differ:
            return Check(
                False,
                f"{where} holds backup {backup_id(self.chosen)} restored by drp, but was changed "
                f"since ({differ}): restoring it again, the current content kept aside",
            )
        return Check(
            True,
            f"backup {backup_id(self.chosen)} already restored on {where}, marker present and "
            "rows as in the manifest",
        )

    def apply(self, progress: ProgressCallback | None = None) -> Applied:
        # A database holding this backup but changed since is restored again under another id
        # (the marker would otherwise make the restore a skip); the changed one is kept aside.
        restore_id = backup_id(self.chosen)
        if self._marker_of_this_backup():
            restore_id = f"{restore_id}/again-{datetime.now(UTC):%Y%m%dT%H%M%S%fZ}"
        receiver = self.op.pool.database_work(self.target)
        copied = self.fetch.apply()
        if progress:
            progress(self.key, 50.0)
        result = self.engine.restore(
            receiver,
            self.dump_path,
            self._endpoint(),
            connect.database_password(self.op.site, self.db),
            backup_id=restore_id,
            manifest_digest=manifest_digest(self.chosen),
            operation_id=self.op.operation_id,
            force=self.op.force,
            expected_sha256=self.chosen.dump.sha256,
        )
        kept = f"; previous content kept as {result.kept_as}" if result.kept_as else ""
        return Applied(
            f"{result.reason}{kept}",
            bytes=copied.bytes,
            files=1,
            details={"kept_as": result.kept_as} if result.kept_as else {},
        )

    def verify(self) -> Check:
        if not self._marker_of_this_backup():
            where = f"{self.where}/{self.db.name}"
            return Check(False, f"{where} has no complete drp marker for this backup")
        differ = self._differences()
        if differ:
            return Check(False, f"row counts differ from the manifest: {differ}")
        expected = self.chosen.dump.tables
        removed = self._remove_staged()
        return Check(
            True,
            f"{len(expected)} tables, {sum(expected.values())} rows as in the manifest{removed}",
        )

    def _remove_staged(self) -> str:
        """The staged dump is not needed once its database is proved: its room is given back."""
        runner = self.op.pool[self.target]
        gone = runner.run(["rm", "-f", "--", self.dump_path], check=False, timeout=600)
        if not gone.ok:
            self.log.warning("could not remove %s: %s", self.dump_path, gone.stderr.strip())
            return f"; the staged dump {self.where}:{self.dump_path} could not be removed"
        return f"; staged dump {self.dump_name} removed"


# -- building the operation ---------------------------------------------------------------------
def backup_id(chosen: ChosenTree | ChosenDump) -> str:
    return f"{chosen.set.set_id}@{chosen.set.server}"


def manifest_digest(chosen: ChosenDump) -> str:
    manifest = chosen.set.manifest
    text = manifest.to_json() if manifest is not None else ""
    return hashlib.sha256(text.encode()).hexdigest()


def _sets(selection: Selection) -> list[Any]:
    seen: dict[str, Any] = {}
    for choice in selection.environments.values():
        for s in choice.sets:
            seen.setdefault(s.label, s)
    return sorted(seen.values(), key=lambda s: s.label)


def preflight_steps(op: Operation, *, dns_check: bool = True) -> list[Step]:
    steps: list[Step] = [HostReachable(op, TARGET), BackupsChosen(op), DiskSpace(op, TARGET)]
    for env in _environments(op):
        choice = op.selection[env.name]
        for db in env.databases:
            chosen = choice.dump(db.name)
            if chosen is not None:
                steps.append(RestoreTargetSafe(op, env, db, chosen, TARGET))
    if dns_check:
        steps.append(DnsCredentials(op))
    return steps


def copy_from_backup(op: Operation, env: Environment, tree: Tree, chosen: ChosenTree) -> CopyTree:
    """A tree of the chosen backup set, pulled by the target from the backup server.

    The target's tree is made equal to the set's (what the set does not have is removed, the
    tree's excludes aside); whatever the copy replaces or removes is kept in
    `<dest>.drp-before-<operation>/` first. A single-file tree touches that file only (and the
    temporary file a killed copy of it may have left), never its neighbours."""
    record, set_ = chosen.tree, chosen.set
    section = record.section.value
    includes: tuple[str, ...] = ()
    excludes = tuple(tree.exclude)
    if record.source_is_file:  # the set keeps <path>/<file name>; restore beside it
        dest = tree.path.rstrip("/").rsplit("/", 1)[0] if "/" in tree.path else "."
        name = tree.path.rstrip("/").rsplit("/", 1)[-1]
        temporary = f"/.{_rsync_literal(name, in_wildcard_pattern=True)}.??????"
        includes = (f"/{_rsync_literal(name)}", temporary)  # the file, a killed copy's temp
        excludes = ("*",)
    else:
        dest = tree.path
    source = TreeSource(
        connect.backup_role(op.site, set_.server),
        chosen.path,
        set_.label,
        files=record.files,
        bytes=record.bytes,
        digest=record.digest,
        file_name=tree.path.rstrip("/").rsplit("/", 1)[-1] if record.source_is_file else None,
    )
    return CopyTree(
        op,
        f"copy-{env.name}-{section}-{record.name}",
        f"Copy {section} {tree.path} of {env.name}",
        source,
        TARGET,
        dest,
        phase=20,
        stage="copy",
        excludes=excludes,
        includes=includes,
        delete=True,
        aside_root=copy_aside_root(dest, op.operation_id),
        environment=set_.environment,
    )


def copy_aside_root(dest: str, operation_id: str) -> str:
    """Where an activation keeps what its copy into `dest` replaces or removes: beside the
    destination (a rename on the same file system), or in the operation's own area on the
    target when the destination is the home directory itself."""
    try:
        return aside_root(dest, operation_id)
    except ValueError:
        return f"{operation_dir(operation_id)}/replaced/{dest.strip('/').replace('/', '-')}"


def _rsync_literal(name: str, *, in_wildcard_pattern: bool = False) -> str:
    """A file name as (part of) an rsync filter rule matching only itself. rsync reads a
    backslash as an escape only in a pattern that holds a wildcard."""
    if not in_wildcard_pattern and not re.search(r"[*?\[]", name):
        return name
    return re.sub(r"([*?\[\]\\])", r"\\\1", name)


def restore_steps(op: Operation) -> list[Step]:
    """Copy, import and check through the target's address: what activation and drill share."""
    steps: list[Step] = []
    for env in _environments(op):
        choice = op.selection[env.name]
        for section, name, tree in connect.environment_trees(env):
            chosen_tree = choice.tree(section, name)
            if chosen_tree is not None:
                steps.append(copy_from_backup(op, env, tree, chosen_tree))
        for db in env.databases:
            chosen_dump = choice.dump(db.name)
            if chosen_dump is not None:
                steps.append(RestoreDatabase(op, env, db, chosen_dump, TARGET))
        # The first proof that the target serves: the RTO's end.
        steps.append(CheckService(op, env, role=TARGET, proves=Milestone.SERVICE_VERIFIED))
    return steps


def _ticket(op: Operation, event: str, title: str, what: str) -> SendTicket:
    envs = ", ".join(e.name for e in _environments(op))
    body = (
        f"{op.site.name}: {envs} restored on the DRP server ({op.drp_ip}) and checked there. "
        f"{what} Operation {op.operation_id}."
    )
    return SendTicket(op, event, f"{title} for {envs}", body)


def activation_steps(op: Operation) -> list[Step]:
    steps = restore_steps(op)
    steps.append(
        _ticket(op, "drp-finalized", "DRP finalized", "The DRP is finalized; DNS now switches.")
    )
    steps += switch_zones(
        op,
        [
            RecordSwitch(record, op.record_target(TARGET, record))
            for env in _environments(op)
            for record in env.dns_records
        ],
    )
    for env in _environments(op):
        if env.url_checks:
            steps.append(CheckService(op, env, phase=70))
    return steps


def drill_steps(op: Operation) -> list[Step]:
    steps = restore_steps(op)
    steps.append(
        _ticket(op, "drill-finished", "DRP drill finished", "A drill: DNS was not changed.")
    )
    return steps


def _environments(op: Operation) -> list[Environment]:
    return [e for e in op.site.environments if e.name in op.selection.environments]


def plan_facts(op: Operation) -> dict[str, str]:
    """The brief's facts that the plan hash covers: stable while the world does not change."""
    selection = op.selection
    facts = {
        "customer": op.site.customer,
        "drp server": f"{op.drp_ip} ({connect.host(op.site, TARGET).datacenter})",
        "data to copy": human_bytes(selection.copy_bytes),
        "estimated copy time": _estimate(selection.copy_bytes),
    }
    for name, choice in sorted(selection.environments.items()):
        oldest = choice.oldest_capture
        facts[f"{name}: backups"] = ", ".join(s.label for s in choice.sets) or "none"
        facts[f"{name}: data captured at"] = oldest.isoformat(timespec="minutes") if oldest else "-"
    return facts


def _estimate(size: int) -> str:
    seconds = size / ASSUMED_COPY_RATE
    if seconds < 60:
        return f"under a minute (at {human_bytes(int(ASSUMED_COPY_RATE))}/s)"
    return f"about {seconds / 60:.0f} min (at {human_bytes(int(ASSUMED_COPY_RATE))}/s)"
