"""What the operation flows share: the operation id, the report, the brief, `run_operation`
(activation, drill), `run_return`, and `run_engine`,
which runs a runbook on the engine (`runbooks.engine`) with Prefect's parts plugged in: steps as
cached tasks (`flows.tasks`), the order gate as a pause or suspend (`flows.gate`), the report as
an artifact. Everything before the gate is read-only: a suspended run that starts again from the
top changes nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import nullcontext
from datetime import UTC, datetime
from typing import Any

from prefect import get_run_logger

from flows import stop_guard
from flows.connections import operation_connections
from flows.gate import await_order
from flows.lock_runs import ended_flow_run
from flows.operation_ids import operation_id_for_run
from flows.prepare import prepare
from flows.tasks import publish_report, submit_check, submitter
from providers.tickets import Ticket
from runbooks.activation import Operation
from runbooks.connect import HostPool, site_from
from runbooks.engine import OperationRun, PreflightFinding, Runbook
from runbooks.errors import DrpError
from runbooks.gate import OrderPolicy
from runbooks.inventory import Site
from runbooks.order_codes import CodeMessage, OrderCodes
from runbooks.plan import Plan
from runbooks.records import OperationRecords, resume_sentence
from runbooks.render import data_loss_sentence, human_duration, plan_markdown
from runbooks.report import Report
from runbooks.returning import prepare_return
from runbooks.services import reports_dir, ticket_backends
from runbooks.site_lock import SiteLock
from runbooks.warm import WarmState

WARM_MEMORY = "warm"  # the report's memory entry holding the warm state the plan stands on


def open_record(
    site: Site, operation_id: str, kind: str, pool: HostPool | None = None
) -> tuple[OperationRecords, Report]:
    """The operation's record (`runbooks.records`: on the DRP host, so that a resume on any
    worker goes on from it), or a new report; a resume says what it goes on from. Over `pool`'s
    connection to the DRP host when given, else over one of the record's own."""
    log = get_run_logger()
    host = (lambda: pool["drp"]) if pool is not None else None
    records = OperationRecords(site, reports_dir(site), host=host, log=log)
    try:
        report, found = records.load_or_start(operation_id, kind, site.name)
    except BaseException:
        records.close()
        raise
    if found.report is not None:
        log.info("%s", resume_sentence(report, found.source))
    return records, report


def kept_sets(report: Report) -> list[str] | None:
    """The backup sets (labels) the operation's first run chose; None: not chosen yet."""
    labels = set()
    for row in report.backups:
        environment = row.get("environment") or str(row.get("what", "")).split(" ", 1)[0]
        labels.add(f"{row.get('server')}:{environment}/{row.get('set_id')}")
    return sorted(labels) or None


def brief_markdown(plan: Plan, operation: Operation, kind: str) -> str:
    selection = operation.selection
    oldest = selection.oldest_capture
    loss = data_loss_sentence(oldest) if oldest else "no backup chosen"
    what = (
        "restore the environments on the DRP server and switch DNS to it"
        if kind == "activate"
        else "rehearse: restore the environments on the DRP server, check it through its "
        "address; **DNS is not changed**"
    )
    lines = [
        f"## {operation.site.customer}: order for the DRP {kind} of {operation.site.name}",
        "",
        f"This run will {what}.",
        "",
        f"**Data loss: {loss}.**",
        "",
    ]
    for warning in selection.warnings:
        lines.append(f"- Warning: {warning}")
    lines.append("")
    lines.append(plan_markdown(plan, heading="Plan"))
    lines.append(
        "Fill in who orders and the reference, tick the data-loss acknowledgement and choose "
        "**activate** to go ahead, or **refuse** to stop with nothing changed."
    )
    return "\n".join(lines)


def run_operation(
    kind: str,
    config: str | None,
    operation_id: str | None,
    environments: list[str] | None,
    gate_timeout_seconds: int,
    force: bool,
    bwlimit_kib: int | None = None,
    cleanup: bool = False,
) -> dict[str, Any]:
    log = get_run_logger()
    site = site_from(config)
    given = operation_id
    # Derived from the flow run when not given: the same at every restart (see operation_ids).
    operation_id = operation_id_for_run(kind, given)
    with stop_guard.stopping(), operation_connections(site, kind) as pool:
        records, report = open_record(site, operation_id, kind, pool)
        with records:
            log.info(
                "Operation %s (%s of %s, %s); record: %s, copy: %s",
                operation_id, kind, site.name,
                "as given" if given else "named after this flow run; pass it as operation_id "
                "to resume it from another run",
                records.where(operation_id), records.local_path(operation_id),
            )  # fmt: skip
            return _run_operation(
                kind, site, records, report, environments, gate_timeout_seconds, force,
                bwlimit_kib, cleanup, pool,
            )  # fmt: skip


