"""Flow `drp-return`: the plan's method of return, DRP server -> production, behind the order."""

from __future__ import annotations

from typing import Any

from prefect import flow, get_run_logger

from flows.operation import load_or_start_report, run_engine
from flows.operation_ids import operation_id_for_run
from runbooks.connect import site_from
from runbooks.errors import DrpError
from runbooks.gate import DEFAULT_TIMEOUT_SECONDS
from runbooks.report import report_path, save_report
from runbooks.returning import prepare_return
from runbooks.services import reports_dir


@flow(name="drp-return", log_prints=True, persist_result=True)
def drp_return(
    config: str | None = None,
    operation_id: str | None = None,
    environments: list[str] | None = None,
    gate_timeout_seconds: int = DEFAULT_TIMEOUT_SECONDS,
    force: bool = False,
    bwlimit_kib: int | None = None,
) -> dict[str, Any]:
    """Return to production: preflight (read-only), wait for the order, pre-sync the files
    DRP -> production, put production into maintenance and freeze the DRP server, copy the last
    changes and the databases, prove both sides equal, open the "return to production" ticket,
    switch DNS back, lift production's maintenance and check the service there.

    Run it again with the same `operation_id` to resume. `force` switches a DNS record even
    when its current value is neither the DRP server's nor production's.
    """
    log = get_run_logger()
    site = site_from(config)
    operation_id = operation_id_for_run("return", operation_id)
    report = load_or_start_report(site, operation_id, "return")
    directory = reports_dir(site)
    log.info("Operation %s (return of %s); report: %s", operation_id, site.name,
             report_path(directory, operation_id))  # fmt: skip
    try:
        prepared = prepare_return(
            site, operation_id, environments, force=force, bwlimit_kib=bwlimit_kib
        )
    except DrpError as err:
        report.finish("failed", f"preflight could not read the two sides: {err}")
        save_report(report, directory)
        raise
    try:
        return run_engine(
            prepared.runbook,
            prepared.plan,
            report,
            directory,
            prepared.findings,
            prepared.brief,
            gate_timeout_seconds,
        )
    finally:
        prepared.close()
