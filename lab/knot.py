"""The lab's authoritative DNS server: Knot DNS serving the lab zone on its own loopback address.

Knot is authoritative for `topology.ZONE` and accepts dynamic updates (RFC 2136) and zone
transfers only when signed with the lab's TSIG key; an unsigned update is answered NOTAUTH.
The OVH emulator writes to it on each zone refresh, as OVH's API drives OVH's own name
servers: a refresh makes the zone equal the emulator's records, so a record written here
directly (by the RFC 2136 provider, say) is gone after the next OVH refresh.

Persistence: updates are kept in Knot's journal and the zone file is rewritten right after
each update (`zonefile-sync: 0`), so a restart serves the last state and the zone file under
`<lab>/data/dns/zones/` always shows what Knot serves. We write the zone file only when it is
absent: once the lab runs, the zone changes through updates and Knot owns the file.

Beside it, a small DNS blocklist zone (`topology.BLOCKLIST_ZONE`, read-only, rewritten on every
start) lists `topology.BLOCKLISTED` as a DNSBL does (reversed octets, A 127.0.0.2 and a TXT),
so that `drp watch`'s blocklist probe has a listed address to find.
"""

from __future__ import annotations

import base64
import binascii
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.query
import dns.rcode
import dns.rdatatype
import dns.tsig

from lab import topology
from lab.daemons import Daemon
from lab.errors import LabError

ZONE_TTL = 60
TSIG_SECRET_NAME = "DRP_LAB_TSIG_SECRET"


@dataclass(frozen=True)
class KnotLayout:
    """One Knot instance: where it listens, which zone it serves, where its files live."""

    data_dir: Path
    address: str
    port: int
    zone: str
    web_address: str  # apex and www A records point here
    key_name: str = topology.TSIG_KEY_NAME
    algorithm: str = topology.TSIG_ALGORITHM
    # A DNS blocklist zone served beside it (read-only), and the addresses it lists.
    blocklist_zone: str | None = None
    blocklisted: tuple[str, ...] = ()

    @property
    def conf_path(self) -> Path:
        return self.data_dir / "knot.conf"

    @property
    def zones_dir(self) -> Path:
        return self.data_dir / "zones"

    @property
    def zone_path(self) -> Path:
        return self.zones_dir / f"{self.zone}.zone"

    @property
    def blocklist_path(self) -> Path:
        return self.zones_dir / f"{self.blocklist_zone}.zone"

    @property
    def storage_dir(self) -> Path:  # journal and timer databases
        return self.data_dir / "db"

    @property
    def run_dir(self) -> Path:
        return self.data_dir / "run"

    @property
    def control_socket(self) -> Path:
        return self.run_dir / "knot.sock"

    @property
    def pid_file(self) -> Path:
        return self.run_dir / "knot.pid"


def lab_layout(paths: topology.LabPaths) -> KnotLayout:
    """The lab's own Knot: `topology.ZONE` on DNS_ADDRESS:DNS_PORT, files under data/dns."""
    return KnotLayout(
        data_dir=paths.data("dns"),
        address=topology.DNS_ADDRESS,
        port=topology.DNS_PORT,
        zone=topology.ZONE,
        web_address=topology.host("production").address,
        blocklist_zone=topology.BLOCKLIST_ZONE,
        blocklisted=topology.BLOCKLISTED,
    )


def checked_tsig_secret(secret: str) -> str:
    """The TSIG secret, refused unless it is base64 of at least 32 bytes (hmac-sha256 strength)."""
    try:
        raw = base64.b64decode(secret, validate=True)
    except (binascii.Error, ValueError) as err:
        raise LabError(
            f"{TSIG_SECRET_NAME} is not valid base64; generate one with "
            "`head -c 32 /dev/urandom | base64`"
        ) from err
    if len(raw) < 32:
        raise LabError(
            f"{TSIG_SECRET_NAME} decodes to {len(raw)} bytes, 32 are needed; generate one with "
            "`head -c 32 /dev/urandom | base64`"
        )
    return secret


def tsig_key(secret: str, name: str = topology.TSIG_KEY_NAME) -> dns.tsig.Key:
    """The dnspython key that signs updates and transfers for the lab zone."""
    return dns.tsig.Key(name, checked_tsig_secret(secret), topology.TSIG_ALGORITHM)


def render_knot_conf(layout: KnotLayout, tsig_secret: str) -> str:
    """knotd configuration: one zone, TSIG-only updates and transfers, files under data_dir."""
    secret = checked_tsig_secret(tsig_secret)
    return f"""\
# Written by lab/knot.py; rewritten on every lab start.
server:
    rundir: "{layout.run_dir}"
    pidfile: "{layout.pid_file}"
    listen: {layout.address}@{layout.port}
    # A one-zone lab server needs no more threads than this; keeps the 2-core lab light.
    udp-workers: 1
    tcp-workers: 1
    background-workers: 1

control:
    listen: "{layout.control_socket}"

log:
  - target: stderr
    any: info

database:
    storage: "{layout.storage_dir}"

key:
  - id: {layout.key_name}
    algorithm: {layout.algorithm}
    secret: {secret}

acl:
  - id: tsig-update-transfer
    key: {layout.key_name}
    action: [update, transfer]

zone:
  - domain: {layout.zone}
    file: "{layout.zone_path}"
    acl: tsig-update-transfer
    # Updates go to the journal, then straight into the zone file: a restart serves them.
    journal-content: changes
    zonefile-sync: 0
""" + (
        f"""\
  - domain: {layout.blocklist_zone}
    file: "{layout.blocklist_path}"
    # Read-only and rewritten on every lab start: no updates, no journal.
    journal-content: none
    zonefile-sync: -1
"""
        if layout.blocklist_zone
        else ""
    )


