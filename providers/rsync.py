"""Server-to-server copies with rsync: the receiving host pulls from the sending host over SSH.

rsync runs ON THE RECEIVING HOST (through its `CommandRunner`, normally an SSH connection from
the machine that runs drp) and connects to the sending host with its own `ssh`; the data goes
straight from one server to the other and never passes through the machine that runs drp.

The receiving host logs in to the sending host in one of two ways (`RemoteEndpoint.key_path`):

(a) **A key the receiving host holds** (`key_path="~/.ssh/id_ed25519"`, a path ON THE RECEIVING
    HOST). Its public key must be in the sending user's `~/.ssh/authorized_keys`. Only that key
    is offered (`IdentitiesOnly=yes`); a wrong path fails instead of falling back to another key.
(b) **Agent forwarding** (`key_path=None`): the operator's ssh-agent is forwarded through the
    drp -> receiver connection (`SshHost(target, forward_agent=True)`), and the inner ssh
    authenticates with the agent's keys only (`IdentityFile=none`, so a stray key in the
    receiving user's `~/.ssh` is never used instead). No private key is stored on the servers;
    the operator's public key must be authorized on the sending host.

Either way the inner ssh checks the sending host's key against a known_hosts file on the
receiving host (`StrictHostKeyChecking=yes`, default `~/.ssh/known_hosts`) and never prompts
(`BatchMode=yes`): an unknown or changed host key stops the copy with a message that says so.

Copies are safe to interrupt and re-run: a partly sent file is kept (in `.rsync-partial/` inside
its directory, or in the copy's own `partial_dir`) and the next run sends only the rest. An
interrupted copy must end by a signal rsync catches (TERM, INT, HUP) to keep that file: the SSH
provider's guard sends TERM to a command whose channel closes, so that drp dying ends its copy
that way. Nothing on the receiving side is deleted
unless the caller asks for `delete=True`; with `backup_dir`, what a copy replaces or deletes is
moved there instead of being lost. Paths are relative to the SSH user's home unless
absolute (a leading `~/` is accepted and means the same); they may contain spaces, quotes or a
leading dash: the remote path travels inside rsync's protocol (`--protect-args`), never through
a shell.
"""

from __future__ import annotations

import logging
import re
import shlex
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

from providers.commands import CommandResult, CommandRunner

PARTIAL_DIR = ".rsync-partial"
DEFAULT_KNOWN_HOSTS = "~/.ssh/known_hosts"
# rsync's documented exit codes (man rsync, EXIT VALUES).
EXIT_MEANINGS: dict[int, str] = {
    0: "success",
    1: "syntax or usage error",
    2: "protocol incompatibility",
    3: "errors selecting input/output files, dirs",
    4: "requested action not supported",
    5: "error starting client-server protocol",
    6: "daemon unable to append to log-file",
    10: "error in socket I/O",
    11: "error in file I/O",
    12: "error in rsync protocol data stream",
    13: "errors with program diagnostics",
    14: "error in IPC code",
    20: "received SIGUSR1 or SIGINT (interrupted)",
    21: "some error returned by waitpid()",
    22: "error allocating core memory buffers",
    23: "partial transfer due to error",
    24: "partial transfer due to vanished source files",
    25: "the --max-delete limit stopped deletions",
    30: "timeout in data send/receive",
    35: "timeout waiting for daemon connection",
    127: "rsync not found on the receiving host",
    255: "the SSH connection to the sending host failed",
    -1: "killed by a signal",
}
VANISHED_FILES = 24


class RsyncError(Exception):
    """An rsync copy failed; the message gives rsync's exit code, its meaning and a fix."""

    def __init__(self, message: str, *, receiver: str, exit_code: int | None = None) -> None:
        super().__init__(message)
        self.receiver = receiver
        self.exit_code = exit_code


@dataclass(frozen=True)
class RemoteEndpoint:
    """The sending side of a copy, as the RECEIVING host reaches it."""

    name: str  # the sending host's inventory name, for messages
    address: str
    port: int
    user: str
    path: str  # directory on the sending host whose contents are copied
    key_path: str | None = None  # private key on the receiving host; None = forwarded agent
    known_hosts: str = DEFAULT_KNOWN_HOSTS  # on the receiving host
    connect_timeout: int = 10

    def __str__(self) -> str:
        return f"{self.name}:{self.path}"


