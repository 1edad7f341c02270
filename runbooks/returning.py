"""The return to production: the plan's method of return, DRP server -> production.

  preflight (read-only)   production and the DRP server reachable, their databases answer,
                          room on production, the activation being reversed (its dns_before)
  -- the customer's order --
  pre-sync files          DRP -> production while the DRP server still serves (no downtime);
                          what it replaces on production is kept aside
  maintenance             production enters maintenance; the DRP server freezes (its own
                          maintenance): nothing is written there any more. Downtime starts.
  final sync              the last changes, and files deleted on the DRP server removed from
                          production (kept aside first); proved equal file by file
  databases               dumped on the DRP server, restored on production (production's
                          previous databases kept aside), row counts equal on both sides
  ticket                  "return to production"
  DNS back                every record to production's address (the activation's dns_before, or
                          the inventory's); a value nobody expects stops the switch
  lift maintenance        on production; the service checked through production's address
                          (downtime ends), then through DNS. The DRP server stays frozen.

Every step checks the world first, so a return killed anywhere finishes when run again with its
operation id, and a finished return run again skips everything, saying why. Production leaves
maintenance only in the very last steps: a return that fails leaves it in maintenance, never
half-restored and serving.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from typing import Any

from providers import aside
from providers.commands import CommandRunner
from providers.database import DatabaseEngine, engine_for
from providers.dbcommon import DatabaseError, DbEndpoint
from providers.rsync import CopyOptions, copy_tree, plan_copy
from runbooks import connect
from runbooks.common_steps import (
    CheckService,
    CopyTree,
    DnsCredentials,
    HostReachable,
    RecordSwitch,
    SendTicket,
    SetMaintenance,
    TreeSource,
    aside_root,
    operation_dir,
    switch_zones,
)
from runbooks.context import OperationContext
from runbooks.engine import PreflightFinding, Runbook, run_preflight
from runbooks.errors import StepFailed
from runbooks.gate import option_facts
from runbooks.inventory import Database, Environment, Role, Site
from runbooks.plan import Plan
from runbooks.records import records_on_host
from runbooks.render import human_bytes, human_duration, plan_markdown
from runbooks.report import Report
from runbooks.secrets import Secret
from runbooks.services import reports_dir
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

log = logging.getLogger(__name__)

SOURCE: Role = "drp"  # the side being left
TARGET: Role = "production"  # the side returned to
ASSUMED_SYNC_RATE = 100e6  # bytes/s, until drills measure one
# Rows dumped and restored per second, both engines together (measured on the lab: about 150k/s
# for PostgreSQL, 60k/s for MariaDB), until returns measure their own.
ASSUMED_DB_ROWS_PER_SECOND = 50_000


# -- the activation being reversed -------------------------------------------------------------
def find_activation(site: Site, drp: CommandRunner | None = None) -> Report | None:
    """The newest activation of this site whose report recorded DNS before its switch: among
    the operations' records on the DRP host (`drp`, what every worker sees, whichever machine
    ran the activation) and this machine's reports (activations recorded before records lived
    on the DRP host); the DRP host's record of an operation wins over a local copy."""
    directory = reports_dir(site)
    found: dict[str, Report] = {}
    for path in sorted(directory.glob("*.json")) if directory.exists() else []:
        try:
            report = Report.from_data(json.loads(path.read_text()))
        except (ValueError, KeyError, OSError):
            continue
        found[report.operation_id] = report
    if drp is not None:
        try:
            found.update((r.operation_id, r) for r in records_on_host(drp, "activate"))
        except Exception as err:  # the preflight says that the DRP host cannot be reached
            log.warning("the activations' records on the DRP host cannot be read: %s", err)
    usable = [
        r for r in found.values() if r.kind == "activate" and r.site == site.name and r.dns_before
    ]
    return max(usable, key=lambda r: r.started) if usable else None


@dataclass(frozen=True)
class DnsBack:
    """Where each record goes back to, and where that came from."""

    targets: dict[tuple[str, str, str], str]  # (zone, name or "@", type) -> address
    origin: str  # a sentence: the activation's report, or the inventory


