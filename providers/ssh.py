"""SSH to the inventory's hosts with Fabric, with strict host-key checking.

Fabric 3 accepts any host key (it hard-codes paramiko's `AutoAddPolicy`) and reads
`~/.ssh/config` and the system known_hosts. Here every connection reads only the SSH settings
given in its `SshTarget`: host keys come from the target's known_hosts file alone, an unknown or
changed key is refused before authentication, and only key authentication is tried (the given
key file, or the ssh-agent when no key file is given), never passwords or keys found lying
around in `~/.ssh`.

`SshHost` is the `CommandRunner` the other providers use: one connection per host, reused for
every command, each command on its own channel (several may run at once from different threads).
"""

from __future__ import annotations

import codecs
import contextlib
import logging
import os
import select
import socket
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from types import TracebackType

import fabric
import paramiko
from paramiko.agent import AgentRequestHandler
from paramiko.ssh_exception import (
    AuthenticationException,
    BadHostKeyException,
    SSHException,
)

from providers.commands import CommandResult, shell_line, with_secret_env

DEFAULT_CONNECT_TIMEOUT = 10.0
KEEPALIVE_SECONDS = 15  # SSH keepalive on every connection drp opens
STDERR_TAIL_LINES = 20
_READ_CHUNK = 65536
_POLL_SECONDS = 0.05
KILL_GRACE_SECONDS = 5  # between TERM and KILL when a command's channel closes under it
# Commands at once on one connection: sshd refuses a channel past its MaxSessions (10 by
# default); a command beyond this many waits for one to end instead of failing.
MAX_CHANNELS = 8
SESSION_WAIT_SECONDS = 30  # how long a refused session is asked again

# Every command runs under this guard, so that nothing drp started outlives its SSH channel.
# sshd starts each command as the leader of a new session and process group, and the channel
# closes when drp closes it (a timeout) or dies (SIGKILL, a lost network): sshd then closes the
# command's standard input. The guard keeps that input for itself: it passes the first $1 bytes
# (the command's own input: secret values, data) to the command through a private FIFO, then
# reads on until end of file. End of file before the command has exited means the channel is
# gone: the whole process group gets TERM (rsync then keeps its partial file for the next run,
# database clients roll back), then KILL. When the command exits first, the guard goes with it.
# A command killed by a signal is reported as killed by that signal (the guard signals itself);
# TERM, HUP or INT sent to the guard (whose command line names the command) go to the command.
_GUARD = r"""
n=$1; shift
exec 3<&0 </dev/null
d=
if [ "$n" -gt 0 ]; then
  d=$(mktemp -d) && mkfifo "$d/in" || exit 125
  "$@" <"$d/in" 3<&- &
else
  "$@" 3<&- &
fi
c=$!
(
  if [ -n "$d" ]; then head -c "$n" <&3 >"$d/in"; rm -rf -- "$d"; fi
  trap '' TERM
  while read -r _; do :; done <&3
  kill -TERM 0
  i=0
  while kill -0 "$c" && [ "$i" -lt "$TICKS" ]; do sleep 0.1; i=$((i + 1)); done
  kill -KILL 0
) >/dev/null 2>&1 &
w=$!
exec 3<&-
trap 'kill -TERM "$c" 2>/dev/null' TERM
trap 'kill -HUP "$c" 2>/dev/null' HUP
trap 'kill -INT "$c" 2>/dev/null' INT
while :; do
  wait "$c"
  r=$?
  kill -0 "$c" 2>/dev/null || break
done
kill -KILL "$w" 2>/dev/null
[ -z "$d" ] || rm -rf -- "$d"
if [ "$r" -gt 128 ] && [ "$r" -lt 160 ]; then trap - TERM HUP INT; kill -s "$((r - 128))" $$; fi
exit "$r"
"""


def guarded_argv(argv: Sequence[str], input_bytes: int) -> list[str]:
    """argv run under the guard that ends it (and everything it started) with its channel;
    the command reads the first `input_bytes` bytes sent on the channel as its standard input."""
    script = _GUARD.replace("$TICKS", str(KILL_GRACE_SECONDS * 10))
    return ["sh", "-c", script, "drp-guard", str(input_bytes), *argv]


