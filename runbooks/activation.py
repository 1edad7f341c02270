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

from providers.aside import normalize_path
from providers.database import engine_for, stage_endpoint
from providers.dbcommon import DatabaseError, DbEndpoint, NonEmptyDatabase
from runbooks import connect
from runbooks.backups import ChosenDump, ChosenTree, EnvironmentChoice, Selection
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
from runbooks.errors import ProviderError, StepFailed
from runbooks.inventory import Database, DatabaseRole, Environment, Site, Tree
from runbooks.manifest import parse_tree_stats, tree_stats_argv
from runbooks.render import human_bytes, human_duration
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
from runbooks.warm import Rates, StagedTree, WarmState, done_file, mark_staged

# The side an activation restores to. The steps take it as a role: only this module, which
# builds the activation's runbook, names it.
TARGET: DatabaseRole = "drp"
STAGING_DIR = ".drp/staging"  # on the target, relative to the SSH user's home
ASSUMED_COPY_RATE = 100e6  # bytes/s, for the copy-time estimate until staging measures one
ASSUMED_RESTORE_RATE = 50_000.0  # rows/s, for the import-time estimate, likewise
SWAP_SECONDS = 2.0  # a staged tree's final delta and rename, a staged database's rename
CHECK_SECONDS = 5.0  # the URL checks that prove the service

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
        # What the DRP server holds ready (`runbooks.warm`), as read before the order; None:
        # cold (staging off, or not read).
        self.warm: WarmState | None = None

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
        # A staged tree or database swapped in takes no more room than its stage already does.
        choices = op.selection.environments.values()
        self.trees = sum(t.tree.bytes for c in choices for t in c.trees if not _warm_tree(op, c, t))
        self.dumps = sum(d.dump.size for c in choices for d in c.dumps if not _warm_dump(op, c, d))
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
    """One database: its dump pulled to the target, restored, checked against the manifest.

    In the copies' phase: no import needs a copied tree, so both run side by side, and the
    RTO is the slowest of them rather than the slowest copy plus the slowest import."""

    phase = 20
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
        # A staged restore of this very backup on the target's server (`runbooks.warm`): it is
        # renamed into place instead of restored, when it still holds the manifest's rows.
        staged = op.warm.database(env.name, db.name) if op.warm else None
        self.staged = staged if staged and staged.backup_id == backup_id(chosen) else None
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
        if self.staged is not None:
            return [
                Change(
                    "swap-in",
                    f"{self.where}/{self.db.name}",
                    f"{self.db.engine}: staged {self.staged.stage_db} (backup "
                    f"{self.staged.backup_id}, restored {self.staged.staged_at}, {rows} rows) "
                    "renamed into place; restored from its dump if the stage no longer holds "
                    "the manifest's rows",
                    0,
                )
            ]
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
        where = self._endpoint().label
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
        if self.staged is not None and restore_id == backup_id(self.chosen):
            swapped = self._swap_in_stage()
            if swapped is not None:
                return swapped
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

    def _swap_in_stage(self) -> Applied | None:
        """The staged database renamed into place (None: it cannot be, and why is logged: the
        caller restores from the dump)."""
        assert self.staged is not None
        stage = stage_endpoint(self._endpoint())
        try:
            marker = self.engine.read_marker(stage, self._password)
            if marker is None or marker.backup_id != self.staged.backup_id:
                self.log.warning("%s: no longer holds the staged backup", stage.label)
                return None
            counts = self.engine.table_counts(stage, self._password)
            differ = [t for t, n in self.chosen.dump.tables.items() if counts.get(t) != n]
            if differ:
                self.log.warning("%s: rows differ from the manifest in %s", stage.label, differ)
                return None
            result = self.engine.swap_in(
                stage, self._endpoint(), self._password, operation_id=self.op.operation_id
            )
        except DatabaseError as err:
            self.log.warning("the stage %s is not used: %s", stage.label, err)
            return None
        details: dict[str, Any] = {"warm": True}
        if result.kept_as:
            details["kept_as"] = result.kept_as
        return Applied(f"{result.reason} (warm: no copy, no import)", details=details)

    def verify(self) -> Check:
        if not self._marker_of_this_backup():
            where = self._endpoint().label
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