@dataclass(frozen=True)
class CopyOptions:
    """What a copy preserves and how it behaves. Defaults never delete anything."""

    delete: bool = False  # remove receiver files that the sender does not have (not excluded ones)
    excludes: tuple[str, ...] = ()  # rsync exclude patterns, e.g. "cache/", "*.tmp"
    includes: tuple[str, ...] = ()  # include patterns, placed before the excludes (first wins)
    link_dest: str | None = None  # hard-link unchanged files to this older copy (receiver side)
    # Keep every receiver file that the copy replaces or deletes: moved into this directory
    # (relative to the destination, or absolute) with its path, instead of being lost.
    backup_dir: str | None = None
    checksum: bool = False  # compare files by content (a full read of both sides), not size+time
    hard_links: bool = True
    acls: bool = False
    xattrs: bool = False
    numeric_ids: bool = False  # keep uid/gid numbers instead of mapping user/group names
    owner: bool = True  # only effective when rsync runs as root on the receiving host
    group: bool = True
    bwlimit_kib: int | None = None  # KiB per second; None = as fast as the link goes
    # Where an interrupted copy keeps its half-sent file for the next run. None: a
    # `.rsync-partial/` inside each directory of the destination (rsync hides it from the copy).
    # An absolute path (one per copy, outside the destination): kept apart from the tree, so that
    # a copy that deletes extra files and a comparison of the whole tree never meet it.
    partial_dir: str | None = None
    io_timeout: int | None = 600  # seconds without any data before rsync gives up (exit 30)


@dataclass(frozen=True)
class CopyProgress:
    """One `--info=progress2` update: the whole copy so far.

    rsync measures `percent` against the total size of the tree, so a copy that finds most files
    already up to date (or hard-linked) ends below 100%: treat the end of `copy_tree` as done.
    """

    bytes: int  # bytes of file data handled so far
    percent: int  # of the total size of the files in the copy (as rsync counts it)
    rate: float  # bytes per second
    eta_seconds: int | None
    transfers: int | None = None  # files transferred so far
    to_check: int | None = None  # files still to check
    total_files: int | None = None


@dataclass(frozen=True)
class TransferStats:
    """rsync's `--stats` summary (counts of files and bytes)."""

    files: int = 0  # in the source tree (files, dirs, links)
    created: int = 0
    deleted: int = 0
    files_transferred: int = 0  # regular files whose data was sent
    total_size: int = 0  # bytes in the source tree
    transferred_size: int = 0  # bytes of the files that were (or would be) sent
    literal_bytes: int = 0  # file data actually sent (not found on the receiver)
    matched_bytes: int = 0  # file data the receiver already had (delta transfer)
    bytes_sent: int = 0  # wire bytes, receiver -> sender
    bytes_received: int = 0  # wire bytes, sender -> receiver


@dataclass(frozen=True)
class CopyResult:
    source: str  # "production:srv/app/www"
    receiver: str
    dest_path: str
    stats: TransferStats
    seconds: float
    vanished_files: bool = False  # rsync exit 24: source files vanished during the copy
    warnings: str = ""  # rsync's error output when it succeeded with a warning

    @property
    def files_transferred(self) -> int:
        return self.stats.files_transferred

    @property
    def bytes_transferred(self) -> int:
        """File data that really crossed the network (resumed and unchanged data excluded)."""
        return self.stats.literal_bytes

    @property
    def total_size(self) -> int:
        return self.stats.total_size


ChangeAction = Literal["create", "update", "delete", "attributes"]
ChangeKind = Literal["file", "dir", "symlink", "device", "special"]
_KINDS: dict[str, ChangeKind] = {
    "f": "file",
    "d": "dir",
    "L": "symlink",
    "D": "device",
    "S": "special",
}


@dataclass(frozen=True)
class ItemizedChange:
    """One line of `--itemize-changes`: what would happen to one path on the receiver."""

    path: str
    action: ChangeAction
    kind: ChangeKind
    hard_link: bool = False  # created as a hard link to another copied file
    flags: str = ""  # rsync's 11-character code, e.g. ">f.st......"


