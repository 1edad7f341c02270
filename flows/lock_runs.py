"""The orchestrator's word on the flow run that holds the site lock.

A deployment run takes the site lock before its order gate, then waits suspended. Cancelled
there from the UI, it never runs again, and its lock would keep the site until `drp unlock`.
The next operation asks Prefect about the holder's flow run: ended (cancelled, completed,
failed or crashed) without an order, its lock may go (`runbooks.site_lock.take` decides, and
writes the ledger)."""

from __future__ import annotations

import re
from uuid import UUID

from runbooks.site_lock import LockInfo

_RUN = re.compile(r"flow run ([0-9a-f-]{36})")
ENDED = {"CANCELLED", "COMPLETED", "FAILED", "CRASHED"}


def ended_flow_run(held: LockInfo) -> str | None:
    """Why the holder's flow run no longer needs the lock, or None (running, waiting, not
    known to this Prefect server, or Prefect cannot be asked: the lock stays)."""
    found = _RUN.search(held.run)
    if found is None:
        return None
    from prefect.client.orchestration import get_client

    try:
        with get_client(sync_client=True) as client:
            flow_run = client.read_flow_run(UUID(found.group(1)))
    except Exception:  # another orchestrator's run, or no answer: not ours to judge
        return None
    state = flow_run.state
    if state is None or state.type.value not in ENDED:
        return None
    return f"its flow run {found.group(1)} ended {state.name.lower()}"