def dns_back(ctx: OperationContext, activation: Report | None) -> DnsBack:
    targets: dict[tuple[str, str, str], str] = {}
    before = {
        (d["zone"], d["name"], d["type"]): d["targets"]
        for d in (activation.dns_before if activation else [])
    }
    used_report = False
    for env in ctx.site.environments:
        for record in env.dns_records:
            key = (record.zone, _shown(record.name), record.type)
            values = before.get(key)
            if values and len(values) == 1:
                targets[key] = values[0]
                used_report = True
            else:
                targets[key] = ctx.record_target(TARGET, record)
    if activation is not None and used_report:
        origin = (
            f"DNS goes back to the values recorded before activation {activation.operation_id} "
            f"(started {activation.started:%Y-%m-%d %H:%M} UTC)"
        )
    else:
        origin = (
            "no activation report with DNS values: DNS goes to the inventory's production addresses"
        )
    return DnsBack(targets, origin)


def _shown(name: str) -> str:
    return name if name not in ("", "@") else "@"


class ReturnOrigin(ReadOnlyStep):
    phase = 13

    def __init__(self, back: DnsBack) -> None:
        super().__init__("preflight-origin", "Find the activation being reversed")
        self.back = back

    def describe(self) -> list[Change]:
        return [
            Change("check", f"{zone} {name} {rtype}", f"back to {address}")
            for (zone, name, rtype), address in sorted(self.back.targets.items())
        ]

    def check(self) -> Check:
        listed = ", ".join(
            f"{name}.{zone} {rtype} -> {address}"
            for (zone, name, rtype), address in sorted(self.back.targets.items())
        )
        return Check(True, f"{self.back.origin}: {listed}")


# -- preflight ---------------------------------------------------------------------------------
class DatabaseAnswers(ReadOnlyStep):
    """A database answers on one side (the return reads it on the DRP server, replaces it on
    production)."""

    phase = 11

    def __init__(self, ctx: OperationContext, env: Environment, db: Database, role: Role) -> None:
        name = connect.host_name(role)
        super().__init__(
            f"preflight-db-{env.name}-{db.name}-{name}", f"Check database {db.name} on {name}"
        )
        self.ctx, self.db, self.role, self.name = ctx, db, role, name
        self.engine: DatabaseEngine = engine_for(db.engine)

    def describe(self) -> list[Change]:
        return [Change("check", f"{self.name}/{self.db.name}", f"{self.db.engine} answers")]

    def check(self) -> Check:
        endpoint = connect.db_endpoint(self.ctx.site, self.db, _db_role(self.role))
        password = connect.database_password(self.ctx.site, self.db)
        try:
            state = self.engine.read_state(endpoint, password)
        except DatabaseError as err:
            return Check(False, str(err))
        if not state.exists:
            what = "missing: nothing to return" if self.role == SOURCE else "missing (created)"
            return Check(self.role != SOURCE, f"{self.name}/{self.db.name} {what}")
        return Check(True, f"{self.name}/{self.db.name} answers ({state.tables} tables)")


class TargetDiskSpace(ReadOnlyStep):
    """Room on production for what the return writes: the files to copy, and each database
    twice (its dump, then the restored copy, production's previous one being kept aside)."""

    phase = 12

    def __init__(self, ctx: OperationContext, files_bytes: int, databases: list[Database]) -> None:
        name = connect.host_name(TARGET)
        super().__init__(f"preflight-disk-{name}", f"Check free disk space on {name}")
        self.ctx, self.files_bytes, self.databases, self.name = ctx, files_bytes, databases, name

    def describe(self) -> list[Change]:
        return [Change("check", f"{self.name} free space", "room for the DRP server's data")]

    def check(self) -> Check:
        databases = 0
        for db in self.databases:
            endpoint = connect.db_endpoint(self.ctx.site, db, _db_role(SOURCE))
            password = connect.database_password(self.ctx.site, db)
            databases += engine_for(db.engine).size_bytes(endpoint, password)
        needed = self.files_bytes + 2 * databases
        result = self.ctx.pool[TARGET].run(["df", "-Pk", "."], timeout=30)
        available = int(result.stdout.strip().splitlines()[-1].split()[3]) * 1024
        words = (
            f"{human_bytes(available)} free on {self.name}, {human_bytes(needed)} needed: "
            f"{human_bytes(self.files_bytes)} of files to copy, {human_bytes(databases)} of "
            "databases counted twice (dump, then restore; what is replaced is kept aside)"
        )
        return Check(available >= needed, words)