@dataclass(frozen=True)
class CopyPlan:
    """What a copy would change on the receiver (from a dry run), and how much it would send."""

    source: str
    receiver: str
    dest_path: str
    changes: tuple[ItemizedChange, ...]
    stats: TransferStats

    def _count(self, action: ChangeAction, *, dirs: bool = False) -> int:
        return sum(1 for c in self.changes if c.action == action and (c.kind == "dir") == dirs)

    @property
    def files_to_create(self) -> int:
        """Files, links and devices that would appear (directories counted apart)."""
        return self._count("create")

    @property
    def dirs_to_create(self) -> int:
        return self._count("create", dirs=True)

    @property
    def files_to_update(self) -> int:
        return self._count("update")

    @property
    def to_delete(self) -> int:
        return sum(1 for c in self.changes if c.action == "delete")

    @property
    def attribute_changes(self) -> int:
        return sum(1 for c in self.changes if c.action == "attributes")

    @property
    def bytes_to_transfer(self) -> int:
        """Size of the files that would be sent (upper bound: rsync may send only deltas)."""
        return self.stats.transferred_size

    @property
    def total_size(self) -> int:
        return self.stats.total_size

    @property
    def up_to_date(self) -> bool:
        """True when the receiver already matches the sender (a copy would change nothing)."""
        return not self.changes

    def summary(self) -> str:
        if self.up_to_date:
            return f"{self.dest_path} on {self.receiver} is up to date with {self.source}"
        return (
            f"{self.source} -> {self.receiver}:{self.dest_path}: "
            f"{self.files_to_create} files to create, {self.dirs_to_create} directories to "
            f"create, {self.files_to_update} to update, {self.to_delete} to delete, "
            f"{self.attribute_changes} with changed attributes; "
            f"{self.bytes_to_transfer:,} of {self.total_size:,} bytes to transfer"
        )


# -- argv builders (pure) -----------------------------------------------------------------


def home_relative(path: str) -> str:
    """`~/x` -> `x` (rsync and SSH start in the user's home; no shell expands `~` for us)."""
    if path in ("~", "~/", ""):
        return "."
    if path.startswith("~/"):
        return path[2:].lstrip("/") or "."
    if path.startswith("~"):
        raise ValueError(f"{path!r}: ~user paths are not supported; give an absolute path")
    return path


def _as_directory(path: str) -> str:
    """The path with one trailing slash: rsync then copies the directory's contents."""
    path = home_relative(path)
    return path if path.endswith("/") else f"{path}/"


def _ssh_option_value(value: str) -> str:
    # ssh splits some option values (UserKnownHostsFile) on whitespace unless double-quoted.
    if '"' in value:
        raise ValueError(f"{value!r}: a double quote cannot appear in an SSH option path")
    return f'"{value}"' if any(c.isspace() for c in value) else value


def ssh_argv(source: RemoteEndpoint) -> list[str]:
    """The ssh command the receiving host's rsync uses to reach the sending host."""
    argv = [
        "ssh",
        "-p",
        str(source.port),
        "-o",
        "BatchMode=yes",
        "-o",
        "StrictHostKeyChecking=yes",
        "-o",
        f"UserKnownHostsFile={_ssh_option_value(source.known_hosts)}",
        "-o",
        f"ConnectTimeout={source.connect_timeout}",
        # Never the default ~/.ssh/id_* keys: ssh falls back to them when the -i file is
        # missing, which would hide a wrong key path behind a key nobody chose.
        "-o",
        "IdentityFile=none",
    ]
    if source.key_path is not None:
        argv += ["-i", source.key_path, "-o", "IdentitiesOnly=yes"]
    return argv


def source_spec(source: RemoteEndpoint) -> str:
    """`user@address:path/` (IPv6 addresses in brackets)."""
    address = f"[{source.address}]" if ":" in source.address else source.address
    return f"{source.user}@{address}:{_as_directory(source.path)}"


def rsync_options(options: CopyOptions) -> list[str]:
    """The options shared by a copy and its plan, so that the plan shows what the copy does."""
    argv = ["-a"]
    if options.hard_links:
        argv.append("-H")
    if options.acls:
        argv.append("--acls")
    if options.xattrs:
        argv.append("--xattrs")
    if options.numeric_ids:
        argv.append("--numeric-ids")
    if not options.owner:
        argv.append("--no-owner")
    if not options.group:
        argv.append("--no-group")
    partial_dir = options.partial_dir or PARTIAL_DIR
    if options.partial_dir is not None and not options.partial_dir.startswith("/"):
        raise ValueError(f"{options.partial_dir!r}: a copy's own partial directory is absolute")
    argv += ["--partial", f"--partial-dir={partial_dir}", "--protect-args"]
    if options.delete:
        argv.append("--delete")
    if options.checksum:
        argv.append("--checksum")
    argv += [f"--include={pattern}" for pattern in options.includes]
    argv += [f"--exclude={pattern}" for pattern in options.excludes]
    if options.link_dest is not None:
        argv.append(f"--link-dest={options.link_dest}")
    if options.backup_dir is not None:
        argv += ["--backup", f"--backup-dir={options.backup_dir}"]
    if options.bwlimit_kib is not None:
        argv.append(f"--bwlimit={options.bwlimit_kib}")
    if options.io_timeout is not None:
        argv.append(f"--timeout={options.io_timeout}")
    return argv