class SwapInStagedTree(Step):
    """A directory tree restored from its stage (`runbooks.warm`): a final delta from the
    chosen set into the stage, then the stage renamed into place, the tree it replaces renamed
    into the operation's aside directory first (two renames on one file system: instant,
    whatever the size). Excluded paths (caches) stay with the replaced tree. Without the stage
    (gone since the plan), the tree is copied whole, as `copy_from_backup` does.

    A drill links the stage into place instead (`cp -al`: a new tree of hard links, as fast),
    so that the stage stays ready for the activation: a rehearsal never leaves the DRP server
    colder. rsync replaces a file by a new one, never in place, so a later delta into the
    stage does not reach the drill's tree, nor the other way round; a file the service rewrites
    in place changes its time, and the stage's next check copies it again."""

    parallel = True
    phase = 20
    stage = "copy"

    def __init__(self, op: Operation, cold: CopyTree, staged: StagedTree) -> None:
        super().__init__(cold.key, cold.title)
        self.op, self.cold, self.staged = op, cold, staged
        self.dest, self.where = cold.dest, cold.where
        self.link = op.kind == "drill"  # keep the stage: see the class's docstring
        self.final = CopyTree(
            op,
            f"{cold.key}-final",
            f"Final delta into the stage of {cold.dest}",
            cold.source,
            TARGET,
            staged.directory,
            excludes=cold.options.excludes,
            includes=cold.options.includes,
            delete=True,
            environment=cold.environment,
        )

    def describe(self) -> list[Change]:
        return [
            Change(
                "swap-in",
                self.where,
                f"staged {self.staged.set_label} ({self.staged.files} files, restored "
                f"{self.staged.staged_at}): final delta from {self.cold.source.label}, then "
                f"{self._how} into place; the tree it replaces is kept in {self.cold.aside_root}",
                0,
            )
        ]

    @property
    def _how(self) -> str:
        return "hard-linked (the stage stays for the activation)" if self.link else "renamed"

    def writes(self) -> list[Write]:
        return self.cold.writes()

    def check(self) -> Check:
        return self.cold.check()

    def _stage_there(self) -> bool:
        runner = self.op.pool[TARGET]
        return runner.run(["test", "-d", self.staged.directory], check=False, timeout=60).ok

    def apply(self, progress: ProgressCallback | None = None) -> Applied:
        if not self._stage_there():
            copied = self.cold.apply(progress)
            return Applied(
                f"the stage {self.staged.directory} was gone: {copied.summary}",
                bytes=copied.bytes,
                files=copied.files,
            )
        # The stage of the chosen set itself needs no delta (`verify` proves the result).
        same = self.staged.set_label == self.cold.source.label
        delta = Applied("", 0, 0) if same else self.final.apply(progress)
        if self.link and not same:  # the stage stays, now holding the chosen set
            self._relabel()
        aside = f"{self.cold.aside_root}/swapped-{datetime.now(UTC):%Y%m%dT%H%M%SZ}"
        script = (
            'set -e; if [ -e "$1" ] || [ -L "$1" ]; then mkdir -p -- "$(dirname -- "$3")"; '
            'mv -T -- "$1" "$3"; echo kept; fi; mkdir -p -- "$(dirname -- "$1")"\n'
            'if [ "$5" = link ]; then t="$1.drp-linking"; rm -rf -- "$t"; cp -al -- "$2" "$t"; '
            'mv -T -- "$t" "$1"; else mv -T -- "$2" "$1"; rm -f -- "$4"; fi'
        )
        argv = ["sh", "-c", script, "sh", normalize_path(self.dest), self.staged.directory]
        mode = "link" if self.link else "move"
        result = self.op.pool[TARGET].run(
            [*argv, aside, done_file(self.staged.directory), mode],
            check=False,
            timeout=self.op.site.timeouts.copy_seconds,
        )
        if not result.ok:
            raise StepFailed(
                f"{self.where}: the staged tree could not be {self._how.split(' ')[0]} into "
                f"place: {result.stderr.strip()[:300]}"
            )
        kept = f"; the tree it replaced is in {aside}" if "kept" in result.stdout else ""
        return Applied(
            f"the staged {self.staged.set_label}, {self._delta_words(same, delta)}, "
            f"{self._how} into place{kept} (warm)",
            bytes=delta.bytes,
            files=delta.files,
            details={"warm": True, "kept_as": aside} if kept else {"warm": True},
        )

    @staticmethod
    def _delta_words(same: bool, delta: Applied) -> str:
        if same:
            return "the chosen set itself (no delta)"
        return f"after a final delta of {delta.files} files ({human_bytes(delta.bytes)})"

    def _relabel(self) -> None:
        """The stage's done file names the set it now holds (after the final delta)."""
        source = self.cold.source
        try:
            mark_staged(
                self.op.pool[TARGET],
                self.staged.directory,
                source.label,
                source.files or 0,
                source.bytes or 0,
            )
        except ProviderError as err:
            self.log.warning("the stage's done file was not rewritten: %s", err)

    def verify(self) -> Check:
        """The tree's listing (paths, sizes, times: what the copy's own check compares) against
        the set's manifest, read on the DRP host alone: a whole-tree dry run against the
        backup server, over the WAN on a real site, only when they differ."""
        expected = self.cold.source.digest
        if expected:
            result = self.op.pool[TARGET].run(
                tree_stats_argv(normalize_path(self.dest)), check=False, timeout=3600
            )
            if result.ok:
                digest, count, size = parse_tree_stats(result.stdout)
                if digest == expected:
                    return Check(
                        True,
                        f"{self.where} matches the manifest of {self.cold.source.label}: "
                        f"{count} files, {human_bytes(size)}, listing digest {digest[:12]}",
                    )
        return self.cold.verify()


