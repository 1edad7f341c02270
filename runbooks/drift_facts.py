"""What production and the DRP server say about themselves, for the drift check: read-only.

One shell command per host (`facts_argv`) prints every section the comparison needs, each after
a `@@drift:NAME` line: /etc/os-release, the host's addresses (`hostname -I`), the TCP listeners
(`ss -ltnH`), digests of the SSH user's crontab, of /etc/crontab and of each /etc/cron.d file,
the output of the inventory's version commands, the file list (type, size, sha256) of each
configuration tree, and `df` of the file system holding each tree. File contents never leave the
host: only names, sizes and digests. The database servers' versions are asked over TCP from
here, on production's and the DRP's endpoints.

`parse_facts` is pure: unit tests feed it text.
"""

from __future__ import annotations

import contextlib
import ipaddress
import re
import shlex
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from providers.database import engine_for
from providers.dbcommon import DatabaseError
from providers.ssh import SshError
from runbooks import connect
from runbooks.errors import ProviderError
from runbooks.inventory import Database, DatabaseRole, Site

MARK = "@@drift:"
MISSING = "@@missing"
ABSENT = "@@absent"
UNREADABLE = "@@unreadable"
SUMS = "@@sums"
FILE = "@@file"  # the tree is a single file: its one entry is named ""
SIDES: tuple[DatabaseRole, DatabaseRole] = ("production", "drp")
WILDCARDS = frozenset({"*", "0.0.0.0", "::"})
LOOPBACK = frozenset({"127.0.0.1", "::1"})
ENGINE_NAMES = {"postgresql": "postgresql", "mysql": "mysql"}

_SCRIPT = r"""
m() { printf '\n%s%s\n' "@@drift:" "$1"; }
t() { if command -v timeout >/dev/null 2>&1; then timeout "$T" "$@"; else "$@"; fi; }
have() { command -v "$1" >/dev/null 2>&1 || [ -x "/usr/sbin/$1" ] || [ -x "/sbin/$1" ]; }
tree() {
  if [ -d "$1" ]; then d=$1; n=.; k=1
  elif [ -e "$1" ] || [ -L "$1" ]; then d=$(dirname -- "$1"); n=./$(basename -- "$1"); k=0
  else echo @@absent; return; fi
  cd -- "$d" 2>/dev/null || { echo @@unreadable; return; }
  [ "$k" = 1 ] || echo @@file
  find "$n" -mindepth "$k" \( -type f -o -type l \) -printf '%y\t%s\t%l\t%p\0' 2>/dev/null
  printf '\n@@sums\n'
  find "$n" -mindepth "$k" -type f -exec sha256sum -z -- {} + 2>/dev/null
  return 0
}
disk() {
  p=$1
  while [ ! -e "$p" ] && [ "$p" != / ] && [ "$p" != . ]; do p=$(dirname -- "$p"); done
  df -P -k -- "$p" 2>/dev/null | tail -n +2
}
m os; cat /etc/os-release 2>/dev/null || echo @@missing
m addr; hostname -I 2>/dev/null || echo @@missing
m listen; if have ss; then ss -H -l -t -n; else echo @@missing; fi
m crontab-user
if have crontab; then
  out=$(crontab -l 2>&1); rc=$?
  if [ "$rc" -eq 0 ]; then
    printf '%s %s\n' "$(printf '%s\n' "$out" | sha256sum | cut -d ' ' -f 1)" \
      "$(printf '%s\n' "$out" | grep -c -v -e '^[[:space:]]*#' -e '^[[:space:]]*$')"
  elif printf '%s' "$out" | grep -q 'no crontab for'; then echo @@absent
  else echo @@unreadable; fi
else echo @@missing; fi
m crontab-system
for f in /etc/crontab /etc/cron.d/*; do
  [ -f "$f" ] || continue
  if [ -r "$f" ]; then printf '%s %s\n' "$(sha256sum < "$f" | cut -d ' ' -f 1)" "$f"
  else printf '@@unreadable %s\n' "$f"; fi
done
"""


