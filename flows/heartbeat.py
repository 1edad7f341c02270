"""A flow run's end, not held up by Prefect's heartbeat thread.

Prefect 3 sends each flow run's heartbeats (every PREFECT_FLOWS_HEARTBEAT_FREQUENCY seconds,
180 by default; automations use them to find runs whose process died) from a thread that sleeps
one second at a time, and a synchronous flow run waits for that thread when it ends: up to one
second more for every run, a third of a drill's own orchestration. `end_runs_without_waiting()`
keeps the heartbeats as they are and lets a run end without waiting for their thread, as Prefect
does for asynchronous flows (`join_on_exit=False`): the thread stops within its second, sending
nothing more.
"""

from __future__ import annotations

import inspect
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Any

_MARK = "_drp_not_waited_for"


def end_runs_without_waiting() -> bool:
    """Flow runs in this process stop waiting for their heartbeat thread; False (and nothing
    changed) when this Prefect sends heartbeats some other way."""
    from prefect import flow_engine

    heartbeats = getattr(flow_engine, "_send_heartbeats", None)
    if heartbeats is None:
        return False
    if getattr(heartbeats, _MARK, False):
        return True
    if "join_on_exit" not in inspect.signature(heartbeats).parameters:
        return False

    @contextmanager
    def not_waited_for(engine: Any, join_on_exit: bool = True) -> Iterator[None]:
        sending: AbstractContextManager[None] = heartbeats(engine, join_on_exit=False)
        with sending:
            yield

    setattr(not_waited_for, _MARK, True)
    flow_engine._send_heartbeats = not_waited_for  # type: ignore[attr-defined]
    return True
