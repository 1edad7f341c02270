"""Preflight and plan, without Prefect: what `drp plan` shows and what a flow runs first.

Read-only from end to end: it reads the inventory, both backup servers' catalogues (verifying
the chosen sets), the DRP host and databases, and the DNS provider's zone; it writes nothing.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from rich.table import Table

from providers.commands import CommandRunner
from providers.ssh import SshError
from runbooks.activation import (
    Operation,
    activation_steps,
    drill_steps,
    plan_facts,
    preflight_steps,
)
from runbooks.backups import Catalogue, Selection, open_catalogue, wanted_environments
from runbooks.cleanup import with_cleanup
from runbooks.connect import HostPool, backup_servers
from runbooks.engine import PreflightFinding, Runbook, run_preflight
from runbooks.errors import DrpError
from runbooks.gate import option_facts
from runbooks.inventory import Site, load_site
from runbooks.operation import check_operation_id, new_operation_id
from runbooks.plan import Plan
from runbooks.render import data_loss_sentence
from runbooks.staging import KIND as STAGE_KIND
from runbooks.staging import stage_facts, stage_preflight, stage_steps
from runbooks.steps import Outcome, Step, StepRecord
from runbooks.warm import WarmState, read_warm_state


def titled(step: Step, why: str) -> str:
    """`why` after the step's title, unless it already starts with it."""
    return why if why.startswith(f"{step.title}:") else f"{step.title}: {why}"


@dataclass
class Prepared:
    operation: Operation
    plan: Plan
    steps: list[Step]  # what runs after the order
    preflight: list[tuple[Step, StepRecord | None, str]] = field(default_factory=list)
    cleanup: bool = False  # a drill that puts the DRP server back as it found it

    @property
    def preflight_ok(self) -> bool:
        return all(record is not None for _, record, _ in self.preflight)

    @property
    def failures(self) -> list[str]:
        return [titled(step, why) for step, record, why in self.preflight if record is None]

    @property
    def data_loss_words(self) -> str:
        oldest = self.operation.selection.oldest_capture
        return data_loss_sentence(oldest) if oldest else "no usable backup: nothing to restore"

    def preflight_table(self) -> Table:
        table = Table(title="Preflight (read-only)")
        table.add_column("check")
        table.add_column("result")
        table.add_column("reason", overflow="fold")
        for step, record, why in self.preflight:
            ok = record is not None and record.outcome is Outcome.PASSED
            table.add_row(step.title, "[green]ok[/]" if ok else "[red]problem[/]", why)
        return table

    def close(self) -> None:
        self.operation.close()


def check_environments(site: Site, environments: list[str] | None) -> None:
    """A DrpError naming the environments (`-e`) that the inventory does not have."""
    known = {e.name for e in site.environments}
    unknown = sorted(set(environments or ()) - known)
    if unknown:
        where = f" {site.source}" if site.source else ""
        raise DrpError(
            f"no environment named {', '.join(unknown)} in the inventory{where}; "
            f"known: {', '.join(sorted(known))}"
        )


def choose_backups(
    site: Site,
    now: datetime,
    environments: list[str] | None,
    keep: list[str] | None = None,
    pool: HostPool | None = None,
) -> Selection:
    """The newest verified backups made before `now`, across both backup servers; with `keep`
    (set labels), only those: the choice a resumed operation made in its first run. Read over
    `pool`'s connections when given (the operation's), else over the catalogue's own."""
    catalogue = (
        open_catalogue(site, now) if pool is None else Catalogue(backup_servers(site, pool), now)
    )
    with catalogue:
        return catalogue.choose(wanted_environments(site, environments), not_after=now, only=keep)