def facts_argv(
    configs: Sequence[str],
    disks: Sequence[str],
    versions: Sequence[str],
    *,
    command_seconds: float,
) -> list[str]:
    """The command run on each host: the script, then one section per configuration tree,
    tree whose disk is measured, and version command (in the order given)."""
    parts = [f"T={shlex.quote(f'{command_seconds:g}')}", _SCRIPT]
    for index, path in enumerate(configs):
        parts.append(f"m 'config {index}'; ( tree {shlex.quote(path)} )")
    for index, path in enumerate(disks):
        parts.append(f"m 'disk {index}'; disk {shlex.quote(path)}")
    for index, command in enumerate(versions):
        parts.append(
            f"m 'version {index}'; t sh -c {shlex.quote(command)} </dev/null 2>&1; "
            "printf '\\n@@rc %s\\n' \"$?\""
        )
    parts.append("m end")
    return ["sh", "-c", "\n".join(parts)]


def parse_sections(text: str) -> dict[str, str]:
    """`@@drift:NAME` sections of the script's output, each as its raw text."""
    sections: dict[str, str] = {}
    pieces = re.split(rf"\n{re.escape(MARK)}([^\n]*)\n", "\n" + text)
    for name, body in zip(pieces[1::2], pieces[2::2], strict=True):
        sections[name.strip()] = body
    return sections


# -- what a host says --------------------------------------------------------------------------


@dataclass(frozen=True)
class FileEntry:
    """One file of a configuration tree: a regular file or a symbolic link, never its content."""

    kind: str  # "f" (a file) or "l" (a link)
    size: int
    target: str = ""  # a link's target
    digest: str | None = None  # a file's sha256; None: it could not be read

    @property
    def shown(self) -> str:
        if self.kind == "l":
            return f"link to {self.target}"
        if self.digest is None:
            return f"{self.size} bytes, unreadable"
        return f"{self.size} bytes, sha256 {self.digest[:12]}"

    def same_as(self, other: FileEntry) -> bool:
        if self.kind != other.kind:
            return False
        if self.kind == "l":
            return self.target == other.target
        return self.size == other.size and self.digest == other.digest


@dataclass(frozen=True)
class Disk:
    """The file system holding a tree (or the nearest existing directory above it)."""

    mount: str
    total: int  # bytes
    used: int
    free: int


@dataclass(frozen=True)
class CommandOutput:
    exit_code: int
    output: str

    @property
    def lines(self) -> list[str]:
        return [line.strip() for line in self.output.splitlines() if line.strip()]

    @property
    def shown(self) -> str:
        """The first line of output (what a version command says first), and the exit code
        when it is not 0."""
        lines = self.lines
        first = lines[0][:160] if lines else "no output"
        more = " …" if len(lines) > 1 else ""
        code = f" (exit {self.exit_code})" if self.exit_code else ""
        return f"{first}{more}{code}"


@dataclass
class HostFacts:
    """What one host said; `unread` names what it could not tell, and why."""

    host: str  # production | drp
    os: dict[str, str] = field(default_factory=dict)  # PRETTY_NAME, VERSION_ID
    addresses: set[str] = field(default_factory=set)  # its own (hostname -I, inventory)
    listening: list[tuple[str, int]] = field(default_factory=list)
    user_crontab: str = ""  # "sha256 N" | ABSENT | MISSING | UNREADABLE
    system_crontabs: dict[str, str] = field(default_factory=dict)  # path -> sha256 | UNREADABLE
    versions: dict[str, CommandOutput] = field(default_factory=dict)
    # Per tree: its files by path relative to it ("" for a tree that is one file); None: absent.
    configs: dict[str, dict[str, FileEntry] | None] = field(default_factory=dict)
    disks: dict[str, Disk] = field(default_factory=dict)
    unread: dict[str, str] = field(default_factory=dict)  # subject -> why


def _os_release(body: str) -> dict[str, str]:
    values: dict[str, str] = {}
    for line in body.splitlines():
        key, sep, value = line.partition("=")
        if sep and key.strip() in ("PRETTY_NAME", "VERSION_ID", "NAME", "VERSION"):
            try:
                words = shlex.split(value)
            except ValueError:
                words = [value.strip().strip("\"'")]
            values[key.strip()] = " ".join(words)
    return values


