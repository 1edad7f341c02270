"""One lab daemon run as a child of the calling process: started, waited for, stopped.

The supervisor runs the whole lab detached; this is for code that needs one daemon for its own
lifetime only (tests that run a private Knot or OVH emulator on a spare loopback address).
Keeping the daemon a child means we reap it ourselves, so it never lingers as a zombie.
"""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

from lab.daemons import Daemon
from lab.errors import LabError


class ChildDaemon:
    """A `Daemon` started with its argv, env and cwd, its output appended to `log_path`."""

    def __init__(self, daemon: Daemon, log_path: Path):
        self.daemon = daemon
        self.log_path = log_path
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 15.0) -> ChildDaemon:
        """Starts the daemon and returns once `ready()` holds; raises LabError with its log
        when it exits or stays unready for `timeout` seconds."""
        if self.daemon.ready():
            raise LabError(
                f"something already answers on {self.daemon.address}:{self.daemon.port}; "
                f"stop it before starting {self.daemon.name}"
            )
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                self.daemon.argv,
                cwd=self.daemon.cwd,
                env={**os.environ, **self.daemon.env},
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + timeout
        while not self.daemon.ready():
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise LabError(f"{self.daemon.name} did not become ready; its log:\n{self.log()}")
            time.sleep(0.05)
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """Asks the daemon to stop with its stop signal, kills it after `timeout`, reaps it."""
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.send_signal(self.daemon.stop_signal)
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
