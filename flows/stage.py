"""Flow `drp-stage`: keep the DRP server warm, and prove each backup restorable.

The newest verified backups are restored on the DRP server beside what it serves
(`runbooks.staging`), under the site lock, without any order: nothing served changes. Each set
staged gets a certificate on the DRP host (`drp backup list` shows it); a set that fails to
stage raises a ticket at once, not on the day of the disaster. The run's report is an artifact.
Run it after each backup (the deployment's schedule) or with `drp stage`.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact

from flows.lock_runs import ended_flow_run
from flows.operation import _flow_run_words
from flows.prepare import PreparedStage, prepare_stage
from flows.tasks import publish_report, submit_check, submitter
from providers.tickets import Ticket
from runbooks.connect import host_name, site_from
from runbooks.engine import OperationRun
from runbooks.errors import DrpError
from runbooks.inventory import Site
from runbooks.operation import new_operation_id
from runbooks.report import Report, save_report
from runbooks.services import reports_dir, ticket_backends
from runbooks.site_lock import SiteLock, SiteLocked
from runbooks.staging import KIND, certificates, measured_rates
from runbooks.warm import Certificate, add_certificates, latest_certificates, read_certificates
from runbooks.warm import save_rates as store_rates


@flow(name="drp-stage", log_prints=True)
def drp_stage(config: str | None = None, environments: list[str] | None = None) -> dict[str, Any]:
    """Stage the newest verified backups on the DRP server (files beside the trees, databases
    as `<name>__drp_stage`), check them against their manifests, and record each set as
    restore-tested. Changes nothing the DRP server serves; needs no order."""
    return run_stage(config, environments)


def run_stage(config: str | None, environments: list[str] | None) -> dict[str, Any]:
    log = get_run_logger()
    site = site_from(config)
    if not site.staging.enabled:
        where = f" in {site.source}" if site.source else ""
        log.info("Staging is off (staging.enabled: false%s): nothing was done", where)
        return {"outcome": "off", "message": "staging is off in the inventory"}
    now = datetime.now(UTC)
    operation_id = new_operation_id(KIND, now)
    report = Report(operation_id, KIND, site.name, now)
    prepared = prepare_stage(site, operation_id, environments, now=now)
    lock = SiteLock(site, operation_id, KIND, run=_flow_run_words(), stale=ended_flow_run)
    try:
        return _run(site, prepared, report, lock)
    finally:
        if lock.held is not None:  # a staging run never keeps the site: the next run starts anew
            log.info("%s", lock.release())
        prepared.close()


def _run(site: Site, prepared: PreparedStage, report: Report, lock: SiteLock) -> dict[str, Any]:
    log = get_run_logger()
    directory = reports_dir(site)
    run = OperationRun(
        prepared.runbook,
        prepared.plan,
        report,
        save=lambda r: save_report(r, directory),
        publish=publish_report,
        submit=submitter(report.operation_id, prepared.plan.hash),
        check=submit_check,
        fresh=submitter(report.operation_id, prepared.plan.hash, fresh=True),
        log=log,
        lock=lock,
    )
    not_serving = next(f for f in prepared.findings if f.step.key == "preflight-not-serving")
    if not not_serving.ok:  # not a failure: staging waits for the return
        log.info("Staging skipped: %s", not_serving.reason)
        return {"outcome": "skipped", "message": not_serving.reason}
    failed: DrpError | None = None
    try:
        run.run(prepared.findings, gate=_no_gate)
    except SiteLocked as err:
        log.info("Staging skipped, the site is busy: %s", err)
        return {"outcome": "skipped", "message": str(err)}
    except DrpError as err:
        failed = err
    _record(site, prepared, report)
    _publish_drift(report)
    if failed is not None:
        raise failed
    return report.data


def _publish_drift(report: Report) -> None:
    """The drift check's summary as an artifact of the run (key `drift`)."""
    record = next((r for r in report.timeline if r.step == "drift-check"), None)
    markdown = record.details.get("drift_markdown") if record is not None else None
    if markdown:
        create_markdown_artifact(markdown, key="drift", description="DRP server vs production")


def _no_gate(plan_hash: str) -> Any:
    raise AssertionError("staging needs no order")  # never called: order_needed is False


def _record(site: Site, prepared: PreparedStage, report: Report) -> None:
    """Certificates and rates on the DRP host; a ticket for each set that newly failed."""
    log = get_run_logger()
    runner = prepared.operation.pool["drp"]
    steps = prepared.runbook.steps
    new = certificates(steps, report, host_name("drp"))
    try:
        before = latest_certificates(read_certificates(runner))
        add_certificates(runner, new)
        warm = prepared.operation.warm
        if warm is not None:
            store_rates(runner, measured_rates(steps, report, warm.rates))
    except DrpError as err:
        log.error("the staging certificates could not be recorded on the DRP host: %s", err)
        before = {}
    for certificate in new:
        log.info("%s: %s", certificate.set, certificate.words)
        earlier = before.get(certificate.set)
        if not certificate.ok and (earlier is None or earlier.ok):
            _ticket(site, report.operation_id, certificate)


def _ticket(site: Site, operation_id: str, certificate: Certificate) -> None:
    log = get_run_logger()
    ticket = Ticket(
        operation_id,
        "stage-failed",
        f"Backup {certificate.set} did not restore on the DRP server",
        f"{site.name}: staging restored backup set {certificate.set} on the DRP server "
        f"({certificate.host}) to prove it restorable, and it failed: {certificate.why}. An "
        "activation would choose this set if production were lost now. Check the set "
        "(`drp backup list`), take a new backup (`drp backup run`), and run `drp stage` again. "
        f"Staging run {operation_id}.",
        site.name,
    )
    for backend in ticket_backends(site):
        try:
            log.info("%s", backend.send(ticket).sentence)
        except Exception as err:  # one backend down must not hide the failure from the others
            log.error("ticket not sent through %s: %s", type(backend).__name__, err)