# -- databases ---------------------------------------------------------------------------------
class MoveDatabase(Step):
    """One database: dumped on the source, pulled by the target, restored there over what it
    held (kept aside first), and proved equal: the same rows in every table on both sides."""

    parallel = True
    stage = "databases"

    def __init__(
        self, ctx: OperationContext, env: Environment, db: Database, *, phase: int = 45
    ) -> None:
        super().__init__(
            f"move-db-{env.name}-{db.name}",
            f"Move database {db.name} of {env.name} from {connect.host_name(SOURCE)} to "
            f"{connect.host_name(TARGET)}",
        )
        self.ctx, self.env, self.db, self.phase = ctx, env, db, phase
        self.engine: DatabaseEngine = engine_for(db.engine)
        self.backup_id = f"{ctx.operation_id}@{connect.host_name(SOURCE)}"
        self.dumps = f"{operation_dir(ctx.operation_id)}/databases"
        self.suffix = ".pgdump" if db.engine == "postgresql" else ".sql.gz"

    def _endpoint(self, role: Role) -> DbEndpoint:
        return connect.db_endpoint(self.ctx.site, self.db, _db_role(role))

    @property
    def _password(self) -> Secret:
        return connect.database_password(self.ctx.site, self.db)

    def describe(self) -> list[Change]:
        return [
            Change(
                "restore",
                f"{connect.host_name(TARGET)}/{self.db.name}",
                f"{self.db.engine} dumped on {connect.host_name(SOURCE)} after its freeze; "
                "the previous content kept aside",
            )
        ]

    def writes(self) -> list[Write]:
        return [
            Write(TARGET, "database", self.db.name, self.env.name, self.db),
            Write(TARGET, "files", self.dumps, self.env.name),
        ]

    def _differences(self) -> str:
        """The tables whose rows differ between the two sides (empty: the same)."""
        there = self.engine.table_counts(self._endpoint(SOURCE), self._password)
        here = self.engine.table_counts(self._endpoint(TARGET), self._password)
        wrong = sorted(t for t in {*there, *here} if there.get(t) != here.get(t))
        return ", ".join(
            f"{t}: {here.get(t)} rows on {connect.host_name(TARGET)}, {there.get(t)} on "
            f"{connect.host_name(SOURCE)}"
            for t in wrong
        )

    def check(self) -> Check:
        """Done when production holds a complete copy made by this return (drp's marker) AND
        the rows of every table are the same on both sides: a marker alone proves nothing if
        the source changed since, or the copy was altered."""
        where = f"{connect.host_name(TARGET)}/{self.db.name}"
        marker = self.engine.read_marker(self._endpoint(TARGET), self._password)
        if (
            marker is None
            or not marker.complete
            or not marker.backup_id.startswith(f"{self.backup_id}/")
        ):
            decision = self.engine.restore_decision(
                self._endpoint(TARGET), self._password, self.backup_id, force=True
            )
            return Check(False, decision.reason)
        differ = self._differences()
        if differ:
            return Check(
                False,
                f"{where} holds a copy made by this return, but rows differ: {differ}; "
                "copying again (the current content kept aside)",
            )
        return Check(
            True,
            f"{where} holds the copy of {marker.backup_id} made at "
            f"{marker.restored_at:%Y-%m-%d %H:%M:%S} UTC, and every table has the same rows "
            f"on {connect.host_name(SOURCE)}",
        )

    def apply(self, progress: ProgressCallback | None = None) -> Applied:
        source = self.ctx.pool.database_work(SOURCE)
        target = self.ctx.pool.database_work(TARGET)
        attempt = f"{self.db.name}-{datetime.now(UTC):%Y%m%dT%H%M%S%fZ}{self.suffix}"
        source.run(["mkdir", "-p", "--", self.dumps])
        dumped = self.engine.dump(
            source, self._endpoint(SOURCE), self._password, f"{self.dumps}/{attempt}"
        )
        if progress:
            progress(self.key, 40.0)
        sender = connect.remote_endpoint(self.ctx.site, SOURCE, self.dumps, receiver=TARGET)
        options = CopyOptions(
            includes=(f"/{attempt}",),
            excludes=("*",),
            bwlimit_kib=self.ctx.bwlimit_kib,
            io_timeout=round(self.ctx.site.timeouts.copy_idle_seconds),
        )
        copied = copy_tree(target, sender, self.dumps, options)
        if progress:
            progress(self.key, 60.0)
        result = self.engine.restore(
            target,
            f"{self.dumps}/{attempt}",
            self._endpoint(TARGET),
            self._password,
            backup_id=f"{self.backup_id}/{attempt}",
            manifest_digest=dumped.sha256,
            operation_id=self.ctx.operation_id,
            force=True,
            expected_sha256=dumped.sha256,
        )
        kept = f"; production's previous content kept as {result.kept_as}" if result.kept_as else ""
        return Applied(
            f"dumped {human_bytes(dumped.size_bytes)} in {dumped.seconds:.1f} s, "
            f"{result.reason}{kept}",
            bytes=copied.bytes_transferred,
            files=1,
            details={"kept_as": result.kept_as} if result.kept_as else {},
        )

    def verify(self) -> Check:
        state = self.check()
        if not state.done:
            return state
        here = self.engine.table_counts(self._endpoint(TARGET), self._password)
        return Check(
            True,
            f"{len(here)} tables, {sum(here.values())} rows, the same on "
            f"{connect.host_name(SOURCE)} and {connect.host_name(TARGET)}",
        )