def _listening(body: str) -> list[tuple[str, int]]:
    found = []
    for line in body.splitlines():
        parts = line.split()
        if len(parts) < 4:
            continue
        address, _, port = parts[3].rpartition(":")
        address = address.strip("[]").split("%")[0]
        if port.isdigit():
            found.append((address, int(port)))
    return found


def _tree(body: str) -> dict[str, FileEntry] | str | None:
    """A configuration tree's files (None: absent; a str: why it cannot be read)."""
    text = body.strip("\n")
    if text == ABSENT:
        return None
    if text == UNREADABLE:
        return "its directory cannot be entered"
    single = text.startswith(f"{FILE}\n")
    if single:
        body = body.replace(f"{FILE}\n", "", 1)
    listing, _, sums = body.partition(f"\n{SUMS}\n")
    digests: dict[str, str] = {}
    for record in sums.split("\0"):
        record = record.strip("\n")
        if len(record) > 66 and record[64:66] == "  ":
            digests[_relative(record[66:])] = record[:64]
    files: dict[str, FileEntry] = {}
    for record in listing.split("\0"):
        record = record.lstrip("\n")
        parts = record.split("\t", 3)
        if len(parts) != 4 or not parts[1].isdigit():
            continue
        kind, size, target, name = parts
        rel = _relative(name)
        digest = digests.get(rel) if kind == "f" else None
        files["" if single else rel] = FileEntry(kind, int(size), target, digest)
    return files


def _relative(name: str) -> str:
    return name[2:] if name.startswith("./") else name.lstrip(".")


def _disk(body: str) -> Disk | None:
    lines = [line for line in body.splitlines() if line.strip()]
    if not lines:
        return None
    parts = lines[-1].split(None, 5)
    if len(parts) < 6 or not all(p.isdigit() for p in parts[1:4]):
        return None
    return Disk(parts[5], int(parts[1]) * 1024, int(parts[2]) * 1024, int(parts[3]) * 1024)


def _version(body: str) -> CommandOutput:
    text, sep, code = body.rstrip("\n").rpartition("\n@@rc ")
    if not sep:  # the command printed nothing: the marker is at the start
        text, sep, code = "", "@@rc ", body.strip().removeprefix("@@rc ")
    try:
        exit_code = int(code.strip())
    except ValueError:
        exit_code = -1
    return CommandOutput(exit_code, text.strip("\n"))


def parse_facts(
    host: str,
    text: str,
    *,
    configs: Sequence[str],
    disks: Sequence[str],
    versions: Sequence[str],
) -> HostFacts:
    """The facts of one host from its script's output (the trees and commands in the order
    they were given to `facts_argv`)."""
    sections = parse_sections(text)
    facts = HostFacts(host)
    body = sections.get("os", "")
    facts.os = _os_release(body)
    if not facts.os.get("PRETTY_NAME") and not facts.os.get("VERSION_ID"):
        facts.unread["os release"] = "/etc/os-release is missing or empty"
    addresses = sections.get("addr", "").strip()
    if addresses and addresses != MISSING:
        facts.addresses = set(addresses.split())
    listen = sections.get("listen", "").strip()
    if listen == MISSING:
        facts.unread["listening"] = "ss is not installed"
    else:
        facts.listening = _listening(listen)
    facts.user_crontab = sections.get("crontab-user", "").strip() or UNREADABLE
    for line in sections.get("crontab-system", "").splitlines():
        digest, _, path = line.strip().partition(" ")
        if path:
            facts.system_crontabs[path] = digest
    for index, path in enumerate(configs):
        tree = _tree(sections.get(f"config {index}", UNREADABLE))
        if isinstance(tree, str):
            facts.unread[f"config {path}"] = tree
        else:
            facts.configs[path] = tree
    for index, path in enumerate(disks):
        disk = _disk(sections.get(f"disk {index}", ""))
        if disk is None:
            facts.unread[f"disk {path}"] = "df gave no answer"
        else:
            facts.disks[path] = disk
    for index, name in enumerate(versions):
        facts.versions[name] = _version(sections.get(f"version {index}", "\n@@rc -1\n"))
    return facts


