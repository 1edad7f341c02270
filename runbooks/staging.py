"""The staging runbook: the newest verified backups restored on the DRP server, beside what it
serves, so that an activation swaps them in (`runbooks.warm` says where everything lives).

  preflight (read-only): DRP host reachable, the DRP server not serving (no switched record
                         points at it), backups chosen, disk space
  -- no order: nothing the DRP server serves is touched --
  stage each directory tree   backup server -> `<tree>.drp-stage/<server>-<set>/` on the DRP
                              server, unchanged files hard-linked to the previous stage
                              (`--link-dest`), so only changes move; then the previous stage
                              is removed
  stage each database         dump pulled to the DRP server, restored as `<name>__drp_stage`,
                              its rows checked against the manifest: a restore test

Single-file trees are not staged (they are copied at activation, as they take no time). Every
step is idempotent: a run finds what an earlier one staged (a done file, a marker) and skips it.
"""

from __future__ import annotations

from providers.commands import CommandRunner
from providers.database import engine_for, stage_endpoint
from providers.dbcommon import DbEndpoint
from providers.dns_check import ask_every_server
from runbooks import connect
from runbooks.activation import (
    TARGET,
    BackupsChosen,
    DiskSpace,
    Operation,
    RestoreDatabase,
    set_source,
)
from runbooks.backups import ChosenDump, ChosenTree
from runbooks.common_steps import CopyTree, HostReachable, authoritative_servers
from runbooks.drift import CheckDrift
from runbooks.errors import ProviderError, StepFailed
from runbooks.inventory import Database, Environment, Site, Tree
from runbooks.render import human_bytes
from runbooks.report import Report
from runbooks.steps import (
    Applied,
    Change,
    Check,
    Outcome,
    ProgressCallback,
    ReadOnlyStep,
    Step,
    Write,
)
from runbooks.warm import (
    Certificate,
    Rates,
    StagedTree,
    done_file,
    mark_staged,
    now_text,
    stage_base,
    stage_dir,
)

KIND = "stage"


class DrpNotServing(ReadOnlyStep):
    """Staging writes beside what the DRP server serves: not while it serves production's
    traffic, that is while a switched record points at it (an activation not yet returned).
    Every authoritative server is asked directly, as the switch's own check does."""

    phase = 11

    def __init__(self, op: Operation) -> None:
        super().__init__("preflight-not-serving", "Check the DRP server is not serving")
        self.op = op

    def describe(self) -> list[Change]:
        return [Change("check", "dns", "no switched record points at the DRP server")]

    def check(self) -> Check:
        records = [r for env in self.op.site.environments for r in env.dns_records]
        for record in records:
            drp = self.op.record_target(TARGET, record)
            servers = authoritative_servers(self.op, record.zone)
            answer, said = ask_every_server(servers, record.fqdn, record.type, timeout=5)
            if answer is None:
                return Check(False, f"cannot tell whether the DRP server serves: {said}")
            if drp in answer:
                return Check(
                    False,
                    f"{record.fqdn} {record.type} points at the DRP server ({drp}): it serves "
                    "production's traffic, and staging would load it. Staging starts again "
                    "after the return (`drp return`)",
                )
        return Check(True, f"none of the {len(records)} switched records points at the DRP server")