def _db_role(role: Role) -> Any:
    if role not in ("drp", "production"):
        raise StepFailed(f"no database runs on {connect.host_name(role)}")
    return role


# -- building the return -----------------------------------------------------------------------
@dataclass(frozen=True)
class ReturnTree:
    env: Environment
    section: str
    name: str
    path: str  # the same on both sides
    source_dir: str  # directory copied (the tree, or a file tree's parent)
    dest_dir: str
    includes: tuple[str, ...]
    excludes: tuple[str, ...]


def return_trees(ctx: OperationContext, environments: list[Environment]) -> list[ReturnTree]:
    """Each tree of the environments, as the return copies it. Reads the DRP server (which
    trees are files) and changes nothing."""
    trees = [(env, s, n, t) for env in environments for s, n, t in connect.environment_trees(env)]
    paths = [aside.normalize_path(t.path) for *_, t in trees]
    runner = ctx.pool[SOURCE]
    script = (
        'for p in "$@"; do if [ -d "$p" ]; then echo d; elif [ -e "$p" ]; then echo f; '
        "else echo -; fi; done"
    )
    result = runner.run(["sh", "-c", script, "sh", *paths], timeout=60)
    kinds = result.stdout.split()
    found = []
    for (env, section, name, tree), path, kind in zip(trees, paths, kinds, strict=True):
        if kind == "-":
            raise StepFailed(
                f"{connect.host_name(SOURCE)}:{path} ({section} {name} of {env.name}) is missing: "
                "there is nothing to return from it; check the DRP server"
            )
        if kind == "f":
            parent, _, base = path.rpartition("/")
            found.append(
                ReturnTree(
                    env,
                    section.value,
                    name,
                    path,
                    parent or ".",
                    parent or ".",
                    *connect.one_file_filter(base),
                )
            )
        else:
            found.append(
                ReturnTree(env, section.value, name, path, path, path, (), tuple(tree.exclude))
            )
    return found


