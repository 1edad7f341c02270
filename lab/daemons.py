"""What the lab knows about a daemon it runs: how to start it and how to tell it is ready.

Each lab service module (sshd, PostgreSQL, MariaDB, Knot, web, OVH emulator, Prefect server)
builds `Daemon` values; the lab's supervisor starts them detached, records their pid under
`<lab>/run/`, waits for `ready()` and stops them on `drp lab down`.
"""

from __future__ import annotations

import signal
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class Daemon:
    name: str  # unique in the lab, e.g. "sshd-production", "knot", "ovh-emulator"
    host: str  # lab host name it belongs to ("dns", "ovh" for the shared services)
    argv: list[str]  # runs in the foreground (the supervisor detaches it)
    address: str
    port: int
    ready: Callable[[], bool]  # True once it answers for real
    run_as: str | None = None  # unix user to drop to (setpriv), None = root
    env: dict[str, str] = field(default_factory=dict)
    cwd: Path | None = None
    # What asks it to stop cleanly: PostgreSQL wants SIGINT (fast shutdown); most want SIGTERM.
    stop_signal: int = signal.SIGTERM
    # How long it may take to answer, when more than the supervisor's default.
    ready_timeout: float | None = None
