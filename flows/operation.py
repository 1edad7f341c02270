"""What activation and drill flows share: preflight, plan, the order gate, steps, the report.

Prefect stays thin here: each step runs as one task whose result is cached under the operation
id and the step's key (a resumed run of the same operation is fast), but every step still
checks the world itself, so a resume on another machine, without Prefect's cache, is just as
correct. Everything before the gate is read-only: a suspended run that starts again from the top
changes nothing.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from prefect import get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE
from prefect.context import TaskRunContext
from prefect.futures import PrefectFuture

from flows.gate import GateTimeout, await_order
from flows.operation_ids import operation_id_for_run
from flows.prepare import Prepared, prepare, titled
from flows.progress import ArtifactProgress, emit
from runbooks.activation import Operation, SwitchRecord
from runbooks.connect import site_from
from runbooks.errors import DrpError, StepFailed
from runbooks.gate import OrderRecord
from runbooks.inventory import Site
from runbooks.plan import Plan
from runbooks.render import data_loss_sentence, human_duration, plan_markdown, report_markdown
from runbooks.report import Report, load_report, report_path, save_report
from runbooks.services import reports_dir
from runbooks.steps import Outcome, Step, StepRecord

# Steps of these phases (copies, imports) run in parallel: environments, trees and databases
# do not depend on each other. Other phases run one step at a time, in plan order.
PARALLEL_PHASES = (20, 30)


def _step_cache_key(context: TaskRunContext, parameters: dict[str, Any]) -> str:
    return f"drp-{parameters['operation_id']}-{parameters['key']}"


@task(
    name="step",
    task_run_name="{key}",
    cache_key_fn=_step_cache_key,
    cache_expiration=timedelta(days=14),
    persist_result=True,
)
def run_step_task(step: Step, key: str, operation_id: str) -> dict[str, Any]:
    """One world-changing step. The result (its timeline record) is cached per operation."""
    progress = ArtifactProgress(key) if step.phase in PARALLEL_PHASES else emit
    return step.run(progress=progress).data


@task(name="check", task_run_name="{key}", cache_policy=NO_CACHE)
def run_check_task(step: Step, key: str) -> dict[str, Any]:
    """A read-only check after the order (the service through the DRP address, through DNS):
    never cached, so a resumed run checks again."""
    return step.run().data


def _submit(step: Step, operation_id: str) -> PrefectFuture[dict[str, Any]]:
    if step.changes_world:
        return run_step_task.submit(step, step.key, operation_id)
    return run_check_task.submit(step, step.key)


def load_or_start_report(site: Site, operation_id: str, kind: str) -> Report:
    directory = reports_dir(site)
    if report_path(directory, operation_id).exists():
        report = load_report(directory, operation_id)
        if report.kind != kind:
            raise DrpError(
                f"operation {operation_id} is a {report.kind}, not a {kind}: use another "
                "operation id (or none, to get a new one)"
            )
        return report
    return Report(operation_id, kind, site.name, started=datetime.now(UTC))


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
    report = load_or_start_report(site, operation_id, kind)
    directory = reports_dir(site)
    log.info(
        "Operation %s (%s of %s, %s); report: %s",
        operation_id, kind, site.name,
        "as given" if given else "named after this flow run; pass it as operation_id to resume "
        "it from another run",
        report_path(directory, operation_id),
    )  # fmt: skip
    # A resumed operation keeps the first run's choice of backups (sets made since are
    # ignored), so its plan, and the order given for it, still hold.
    report.chosen_at = report.chosen_at or datetime.now(UTC)
    prepared = prepare(
        site,
        kind,
        operation_id,
        environments,
        chosen_at=report.chosen_at,
        force=force,
        bwlimit_kib=bwlimit_kib,
        cleanup=cleanup,
    )
    try:
        return _run(prepared, report, directory, gate_timeout_seconds)
    except DrpError as err:
        if report.outcome == "running":  # a timed-out gate has already said so
            report.finish("failed", str(err))
            save_report(report, directory)
            _publish(report)
        raise
    finally:
        prepared.close()


def _run(
    prepared: Prepared, report: Report, directory: Path, gate_timeout_seconds: int
) -> dict[str, Any]:
    log = get_run_logger()
    operation, plan, steps = prepared.operation, prepared.plan, prepared.steps
    kind = operation.kind
    is_drill = kind == "drill"

    # 1. Preflight: read-only, never cached (it says how the world is now).
    for step, record, why in prepared.preflight:
        if record is not None:
            report.add(record)
            log.info("%s: %s", step.title, why)
        else:
            log.error("%s", titled(step, why))
    report.plan_hash = plan.hash
    report.data_loss_seconds = _data_loss_at(operation, datetime.now(UTC))
    report.backups = _backups(operation)
    save_report(report, directory)
    if not prepared.preflight_ok:
        raise StepFailed(
            "preflight found problems, nothing was changed: " + "; ".join(prepared.failures)
        )

    # 2. The order. A resumed operation whose order was given for this very plan goes on.
    order = report.order
    if order and order.get("decision") == "activate" and order.get("plan_hash") == plan.hash:
        log.info(
            "Order already given by %s (reference %s) at %s for plan %s: going on",
            order["ordered_by"], order["reference"], order["answered_at"], plan.hash,
        )  # fmt: skip
    else:
        try:
            # The brief is built again each time the form opens: its data loss is as of then.
            given: OrderRecord = await_order(
                lambda: brief_markdown(plan, operation, kind), plan.hash, gate_timeout_seconds
            )
        except GateTimeout as err:
            report.finish("timed-out", str(err))
            save_report(report, directory)
            _publish(report)
            raise
        report.order = given.data
        report.data_loss_seconds = _data_loss_at(operation, given.answered_at)
        save_report(report, directory)
        if given.decision != "activate":
            report.finish("refused", f"order refused by {given.ordered_by}: nothing was changed")
            save_report(report, directory)
            _publish(report)
            log.info("The order was refused by %s: nothing was changed.", given.ordered_by)
            return report.data

    # 3. The steps, phase by phase; each one a task, cached per operation (checks are not).
    run_started = datetime.now(UTC)
    for group in _phases(steps):
        for step in group:
            if isinstance(step, SwitchRecord):
                _remember_dns_before(step, report, directory)
        futures = [(step, _submit(step, operation.operation_id)) for step in group]
        failures: list[DrpError] = []
        for step, future in futures:
            try:
                data = future.result()
            except DrpError as err:
                report.add(_failed(step, err))
                save_report(report, directory)
                failures.append(err)
                continue
            record = StepRecord.from_data(data)
            if record.started < run_started:  # from Prefect's cache: done in an earlier run
                record.outcome = Outcome.SKIPPED
                record.reason = (
                    f"done in an earlier run of {operation.operation_id} at "
                    f"{record.ended:%Y-%m-%d %H:%M:%S} UTC (cached): {record.reason}"
                )
            report.add(record)
            log.info("%s: %s — %s", step.title, record.outcome.value, record.reason)
            if (
                step.key.startswith("verify-")
                and step.key.endswith("-drp-ip")
                and report.service_verified_at is None  # the first proof counts for the RTO
            ):
                report.service_verified_at = record.ended
            save_report(report, directory)
        if failures:
            raise failures[0]

    done = (
        "drill finished: the DRP server serves the restored environments; DNS untouched"
        if is_drill
        else "DRP activated: the DRP server serves and DNS points at it"
    )
    if is_drill and prepared.cleanup:
        done = (
            "drill finished: the restored environments were checked on the DRP server, which "
            "is now back to its state before the drill; DNS untouched"
        )
    report.finish("succeeded", done)
    save_report(report, directory)
    _publish(report)
    log.info(
        "%s. RTO %s, RPO %s.",
        done,
        human_duration(report.rto_seconds),
        human_duration(report.data_loss_seconds),
    )
    return report.data


def _phases(steps: list[Step]) -> list[list[Step]]:
    """Plan order, cut into groups that run together: a parallel phase's steps form one group,
    any other step is a group of its own."""
    groups: list[list[Step]] = []
    for step in steps:
        if groups and step.phase in PARALLEL_PHASES and groups[-1][0].phase == step.phase:
            groups[-1].append(step)
        else:
            groups.append([step])
    return groups


def _remember_dns_before(step: SwitchRecord, report: Report, directory: Path) -> None:
    """The record as it was before the first switch: what the return to production restores."""
    if any(d.get("key") == step.key for d in report.dns_before):
        return
    report.dns_before.append(
        {"key": step.key, "zone": step.record.zone, "name": step.name or "@",
         "type": step.record.type, "targets": list(step.current())}
    )  # fmt: skip
    save_report(report, directory)


def _failed(step: Step, err: Exception) -> StepRecord:
    now = datetime.now(UTC)
    return StepRecord(step.key, step.title, Outcome.FAILED, str(err), now, now)


def _data_loss_at(operation: Operation, moment: datetime) -> float | None:
    oldest = operation.selection.oldest_capture
    return (moment - oldest).total_seconds() if oldest else None


def _backups(operation: Operation) -> list[dict[str, Any]]:
    rows = []
    for name, choice in sorted(operation.selection.environments.items()):
        for t in choice.trees:
            rows.append({"what": f"{name} {t.tree.section.value}/{t.tree.name}",
                         "server": t.set.server, "set_id": t.set.set_id,
                         "time": t.captured.isoformat(timespec="seconds")})  # fmt: skip
        for d in choice.dumps:
            rows.append({"what": f"{name} database {d.dump.database}", "server": d.set.server,
                         "set_id": d.set.set_id,
                         "time": d.captured.isoformat(timespec="seconds")})  # fmt: skip
    return rows


def _publish(report: Report) -> None:
    try:
        create_markdown_artifact(
            key=f"report-{report.operation_id}",
            markdown=report_markdown(report),
            description=f"{report.kind} {report.operation_id}: {report.outcome}",
        )
    except Exception as err:  # the JSON report is the record; the artifact is a convenience
        get_run_logger().warning("could not publish the report artifact: %s", err)