def restore_tree(op: Operation, env: Environment, tree: Tree, chosen: ChosenTree) -> Step:
    """The tree's stage swapped in when the DRP server holds one, else a copy."""
    cold = copy_from_backup(op, env, tree, chosen)
    staged = op.warm.tree(env.name, tree.path) if op.warm else None
    if staged is None or chosen.tree.source_is_file:
        return cold
    return SwapInStagedTree(op, cold, staged)


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
    file_name = tree.path.rstrip("/").rsplit("/", 1)[-1] if record.source_is_file else None
    source = set_source(op, chosen, file_name)
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


def set_source(op: Operation, chosen: ChosenTree, file_name: str | None = None) -> TreeSource:
    """A tree of a backup set, where its copy reads it, with what its manifest says of it."""
    record, set_ = chosen.tree, chosen.set
    return TreeSource(
        connect.backup_role(op.site, set_.server),
        chosen.path,
        set_.label,
        files=record.files,
        bytes=record.bytes,
        digest=record.digest,
        file_name=file_name,
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
                steps.append(restore_tree(op, env, tree, chosen_tree))
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
        facts[f"{name}: warm"] = "; ".join(_warm_parts(op, name)) or (
            "nothing staged: every tree is copied and every database imported after the order"
        )
    facts["estimated RTO"] = estimated_rto(op)
    return facts


def _warm_parts(op: Operation, environment: str) -> list[str]:
    """What the DRP server holds ready for this environment's chosen backups."""
    warm, choice = op.warm, op.selection[environment]
    env = next((e for e in op.site.environments if e.name == environment), None)
    if warm is None or env is None:
        return []
    parts = []
    for section, name, tree in connect.environment_trees(env):
        chosen, staged = choice.tree(section, name), warm.tree(environment, tree.path)
        if chosen is not None and staged is not None and not chosen.tree.source_is_file:
            parts.append(
                f"{section.value} {name}: staged set {staged.set_label} at {staged.staged_at}, "
                "verified (final delta, then swap)"
            )
    for db in env.databases:
        dump, staged_db = choice.dump(db.name), warm.database(environment, db.name)
        if dump is not None and staged_db is not None and staged_db.backup_id == backup_id(dump):
            parts.append(
                f"database {db.name}: staged {staged_db.backup_id} at {staged_db.staged_at}, "
                "rows verified (rename)"
            )
    return parts


def estimated_rto(op: Operation) -> str:
    """From the order to the service verified on the DRP server: the copies and the imports
    side by side (the slowest of them), then the checks; staged parts take a rename. The rates
    are those the last staging measured, or assumed ones."""
    rates = op.warm.rates if op.warm else Rates()
    copy_rate = rates.copy_bytes_per_second or ASSUMED_COPY_RATE
    restore_rate = rates.restore_rows_per_second or ASSUMED_RESTORE_RATE
    copies, imports = [0.0], [0.0]
    for choice in op.selection.environments.values():
        for t in choice.trees:
            warm = _warm_tree(op, choice, t)
            copies.append(SWAP_SECONDS if warm else (t.tree.bytes or 0) / copy_rate)
        for d in choice.dumps:
            if _warm_dump(op, choice, d):
                imports.append(SWAP_SECONDS)
            else:
                imports.append(d.dump.size / copy_rate + sum(d.dump.tables.values()) / restore_rate)
    seconds = max(copies + imports) + CHECK_SECONDS
    source = (
        f"rates measured by staging at {rates.measured_at}"
        if rates.measured_at
        else "assumed rates, no staging measured any"
    )
    return (
        f"about {human_duration(seconds)} ({source}: copy {human_bytes(int(copy_rate))}/s, "
        f"import {restore_rate:,.0f} rows/s)"
    )


def _warm_tree(op: Operation, choice: EnvironmentChoice, chosen: ChosenTree) -> bool:
    if op.warm is None or chosen.tree.source_is_file:
        return False
    return op.warm.tree(choice.environment, _tree_path(op, choice.environment, chosen)) is not None


def _warm_dump(op: Operation, choice: EnvironmentChoice, chosen: ChosenDump) -> bool:
    staged = op.warm.database(choice.environment, chosen.dump.database) if op.warm else None
    return staged is not None and staged.backup_id == backup_id(chosen)


def _tree_path(op: Operation, environment: str, chosen: ChosenTree) -> str:
    env = next(e for e in op.site.environments if e.name == environment)
    for section, name, tree in connect.environment_trees(env):
        if (section, name) == (chosen.tree.section, chosen.tree.name):
            return tree.path
    return ""


def _estimate(size: int) -> str:
    seconds = size / ASSUMED_COPY_RATE
    if seconds < 60:
        return f"under a minute (at {human_bytes(int(ASSUMED_COPY_RATE))}/s)"
    return f"about {seconds / 60:.0f} min (at {human_bytes(int(ASSUMED_COPY_RATE))}/s)"