# -- gathering ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class ServerVersion:
    """A database server's version on production and on the DRP server (None: not read)."""

    what: str  # "database postgresql (app_users)"
    production: str | None
    drp: str | None
    unread: str = ""  # why a side was not read


@dataclass
class Gathered:
    production: HostFacts
    drp: HostFacts
    databases: list[ServerVersion]


def config_trees(site: Site) -> list[str]:
    """Every configuration tree of the inventory, once each."""
    return list(dict.fromkeys(t.path for env in site.environments for t in env.configs))


def all_trees(site: Site) -> list[str]:
    """Every tree (files and configurations) of the inventory, once each."""
    paths = [t.path for env in site.environments for t in (*env.files, *env.configs)]
    return list(dict.fromkeys(paths))


def _own_addresses(site: Site, role: DatabaseRole) -> set[str]:
    host = connect.host(site, role)
    found = {str(host.public_ipv4)}
    if host.public_ipv6 is not None:
        found.add(str(host.public_ipv6))
    # A host name is left out: the host's own list (hostname -I) has its addresses.
    with contextlib.suppress(ValueError):
        found.add(str(ipaddress.ip_address(host.address)))
    return found


def read_host(site: Site, pool: connect.HostPool, role: DatabaseRole) -> HostFacts:
    """One host's facts, over SSH (one read-only command); ProviderError when the host cannot
    be asked."""
    configs, disks = config_trees(site), all_trees(site)
    versions = list(site.drift.versions)
    argv = facts_argv(
        configs,
        disks,
        [site.drift.versions[name] for name in versions],
        command_seconds=site.drift.command_seconds,
    )
    name = connect.host_name(role)
    try:
        result = pool[role].run(argv, check=False)
    except SshError as err:
        raise ProviderError(f"cannot read {name}'s facts: {err}") from err
    if f"\n{MARK}end\n" not in result.stdout:
        raise ProviderError(
            f"the drift facts of {name} are incomplete (exit {result.exit_code}): "
            f"{result.stderr.strip()[:200] or 'no error output'}"
        )
    facts = parse_facts(
        name,
        result.stdout,
        configs=configs,
        disks=disks,
        versions=versions,
    )
    facts.addresses |= _own_addresses(site, role)
    return facts


def _database_groups(site: Site) -> list[tuple[str, Database, list[str]]]:
    """One database per server (engine, production's and the DRP's address and port), with the
    names of the inventory's databases it holds."""
    groups: dict[tuple[str, str, str, int], tuple[Database, list[str]]] = {}
    for env in site.environments:
        for db in env.databases:
            key = (
                db.engine,
                db.address_on("production", site.hosts.production),
                db.address_on("drp", site.hosts.drp),
                db.port,
            )
            groups.setdefault(key, (db, []))[1].append(db.name)
    return [
        (f"database {ENGINE_NAMES[db.engine]} ({', '.join(names)})", db, names)
        for db, names in groups.values()
    ]


def server_version(site: Site, db: Database, role: DatabaseRole) -> str:
    """The version the database server says it is (raises DatabaseError when it does not
    answer)."""
    engine = engine_for(db.engine)
    endpoint = connect.db_endpoint(site, db, role)
    return engine.server_version(endpoint, connect.database_password(site, db))


def _read_versions(site: Site, what: str, db: Database) -> ServerVersion:
    values: dict[str, str | None] = {}
    why = []
    for role in SIDES:
        try:
            values[role] = server_version(site, db, role)
        except (DatabaseError, ValueError) as err:
            values[role] = None
            why.append(f"{connect.host_name(role)}: {err}")
    return ServerVersion(what, values["production"], values["drp"], "; ".join(why))


def gather(site: Site, pool: connect.HostPool) -> Gathered:
    """Both hosts' facts and the database servers' versions, read side by side."""
    groups = _database_groups(site)
    with ThreadPoolExecutor(max_workers=2 + len(groups), thread_name_prefix="drift") as workers:
        hosts = {role: workers.submit(read_host, site, pool, role) for role in SIDES}
        versions = [workers.submit(_read_versions, site, what, db) for what, db, _ in groups]
        return Gathered(
            hosts["production"].result(),
            hosts["drp"].result(),
            [future.result() for future in versions],
        )
