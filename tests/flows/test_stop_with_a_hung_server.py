"""Ctrl-C on a drill waiting at its gate while the Prefect server hangs (it takes connections,
answers nothing: a server overloaded or stuck on its database). Prefect would retry recording
the run's end for about ten minutes; `drp` leaves within its guard (20 s), says so in one
paragraph without a traceback, and the site lock stays with the operation, released as
`drp status` says."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from flow_helpers import LAB_CONFIG, drp_cli, ensure_backups, start_cli

from runbooks.inventory import load_site

pytestmark = [pytest.mark.lab, pytest.mark.prefect]


def _tree(pid: int) -> list[int]:
    """The process and its descendants (read from /proc)."""
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        with contextlib.suppress(OSError):
            for task in Path(f"/proc/{current}/task").iterdir():
                todo += [int(c) for c in (task / "children").read_text().split()]
    return found


@contextlib.contextmanager
def hung(pid: int) -> Iterator[None]:
    """The server's processes stopped (SIGSTOP), continued whatever happens."""
    stopped = _tree(pid)
    for p in stopped:
        os.kill(p, signal.SIGSTOP)
    try:
        yield
    finally:
        for p in stopped:
            with contextlib.suppress(ProcessLookupError):
                os.kill(p, signal.SIGCONT)


def _wait_for(log: Path, text: str, process: subprocess.Popen[str], timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while text not in log.read_text():
        assert process.poll() is None, log.read_text()[-3000:]
        assert time.monotonic() < deadline, f"never saw {text!r}: {log.read_text()[-3000:]}"
        time.sleep(0.2)


def test_ctrl_c_at_the_gate_with_a_hung_server_leaves_within_the_guard(
    lab, prefect_server, tmp_path: Path
) -> None:
    site = load_site(LAB_CONFIG)
    ensure_backups(site)
    log = tmp_path / "drill.log"
    drill = start_cli(prefect_server.api_url, log, "drill", "-c", str(LAB_CONFIG))
    operation = ""
    try:
        _wait_for(log, "Waiting for the order of flow run", drill)
        operation = log.read_text().split("Operation ", 1)[1].split(" ", 1)[0]
        with hung(prefect_server.pid):
            drill.send_signal(signal.SIGINT)  # Ctrl-C
            try:
                code = drill.wait(timeout=120)  # Prefect alone: about ten minutes
            except subprocess.TimeoutExpired:
                pytest.fail(f"drp was still running 120 s after Ctrl-C: {log.read_text()[-2000:]}")
        out = log.read_text()
        assert code == 130, out[-2000:]
        assert "drp: stopped. The Prefect server did not take the run's end within 20 s" in out
        assert f"`drp status -c {LAB_CONFIG}` says what holds the site" in out
        assert "Traceback" not in out and "╭" not in out, out[-3000:]

        # What the hint points at: the lock, held by the operation, and how to release it.
        status = drp_cli(prefect_server.api_url, "status", "-c", str(LAB_CONFIG))
        assert f"locked by operation {operation} (drill" in status.stdout, status.stdout
        assert "not ordered yet" in status.stdout
        assert f"drp unlock -c {LAB_CONFIG} --operation-id {operation}" in status.stdout
    finally:
        if drill.poll() is None:
            os.killpg(drill.pid, signal.SIGKILL)
            drill.wait()
        if operation:
            drp_cli(
                prefect_server.api_url, "unlock", "-c", str(LAB_CONFIG),
                "--operation-id", operation, "--reason", "test: drill stopped at its gate",
            )  # fmt: skip
