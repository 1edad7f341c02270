"""Flow `drp-activate`: the plan's activation method, behind the customer's order."""

from __future__ import annotations

from typing import Any

from flows.operation import run_operation
from flows.plain_flow import plain_flow
from runbooks.gate import DEFAULT_TIMEOUT_SECONDS


@plain_flow(name="drp-activate", log_prints=True, persist_result=True)
def drp_activate(
    config: str | None = None,
    operation_id: str | None = None,
    environments: list[str] | None = None,
    gate_timeout_seconds: int = DEFAULT_TIMEOUT_SECONDS,
    force: bool = False,
    bwlimit_kib: int | None = None,
) -> dict[str, Any]:
    """Activate the DRP: preflight (read-only), wait for the order, copy files and
    configurations from the backup servers to the DRP server, import the databases, check the
    service through the DRP address, open the "DRP finalized" ticket, switch DNS, check again.

    Run it again with the same `operation_id` to resume: finished steps are skipped with their
    reason. `force` allows restoring over databases that drp did not restore (kept aside first).
    """
    return run_operation(
        "activate", config, operation_id, environments, gate_timeout_seconds, force, bwlimit_kib
    )
