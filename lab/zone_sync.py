"""Between the OVH emulator's records and the Knot zone: read by AXFR, write by RFC 2136 update.

Both directions are TSIG-signed with the lab key. The SOA is Knot's business (it bumps the serial
on every update), so it is never read into records nor written back.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from dataclasses import dataclass

import dns.exception
import dns.message
import dns.name
import dns.query
import dns.rcode
import dns.rdata
import dns.rdataclass
import dns.rdataset
import dns.rdatatype
import dns.tsig
import dns.update
import dns.zone

logger = logging.getLogger("ovh-emulator.zone-sync")

# Record types of OVH's DomainZoneFieldTypeEnum that are plain DNS types. OVH's pseudo-types
# (SPF, DKIM, DMARC) are stored as TXT by OVH and are not emulated.
FIELD_TYPES = (
    "A",
    "AAAA",
    "CAA",
    "CNAME",
    "DNAME",
    "LOC",
    "MX",
    "NAPTR",
    "NS",
    "PTR",
    "SRV",
    "SSHFP",
    "TLSA",
    "TXT",
)
DEFAULT_TTL = 60  # OVH's ttl 0 means "the zone's default"; the lab zone's is 60


class ZoneSyncError(Exception):
    """Knot could not be read or refused the update; the message says which and why."""


@dataclass(frozen=True)
class Record:
    """One OVH zone record, as the API shows it (minus `zone`, which the zone holds)."""

    id: int
    sub_domain: str  # "" for the zone apex
    field_type: str
    target: str
    ttl: int  # 0 means the zone's default

    def api(self, zone: str) -> dict[str, object]:
        """The record object of OVH's API (`domain.zone.Record`)."""
        return {
            "id": self.id,
            "zone": zone,
            "subDomain": self.sub_domain,
            "fieldType": self.field_type,
            "target": self.target,
            "ttl": self.ttl,
        }

    @classmethod
    def from_api(cls, data: dict[str, object]) -> Record:
        return cls(
            id=int(str(data["id"])),
            sub_domain=str(data["subDomain"]),
            field_type=str(data["fieldType"]),
            target=str(data["target"]),
            ttl=int(str(data["ttl"])),
        )


@dataclass(frozen=True)
class DnsServer:
    """The authoritative server to read from and write to, and the key it wants."""

    address: str
    port: int
    zone: str
    key: dns.tsig.Key
    timeout: float = 5.0

    @property
    def origin(self) -> dns.name.Name:
        return dns.name.from_text(self.zone)


def owner_name(sub_domain: str, origin: dns.name.Name) -> dns.name.Name:
    """OVH's subDomain ("" for the apex) as an absolute owner name in the zone."""
    if sub_domain == "":
        return origin
    return dns.name.from_text(sub_domain, origin)


def parse_target(field_type: str, target: str, origin: dns.name.Name) -> dns.rdata.Rdata:
    """The record's target as DNS data; relative names are taken relative to the zone, as OVH does.

    Raises ValueError with a reason when the target does not fit the type.
    """
    text = target
    if field_type == "TXT" and not target.startswith('"'):
        # OVH accepts TXT targets without quotes; one string, spaces included.
        text = '"' + target.replace("\\", "\\\\").replace('"', '\\"') + '"'
    try:
        return dns.rdata.from_text(
            dns.rdataclass.IN, field_type, text, origin=origin, relativize=False
        )
    except (dns.exception.DNSException, ValueError) as err:
        raise ValueError(f"invalid target {target!r} for a {field_type} record: {err}") from err


def read_zone(server: DnsServer) -> dns.zone.Zone:
    """The zone as the server serves it, by TSIG-signed AXFR."""
    zone = dns.zone.Zone(server.origin, relativize=False)
    query = dns.message.make_query(server.origin, dns.rdatatype.AXFR)
    query.use_tsig(server.key)
    try:
        dns.query.inbound_xfr(
            server.address, zone, query=query, port=server.port, timeout=server.timeout
        )
    except (dns.exception.DNSException, OSError) as err:
        raise ZoneSyncError(
            f"AXFR of {server.zone} from {server.address}:{server.port} failed: {err}"
        ) from err
    return zone