class PreSync(CopyTree):
    """A tree's pre-sync: most of its data, copied while the DRP server still serves. Once the
    DRP server is frozen (a return resumed after its freeze), what is left is the final sync's,
    which continues its own half-sent file: a pre-sync run again then would send that file
    whole, during the downtime."""

    def __init__(self, *args: Any, freeze: SetMaintenance, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.freeze = freeze

    def check(self) -> Check:
        frozen = self.freeze.check()
        if frozen.done:
            return Check(True, f"{frozen.reason}: what is left is the final sync's")
        return super().check()

    def verify(self) -> Check:
        """The DRP server still serves: what customers wrote since the copy began is the final
        sync's to bring (it checks every file, under the freeze), not a failed pre-sync."""
        plan = self._plan(self._options())
        if plan.up_to_date:
            return Check(True, f"{self.where} matches {self.source.label}")
        return Check(
            True,
            f"{self.where} holds what {self.source.label} held when the copy began; changed "
            f"there since, for the final sync: {plan.summary()}",
        )


def _copy(
    ctx: OperationContext,
    tree: ReturnTree,
    *,
    final: bool,
    freeze: SetMaintenance | None = None,
) -> CopyTree:
    stage = "final sync" if final else "pre-sync"
    word = "final-sync" if final else "pre-sync"
    make = CopyTree if freeze is None else partial(PreSync, freeze=freeze)
    return make(
        ctx,
        f"{word}-{tree.env.name}-{tree.section}-{tree.name}",
        f"{'Final sync' if final else 'Pre-sync'} {tree.section} {tree.path} of {tree.env.name} "
        f"to {connect.host_name(TARGET)}",
        TreeSource(SOURCE, tree.source_dir, f"{connect.host_name(SOURCE)}:{tree.source_dir}"),
        TARGET,
        tree.dest_dir,
        phase=40 if final else 20,
        stage=stage,
        includes=tree.includes,
        excludes=tree.excludes,
        delete=final,
        aside_root=aside_root(tree.path, ctx.operation_id),
        verify_content=final,
        environment=tree.env.name,
    )


@dataclass
class ReturnPlan:
    """The return's runbook, and the figures its brief states (not part of the plan hash:
    they change while the DRP server still serves)."""

    runbook: Runbook
    to_move_bytes: int
    notes: list[str]


def return_runbook(
    ctx: OperationContext, environments: list[Environment], activation: Report | None
) -> ReturnPlan:
    """Read-only: reads the DRP server and production (dry-run copies) to build the return."""
    trees = return_trees(ctx, environments)
    # The DRP server's write freeze, per environment: its pre-syncs stop once it is in place.
    freezes = {
        env.name: SetMaintenance(
            ctx,
            env,
            SOURCE,
            on=True,
            phase=31,
            proves=Milestone.FROZEN,
            purpose="write freeze: downtime starts",
        )
        for env in environments
    }
    copies = [_copy(ctx, t, final=False, freeze=freezes[t.env.name]) for t in trees]
    to_move = 0
    for copy in copies:
        plan = plan_copy(ctx.pool.copying(TARGET), copy.endpoint, copy.dest, copy.options)
        to_move += plan.bytes_to_transfer
    back = dns_back(ctx, activation)

    preflight: list[Step] = [HostReachable(ctx, TARGET), HostReachable(ctx, SOURCE)]
    for env in environments:
        for db in env.databases:
            preflight += [
                DatabaseAnswers(ctx, env, db, SOURCE),
                DatabaseAnswers(ctx, env, db, TARGET),
            ]
    databases = [db for env in environments for db in env.databases]
    preflight += [
        TargetDiskSpace(ctx, to_move, databases),
        ReturnOrigin(back),
        DnsCredentials(ctx),
    ]

    steps: list[Step] = [*copies]
    for env in environments:
        steps.append(
            SetMaintenance(
                ctx, env, TARGET, on=True, phase=30, purpose="before anything is restored there"
            )
        )
        steps.append(freezes[env.name])
    steps += [_copy(ctx, t, final=True) for t in trees]
    for env in environments:
        steps += [MoveDatabase(ctx, env, db) for db in env.databases]
    names = ", ".join(e.name for e in environments)
    steps.append(
        SendTicket(
            ctx,
            "return-to-production",
            f"Return to production for {names}",
            f"{ctx.site.name}: {names} copied back from the DRP server to production, databases "
            f"imported and checked equal; DNS now switches back to production. Operation "
            f"{ctx.operation_id}.",
        )
    )
    drp_values = {ctx.public_address(SOURCE, "A")}
    if ctx.site.hosts.drp.public_ipv6 is not None:
        drp_values.add(ctx.public_address(SOURCE, "AAAA"))
    steps += switch_zones(
        ctx,
        [
            RecordSwitch(
                record,
                back.targets[(record.zone, _shown(record.name), record.type)],
                expected=tuple(sorted(drp_values | {ctx.record_target(TARGET, record)})),
            )
            for env in environments
            for record in env.dns_records
        ],
    )
    for env in environments:
        steps.append(SetMaintenance(ctx, env, TARGET, on=False, phase=70))
        steps.append(
            CheckService(ctx, env, role=TARGET, phase=75, proves=Milestone.SERVICE_VERIFIED)
        )
        if env.url_checks:
            steps.append(CheckService(ctx, env, phase=80))

    rows = sum(
        sum(s.engine.table_counts(s._endpoint(SOURCE), s._password).values())
        for s in steps
        if isinstance(s, MoveDatabase)
    )
    estimate = human_duration(5.0 + rows / ASSUMED_DB_ROWS_PER_SECOND)
    notes = [
        f"Data to copy before the freeze (pre-sync, while the DRP server still serves): "
        f"{human_bytes(to_move)}, about {human_duration(to_move / ASSUMED_SYNC_RATE)}.",
        f"Users see the maintenance page from the freeze until production is verified: "
        f"estimated {estimate} (final file delta, then {rows:,} rows dumped and restored).",
        "No data is lost: everything written on the DRP server until the freeze is on "
        "production, and checked equal (files by checksum, rows per table).",
        back.origin + ".",
    ]
    facts = {
        "customer": ctx.site.customer,
        "from": f"DRP server {ctx.public_address(SOURCE)} ({ctx.site.hosts.drp.datacenter})",
        "to": f"production {ctx.public_address(TARGET)} ({ctx.site.hosts.production.datacenter})",
        "environments": names,
    }
    runbook = Runbook(
        "return",
        preflight,
        steps,
        facts,
        done=(
            "returned to production: production serves, DNS points at it, and the DRP server "
            "stays frozen (release it with the RUNBOOK's procedure)"
        ),
        data_loss_at=lambda _moment: 0.0,
    )
    return ReturnPlan(runbook, to_move, notes)


def environments_of(site: Site, names: list[str] | None) -> list[Environment]:
    wanted = set(names or [e.name for e in site.environments])
    return [e for e in site.environments if e.name in wanted]


# -- what `drp plan return` shows and the flow runs --------------------------------------------
@dataclass
class PreparedReturn:
    """A return ready to run: its context, runbook, plan, preflight findings and brief."""

    ctx: OperationContext
    built: ReturnPlan
    plan: Plan
    findings: list[PreflightFinding]

    @property
    def runbook(self) -> Runbook:
        return self.built.runbook

    @property
    def preflight_ok(self) -> bool:
        return all(f.ok for f in self.findings)

    def brief(self) -> str:
        """The order form's text: what the return does, the downtime, and the plan."""
        site = self.ctx.site
        lines = [
            f"## {site.customer}: order for the return to production of {site.name}",
            "",
            "This run will copy the DRP server's files and databases back to production, put "
            "both into maintenance for the final copy, switch DNS back to production and lift "
            "production's maintenance. **The DRP server stays frozen afterwards.**",
            "",
            *[f"- {note}" for note in self.built.notes],
            "",
            plan_markdown(self.plan, heading="Plan"),
            "Fill in who orders and the reference, tick the acknowledgement (a return loses no "
            "data: it acknowledges the maintenance downtime) and choose **activate** to go "
            "ahead, or **refuse** to stop with nothing changed.",
        ]
        return "\n".join(lines)

    def close(self) -> None:
        self.ctx.close()


def prepare_return(
    site: Site,
    operation_id: str,
    environments: list[str] | None,
    *,
    force: bool = False,
    bwlimit_kib: int | None = None,
) -> PreparedReturn:
    """Read-only: the return's runbook, its plan and its preflight findings."""
    ctx = OperationContext(site, operation_id, "return", force=force, bwlimit_kib=bwlimit_kib)
    try:
        activation = find_activation(site, ctx.pool[SOURCE])
        built = return_runbook(ctx, environments_of(site, environments), activation)
        built.runbook.facts.update(option_facts(force=force))  # the order approves --force
        plan = built.runbook.plan(operation_id, site.name)
        findings = run_preflight(built.runbook.preflight)
    except BaseException:
        ctx.close()
        raise
    return PreparedReturn(ctx, built, plan, findings)
