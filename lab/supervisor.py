"""Starts the lab's daemons detached, knows which are running, stops them all.

Each daemon runs in its own session (so a terminal's Ctrl-C does not reach it), writes to
`<lab>/logs/NAME.log`, and is recorded in `<lab>/run/NAME.pid` (the pid) and `<lab>/run/NAME.json`
(pid, start time, argv, address, port). A recorded pid counts as our daemon only while its
start time and command line still match, so a pid the kernel has since reused is never
signalled. A zombie counts as stopped: on machines whose PID 1 reaps orphans slowly a stopped
daemon lingers in state Z for a while.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import pwd
import signal
import subprocess
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from pydantic import BaseModel, Field

from lab import procs, topology
from lab.commands import as_user
from lab.daemons import Daemon
from lab.errors import LabError

READY_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 10.0
_POLL_S = 0.05
DAEMON_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

# Daemons this process started, so stopping them can reap them at once instead of leaving
# zombies behind (when the lab is driven from a long-lived process such as a test session).
_CHILDREN: dict[int, subprocess.Popen[bytes]] = {}


class RunRecord(BaseModel):
    """What we know about a daemon we started."""

    name: str = Field(description="Daemon name, unique in the lab")
    host: str = Field(description="Lab host (or shared service) it belongs to")
    pid: int = Field(description="Process id")
    start_time: int = Field(description="Start time in clock ticks since boot (/proc/PID/stat)")
    argv: list[str] = Field(description="Command line it was started with (before setpriv)")
    address: str = Field(description="Address it listens on")
    port: int = Field(description="TCP port it listens on")
    stop_signal: int = Field(description="Signal that asks it to stop cleanly")
    started_at: dt.datetime = Field(description="When it was started (UTC)")
    log: str = Field(description="Its log file")


@dataclass
class _Launch:
    daemon: Daemon
    record: RunRecord
    process: subprocess.Popen[bytes]
    at: float = field(default_factory=time.monotonic)  # when it was started (monotonic)


@dataclass
class StartResult:
    started: list[str]
    already_running: list[str]


@dataclass
class Launched:
    """Daemons started and not yet known to answer (see `Supervisor.launch`)."""

    launches: list[_Launch]
    already_running: list[str]


def _tail(path: Path, lines: int = 12) -> str:
    try:
        text = path.read_text(errors="replace").splitlines()
    except FileNotFoundError:
        return "(no log)"
    return "\n".join("    " + line for line in text[-lines:])


class Supervisor:
    """The lab's daemons as seen through their run records."""

    def __init__(self, paths: topology.LabPaths) -> None:
        self.paths = paths

    # ------------------------------------------------------------ records

    def pid_path(self, name: str) -> Path:
        return self.paths.run / f"{name}.pid"

    def record_path(self, name: str) -> Path:
        return self.paths.run / f"{name}.json"

    def log_path(self, name: str) -> Path:
        return self.paths.logs / f"{name}.log"

    def records(self) -> list[RunRecord]:
        """Every run record, oldest start first."""
        found = []
        for path in sorted(self.paths.run.glob("*.json")):
            with contextlib.suppress(ValueError, OSError):
                found.append(RunRecord.model_validate_json(path.read_text()))
        return sorted(found, key=lambda r: r.started_at)

    def record(self, name: str) -> RunRecord | None:
        try:
            return RunRecord.model_validate_json(self.record_path(name).read_text())
        except (FileNotFoundError, ValueError):
            return None

    def is_running(self, record: RunRecord) -> bool:
        """Is the recorded process alive and still the daemon we started (not a reused pid)?"""
        info = procs.process_info(record.pid)
        if info is None or info.state in ("Z", "X") or info.start_time != record.start_time:
            return False
        # Between fork and exec the process is still `setpriv ...`: that is ours too.
        return info.cmdline.startswith("setpriv ") or procs.cmdline_matches(
            info.cmdline, record.argv, str(self.paths.root)
        )

    def running(self, name: str) -> RunRecord | None:
        record = self.record(name)
        return record if record is not None and self.is_running(record) else None

    def _forget(self, name: str) -> None:
        self.pid_path(name).unlink(missing_ok=True)
        self.record_path(name).unlink(missing_ok=True)

    # ------------------------------------------------------------ start

    def _check_port(self, daemon: Daemon) -> None:
        if procs.port_is_free(daemon.address, daemon.port):
            return
        holders = procs.port_holders(daemon.address, daemon.port)
        hint = "stop it and run `drp lab up` again"
        if any(str(self.paths.root) in h.cmdline for h in holders):
            hint = "it looks like a lab daemon whose run record was lost: `drp lab down` stops it"
        raise LabError(
            f"cannot start {daemon.name}: {daemon.address}:{daemon.port} is already taken by "
            f"{procs.describe_holders(holders)}; {hint}"
        )

    def _env(self, daemon: Daemon) -> dict[str, str]:
        # Nothing of the caller's environment leaks in (it may hold credentials); Python
        # daemons write their logs unbuffered so a log shows what happened up to a crash.
        env = {"PATH": DAEMON_PATH, "LANG": "C.UTF-8", "HOME": "/root", "USER": "root"}
        env["PYTHONUNBUFFERED"] = "1"
        if daemon.run_as:
            entry = pwd.getpwnam(daemon.run_as)
            env.update(HOME=entry.pw_dir, USER=daemon.run_as, LOGNAME=daemon.run_as)
        return {**env, **daemon.env}

    def _launch(self, daemon: Daemon) -> _Launch:
        self._check_port(daemon)
        self.paths.run.mkdir(parents=True, exist_ok=True)
        self.paths.logs.mkdir(parents=True, exist_ok=True)
        log_path = self.log_path(daemon.name)
        argv = as_user(daemon.run_as, daemon.argv) if daemon.run_as else list(daemon.argv)
        now = dt.datetime.now(dt.UTC)
        with log_path.open("ab") as log:
            log.write(f"\n=== {now:%Y-%m-%d %H:%M:%S} UTC: {' '.join(argv)}\n".encode())
            log.flush()
            try:
                process = subprocess.Popen(
                    argv,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                    cwd=daemon.cwd,
                    env=self._env(daemon),
                )
            except OSError as err:
                raise LabError(f"cannot start {daemon.name} ({argv[0]}): {err}") from err
        _CHILDREN[process.pid] = process
        info = procs.process_info(process.pid)
        record = RunRecord(
            name=daemon.name,
            host=daemon.host,
            pid=process.pid,
            start_time=info.start_time if info else 0,
            argv=list(daemon.argv),
            address=daemon.address,
            port=daemon.port,
            stop_signal=int(daemon.stop_signal),
            started_at=now,
            log=str(log_path),
        )
        self.pid_path(daemon.name).write_text(f"{process.pid}\n")
        self.record_path(daemon.name).write_text(record.model_dump_json(indent=2) + "\n")
        return _Launch(daemon, record, process)

    def _wait_ready(self, launches: list[_Launch], timeout: float) -> None:
        pending = list(launches)

        def allowed(launch: _Launch) -> float:
            return launch.daemon.ready_timeout or timeout

        while pending:
            for launch in list(pending):
                code = launch.process.poll()
                if code is not None:
                    self._forget(launch.daemon.name)
                    raise LabError(
                        f"{launch.daemon.name} exited with status {code} before answering on "
                        f"{launch.daemon.address}:{launch.daemon.port}; its log "
                        f"{launch.record.log} ends with:\n{_tail(Path(launch.record.log))}"
                    )
                if launch.daemon.ready():
                    pending.remove(launch)
            late = [launch for launch in pending if time.monotonic() - launch.at > allowed(launch)]
            if late:
                first = late[0]
                self.stop([first.daemon.name])
                raise LabError(
                    f"{first.daemon.name} did not answer on {first.daemon.address}:"
                    f"{first.daemon.port} within {allowed(first):g} s (stopped it again); its "
                    f"log {first.record.log} ends with:\n{_tail(Path(first.record.log))}"
                )
            if pending:
                time.sleep(_POLL_S)

    def launch(self, daemons: Iterable[Daemon]) -> Launched:
        """Starts those not running yet, all at once, without waiting for them (`wait()` does):
        a slow starter comes up while the rest of the lab is being set up."""
        launched = Launched(launches=[], already_running=[])
        for daemon in daemons:
            if self.running(daemon.name) is not None:
                launched.already_running.append(daemon.name)
                continue
            self._forget(daemon.name)
            launched.launches.append(self._launch(daemon))
        return launched

    def wait(self, launched: Launched, timeout: float = READY_TIMEOUT_S) -> StartResult:
        """Until every daemon launched answers (each within its own ready_timeout, if any)."""
        self._wait_ready(launched.launches, timeout)
        return StartResult(
            started=[launch.daemon.name for launch in launched.launches],
            already_running=list(launched.already_running),
        )

    def start(self, daemons: Iterable[Daemon], timeout: float = READY_TIMEOUT_S) -> StartResult:
        """Starts those not running yet, all at once, then waits until every one answers."""
        return self.wait(self.launch(daemons), timeout)

    # ------------------------------------------------------------ stop

    def _gone(self, record: RunRecord) -> bool:
        """Has a daemon we signalled exited? (Not "is it ours": an exiting process has already
        lost its command line, and it must still count as alive until it is a zombie.)"""
        child = _CHILDREN.get(record.pid)
        if child is not None:
            if child.poll() is None:
                return False
            del _CHILDREN[record.pid]
            return True
        procs.reap_if_child(record.pid)
        info = procs.process_info(record.pid)
        return info is None or info.state in ("Z", "X") or info.start_time != record.start_time

    def stop(
        self, names: Iterable[str] | None = None, timeout: float = STOP_TIMEOUT_S
    ) -> list[str]:
        """Asks each daemon to stop, kills what is left after `timeout`; returns those stopped."""
        wanted = set(names) if names is not None else None
        records = [r for r in self.records() if wanted is None or r.name in wanted]
        signalled: list[RunRecord] = []
        for record in reversed(records):
            if self.is_running(record):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(record.pid, record.stop_signal)
                signalled.append(record)
            else:
                self._forget(record.name)
        pending = list(signalled)
        deadline = time.monotonic() + timeout
        while pending and time.monotonic() < deadline:
            pending = [r for r in pending if not self._gone(r)]
            if pending:
                time.sleep(_POLL_S)
        for record in pending:  # did not stop in time: kill its whole process group
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(record.pid, signal.SIGKILL)
        deadline = time.monotonic() + 5
        while pending and time.monotonic() < deadline:
            pending = [r for r in pending if not self._gone(r)]
            if pending:
                time.sleep(_POLL_S)
        if pending:
            raise LabError(
                "could not stop " + ", ".join(f"{r.name} (pid {r.pid})" for r in pending)
            )
        for record in signalled:
            # Whatever the daemon left in its process group goes too; the group id cannot have
            # been reused while any member of the group lives.
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(record.pid, signal.SIGKILL)
            self._forget(record.name)
        return [record.name for record in reversed(signalled)]