def records_from_zone(zone: dns.zone.Zone, first_id: int) -> list[Record]:
    """Every record but the SOA, with ids from first_id, in a stable order (name, type, data)."""
    origin = zone.origin
    assert origin is not None
    found: list[tuple[str, str, str, int]] = []
    for name, rdataset in zone.iterate_rdatasets():
        if rdataset.rdtype == dns.rdatatype.SOA:
            continue
        sub_domain = "" if name == origin else name.relativize(origin).to_text()
        field_type = dns.rdatatype.to_text(rdataset.rdtype)
        for rdata in rdataset:
            target = rdata.to_text(origin=origin, relativize=False)
            found.append((sub_domain, field_type, target, rdataset.ttl))
    found.sort()
    return [Record(first_id + i, *fields) for i, fields in enumerate(found)]


RRsets = dict[tuple[dns.name.Name, dns.rdatatype.RdataType], dns.rdataset.Rdataset]


def rrsets_of_zone(zone: dns.zone.Zone) -> RRsets:
    return {
        (name, rdataset.rdtype): rdataset
        for name, rdataset in zone.iterate_rdatasets()
        if rdataset.rdtype != dns.rdatatype.SOA
    }


def rrsets_of_records(records: list[Record], origin: dns.name.Name) -> RRsets:
    """Records grouped by owner and type. DNS has one TTL per RRset: the smallest one wins."""
    grouped: dict[tuple[dns.name.Name, dns.rdatatype.RdataType], list[Record]] = defaultdict(list)
    for record in records:
        rdtype = dns.rdatatype.from_text(record.field_type)
        grouped[(owner_name(record.sub_domain, origin), rdtype)].append(record)
    rrsets: RRsets = {}
    for key, members in grouped.items():
        ttl = min(r.ttl or DEFAULT_TTL for r in members)
        rdatas = [parse_target(r.field_type, r.target, origin) for r in members]
        rrsets[key] = dns.rdataset.from_rdata_list(ttl, rdatas)
    return rrsets


def sync_update(
    server: DnsServer, current: RRsets, wanted: RRsets
) -> tuple[dns.update.UpdateMessage, int]:
    """The update that turns `current` into `wanted` (replace what differs, delete what is gone)
    and how many RRsets it changes."""
    update = dns.update.UpdateMessage(server.origin, keyring=server.key)
    changes = 0
    for key in sorted(wanted, key=str):
        rdataset = wanted[key]
        now = current.get(key)
        if now is None or now.ttl != rdataset.ttl or set(now) != set(rdataset):
            update.replace(key[0], rdataset)
            changes += 1
    for name, rdtype in sorted(current.keys() - wanted.keys(), key=str):
        update.delete(name, rdtype)
        changes += 1
    return update, changes


def push_records(server: DnsServer, records: list[Record]) -> int:
    """Make the served zone equal `records` (SOA aside); returns how many RRsets the update held.

    Raises ZoneSyncError when the zone cannot be read or the server refuses the update.
    """
    current = rrsets_of_zone(read_zone(server))
    update, changes = sync_update(server, current, rrsets_of_records(records, server.origin))
    if not changes:
        return 0
    try:
        response = dns.query.tcp(update, server.address, port=server.port, timeout=server.timeout)
    except (dns.exception.DNSException, OSError) as err:
        raise ZoneSyncError(
            f"update of {server.zone} on {server.address}:{server.port} failed: {err}"
        ) from err
    if response.rcode() != dns.rcode.NOERROR:
        raise ZoneSyncError(
            f"{server.address}:{server.port} refused the update of {server.zone}: "
            f"{dns.rcode.to_text(response.rcode())}"
        )
    return changes
