"""Progress of long steps, for whoever watches: the terminal (rich) and Prefect artifacts.

Steps report `(step key, percent)`; the CLI registers a listener that drives a progress bar;
inside a Prefect task run, a progress artifact follows the same numbers (throttled).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from uuid import UUID

Listener = Callable[[str, float], None]

_listeners: list[Listener] = []
_lock = threading.Lock()


def add_listener(listener: Listener) -> None:
    with _lock:
        _listeners.append(listener)


def remove_listener(listener: Listener) -> None:
    with _lock:
        if listener in _listeners:
            _listeners.remove(listener)


def emit(step: str, percent: float) -> None:
    with _lock:
        listeners = list(_listeners)
    for listener in listeners:
        listener(step, percent)


class ArtifactProgress:
    """A Prefect progress artifact for one step, updated at most every `interval` seconds.
    It is made at the step's first progress: a step found done, which has none, has none."""

    def __init__(self, step: str, interval: float = 2.0) -> None:
        self.step = step
        self.interval = interval
        self._last = 0.0
        self._id: UUID | None = None

    def __call__(self, step: str, percent: float) -> None:
        from prefect.artifacts import create_progress_artifact, update_progress_artifact

        now = time.monotonic()
        if self._id is None:
            self._last = now
            self._id = create_progress_artifact(
                progress=min(100.0, percent), description=f"Progress of {self.step}"
            )
        elif percent >= 100 or now - self._last >= self.interval:
            self._last = now
            update_progress_artifact(artifact_id=self._id, progress=min(100.0, percent))
        emit(step, percent)