def _paths(source: RemoteEndpoint, dest_path: str) -> list[str]:
    return ["--", source_spec(source), _as_directory(dest_path)]


def copy_argv(source: RemoteEndpoint, dest_path: str, options: CopyOptions) -> list[str]:
    """rsync pulling the contents of `source.path` into `dest_path` on the receiving host.

    `--no-inc-recursive` makes rsync list the whole tree before sending, so that the overall
    percentage of `--info=progress2` is measured against the real total from the start.
    """
    return [
        "rsync",
        *rsync_options(options),
        "-e",
        shlex.join(ssh_argv(source)),
        "--no-inc-recursive",
        "--info=progress2,stats2",
        "--no-human-readable",
        *_paths(source, dest_path),
    ]


def plan_argv(source: RemoteEndpoint, dest_path: str, options: CopyOptions) -> list[str]:
    """The same copy as a dry run that itemizes each change and changes nothing."""
    return [
        "rsync",
        *rsync_options(options),
        "-e",
        shlex.join(ssh_argv(source)),
        "--dry-run",
        "--itemize-changes",
        "--out-format=%i %n",
        "--info=stats2",
        "--no-human-readable",
        *_paths(source, dest_path),
    ]


# -- output parsers (pure) ----------------------------------------------------------------

_PROGRESS = re.compile(
    r"^\s*(?P<bytes>[\d,.']+)\s+(?P<percent>\d+)%\s+"
    r"(?P<rate>[\d.,]+)(?P<unit>[kMGTP]?B)/s\s+"
    r"(?P<eta>\d+:\d{2}:\d{2}|\?+:\?+:\?+)"
    r"(?:\s+\(xfr#(?P<xfr>\d+),\s+(?:ir|to)-chk=(?P<left>\d+)/(?P<total>\d+)\))?\s*$"
)
_UNITS = {"B": 1, "kB": 1024, "MB": 1024**2, "GB": 1024**3, "TB": 1024**4, "PB": 1024**5}


def _integer(text: str) -> int:
    # Digit grouping depends on rsync's -h level and locale; we ask for none but accept any.
    return int(re.sub(r"[,.']", "", text))


def parse_progress(line: str) -> CopyProgress | None:
    """A `--info=progress2` line as a `CopyProgress`, or None for any other line."""
    m = _PROGRESS.match(line)
    if m is None:
        return None
    eta_text = m["eta"]
    eta = None
    if "?" not in eta_text:
        hours, minutes, seconds = (int(part) for part in eta_text.split(":"))
        eta = hours * 3600 + minutes * 60 + seconds
    rate = float(m["rate"].replace(",", ".")) * _UNITS[m["unit"]]
    return CopyProgress(
        bytes=_integer(m["bytes"]),
        percent=int(m["percent"]),
        rate=rate,
        eta_seconds=eta,
        transfers=int(m["xfr"]) if m["xfr"] else None,
        to_check=int(m["left"]) if m["left"] else None,
        total_files=int(m["total"]) if m["total"] else None,
    )


@dataclass
class ProgressParser:
    """Turns rsync's stdout, fed in chunks as they arrive, into `CopyProgress` events.

    progress2 rewrites its line with carriage returns; a line may be split across chunks.
    """

    on_progress: Callable[[CopyProgress], None] | None = None
    last: CopyProgress | None = None
    _pending: str = field(default="", repr=False)

    def feed(self, chunk: str) -> None:
        self._pending += chunk
        *lines, self._pending = re.split(r"[\r\n]", self._pending)
        for line in lines:
            self._line(line)

    def close(self) -> None:
        self._line(self._pending)
        self._pending = ""

    def _line(self, line: str) -> None:
        event = parse_progress(line)
        if event is None or event == self.last:
            return
        self.last = event
        if self.on_progress is not None:
            self.on_progress(event)