class StageTree(Step):
    """One directory tree of the chosen set, staged beside the tree on the DRP server."""

    phase = 20
    parallel = True
    stage = "stage"

    def __init__(
        self,
        op: Operation,
        env: Environment,
        tree: Tree,
        chosen: ChosenTree,
        previous: StagedTree | None,
    ) -> None:
        record, set_ = chosen.tree, chosen.set
        section = record.section.value
        super().__init__(
            f"stage-{env.name}-{section}-{record.name}",
            f"Stage {section} {tree.path} of {env.name}",
        )
        self.op, self.chosen = op, chosen
        self.base = stage_base(tree.path)
        self.directory = stage_dir(tree.path, set_)
        self.done_file = done_file(self.directory)
        self.where = f"{connect.host_name(TARGET)}:{self.directory}"
        self.previous = (
            previous.directory if previous and previous.directory != self.directory else None
        )
        self.copy = CopyTree(
            op,
            self.key,
            self.title,
            set_source(op, chosen),
            TARGET,
            self.directory,
            excludes=tuple(tree.exclude),
            delete=True,
            environment=set_.environment,
            link_dest=self.previous,
        )

    def describe(self) -> list[Change]:
        linked = f", unchanged files hard-linked to {self.previous}" if self.previous else ""
        return [
            Change(
                "stage",
                self.where,
                f"from {self.chosen.set.label} ({self.chosen.tree.files} files){linked}",
                self.chosen.tree.bytes,
            )
        ]

    def writes(self) -> list[Write]:
        return [Write(TARGET, "files", self.base, self.chosen.set.environment)]

    def _done_file_there(self) -> bool:
        runner = self.op.pool[TARGET]
        return runner.run(["test", "-f", self.done_file], check=False, timeout=60).ok

    def check(self) -> Check:
        if not self._done_file_there():
            return Check(False, f"{self.where} is not staged yet")
        state = self.copy.check()
        if not state.done:
            return Check(False, f"{self.where} was staged but differs now: {state.reason}")
        return Check(True, f"{self.chosen.set.label} already staged in {self.where}")

    def apply(self, progress: ProgressCallback | None = None) -> Applied:
        runner = self.op.pool[TARGET]
        runner.run(["mkdir", "-p", "--", self.base], timeout=60)
        copied = self.copy.apply(progress)
        return Applied(
            f"staged: {copied.summary}",
            bytes=copied.bytes,
            files=copied.files,
            details={"set": self.chosen.set.label},
        )

    def verify(self) -> Check:
        state = self.copy.check()
        if not state.done:
            return Check(
                False, f"{self.where} differs from {self.chosen.set.label}: {state.reason}"
            )
        self._mark_done()
        return Check(True, f"{self.where} equals {self.chosen.set.label}{self._remove_older()}")

    def _mark_done(self) -> None:
        record = self.chosen.tree
        try:
            mark_staged(
                self.op.pool[TARGET],
                self.directory,
                self.chosen.set.label,
                record.files,
                record.bytes,
            )
        except ProviderError as err:
            raise StepFailed(str(err)) from None

    def _remove_older(self) -> str:
        """The other stages of this tree (older sets) are removed: a stage is drp's copy of a
        backup, never the only copy of anything."""
        script = (
            'cd -- "$1" || exit 0; keep="$2"; for d in * .[!.]*; do '
            '[ -e "$d" ] || continue; case "$d" in "$keep"|"$keep.json") continue;; esac; '
            'rm -rf -- "$d" && printf "%s\\n" "$d"; done'
        )
        keep = self.directory.rsplit("/", 1)[-1]
        result = self.op.pool[TARGET].run(
            ["sh", "-c", script, "sh", self.base, keep], check=False, timeout=3600
        )
        gone = [line for line in result.stdout.splitlines() if not line.endswith(".json")]
        return f"; older stage removed: {', '.join(gone)}" if gone else ""


class StageDatabase(RestoreDatabase):
    """One database of the chosen set restored as `<name>__drp_stage` on the DRP's database
    server, its rows checked against the manifest; the previous stage is dropped first (it is
    drp's restore of an older backup, which its backup server still holds or has rotated)."""

    stage = "stage"

    def __init__(self, op: Operation, env: Environment, db: Database, chosen: ChosenDump) -> None:
        super().__init__(op, env, db, chosen, TARGET)
        self.staged = None  # a stage is restored, never swapped into itself
        self.key = f"stage-{env.name}-{db.name}"
        self.title = f"Stage database {db.name} of {env.name}"
        self.fetch.key = f"{self.key}-fetch"
        self.stage_db = self._endpoint().dbname

    def _endpoint(self) -> DbEndpoint:
        return stage_endpoint(connect.db_endpoint(self.op.site, self.db, self.target))

    def writes(self) -> list[Write]:
        return [Write(self.target, "files", self.staging, self.chosen.set.environment)]

    def describe(self) -> list[Change]:
        d = self.chosen.dump
        return [
            Change(
                "stage",
                f"{self.where}/{self.stage_db}",
                f"{self.db.engine} from {self.chosen.set.label} ({len(d.tables)} tables, "
                f"{sum(d.tables.values())} rows), rows checked against the manifest",
                d.size,
            )
        ]

    def apply(self, progress: ProgressCallback | None = None) -> Applied:
        dropped = self.engine.drop_stage(self._endpoint(), self._password)
        applied = super().apply(progress)
        rows = sum(self.chosen.dump.tables.values())
        before = "; the previous stage was dropped" if dropped else ""
        return Applied(
            f"{applied.summary}{before}",
            bytes=applied.bytes,
            files=applied.files,
            details={"set": self.chosen.set.label, "rows": rows, "stage_db": self.stage_db},
        )


# -- building the runbook ----------------------------------------------------------------------
def stage_preflight(op: Operation) -> list[Step]:
    return [HostReachable(op, TARGET), DrpNotServing(op), BackupsChosen(op), DiskSpace(op, TARGET)]


