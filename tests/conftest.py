"""Shared fixtures. Tests never see the operator's real ~/.ssh, OVH credentials or Prefect home."""

from __future__ import annotations

import configparser
import contextlib
import fcntl
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import ovh.config
import pytest

from lab import topology


@pytest.fixture(autouse=True, scope="session")
def _isolated_environment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A throwaway HOME and Prefect home; no OVH_* variables, so no real credential is read."""
    home = tmp_path_factory.mktemp("home")
    saved = dict(os.environ)
    for name in list(os.environ):
        if name.startswith("OVH_"):
            del os.environ[name]
    os.environ["HOME"] = str(home)
    os.environ["PREFECT_HOME"] = str(home / ".prefect")
    os.environ["DO_NOT_TRACK"] = "1"
    os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
    # The ovh package reads /etc/ovh.conf, ~/.ovh.conf and ./ovh.conf once, when imported;
    # forget whatever it found there so no test ever uses a real OVH credential.
    ovh.config.config.config = configparser.RawConfigParser()
    ovh.config.CONFIG_PATH = [str(home / ".ovh.conf")]
    yield home
    os.environ.clear()
    os.environ.update(saved)


LAB_EXCLUSIVE_TIMEOUT_S = 900.0


@dataclass(frozen=True)
class LabHandle:
    """What tests need to reach the running lab."""

    paths: topology.LabPaths
    secrets: dict[str, str]
    hosts: tuple[topology.LabHost, ...]
    started_here: bool  # True when this session brought the lab up (and takes it down)
    session_lock: IO[str]  # held shared while this session uses the lab

    def host(self, name: str) -> topology.LabHost:
        return topology.host(name)

    @contextlib.contextmanager
    def exclusive(self) -> Iterator[None]:
        """For tests that stop or reset the lab: waits until no other test session uses it."""
        _flock(self.session_lock, fcntl.LOCK_EX, LAB_EXCLUSIVE_TIMEOUT_S)
        try:
            yield
        finally:
            fcntl.flock(self.session_lock, fcntl.LOCK_SH)


def _flock(handle: IO[str], mode: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while True:
        try:
            fcntl.flock(handle, mode | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            if time.monotonic() >= deadline:
                if timeout:
                    raise TimeoutError(
                        f"another test session kept the lab busy for {timeout:.0f} s "
                        f"({handle.name})"
                    ) from None
                return False
            time.sleep(0.2)


@pytest.fixture(scope="session")
def lab(_isolated_environment: Path) -> Iterator[LabHandle]:
    """The local lab, running: brought up (through lab.api) unless it already runs.

    Test sessions on one machine share the lab: each holds `<lab>/sessions.lock` shared, and a
    test that stops or resets the lab does so inside `lab.exclusive()`. A session that started
    the lab stops it at the end unless another session is still using it; a lab that was
    running before the tests stays running. Mark tests that use it with `@pytest.mark.lab`.
    """
    # Imported here: unit-test sessions need none of the lab's database drivers.
    from lab import api as lab_api
    from lab.secrets import load_secrets

    paths = topology.paths()
    paths.root.mkdir(parents=True, exist_ok=True)
    with (paths.root / "sessions.lock").open("a") as session_lock:
        _flock(session_lock, fcntl.LOCK_SH, LAB_EXCLUSIVE_TIMEOUT_S)
        before = lab_api.status()
        started_here = before.none_running  # a half-running lab is repaired, then left running
        if not before.all_running:
            lab_api.up()
        yield LabHandle(
            paths=paths,
            secrets=load_secrets(paths),
            hosts=topology.HOSTS,
            started_here=started_here,
            session_lock=session_lock,
        )
        if started_here and _flock(session_lock, fcntl.LOCK_EX, 0):
            lab_api.down()


PREFECT_SERVER_ADDRESS = "127.0.16.1"


def _free_port(address: str) -> int:
    """A port free on `address` now: two test sessions on one machine each get their own server."""
    import socket

    with socket.socket() as probe:
        probe.bind((address, 0))
        return int(probe.getsockname()[1])


@dataclass(frozen=True)
class PrefectServer:
    api_url: str  # what PREFECT_API_URL is set to, here and in subprocesses the tests start
    log: Path
    pid: int  # its process: a test may stop it (SIGSTOP) to play a server that hangs

    @property
    def ui_url(self) -> str:
        """Where its UI is: the server serves it beside its API."""
        return self.api_url.removesuffix("/api")


@pytest.fixture(scope="session")
def prefect_server(
    _isolated_environment: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[PrefectServer]:
    """A real Prefect server (API and UI) on loopback, started once for the session.

    Flows run against it as they do in production; tests answer the order gate through the
    same API the UI uses. PREFECT_API_URL points at it for this process and its children.
    """
    import shutil
    import subprocess
    import sys
    import time

    import httpx
    from prefect.settings import PREFECT_API_URL, temporary_settings

    home = tmp_path_factory.mktemp("prefect-server")
    log = home / "server.log"
    port = _free_port(PREFECT_SERVER_ADDRESS)
    base = f"http://{PREFECT_SERVER_ADDRESS}:{port}/api"
    env = {
        **os.environ,
        "PREFECT_HOME": str(home),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "DO_NOT_TRACK": "1",
        # The UI asks its API at this address (by default 127.0.0.1:4200, whatever --port says).
        "PREFECT_SERVER_UI_API_URL": base,
    }
    env.pop("PREFECT_API_URL", None)
    prefect = shutil.which("prefect", path=str(Path(sys.executable).parent)) or "prefect"
    argv = [prefect, "server", "start", "--host", PREFECT_SERVER_ADDRESS,
            "--port", str(port)]  # fmt: skip
    with log.open("wb") as out:
        process = subprocess.Popen(argv, env=env, stdout=out, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 120
    while True:
        try:
            if httpx.get(f"{base}/health", timeout=2).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            raise RuntimeError(f"the Prefect server did not start; see {log}")
        time.sleep(0.5)
    saved = os.environ.get("PREFECT_API_URL")
    os.environ["PREFECT_API_URL"] = base
    try:
        with temporary_settings(updates={PREFECT_API_URL: base}):
            yield PrefectServer(base, log, process.pid)
    finally:
        if saved is None:
            os.environ.pop("PREFECT_API_URL", None)
        else:
            os.environ["PREFECT_API_URL"] = saved
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
