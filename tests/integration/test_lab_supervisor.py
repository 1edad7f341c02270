"""The lab supervisor with real processes on spare loopback addresses (127.0.17.x).

These run without the lab: each test gets its own lab directory and its own address.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from lab import procs, topology
from lab.daemons import Daemon
from lab.errors import LabError
from lab.supervisor import RunRecord, Supervisor

PORT = 18080


def http_daemon(paths: topology.LabPaths, address: str, name: str = "web-test") -> Daemon:
    """A real HTTP server serving the (throwaway) lab directory."""
    argv = [sys.executable, "-m", "http.server", "--bind", address, str(PORT)]
    return Daemon(
        name=name,
        host="test",
        argv=[*argv, "--directory", str(paths.root)],
        address=address,
        port=PORT,
        ready=lambda: procs.is_listening(address, PORT),
    )


@pytest.fixture
def paths(tmp_path: Path) -> topology.LabPaths:
    return topology.LabPaths(tmp_path / "lab")


@pytest.fixture
def supervisor(paths: topology.LabPaths) -> Iterator[Supervisor]:
    sup = Supervisor(paths)
    yield sup
    sup.stop()


def wait_listening(address: str, port: int) -> None:
    deadline = time.monotonic() + 10
    while not procs.is_listening(address, port):
        assert time.monotonic() < deadline, f"nothing listens on {address}:{port}"
        time.sleep(0.05)


def test_start_records_the_daemon_and_stop_leaves_nothing(supervisor, paths) -> None:
    address = "127.0.17.1"
    result = supervisor.start([http_daemon(paths, address)])
    assert result.started == ["web-test"]
    record = supervisor.running("web-test")
    assert record is not None
    assert (paths.run / "web-test.pid").read_text().strip() == str(record.pid)
    assert procs.is_listening(address, PORT)
    assert supervisor.start([http_daemon(paths, address)]).already_running == ["web-test"]

    assert supervisor.stop() == ["web-test"]
    assert not procs.is_listening(address, PORT)
    assert not procs.is_alive(record.pid)
    assert list(paths.run.iterdir()) == []
    assert "Serving HTTP" in (paths.logs / "web-test.log").read_text()


def test_port_taken_by_another_process_is_named(supervisor, paths) -> None:
    address = "127.0.17.2"
    squatter = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import socket, time; s = socket.socket(); "
            f"s.bind(('{address}', {PORT})); s.listen(); time.sleep(60)",
        ]
    )
    try:
        wait_listening(address, PORT)
        with pytest.raises(LabError) as refused:
            supervisor.start([http_daemon(paths, address)])
        message = str(refused.value)
        assert f"{address}:{PORT} is already taken by pid {squatter.pid}" in message
        assert "import socket" in message  # its command line, so the user knows what it is
        assert squatter.poll() is None  # we never touch a process that is not ours
    finally:
        squatter.kill()
        squatter.wait()


def test_reused_pid_is_not_taken_for_our_daemon(supervisor, paths) -> None:
    stranger = subprocess.Popen(["sleep", "60"])
    try:
        info = procs.process_info(stranger.pid)
        assert info is not None
        record = RunRecord(
            name="web-test",
            host="test",
            pid=stranger.pid,
            start_time=info.start_time,
            argv=[sys.executable, "-m", "http.server", "--directory", str(paths.root)],
            address="127.0.17.3",
            port=PORT,
            stop_signal=15,
            started_at="2026-01-01T00:00:00Z",
            log=str(paths.logs / "web-test.log"),
        )
        paths.run.mkdir(parents=True)
        supervisor.record_path("web-test").write_text(record.model_dump_json())
        assert not supervisor.is_running(record)  # same pid, other command line
        wrong_time = record.model_copy(update={"argv": ["sleep", "60"], "start_time": 1})
        assert not supervisor.is_running(wrong_time)  # same pid and argv, other start time
        assert supervisor.stop() == []
        assert stranger.poll() is None
        assert not supervisor.record_path("web-test").exists()  # stale record forgotten
    finally:
        stranger.kill()
        stranger.wait()


def test_daemon_that_exits_at_once_points_at_its_log(supervisor, paths) -> None:
    crashing = Daemon(
        name="crash-test",
        host="test",
        argv=["sh", "-c", "echo cannot open config file >&2; exit 3", str(paths.root)],
        address="127.0.17.4",
        port=PORT,
        ready=lambda: False,
    )
    with pytest.raises(LabError) as failed:
        supervisor.start([crashing])
    message = str(failed.value)
    assert "crash-test exited with status 3" in message
    assert str(paths.logs / "crash-test.log") in message
    assert "cannot open config file" in message


def test_daemon_that_never_answers_is_stopped_after_the_timeout(supervisor, paths) -> None:
    silent = Daemon(
        name="silent-test",
        host="test",
        argv=["sleep", "60"],
        address="127.0.17.5",
        port=PORT,
        ready=lambda: False,
    )
    with pytest.raises(LabError, match=r"silent-test did not answer on 127\.0\.17\.5:18080"):
        supervisor.start([silent], timeout=0.5)
    assert supervisor.records() == []


def test_a_zombie_counts_as_dead() -> None:
    child = subprocess.Popen(["true"])
    try:
        deadline = time.monotonic() + 5
        while (info := procs.process_info(child.pid)) is not None and info.state != "Z":
            assert time.monotonic() < deadline
            time.sleep(0.02)
        assert info is not None and info.state == "Z"  # exited, not yet reaped
        assert not procs.is_alive(child.pid)
    finally:
        child.wait()
