"""What the SSH and rsync integration tests share: targets on the lab's hosts, a real ssh-agent."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Protocol

from lab import topology
from providers.ssh import SshTarget


class Lab(Protocol):
    """The part of the `lab` fixture's handle these tests use."""

    paths: topology.LabPaths


def target(lab: Lab, name: str, **changes: object) -> SshTarget:
    """How the operator reaches lab host `name` (operator key, the lab's known_hosts)."""
    lab_host = topology.host(name)
    values: dict[str, object] = {
        "name": name,
        "address": lab_host.address,
        "port": topology.SSH_PORT,
        "user": lab_host.user,
        "key_path": lab.paths.operator_key,
        "known_hosts": lab.paths.known_hosts,
    }
    values.update(changes)
    return SshTarget(**values)  # type: ignore[arg-type]


def known_hosts_lines(lab: Lab) -> dict[str, str]:
    """The lab's known_hosts, one line per host name."""
    text = lab.paths.known_hosts.read_text()
    by_name = {line.split()[0]: line for line in text.splitlines() if line}
    return {h.name: by_name[f"[{h.address}]:{topology.SSH_PORT}"] for h in topology.HOSTS}


@contextlib.contextmanager
def running_agent(key: Path) -> Iterator[str]:
    """A real ssh-agent holding `key`, for as long as the block runs; yields its socket path."""
    directory = tempfile.mkdtemp(prefix="drp-agent-")  # short: socket paths are limited
    socket_path = os.path.join(directory, "agent.sock")
    process = subprocess.Popen(["ssh-agent", "-D", "-a", socket_path], stdout=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while not os.path.exists(socket_path) and time.monotonic() < deadline:
            time.sleep(0.02)
        subprocess.run(
            ["ssh-add", "-q", str(key)],
            env={**os.environ, "SSH_AUTH_SOCK": socket_path},
            check=True,
            capture_output=True,
        )
        yield socket_path
    finally:
        process.terminate()
        process.wait(timeout=10)
        shutil.rmtree(directory, ignore_errors=True)