_STATS_FIELDS = {
    "Number of files": "files",
    "Number of created files": "created",
    "Number of deleted files": "deleted",
    "Number of regular files transferred": "files_transferred",
    "Total file size": "total_size",
    "Total transferred file size": "transferred_size",
    "Literal data": "literal_bytes",
    "Matched data": "matched_bytes",
    "Total bytes sent": "bytes_sent",
    "Total bytes received": "bytes_received",
}
_STATS_LINE = re.compile(r"^(?P<label>[A-Za-z ]+): (?P<number>[\d,.']+)(?: bytes)?\b", re.M)


def parse_stats(output: str) -> TransferStats | None:
    """rsync's `--stats` block as `TransferStats`; None when the output has none."""
    values: dict[str, int] = {}
    for m in _STATS_LINE.finditer(output):
        name = _STATS_FIELDS.get(m["label"])
        if name is not None:
            values[name] = _integer(m["number"])
    if "total_size" not in values:
        return None
    return TransferStats(**values)


_ITEM = re.compile(r"^(?P<flags>[<>ch.][fdLDS][ .+?a-zA-Z]{9}|\*deleting  ) (?P<path>.+)$")
_ESCAPED = re.compile(r"\\#([0-7]{3})")


def _unescape(name: str) -> str:
    # rsync prints non-printable bytes of file names as \#ooo (octal).
    if "\\#" not in name:
        return name
    raw = bytearray()
    position = 0
    for m in _ESCAPED.finditer(name):
        raw += name[position : m.start()].encode()
        raw.append(int(m[1], 8))
        position = m.end()
    raw += name[position:].encode()
    return raw.decode("utf-8", errors="replace")


def parse_itemized(output: str) -> tuple[ItemizedChange, ...]:
    """The `--itemize-changes --out-format='%i %n'` lines of rsync's output, in its order."""
    changes = []
    for line in output.splitlines():
        m = _ITEM.match(line)
        if m is None:
            continue
        flags, path = m["flags"], _unescape(m["path"])
        if flags.startswith("*"):
            kind: ChangeKind = "dir" if path.endswith("/") else "file"
            changes.append(ItemizedChange(path, "delete", kind, flags=flags.strip()))
            continue
        kind = _KINDS[flags[1]]
        attributes = flags[2:]
        action: ChangeAction
        if flags[0] == ".":
            action = "attributes"
        elif attributes.startswith("+"):
            action = "create"
        else:
            action = "update"
        changes.append(ItemizedChange(path, action, kind, hard_link=flags[0] == "h", flags=flags))
    return tuple(changes)


def exit_meaning(code: int) -> str:
    return EXIT_MEANINGS.get(code, "unknown rsync exit code")


# -- running ------------------------------------------------------------------------------


def _hint(result: CommandResult, receiver: str, source: RemoteEndpoint) -> str:
    """A sentence saying how to fix the usual causes, read from rsync's and ssh's messages."""
    err = result.stderr
    who = f"{source.user}@{source.address} (port {source.port})"
    keyscan = shlex.join(["ssh-keyscan", "-p", str(source.port), source.address])
    if "REMOTE HOST IDENTIFICATION HAS CHANGED" in err:
        return (
            f"the host key of {source.name} ({source.address}:{source.port}) changed since "
            f"{receiver} recorded it in {source.known_hosts}. If {source.name} was reinstalled, "
            f"check its new fingerprint with its administrator and replace its line in "
            f"{source.known_hosts} on {receiver} ({keyscan}); otherwise this may be an attack: "
            f"stop"
        )
    if "Host key verification failed" in err:
        return (
            f"{receiver} does not know the host key of {source.name} "
            f"({source.address}:{source.port}): it is not in {source.known_hosts} on {receiver}. "
            f"Check {source.name}'s key fingerprint with its administrator, then add it on "
            f"{receiver}: {keyscan} >> {source.known_hosts}"
        )
    if source.key_path is not None and "Identity file" in err and "not accessible" in err:
        return (
            f"the key {source.key_path} does not exist on {receiver} (or cannot be read): fix "
            f"the key path, or leave it empty to use the forwarded agent"
        )
    if "Permission denied" in err and "publickey" in err:
        if source.key_path is not None:
            return (
                f"{source.name} refused the key {source.key_path} of {receiver}: add its public "
                f"key to ~{source.user}/.ssh/authorized_keys on {source.name}"
            )
        return (
            f"{source.name} refused {who} with the forwarded agent: run the copy with agent "
            f"forwarding, with an agent that holds a key authorized on {source.name} "
            f"(ssh-add -l), or give a key path on {receiver}"
        )
    if "Connection refused" in err or "timed out" in err or "Could not resolve" in err:
        return f"{receiver} cannot reach {who}: check the address and port and that sshd runs"
    if "change_dir" in err and "failed" in err:
        return (
            f"{source.path} does not exist on {source.name}, or {source.user} cannot read it: "
            f"check the path in the inventory"
        )
    if result.exit_code == 127 or ("rsync:" in err and "not found" in err):
        return f"install rsync on {receiver} and on {source.name}"
    return ""


