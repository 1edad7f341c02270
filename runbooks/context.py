"""What every step of one operation shares, whatever its direction: inventory, connections,
the DNS provider, the ticket backends, and the addresses of each side.

Steps name hosts by their inventory role ("drp", "production", a backup server); they never
assume which side is the source and which the target: a runbook gives them roles.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from providers.dns_base import BaseDnsProvider
from providers.tickets import TicketBackend
from runbooks import connect
from runbooks.errors import StepFailed
from runbooks.inventory import DnsRecord, Role, Site
from runbooks.services import dns_provider, ticket_backends


@dataclass
class OperationContext:
    """One operation's shared context. Connections open on first use; `close()` ends them."""

    site: Site
    operation_id: str
    kind: str  # activate | drill | return
    force: bool = False
    bwlimit_kib: int | None = None  # spare a shared link: KiB/s per copy (None: full speed)
    pool: connect.HostPool = field(init=False)
    _dns: BaseDnsProvider | None = field(default=None, init=False)
    _tickets: list[TicketBackend] | None = field(default=None, init=False)

    def __post_init__(self) -> None:
        self.pool = connect.HostPool(self.site)

    def use_connections(self, pool: connect.HostPool) -> None:
        """Run on `pool`'s connections, those of the whole operation (its record, its lock),
        which their owner closes, rather than on connections of the context's own."""
        self.pool.close()
        self.pool = pool.borrowed()

    @property
    def dns(self) -> BaseDnsProvider:
        if self._dns is None:
            self._dns = dns_provider(self.site)
        return self._dns

    @property
    def tickets(self) -> list[TicketBackend]:
        if self._tickets is None:
            self._tickets = ticket_backends(self.site)
        return self._tickets

    def public_address(self, role: Role, record_type: str = "A") -> str:
        """Where the public reaches the host playing `role`: IPv4 for A, IPv6 for AAAA."""
        h = connect.host(self.site, role)
        if record_type == "AAAA":
            if h.public_ipv6 is None:  # the inventory check refuses this; never switch to nothing
                raise StepFailed(
                    f"an AAAA record is switched but {connect.host_name(role)} has no public_ipv6"
                )
            return str(h.public_ipv6)
        return str(h.public_ipv4)

    def record_target(self, role: Role, record: DnsRecord) -> str:
        return self.public_address(role, record.type)

    def close(self) -> None:
        self.pool.close()