def _run_operation(
    kind: str,
    site: Site,
    records: OperationRecords,
    report: Report,
    environments: list[str] | None,
    gate_timeout_seconds: int,
    force: bool,
    bwlimit_kib: int | None,
    cleanup: bool,
    pool: HostPool,
) -> dict[str, Any]:
    # A resumed operation keeps the first run's choice of backups, those very sets (made
    # since are ignored, gone ones are named), so its plan, and the order given for it, hold.
    keep = kept_sets(report)
    if keep is None or report.chosen_at is None:
        report.chosen_at = datetime.now(UTC)
    # What the DRP server held ready when the backups were chosen: the plan (and its order)
    # stands on it, so a resume plans with it, whatever the first run's swaps consumed since.
    warm = report.memory.get(WARM_MEMORY)
    prepared = prepare(
        site,
        kind,
        report.operation_id,
        environments,
        chosen_at=report.chosen_at,
        force=force,
        bwlimit_kib=bwlimit_kib,
        cleanup=cleanup,
        keep_sets=keep,
        warm=WarmState.from_data(warm[0]) if warm else None,
        pool=pool,
    )
    if not warm and prepared.operation.warm is not None:
        report.memory[WARM_MEMORY] = [prepared.operation.warm.data]
    runbook = Runbook(
        kind,
        [step for step, _, _ in prepared.preflight],
        prepared.steps,
        done=_done(kind, cleanup),
        # The first run's choice stays recorded even when its sets are gone (named above).
        backups=report.backups
        if prepared.operation.selection.gone
        else _backups(prepared.operation),
        data_loss_at=lambda moment: _data_loss_at(prepared.operation, moment),
    )
    findings = [PreflightFinding(step, record, why) for step, record, why in prepared.preflight]
    operation, plan = prepared.operation, prepared.plan
    try:
        return run_engine(
            site,
            runbook,
            plan,
            report,
            records,
            findings,
            # The brief is built again each time the form opens: its data loss is as of then.
            lambda: brief_markdown(plan, operation, kind),
            gate_timeout_seconds,
            pool,
        )
    finally:
        prepared.close()


def order_policy(site: Site) -> OrderPolicy:
    """The inventory's `orders`: the signing secret (resolved here, never logged) and the age
    after which a stored order is asked for again."""
    ref = site.orders.secret
    key = site.resolve_secret(ref).reveal().encode() if ref is not None else None
    return OrderPolicy(key=key, valid_hours=site.orders.valid_hours)


def order_codes(
    site: Site, kind: str, report: Report, save: Callable[[Report], None]
) -> OrderCodes | None:
    """The inventory's `orders.codes` for this operation (None: no code asked, as for drills
    unless `drills: true`). Codes go out through every ticket backend, to the contacts."""
    config = site.orders.codes
    if config is None or site.orders.secret is None or (kind == "drill" and not config.drills):
        return None

    def send(message: CodeMessage) -> str:
        sent = []
        for backend in ticket_backends(site):
            ticket = Ticket(
                report.operation_id, message.event, message.title, message.body, site.name,
                recipients=message.recipients,
            )  # fmt: skip
            sent.append(backend.send(ticket).sentence)
        return "; ".join(sent)

    return OrderCodes(
        key=site.resolve_secret(site.orders.secret).reveal().encode(),
        operation_id=report.operation_id,
        kind=kind,
        site=site.name,
        contacts=tuple(config.contacts),
        valid_minutes=config.valid_minutes,
        report=report,
        save=save,
        send=send,
    )


def _flow_run_words() -> str:
    from prefect.context import FlowRunContext

    ctx = FlowRunContext.get()
    return f"flow run {ctx.flow_run.id}" if ctx and ctx.flow_run else ""