def stage_steps(op: Operation) -> list[Step]:
    """The stages of the chosen sets, then the drift between the DRP server and production
    (`runbooks.drift`): each staging run reports what changed on either side."""
    steps: list[Step] = [CheckDrift(op, phase=90)]
    warm = op.warm
    for env in op.site.environments:
        if env.name not in op.selection.environments:
            continue
        choice = op.selection[env.name]
        for section, name, tree in connect.environment_trees(env):
            chosen = choice.tree(section, name)
            if chosen is None or chosen.tree.source_is_file:
                continue
            previous = warm.tree(env.name, tree.path) if warm else None
            steps.append(StageTree(op, env, tree, chosen, previous))
        for db in env.databases:
            dump = choice.dump(db.name)
            if dump is not None:
                steps.append(StageDatabase(op, env, db, dump))
    return steps


def stage_facts(op: Operation) -> dict[str, str]:
    facts = {"drp server": f"{op.drp_ip} ({connect.host(op.site, TARGET).datacenter})"}
    for name, choice in sorted(op.selection.environments.items()):
        facts[f"{name}: backups"] = ", ".join(s.label for s in choice.sets) or "none"
        facts[f"{name}: data"] = human_bytes(choice.copy_bytes)
    return facts


def _part(step: StageTree | StageDatabase) -> str:
    """How a staged part is named in a certificate."""
    if isinstance(step, StageDatabase):
        d = step.chosen.dump
        return f"database {step.db.name} ({len(d.tables)} tables, {sum(d.tables.values())} rows)"
    return f"{step.chosen.tree.section.value} {step.chosen.tree.name}"


def certificates(steps: list[Step], report: Report, host: str) -> list[Certificate]:
    """What this staging run proved of each set: restorable (every part staged and checked),
    or not (the failures). A set whose parts were all found staged already was certified by an
    earlier run: no new certificate."""
    outcomes = {r.step: r for r in report.timeline}
    by_set: dict[str, list[StageTree | StageDatabase]] = {}
    for step in steps:
        if isinstance(step, StageTree | StageDatabase) and step.key in outcomes:
            by_set.setdefault(step.chosen.set.label, []).append(step)
    found = []
    for label, parts in sorted(by_set.items()):
        records = [outcomes[p.key] for p in parts]
        failed = [r for r in records if r.outcome is Outcome.FAILED]
        if not failed and all(r.outcome is Outcome.SKIPPED for r in records):
            continue
        found.append(
            Certificate(
                set=label,
                tested_at=now_text(),
                host=host,
                ok=not failed,
                parts=tuple(_part(p) for p in parts),
                why="; ".join(f"{r.title}: {r.reason}" for r in failed),
            )
        )
    return found


def measured_rates(steps: list[Step], report: Report, before: Rates) -> Rates:
    """Copy and restore rates of this run's applied stage steps (the earlier ones otherwise)."""
    outcomes = {r.step: r for r in report.timeline}
    copied = seconds = 0.0
    rows = restore_seconds = 0.0
    for step in steps:
        record = outcomes.get(step.key)
        if record is None or record.outcome is not Outcome.APPLIED or record.seconds <= 0:
            continue
        if isinstance(step, StageTree) and record.bytes > 1_000_000:
            copied += record.bytes
            seconds += record.seconds
        elif isinstance(step, StageDatabase):
            rows += sum(step.chosen.dump.tables.values())
            restore_seconds += record.seconds
    if not seconds and not restore_seconds:
        return before
    return Rates(
        copy_bytes_per_second=copied / seconds if seconds else before.copy_bytes_per_second,
        restore_rows_per_second=(
            rows / restore_seconds if restore_seconds else before.restore_rows_per_second
        ),
        measured_at=now_text(),
    )


def remove_stages(site: Site, runner: CommandRunner) -> list[str]:
    """What staging wrote on the DRP server, removed: every tree's `<tree>.drp-stage/` and every
    `<name>__drp_stage` database whose marker says a staging run restored it (another database
    of that name is left alone, and named in the error). Never what the DRP server serves; the
    certificates stay. Returns what was removed."""
    bases = [
        stage_base(tree.path)
        for env in site.environments
        for _section, _name, tree in connect.environment_trees(env)
    ]
    script = 'for b in "$@"; do [ -e "$b" ] || continue; rm -rf -- "$b" && echo "$b"; done'
    result = runner.run(["sh", "-c", script, "sh", *bases], check=False, timeout=3600)
    if not result.ok:
        raise StepFailed(f"could not remove the stages on {runner.name}: {result.stderr[:300]}")
    removed = [f"{runner.name}:{line}" for line in result.stdout.splitlines() if line]
    for env in site.environments:
        for db in env.databases:
            stage = stage_endpoint(connect.db_endpoint(site, db, TARGET))
            password = connect.database_password(site, db)
            if engine_for(db.engine).drop_stage(stage, password):
                removed.append(stage.label)
    return removed