def render_zone_file(zone: str, ns_address: str, web_address: str, ttl: int = ZONE_TTL) -> str:
    """The zone's first contents: SOA, NS ns1, ns1 A, apex A and www A to the web address."""
    return f"""\
$ORIGIN {zone}.
$TTL {ttl}
@       SOA     ns1 hostmaster 1 3600 600 86400 {ttl}
@       NS      ns1
ns1     A       {ns_address}
@       A       {web_address}
www     A       {web_address}
"""


def render_blocklist_zone(
    zone: str, ns_name: str, listed: tuple[str, ...], ttl: int = ZONE_TTL
) -> str:
    """A DNSBL zone: each listed address as its reversed octets, A 127.0.0.2 and a TXT reason."""
    lines = [
        f"$ORIGIN {zone}.",
        f"$TTL {ttl}",
        f"@       SOA     {ns_name}. hostmaster.{ns_name}. 1 3600 600 86400 {ttl}",
        f"@       NS      {ns_name}.",
    ]
    for address in listed:
        name = ".".join(reversed(address.split(".")))
        lines.append(f"{name} A 127.0.0.2")
        lines.append(f'{name} TXT "listed by the drp lab, to test the blocklist probe"')
    return "\n".join(lines) + "\n"


def _write_if_changed(path: Path, text: str, mode: int) -> None:
    if path.exists() and path.read_text() == text:
        path.chmod(mode)
        return
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    tmp.chmod(mode)
    tmp.replace(path)


def write_knot_files(layout: KnotLayout, tsig_secret: str) -> None:
    """Config (holds the TSIG secret, so 0600) always; zone file only when absent."""
    for directory in (layout.data_dir, layout.zones_dir, layout.storage_dir, layout.run_dir):
        directory.mkdir(parents=True, exist_ok=True)
    layout.data_dir.chmod(0o700)
    _write_if_changed(layout.conf_path, render_knot_conf(layout, tsig_secret), 0o600)
    if not layout.zone_path.exists():
        zone_text = render_zone_file(layout.zone, layout.address, layout.web_address)
        _write_if_changed(layout.zone_path, zone_text, 0o644)
    if layout.blocklist_zone:
        text = render_blocklist_zone(
            layout.blocklist_zone, f"ns1.{layout.zone}", layout.blocklisted
        )
        _write_if_changed(layout.blocklist_path, text, 0o644)


def knotd_binary() -> str:
    """knotd lives in /usr/sbin on Debian, which a non-root PATH often lacks."""
    return shutil.which("knotd", path=f"{os.environ.get('PATH', '')}:/usr/sbin") or "knotd"


def knotd_argv(conf_path: Path, binary: str = "knotd") -> list[str]:
    """knotd in the foreground (it daemonizes only with -d) on the given config."""
    return [binary, "-c", str(conf_path)]


def soa_answered(address: str, port: int, zone: str, timeout: float = 0.5) -> bool:
    """True when the server at address:port answers authoritatively for the zone's SOA."""
    query = dns.message.make_query(zone, dns.rdatatype.SOA)
    try:
        # TCP: a server not yet listening refuses at once, where UDP waits out the timeout.
        response = dns.query.tcp(query, address, port=port, timeout=timeout)
    except (dns.exception.DNSException, OSError):
        return False
    if response.rcode() != dns.rcode.NOERROR or not response.flags & dns.flags.AA:
        return False
    origin = dns.name.from_text(zone)
    return any(r.name == origin and r.rdtype == dns.rdatatype.SOA for r in response.answer)


def knot_daemon_for(
    layout: KnotLayout, tsig_secret: str, name: str = "knot", host: str = "dns"
) -> Daemon:
    """Writes the files for `layout` and describes the knotd that serves them."""
    write_knot_files(layout, tsig_secret)
    return Daemon(
        name=name,
        host=host,
        argv=knotd_argv(layout.conf_path, knotd_binary()),
        address=layout.address,
        port=layout.port,
        ready=lambda: soa_answered(layout.address, layout.port, layout.zone),
        cwd=layout.data_dir,
    )


def knot_daemon(paths: topology.LabPaths, secrets: dict[str, str]) -> Daemon:
    """The lab's Knot DNS server (start it before the OVH emulator, which reads its zone)."""
    try:
        secret = secrets[TSIG_SECRET_NAME]
    except KeyError as err:
        raise LabError(f"lab secrets lack {TSIG_SECRET_NAME}; see {paths.secrets_env}") from err
    return knot_daemon_for(lab_layout(paths), secret)
