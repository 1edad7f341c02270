"""What the database integration tests share: SSH to the lab's hosts, endpoints, copies, and a
runner that keeps every command it ran (to prove no password ever reached an argv)."""

from __future__ import annotations

import secrets
from collections.abc import Callable, Mapping, Sequence
from typing import Protocol

from lab import topology
from providers import rsync
from providers.commands import CommandResult
from providers.dbcommon import DbEndpoint
from providers.ssh import SshHost, SshTarget

# The lab's hosts authorize each other's keys: drp pulls from production with its own key.
RECEIVER_KEY = "~/.ssh/id_ed25519"


class Lab(Protocol):
    """The part of the `lab` fixture's handle these tests use."""

    paths: topology.LabPaths
    secrets: dict[str, str]


def ssh_host(lab: Lab, name: str) -> SshHost:
    paths = lab.paths
    lab_host = topology.host(name)
    target = SshTarget(
        name=name,
        address=lab_host.address,
        port=topology.SSH_PORT,
        user=lab_host.user,
        key_path=paths.operator_key,
        known_hosts=paths.known_hosts,
    )
    return SshHost(target)


def endpoint(host_name: str, port: int, dbname: str) -> DbEndpoint:
    return DbEndpoint(host_name, topology.host(host_name).address, port, topology.DB_USER, dbname)


def new_tag() -> str:
    """A short random suffix for this run's scratch directory and databases."""
    return secrets.token_hex(3)


def copy_dir_from_production(receiver: SshHost, directory: str) -> rsync.CopyResult:
    """rsync, run on the receiver, pulls `directory` (relative to the homes) from production."""
    production = topology.host("production")
    source = rsync.RemoteEndpoint(
        name="production",
        address=production.address,
        port=topology.SSH_PORT,
        user=production.user,
        path=directory,
        key_path=RECEIVER_KEY,
    )
    return rsync.copy_tree(receiver, source, directory)


class RecordingRunner:
    """An SshHost that keeps the CommandResult of everything it ran."""

    def __init__(self, host: SshHost) -> None:
        self.host = host
        self.name = host.name
        self.results: list[CommandResult] = []

    def run(
        self,
        argv: Sequence[str],
        *,
        secret_env: Mapping[str, str] | None = None,
        stdin: str | None = None,
        timeout: float | None = None,
        check: bool = True,
        on_output: Callable[[str], None] | None = None,
    ) -> CommandResult:
        result = self.host.run(
            argv,
            secret_env=secret_env,
            stdin=stdin,
            timeout=timeout,
            check=check,
            on_output=on_output,
        )
        self.results.append(result)
        return result
