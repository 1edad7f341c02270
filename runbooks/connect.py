"""From the inventory to the providers: SSH runners, rsync endpoints and database endpoints.

Everything here is built from a `Site` and a host role. Secrets are resolved at the last moment
(`database_password`) and stay masked `Secret` values; nothing here logs or stores them.

Server-to-server copies: the receiving host runs rsync and logs in to the sending host itself.
With a key file in the inventory (`key: path`), the receiving host uses its own key
`TRANSFER_KEY` (on that host), whose public half must be authorized on the sending host; with
`key: agent`, drp forwards the operator's ssh-agent to the receiving host instead and no private
key lives on the servers. Either way, the sending host's key is checked against the receiving
user's `~/.ssh/known_hosts`.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path
from types import TracebackType

from providers.commands import CommandRunner, WithTimeout
from providers.dbcommon import DbEndpoint
from providers.rsync import RemoteEndpoint
from providers.ssh import SshHost, SshTarget
from runbooks import manifest as mf
from runbooks.backups import BackupServer
from runbooks.errors import ConfigError
from runbooks.inventory import (
    Database,
    DatabaseRole,
    Environment,
    Host,
    Role,
    Site,
    Tree,
    load_site,
)
from runbooks.manifest import TreeSection
from runbooks.secrets import Secret

CONFIG_ENV = "DRP_CONFIG"  # names the inventory when no --config / `config` is given
TRANSFER_KEY = "~/.ssh/id_ed25519"  # on a receiving host: the key it logs in to senders with
BACKUP_ROLES: tuple[Role, Role] = ("backup_even", "backup_odd")


def site_from(config: str | Path | None) -> Site:
    """The inventory named by `config`, or by the DRP_CONFIG environment variable."""
    path = config or os.environ.get(CONFIG_ENV)
    if not path:
        raise ConfigError(
            f"no inventory given: pass --config FILE (flow parameter `config`) or set "
            f"{CONFIG_ENV}=FILE in the environment"
        )
    return load_site(path)


def host_name(role: Role) -> str:
    """The name messages, manifests and logs give a host: its role with a dash (backup-even)."""
    return role.replace("_", "-")


def host(site: Site, role: Role) -> Host:
    return site.hosts.by_role()[role]


def known_hosts(site: Site) -> Path:
    return Path(site.known_hosts)


def ssh_target(site: Site, role: Role) -> SshTarget:
    h = host(site, role)
    return SshTarget(
        name=host_name(role),
        address=h.address,
        port=h.port,
        user=h.user,
        key_path=h.key_file,
        known_hosts=known_hosts(site),
        command_timeout=site.timeouts.command_seconds,
    )


def uses_agent(site: Site, role: Role) -> bool:
    return host(site, role).key_file is None


def ssh_host(site: Site, role: Role) -> SshHost:
    """An SSH runner for the host; with `key: agent`, the agent is forwarded (for pulls)."""
    return SshHost(ssh_target(site, role), forward_agent=uses_agent(site, role))


def remote_endpoint(site: Site, sender: Role, path: str, *, receiver: Role) -> RemoteEndpoint:
    """`path` on the sending host, as rsync on the receiving host reaches it."""
    h = host(site, sender)
    return RemoteEndpoint(
        name=host_name(sender),
        address=h.address,
        port=h.port,
        user=h.user,
        path=path,
        key_path=None if uses_agent(site, receiver) else TRANSFER_KEY,
    )


def one_file_filter(name: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """rsync (includes, excludes) that copy the one file `name` of a directory and nothing else.

    rsync reads a pattern holding `*`, `?` or `[` as a wildcard, so `report[1].pdf` would match
    nothing and the copy would succeed with no file; escaped, the name matches only itself.
    """
    if any(c in name for c in "*?["):
        name = "".join(f"\\{c}" if c in "*?[\\" else c for c in name)
    return (f"/{name}",), ("*",)


# -- databases ---------------------------------------------------------------------------------


def db_endpoint(site: Site, database: Database, role: DatabaseRole) -> DbEndpoint:
    """Where `database` lives on the host playing `role`, over TCP."""
    h = host(site, role)
    return DbEndpoint(
        host_name=host_name(role),
        address=database.address_on(role, h),
        port=database.port,
        user=database.user,
        dbname=database.name,
    )


def database_password(site: Site, database: Database) -> Secret:
    """The database user's password, resolved now and masked."""
    return site.resolve_secret(database.password)


# -- environments ------------------------------------------------------------------------------


def environment_trees(env: Environment) -> list[tuple[TreeSection, str, Tree]]:
    """Every file and config tree of the environment with its directory name in a backup set."""
    result: list[tuple[TreeSection, str, Tree]] = []
    for section, trees in ((TreeSection.FILES, env.files), (TreeSection.CONFIGS, env.configs)):
        names = mf.tree_names([t.path for t in trees])
        result += [(section, name, tree) for name, tree in zip(names, trees, strict=True)]
    return result


def backup_role(site: Site, name: str) -> Role:
    """The role of a backup server given by role (backup_even) or host name (backup-even)."""
    for role in BACKUP_ROLES:
        if name in (role, host_name(role)):
            return role
    raise ConfigError(
        f"no backup server named {name!r}", expected="backup-even or backup-odd (or the role names)"
    )


# -- pools of open connections -----------------------------------------------------------------


class HostPool:
    """One SSH connection per role, opened at first use, closed together (a context manager)."""

    def __init__(self, site: Site) -> None:
        self.site = site
        self._hosts: dict[Role, SshHost] = {}

    def __getitem__(self, role: Role) -> SshHost:
        if role not in self._hosts:
            self._hosts[role] = ssh_host(self.site, role)
        return self._hosts[role]

    def connect_soon(self, roles: Iterable[Role]) -> None:
        """Start connecting to these hosts side by side, in the background: each connection
        (TCP, key exchange, login) takes about 0.1 s, and the first command on each host then
        finds it open. A host that cannot be reached is said by its first command, as usual."""
        for role in roles:
            self[role].connect_soon()

    def borrowed(self) -> HostPool:
        """The same connections, for a user that does not own them: its `close()` leaves them
        open for this pool's owner, who closes them."""
        view = _BorrowedPool(self.site)
        view._hosts = self._hosts
        return view

    def copying(self, role: Role) -> CommandRunner:
        """The host's runner for a copy of a tree (its dry runs, checksums, set-asides): the
        inventory's `timeouts.copy_seconds` per command, not the short default."""
        return WithTimeout(self[role], self.site.timeouts.copy_seconds)

    def database_work(self, role: Role) -> CommandRunner:
        """The host's runner for a dump, restore, move or set-aside of a database
        (`timeouts.database_seconds` per command)."""
        return WithTimeout(self[role], self.site.timeouts.database_seconds)

    def close(self) -> None:
        for h in self._hosts.values():
            h.close()
        self._hosts.clear()

    def __enter__(self) -> HostPool:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class _BorrowedPool(HostPool):
    """A view on another pool's connections (`HostPool.borrowed`)."""

    def close(self) -> None:
        """Left to the owner of the connections."""


def backup_servers(site: Site, pool: HostPool | None = None) -> list[BackupServer]:
    """Both backup servers, as the catalogue reads them."""
    pool = pool or HostPool(site)
    return [BackupServer(host_name(r), r, site.backups.area, pool[r]) for r in BACKUP_ROLES]
