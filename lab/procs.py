"""Facts about processes and sockets, read from /proc: is a pid still our daemon, who holds a port.

PID 1 on lab machines reaps orphans slowly, so a dead daemon can linger as a zombie: state `Z`
counts as dead. A pid is only "ours" while its start time and command line still match what we
recorded, so a recycled pid is never signalled.
"""

from __future__ import annotations

import contextlib
import errno
import os
import socket
from dataclasses import dataclass
from pathlib import Path

PROC = Path("/proc")
_TCP_LISTEN = "0A"


@dataclass(frozen=True)
class ProcessInfo:
    pid: int
    state: str  # one letter, as in /proc/PID/stat: R, S, D, Z, ...
    start_time: int  # clock ticks since boot; with the pid, identifies one process for good
    cmdline: str  # NUL-separated argv joined with spaces (or the title a daemon set)


def process_info(pid: int) -> ProcessInfo | None:
    """The process `pid` as /proc shows it, or None when there is no such process."""
    try:
        stat = (PROC / str(pid) / "stat").read_text()
        raw_cmdline = (PROC / str(pid) / "cmdline").read_bytes()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    # The command name (field 2) is in parentheses and may itself contain spaces or ')'.
    fields = stat[stat.rindex(")") + 2 :].split()
    cmdline = raw_cmdline.replace(b"\0", b" ").decode(errors="replace").strip()
    return ProcessInfo(pid=pid, state=fields[0], start_time=int(fields[19]), cmdline=cmdline)


def is_alive(pid: int) -> bool:
    """True when `pid` exists and is not a zombie waiting for its parent to reap it."""
    info = process_info(pid)
    return info is not None and info.state not in ("Z", "X")


def reap_if_child(pid: int) -> None:
    """Collect the exit status when `pid` is our own child, so it does not stay a zombie."""
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)


def cmdline_matches(cmdline: str, argv: list[str], marker: str) -> bool:
    """Does a running process's command line still look like the daemon we started from argv?

    Daemons may rewrite their title (sshd shows `sshd: /usr/sbin/sshd -D ... [listener]`), so we
    look for the program's name and every argument that names a path under the lab directory
    (`marker`) rather than for the exact argv.
    """
    program = os.path.basename(argv[0])
    if program not in cmdline:
        return False
    distinctive = [arg for arg in argv[1:] if marker in arg]
    return all(arg in cmdline for arg in distinctive)


def port_is_free(address: str, port: int) -> bool:
    """True when a TCP listener could bind address:port right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((address, port))
        except OSError as err:
            if err.errno in (errno.EADDRINUSE, errno.EACCES):
                return False
            raise
    return True


def is_listening(address: str, port: int, timeout: float = 0.5) -> bool:
    """True when something accepts TCP connections on address:port."""
    try:
        with socket.create_connection((address, port), timeout=timeout):
            return True
    except OSError:
        return False


def _hex_to_ipv4(hex_address: str) -> str:
    return socket.inet_ntoa(bytes.fromhex(hex_address)[::-1])


def _listening_inodes(address: str, port: int) -> set[str]:
    """Inodes of TCP sockets listening on port at `address` or on a wildcard address."""
    inodes: set[str] = set()
    for table in ("tcp", "tcp6"):
        try:
            lines = (PROC / "net" / table).read_text().splitlines()[1:]
        except FileNotFoundError:
            continue
        for line in lines:
            fields = line.split()
            local, state, inode = fields[1], fields[3], fields[9]
            hex_address, hex_port = local.split(":")
            if state != _TCP_LISTEN or int(hex_port, 16) != port:
                continue
            if table == "tcp":
                bound = _hex_to_ipv4(hex_address)
                if bound in (address, "0.0.0.0"):
                    inodes.add(inode)
            elif set(hex_address) == {"0"}:  # [::] also takes IPv4 unless v6only
                inodes.add(inode)
    return inodes


def port_holders(address: str, port: int) -> list[ProcessInfo]:
    """The processes holding a TCP listener that takes address:port (empty if none is found)."""
    inodes = _listening_inodes(address, port)
    if not inodes:
        return []
    targets = {f"socket:[{inode}]" for inode in inodes}
    holders: list[ProcessInfo] = []
    for entry in PROC.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            links = {os.readlink(fd) for fd in (entry / "fd").iterdir()}
        except (FileNotFoundError, PermissionError, ProcessLookupError, NotADirectoryError):
            continue
        if links & targets and (info := process_info(int(entry.name))) is not None:
            holders.append(info)
    return holders


def describe_holders(holders: list[ProcessInfo]) -> str:
    if not holders:
        return "a process we could not identify"
    return ", ".join(f"pid {h.pid} ({h.cmdline[:120]})" for h in holders)