def _failure(
    result: CommandResult, receiver: str, source: RemoteEndpoint, dest_path: str, what: str
) -> RsyncError:
    code = result.exit_code
    tail = "\n".join(result.stderr.strip().splitlines()[-20:])
    hint = _hint(result, receiver, source)
    message = (
        f"{what} of {source} to {receiver}:{dest_path} failed: rsync exit code {code} "
        f"({exit_meaning(code)})" + (f". {hint}" if hint else "") + (f"\n{tail}" if tail else "")
    )
    return RsyncError(message, receiver=receiver, exit_code=code)


def copy_tree(
    receiver: CommandRunner,
    source: RemoteEndpoint,
    dest_path: str,
    options: CopyOptions | None = None,
    on_progress: Callable[[CopyProgress], None] | None = None,
    *,
    timeout: float | None = None,
) -> CopyResult:
    """Make `dest_path` on the receiving host hold the contents of `source.path`.

    Runs rsync on `receiver`, pulling from the sending host; creates `dest_path` if needed;
    calls `on_progress` with each progress update. An interrupted copy resumes where it stopped
    when run again. Vanished source files (exit 24) give a result with `vanished_files=True`;
    any other failure raises `RsyncError`.
    """
    options = options or CopyOptions()
    log = logging.getLogger(f"Rsync[{receiver.name}]")
    dest = home_relative(dest_path)
    receiver.run(
        ["mkdir", "-p", "--", dest, *([options.partial_dir] if options.partial_dir else [])]
    )
    argv = copy_argv(source, dest, options)
    log.debug("copy %s -> %s: %s", source, dest, shlex.join(argv))
    parser = ProgressParser(on_progress)
    result = receiver.run(argv, check=False, timeout=timeout, on_output=parser.feed)
    parser.close()
    if result.exit_code not in (0, VANISHED_FILES):
        raise _failure(result, receiver.name, source, dest, "copy")
    stats = parse_stats(result.stdout)
    if stats is None:
        raise RsyncError(
            f"copy of {source} to {receiver.name}:{dest} ended without rsync's statistics; "
            f"check the rsync version on {receiver.name} (3.1 or later is needed)",
            receiver=receiver.name,
            exit_code=result.exit_code,
        )
    vanished = result.exit_code == VANISHED_FILES
    copied = CopyResult(
        source=str(source),
        receiver=receiver.name,
        dest_path=dest,
        stats=stats,
        seconds=result.seconds,
        vanished_files=vanished,
        warnings=result.stderr.strip() if vanished else "",
    )
    if vanished:
        log.warning(
            "copy of %s: some source files vanished during the copy (rsync exit 24); "
            "they were being changed or deleted on %s",
            source,
            source.name,
        )
    log.info(
        "copied %s -> %s: %d files transferred, %d bytes of data sent, %d bytes in all, %.1fs",
        source,
        dest,
        stats.files_transferred,
        stats.literal_bytes,
        stats.total_size,
        result.seconds,
    )
    return copied


def plan_copy(
    receiver: CommandRunner,
    source: RemoteEndpoint,
    dest_path: str,
    options: CopyOptions | None = None,
    *,
    timeout: float | None = None,
) -> CopyPlan:
    """What `copy_tree` would change, from a dry run on the receiving host (changes nothing)."""
    options = options or CopyOptions()
    dest = home_relative(dest_path)
    argv = plan_argv(source, dest, options)
    logging.getLogger(f"Rsync[{receiver.name}]").debug("plan %s", shlex.join(argv))
    result = receiver.run(argv, check=False, timeout=timeout)
    if result.exit_code not in (0, VANISHED_FILES):
        raise _failure(result, receiver.name, source, dest, "dry run")
    stats = parse_stats(result.stdout) or TransferStats()
    return CopyPlan(
        source=str(source),
        receiver=receiver.name,
        dest_path=dest,
        changes=parse_itemized(result.stdout),
        stats=stats,
    )
