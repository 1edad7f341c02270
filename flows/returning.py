"""Flow `drp-return`: the plan's method of return, DRP server -> production, behind the order."""

from __future__ import annotations

from typing import Any

from flows.operation import run_return
from flows.plain_flow import plain_flow
from runbooks.gate import DEFAULT_TIMEOUT_SECONDS


@plain_flow(name="drp-return", log_prints=True, persist_result=True)
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
    return run_return(config, operation_id, environments, gate_timeout_seconds, force, bwlimit_kib)
