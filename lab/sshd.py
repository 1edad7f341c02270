"""One OpenSSH server per lab host, on the host's own address, letting in only its user by key."""

from __future__ import annotations

import socket
from pathlib import Path

from lab import topology
from lab.daemons import Daemon
from lab.sshkeys import host_key

SSHD = "/usr/sbin/sshd"


def config_path(paths: topology.LabPaths, name: str) -> Path:
    return paths.data(name) / "sshd" / "sshd_config"


def sshd_pid_file(paths: topology.LabPaths, name: str) -> Path:
    return paths.run / f"sshd-{name}.sshd.pid"


def render_sshd_config(paths: topology.LabPaths, host: topology.LabHost) -> str:
    return f"""\
# drp lab: the SSH server of host {host.name}. Rewritten on every `drp lab up`.
ListenAddress {host.address}
Port {topology.SSH_PORT}
HostKey {host_key(paths, host.name)}
PidFile {sshd_pid_file(paths, host.name)}
# Only this host's user, only by key: a lab host is reachable exactly like a real one.
AllowUsers {host.user}
PermitRootLogin no
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes yes
AuthorizedKeysFile .ssh/authorized_keys
AllowAgentForwarding yes
# Every lab host has the same `hostname`; commands tell where they run from this variable.
SetEnv DRP_LAB_HOST={host.name}
Subsystem sftp internal-sftp
PrintMotd no
LogLevel INFO
"""


def write_sshd_config(paths: topology.LabPaths, host: topology.LabHost) -> Path:
    path = config_path(paths, host.name)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render_sshd_config(paths, host))
    path.chmod(0o644)
    return path


def sshd_argv(config: Path) -> list[str]:
    """Foreground (-D), logging to stderr (-e); sshd must be started by its absolute path."""
    return [SSHD, "-D", "-e", "-f", str(config)]


def answers_ssh(address: str, port: int, timeout: float = 0.5) -> bool:
    """True once the server sends its `SSH-2.0-` identification banner."""
    try:
        with socket.create_connection((address, port), timeout=timeout) as sock:
            return sock.recv(8).startswith(b"SSH-2.0")
    except OSError:
        return False


def sshd_daemon(paths: topology.LabPaths, host: topology.LabHost) -> Daemon:
    """Writes the host's sshd_config and describes its sshd (root: it switches to the user)."""
    Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # privilege separation directory
    config = write_sshd_config(paths, host)
    return Daemon(
        name=f"sshd-{host.name}",
        host=host.name,
        argv=sshd_argv(config),
        address=host.address,
        port=topology.SSH_PORT,
        ready=lambda: answers_ssh(host.address, topology.SSH_PORT),
    )