def prepare(
    site: Site,
    kind: str,
    operation_id: str,
    environments: list[str] | None,
    *,
    chosen_at: datetime,
    force: bool = False,
    bwlimit_kib: int | None = None,
    cleanup: bool = False,
    keep_sets: list[str] | None = None,
    warm: WarmState | None = None,
    pool: HostPool | None = None,
) -> Prepared:
    """Run the preflight and build the plan. Preflight problems are collected, not raised.

    With `keep_sets` (a resumed operation), the backups are those sets, as its first run chose
    them, or none: the preflight names the ones gone. With `cleanup` (drills only), what the
    DRP server holds is set aside after the order and put back after the drill's last step
    (`runbooks.cleanup`). With `pool`, everything runs on its SSH connections (the
    operation's, which its owner closes)."""
    check_environments(site, environments)
    with ThreadPoolExecutor(max_workers=1) as meanwhile:
        # What the DRP server holds ready is read while the backup servers are.
        staged = (
            meanwhile.submit(read_warm, site, pool["drp"])
            if warm is None and pool is not None
            else None
        )
        selection = choose_backups(site, chosen_at, environments, keep_sets, pool)
    operation = Operation(site, operation_id, kind, selection, force=force, bwlimit_kib=bwlimit_kib)
    if pool is not None:
        operation.use_connections(pool)
    if warm is None:
        warm = staged.result() if staged is not None else read_warm(site, operation.pool["drp"])
    operation.warm = warm
    checks: list[tuple[Step, StepRecord | None, str]] = []
    for step in preflight_steps(operation):
        try:
            record = step.run()
            checks.append((step, record, record.reason))
        except DrpError as err:
            checks.append((step, None, str(err)))
    steps = drill_steps(operation) if kind == "drill" else activation_steps(operation)
    if cleanup:
        steps = with_cleanup(operation, steps)
    steps = sorted(steps, key=lambda s: (s.phase, s.key))  # the plan's order
    # The options that change what is done are facts of the plan: the order approves them.
    facts = {**plan_facts(operation), **option_facts(force=force, cleanup=cleanup)}
    plan = Plan.build(operation_id, kind, site.name, [*preflight_steps(operation), *steps], facts)
    return Prepared(operation, plan, steps, checks, cleanup)


def read_warm(site: Site, drp: CommandRunner) -> WarmState | None:
    """What the DRP server holds ready (read-only; None when staging is off). A DRP host that
    cannot be read gives a cold plan: its own preflight check says why."""
    if not site.staging.enabled:
        return None
    try:
        return read_warm_state(site, drp)
    except (DrpError, SshError):
        return None


def prepare_plan(
    config: Path, kind: str, environments: list[str] | None, *, cleanup: bool = False
) -> Prepared:
    site = load_site(config)
    operation_id = check_operation_id(new_operation_id(kind))
    return prepare(
        site, kind, operation_id, environments, chosen_at=datetime.now(UTC), cleanup=cleanup
    )


@dataclass
class PreparedStage:
    """A staging run, ready: its operation, runbook, plan and the preflight's findings."""

    operation: Operation
    runbook: Runbook
    plan: Plan
    findings: list[PreflightFinding]

    def close(self) -> None:
        self.operation.close()


def prepare_stage(
    site: Site, operation_id: str, environments: list[str] | None, *, now: datetime
) -> PreparedStage:
    """The staging runbook for the newest verified backups (read-only until it runs)."""
    check_environments(site, environments)
    selection = choose_backups(site, now, environments)
    operation = Operation(site, operation_id, STAGE_KIND, selection)
    try:
        operation.warm = read_warm(site, operation.pool["drp"])
        preflight = stage_preflight(operation)
        runbook = Runbook(
            STAGE_KIND,
            preflight,
            stage_steps(operation),
            facts=stage_facts(operation),
            done="staged: the newest verified backups are restored on the DRP server, beside "
            "what it serves, and their rows checked",
            order_needed=False,
        )
        plan = runbook.plan(operation_id, site.name)
        findings = run_preflight(preflight)
    except BaseException:
        operation.close()
        raise
    return PreparedStage(operation, runbook, plan, findings)
