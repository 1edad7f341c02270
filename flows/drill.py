"""Flow `drp-drill`: a real rehearsal of the activation, without any DNS change."""

from __future__ import annotations

from typing import Any

from flows.operation import run_operation
from flows.plain_flow import plain_flow
from runbooks.gate import DEFAULT_TIMEOUT_SECONDS


@plain_flow(name="drp-drill", log_prints=True, persist_result=True)
def drp_drill(
    config: str | None = None,
    operation_id: str | None = None,
    environments: list[str] | None = None,
    gate_timeout_seconds: int = DEFAULT_TIMEOUT_SECONDS,
    force: bool = False,
    bwlimit_kib: int | None = None,
    cleanup: bool = False,
) -> dict[str, Any]:
    """Rehearse the activation on the DRP server: the same preflight, order and restore steps,
    then the service checked through the DRP address; DNS is left alone. Ends on the RTO/RPO
    report. With `cleanup`, what the DRP server held is set aside first and put back at the
    end, checked against a record kept on the DRP server."""
    return run_operation(
        "drill",
        config,
        operation_id,
        environments,
        gate_timeout_seconds,
        force,
        bwlimit_kib,
        cleanup=cleanup,
    )