class SshError(Exception):
    """An SSH host could not be reached, was not trusted, refused us, or a command failed.

    `host` is the target's inventory name; `exit_code` is set when a command ran and failed.
    """

    def __init__(
        self,
        message: str,
        *,
        host: str,
        exit_code: int | None = None,
        timed_out_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.host = host
        self.exit_code = exit_code
        self.timed_out_after = timed_out_after  # seconds, when the command did not finish


@dataclass(frozen=True)
class SshTarget:
    """How to reach one host: where, as whom, with which key, trusting which host keys."""

    name: str  # the host's name in the inventory, for messages and logs
    address: str
    port: int
    user: str
    key_path: Path | None  # private key file; None = use the keys of the running ssh-agent
    known_hosts: Path  # the only host keys trusted for this host
    connect_timeout: float = DEFAULT_CONNECT_TIMEOUT
    # The timeout of a command that does not set its own (None: no limit); long work (copies,
    # restores) sets its own, see `commands.WithTimeout`.
    command_timeout: float | None = None

    @property
    def where(self) -> str:
        """`address:port`, as messages show it."""
        return f"{self.address}:{self.port}"

    @property
    def known_hosts_name(self) -> str:
        """The name the host has in known_hosts (`[address]:port` unless the port is 22)."""
        return self.address if self.port == 22 else f"[{self.address}]:{self.port}"


def keyscan_argv(target: SshTarget) -> list[str]:
    """The command that shows the host's key, to check its fingerprint before trusting it."""
    return ["ssh-keyscan", "-p", str(target.port), target.address]


class _RefuseUnknownHost(paramiko.RejectPolicy):
    """Refuse a host missing from known_hosts, remembering the key it offered for the message."""

    def __init__(self) -> None:
        self.offered: paramiko.PKey | None = None

    def missing_host_key(
        self, client: paramiko.SSHClient, hostname: str, key: paramiko.PKey
    ) -> None:
        self.offered = key
        raise SSHException(f"host {hostname} is not in known_hosts")


def _describe_key(key: paramiko.PKey) -> str:
    return f"{key.get_name()} {key.fingerprint}"


def unknown_host_message(target: SshTarget, offered: paramiko.PKey | None) -> str:
    offer = f"; it offers {_describe_key(offered)}" if offered is not None else ""
    return (
        f"host key of {target.name} ({target.where}) is not in {target.known_hosts}{offer}. "
        f"Check that fingerprint with the host's administrator, then add the host's line to "
        f"{target.known_hosts}: {shell_line(keyscan_argv(target))} >> {target.known_hosts}"
    )


def changed_host_message(target: SshTarget, offered: paramiko.PKey, expected: paramiko.PKey) -> str:
    return (
        f"the host key of {target.name} ({target.where}) changed: it offers "
        f"{_describe_key(offered)} but {target.known_hosts} expects {_describe_key(expected)}. "
        f"If the host was reinstalled, check the new fingerprint with its administrator and "
        f"replace its line ({target.known_hosts_name}) in {target.known_hosts}; otherwise this "
        f"may be an attack: stop and investigate"
    )


def _stderr_tail(stderr: str) -> str:
    lines = stderr.strip().splitlines()
    return "\n".join(lines[-STDERR_TAIL_LINES:])


class SshHost:
    """Runs commands on one host over SSH (a `CommandRunner`); use it as a context manager.

    `forward_agent=True` forwards the local ssh-agent to every command, so that a command on
    the host can authenticate onwards with the operator's keys (used by server-to-server copies
    in agent mode). The connection opens at the first command and stays open until `close()`.
    """

    def __init__(self, target: SshTarget, *, forward_agent: bool = False) -> None:
        # Inventories write "~/.ssh/..."; no shell expands it for us.
        self.target = replace(
            target,
            key_path=target.key_path.expanduser() if target.key_path is not None else None,
            known_hosts=target.known_hosts.expanduser(),
        )
        self.name = target.name
        self.forward_agent = forward_agent
        self.log = logging.getLogger(f"SshHost[{target.name}]")
        self._lock = threading.Lock()
        self._channels = threading.BoundedSemaphore(MAX_CHANNELS)
        self._connection: fabric.Connection | None = None
        self._failed: tuple[float, Exception] | None = None  # when the last attempt failed, how

    def __enter__(self) -> SshHost:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        with self._lock:
            if self._connection is not None:
                self._connection.client.close()
                self._connection = None

    def _new_connection(self) -> tuple[fabric.Connection, _RefuseUnknownHost]:
        target = self.target
        connect_kwargs: dict[str, object] = {
            "look_for_keys": False,
            "allow_agent": target.key_path is None,
        }
        if target.key_path is not None:
            connect_kwargs["key_filename"] = str(target.key_path)
        # An explicit, empty SSHConfig keeps Fabric from reading ~/.ssh/config and
        # /etc/ssh/ssh_config; lazy=True keeps Invoke from reading its own config files.
        config = fabric.Config(ssh_config=paramiko.SSHConfig(), lazy=True)
        connection = fabric.Connection(
            host=target.address,
            user=target.user,
            port=target.port,
            config=config,
            connect_timeout=max(1, round(target.connect_timeout)),
            connect_kwargs=connect_kwargs,
        )
        # Fabric installed AutoAddPolicy; replace it before anything connects.
        policy = _RefuseUnknownHost()
        connection.client.set_missing_host_key_policy(policy)
        # get_host_keys().load() (unlike load_host_keys) never writes the file back.
        connection.client.get_host_keys().load(str(target.known_hosts))
        return connection, policy

    def _check_files(self) -> None:
        target = self.target
        if not target.known_hosts.is_file():
            raise SshError(
                f"known_hosts file {target.known_hosts} for {target.name} does not exist; "
                f"create it with the host's checked key: "
                f"{shell_line(keyscan_argv(target))} >> {target.known_hosts}",
                host=target.name,
            )
        if target.key_path is not None and not target.key_path.is_file():
            raise SshError(
                f"SSH key {target.key_path} for {target.name} does not exist; fix the key path "
                f"in the inventory, or leave it empty to use the ssh-agent",
                host=target.name,
            )

    def connection(self) -> fabric.Connection:
        """The open connection to the host, opened (and its host key checked) if needed.

        Threads asking at once share one attempt: one that waited for another's attempt gets
        that attempt's error, rather than waiting as long again on a host that does not
        answer (see `connect_soon`)."""
        asked = time.monotonic()
        with self._lock:
            if self._connection is not None and self._connection.is_connected:
                return self._connection
            if self._failed is not None and self._failed[0] >= asked:
                raise self._failed[1]
            try:
                return self._open()
            except Exception as err:
                self._failed = (time.monotonic(), err)
                raise

    def connect_soon(self) -> None:
        """Start opening the connection in the background, so that the first command finds it
        open (or waits for the attempt under way). A failure is left to that command to say."""

        def connect() -> None:
            with contextlib.suppress(Exception):  # said by the first command that needs it
                self.connection()

        threading.Thread(target=connect, name=f"ssh-connect-{self.name}", daemon=True).start()

    def _open(self) -> fabric.Connection:
        """A new connection (under `_lock`)."""
        self._check_files()
        connection, policy = self._new_connection()
        self.log.debug(
            "connecting to %s@%s (key %s, known_hosts %s)",
            self.target.user,
            self.target.where,
            self.target.key_path or "from ssh-agent",
            self.target.known_hosts,
        )
        sock: socket.socket | None = None
        try:
            sock = self._socket()
            connection.connect_kwargs["sock"] = sock
            connection.open()
        except Exception as err:
            connection.client.close()
            if sock is not None:
                sock.close()
            wrapped = self._connect_error(err, policy)
            if wrapped is None:
                raise
            raise wrapped from err
        except BaseException:
            connection.client.close()
            if sock is not None:
                sock.close()
            raise
        transport = connection.client.get_transport()
        if transport is not None:
            # A keepalive every KEEPALIVE_SECONDS: a link that dies silently (a firewall
            # dropping the session, a host gone) is noticed instead of waited on forever.
            transport.set_keepalive(KEEPALIVE_SECONDS)
        self._connection = connection
        return connection

    def _socket(self) -> socket.socket:
        """The TCP connection, without Nagle's delay: each command's small packets (channel
        open, exec) otherwise wait ~40 ms for the peer's delayed ACK, which made every command
        on an open connection take 50 ms instead of a few."""
        sock = socket.create_connection(
            (self.target.address, self.target.port), timeout=self.target.connect_timeout
        )
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return sock

    def _connect_error(self, err: Exception, policy: _RefuseUnknownHost) -> SshError | None:
        target = self.target
        if isinstance(err, BadHostKeyException):
            return SshError(
                changed_host_message(target, err.key, err.expected_key), host=target.name
            )
        if policy.offered is not None:
            return SshError(unknown_host_message(target, policy.offered), host=target.name)
        no_methods = isinstance(err, SSHException) and "No authentication methods" in str(err)
        if isinstance(err, AuthenticationException) or no_methods:
            reason = str(err).rstrip(".")
            if target.key_path is None and not os.environ.get("SSH_AUTH_SOCK"):
                return SshError(
                    f"no SSH key is configured for {target.name} ({target.where}) and no "
                    f"ssh-agent is running (SSH_AUTH_SOCK is not set): start one and add the key "
                    f"(eval $(ssh-agent); ssh-add KEY), or set the host's key path",
                    host=target.name,
                )
            if target.key_path is not None:
                how, fix = f"key {target.key_path}", ""
            else:
                how = "the keys of the ssh-agent"
                fix = " and that the agent holds the key (ssh-add -l)"
            return SshError(
                f"{target.name} ({target.where}) refused {target.user} with {how}: {reason}. "
                f"Check that the public key is in ~{target.user}/.ssh/authorized_keys on the "
                f"host{fix}",
                host=target.name,
            )
        if isinstance(err, OSError):
            return SshError(
                f"cannot reach {target.name} at {target.where}: {err}. Check that the host is up "
                f"and that its address and port in the inventory are right",
                host=target.name,
            )
        if isinstance(err, SSHException | EOFError):
            return SshError(
                f"SSH to {target.name} ({target.where}) failed: {err or type(err).__name__}",
                host=target.name,
            )
        return None

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
        """Run argv on the host (see `CommandRunner.run`).

        With check=True a non-zero exit raises `SshError` naming the command (never a secret
        value), its exit code and the end of its stderr. A command killed by a signal has exit
        code -1. On timeout the channel is closed and `SshError` is raised whatever `check` says;
        without `timeout`, the target's `command_timeout` applies.
        """
        if timeout is None:
            timeout = self.target.command_timeout
        argv = list(argv)
        if not argv:
            raise ValueError("empty command")
        secrets = dict(secret_env or {})
        for name, value in secrets.items():
            if "\n" in value or "\r" in value:
                # The value itself stays out of the message.
                raise ValueError(f"secret {name} contains a line break; it cannot be sent")
        command = shell_line(argv)
        if secrets:
            self.log.debug("run %s (secret env: %s)", command, ", ".join(secrets))
        else:
            self.log.debug("run %s", command)
        payload = ("".join(f"{value}\n" for value in secrets.values()) + (stdin or "")).encode()
        line = shell_line(guarded_argv(with_secret_env(argv, list(secrets)), len(payload)))

        with self._channels:
            return self._run_on_channel(argv, command, line, payload, timeout, check, on_output)

    def _open_session(self, transport: paramiko.Transport) -> paramiko.Channel:
        """A new channel. sshd frees a session a moment after its channel closed: a refusal
        for "no more sessions" (MaxSessions) is asked again for a while before it counts."""
        deadline = time.monotonic() + SESSION_WAIT_SECONDS
        pause = 0.05
        while True:
            try:
                return transport.open_session(timeout=self.target.connect_timeout)
            except paramiko.ChannelException as err:
                if time.monotonic() >= deadline:
                    raise SshError(
                        f"cannot open a session on {self.name} ({self.target.where}): {err} "
                        f"(sshd's MaxSessions reached for {SESSION_WAIT_SECONDS} s)",
                        host=self.name,
                    ) from err
                time.sleep(pause)
                pause = min(pause * 2, 1.0)
            except SSHException as err:
                raise SshError(
                    f"cannot open a session on {self.name} ({self.target.where}): {err}",
                    host=self.name,
                ) from err

    def _run_on_channel(
        self,
        argv: Sequence[str],
        command: str,
        line: str,
        payload: bytes,
        timeout: float | None,
        check: bool,
        on_output: Callable[[str], None] | None,
    ) -> CommandResult:
        started = time.monotonic()
        transport = self.connection().client.get_transport()
        if transport is None:  # pragma: no cover - connection() just opened it
            raise SshError(f"the connection to {self.name} closed", host=self.name)
        channel = self._open_session(transport)
        agent = AgentRequestHandler(channel) if self.forward_agent else None
        try:
            channel.exec_command(line)
            writer = threading.Thread(target=_send_stdin, args=(channel, payload), daemon=True)
            writer.start()
            stdout, stderr, timed_out = _collect(channel, started, timeout, on_output)
            exit_code = -1 if timed_out else channel.recv_exit_status()
            writer.join(timeout=1)
        finally:
            channel.close()
            if agent is not None:
                agent.close()
        seconds = time.monotonic() - started
        result = CommandResult(tuple(argv), exit_code, stdout, stderr, seconds)
        self.log.debug("exit %s after %.2fs: %s", exit_code, seconds, command)
        if exit_code == -1 and not timed_out and not transport.is_active():
            self.close()
            raise SshError(
                f"the connection to {self.name} ({self.target.where}) was lost while running "
                f"{command}; it may or may not have finished on the host",
                host=self.name,
            )
        if timed_out:
            raise SshError(
                f"{_short(command)} on {self.name} did not finish within {timeout:g} s; the "
                f"host may hang (a file system, the disk), or the work needs a longer timeout "
                f"(timeouts in the inventory)",
                host=self.name,
                timed_out_after=timeout,
            )
        if check and exit_code != 0:
            raise SshError(self.failure_message(result), host=self.name, exit_code=exit_code)
        return result

    def failure_message(self, result: CommandResult) -> str:
        """One message for a failed command: what ran where, its exit code, stderr's end."""
        if result.exit_code == -1:
            status = "was killed by a signal"
        else:
            status = f"exited with code {result.exit_code}"
        tail = _stderr_tail(result.stderr)
        return f"{shell_line(result.argv)} on {self.name} {status}" + (
            f":\n{tail}" if tail else " (no error output)"
        )


def _short(command: str, limit: int = 120) -> str:
    """A command line as messages show it: a long shell script is cut, its start kept."""
    return command if len(command) <= limit else command[: limit - 1] + "…"


def _send_stdin(channel: paramiko.Channel, payload: bytes) -> None:
    # In a thread: a command that writes a lot before reading its stdin must not deadlock us.
    # The channel's input stays open afterwards: its end tells the guard that drp is gone.
    try:
        if payload:
            channel.sendall(payload)
    except (OSError, SSHException, EOFError):
        pass  # the command exited without reading all of its input; its exit code tells


def _collect(
    channel: paramiko.Channel,
    started: float,
    timeout: float | None,
    on_output: Callable[[str], None] | None,
) -> tuple[str, str, bool]:
    """Read stdout and stderr until the command closes them; True if `timeout` ran out first."""
    out_decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    err_decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    out: list[str] = []
    err: list[str] = []
    while True:
        wait = _POLL_SECONDS
        if timeout is not None:
            left = timeout - (time.monotonic() - started)
            if left <= 0:
                return "".join(out), "".join(err), True
            wait = min(wait, left)
        # A channel selects readable when either stream has data or at end of file. No
        # channel timeout here: it would also apply to the stdin writer's sendall().
        select.select([channel], [], [], wait)
        while channel.recv_stderr_ready():
            err.append(err_decoder.decode(channel.recv_stderr(_READ_CHUNK)))
        while channel.recv_ready():
            text = out_decoder.decode(channel.recv(_READ_CHUNK))
            out.append(text)
            if on_output is not None and text:
                on_output(text)
        if (channel.eof_received or channel.closed) and not (
            channel.recv_ready() or channel.recv_stderr_ready()
        ):
            break
    tail = out_decoder.decode(b"", final=True)
    if tail:
        out.append(tail)
        if on_output is not None:
            on_output(tail)
    err.append(err_decoder.decode(b"", final=True))
    return "".join(out), "".join(err), False