def run_engine(
    site: Site,
    runbook: Runbook,
    plan: Plan,
    report: Report,
    records: OperationRecords,
    findings: list[PreflightFinding],
    brief: Callable[[], str],
    gate_timeout_seconds: int,
    pool: HostPool,
) -> dict[str, Any]:
    """Run a runbook under Prefect: steps as tasks, the gate as a pause, the report as an
    artifact. What a flow adds to the engine, and all it adds. The site lock is taken and
    released over `pool`'s connection to the DRP host (the operation's)."""
    log = get_run_logger()
    run = OperationRun(
        runbook,
        plan,
        report,
        save=records.save,
        publish=publish_report,
        submit=submitter(report.operation_id, plan.hash),
        check=submit_check,
        fresh=submitter(report.operation_id, plan.hash, fresh=True),
        log=log,
        lock=SiteLock(
            site,
            report.operation_id,
            runbook.kind,
            run=_flow_run_words(),
            host=lambda _site: nullcontext(pool["drp"]),
            stale=ended_flow_run,
        ),
        orders=order_policy(site),
    )

    def brief_now() -> str:
        """The brief, after why an order given earlier was not taken (if it was not)."""
        why = f"> **Order asked for again:** {run.asked_again}.\n\n" if run.asked_again else ""
        return why + brief()

    codes = order_codes(site, runbook.kind, report, run.save)
    data = run.run(
        findings,
        gate=lambda plan_hash: await_order(brief_now, plan_hash, gate_timeout_seconds, codes),
    )
    if report.outcome == "succeeded":
        log.info(
            "%s. RTO %s, RPO %s%s.",
            report.message,
            human_duration(report.rto_seconds),
            human_duration(report.data_loss_seconds),
            f", downtime {human_duration(report.downtime_seconds)}"
            if report.downtime_seconds is not None
            else "",
        )
    return data


def _done(kind: str, cleanup: bool) -> str:
    if kind == "drill" and cleanup:
        return (
            "drill finished: the restored environments were checked on the DRP server, which "
            "is now back to its state before the drill; DNS untouched"
        )
    if kind == "drill":
        return "drill finished: the DRP server serves the restored environments; DNS untouched"
    return "DRP activated: the DRP server serves and DNS points at it"


def _data_loss_at(operation: Operation, moment: datetime) -> float | None:
    oldest = operation.selection.oldest_capture
    return (moment - oldest).total_seconds() if oldest else None


def _backups(operation: Operation) -> list[dict[str, Any]]:
    rows = []
    for name, choice in sorted(operation.selection.environments.items()):
        for t in choice.trees:
            rows.append({"what": f"{name} {t.tree.section.value}/{t.tree.name}",
                         "server": t.set.server, "environment": t.set.environment,
                         "set_id": t.set.set_id,
                         "time": t.captured.isoformat(timespec="seconds")})  # fmt: skip
        for d in choice.dumps:
            rows.append({"what": f"{name} database {d.dump.database}", "server": d.set.server,
                         "environment": d.set.environment, "set_id": d.set.set_id,
                         "time": d.captured.isoformat(timespec="seconds")})  # fmt: skip
    return rows


def run_return(
    config: str | None,
    operation_id: str | None,
    environments: list[str] | None,
    gate_timeout_seconds: int,
    force: bool,
    bwlimit_kib: int | None = None,
) -> dict[str, Any]:
    """The return to production (`runbooks.returning`) on the engine."""
    log = get_run_logger()
    site = site_from(config)
    given = operation_id
    operation_id = operation_id_for_run("return", given)
    with stop_guard.stopping(), operation_connections(site, "return") as pool:
        records, report = open_record(site, operation_id, "return", pool)
        with records:
            log.info("Operation %s (return of %s, %s); record: %s, copy: %s", operation_id,
                     site.name, "as given" if given else "named after this flow run",
                     records.where(operation_id), records.local_path(operation_id))  # fmt: skip
            return _run_return(site, records, report, environments, gate_timeout_seconds,
                               force, bwlimit_kib, pool)  # fmt: skip


def _run_return(
    site: Site,
    records: OperationRecords,
    report: Report,
    environments: list[str] | None,
    gate_timeout_seconds: int,
    force: bool,
    bwlimit_kib: int | None,
    pool: HostPool,
) -> dict[str, Any]:
    try:
        prepared = prepare_return(
            site, report.operation_id, environments, force=force, bwlimit_kib=bwlimit_kib
        )
    except DrpError as err:
        report.finish("failed", f"preflight could not read the two sides: {err}")
        records.save(report)
        raise
    try:
        return run_engine(
            site,
            prepared.runbook,
            prepared.plan,
            report,
            records,
            prepared.findings,
            prepared.brief,
            gate_timeout_seconds,
            pool,
        )
    finally:
        prepared.close()
