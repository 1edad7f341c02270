"""A `drp` command stopped by Ctrl-C or SIGTERM leaves within a bounded time.

On a stop, Prefect records the run's end on its server (Crashed) before the process exits, and
retries while the server does not answer: with a hung server, minutes of silence after Ctrl-C.
The command line enables the guard (`enabled`) around the flow it runs; the operation flows
call `stopping` when a stop reaches them. If the process has not exited `seconds` later, it
says what stands and exits (130 for Ctrl-C, 143 for SIGTERM). Flow runs started by a worker
never enable it: their process is the worker's to end.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

_guard: tuple[float, str] | None = None  # (seconds, hint) while the command line runs a flow


@contextmanager
def enabled(seconds: float, hint: str) -> Iterator[None]:
    """While the command line runs a flow here: a stop ends the process within `seconds`.
    `hint` says where the operator finds the operation's state (the site lock, the record)."""
    global _guard
    _guard = (seconds, hint)
    try:
        yield
    finally:
        _guard = None


@contextmanager
def stopping() -> Iterator[None]:
    """Around an operation flow's body: a stop that passes through arms the guard."""
    try:
        yield
    except BaseException as exc:
        if _is_stop(exc):
            _arm(130 if isinstance(exc, KeyboardInterrupt) else 143)
        raise


def _is_stop(exc: BaseException) -> bool:
    from prefect.exceptions import TerminationSignal

    return isinstance(exc, KeyboardInterrupt | TerminationSignal)


def _arm(code: int) -> None:
    if _guard is None:
        return
    seconds, hint = _guard

    def leave() -> None:
        time.sleep(seconds)
        sys.stderr.write(
            f"\ndrp: stopped. The Prefect server did not take the run's end within {seconds:.0f} "
            "s, so drp leaves without it: its UI may still show the run as running or paused. "
            f"Nothing more is done on the hosts. {hint}\n"
        )
        sys.stderr.flush()
        os._exit(code)

    threading.Thread(target=leave, name="drp-stop-guard", daemon=True).start()
