"""Network probes from the orchestrator: ICMP echo, a TCP connection, a DNS blocklist lookup.

ICMP needs a socket the kernel may refuse: an unprivileged ICMP datagram socket (allowed by
`net.ipv4.ping_group_range`), else a raw socket (root or CAP_NET_RAW). `icmp_allowed()` says
which works here, without sending anything; `ping()` falls back to TCP when neither does, and
says so. No `ping` binary is needed.

A DNS blocklist (DNSBL) lists an address as the A record of its reversed octets (IPv4) or
nibbles (IPv6) under the list's zone: 1.10.0.127.bl.example for 127.0.10.1. An answer in
127.0.0.0/8 means "listed" (its TXT record often says why); no such name means "not listed".
Lists answer 127.255.255.x to refused queries (a public resolver, a quota): that is no answer.
"""

from __future__ import annotations

import ipaddress
import os
import select
import socket
import struct
import time
from collections.abc import Sequence
from dataclasses import dataclass

import dns.exception
import dns.message
import dns.name
import dns.query
import dns.rcode
import dns.rdatatype
import dns.resolver
import dns.reversename

_ECHO_REQUEST = {socket.AF_INET: 8, socket.AF_INET6: 128}
_ECHO_REPLY = {socket.AF_INET: 0, socket.AF_INET6: 129}
_PROTO = {socket.AF_INET: socket.IPPROTO_ICMP, socket.AF_INET6: socket.IPPROTO_ICMPV6}


@dataclass(frozen=True)
class PingResult:
    """One availability probe: how it was asked, and the answer time (None: no answer)."""

    address: str
    method: str  # "icmp" or "tcp:PORT"
    seconds: float | None
    error: str | None = None
    note: str | None = None  # why TCP was used when ICMP was asked for

    @property
    def answered(self) -> bool:
        return self.seconds is not None


def _family(address: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ipaddress.ip_address(address).version == 6 else socket.AF_INET


def _checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    total = (total >> 16) + (total & 0xFFFF)
    total += total >> 16
    return ~total & 0xFFFF


def _icmp_socket(family: socket.AddressFamily) -> tuple[socket.socket, bool]:
    """An ICMP socket and whether it is raw; PermissionError when neither kind is allowed."""
    try:
        return socket.socket(family, socket.SOCK_DGRAM, _PROTO[family]), False
    except PermissionError:
        pass
    return socket.socket(family, socket.SOCK_RAW, _PROTO[family]), True


def icmp_allowed(family: socket.AddressFamily = socket.AF_INET) -> str | None:
    """None when this process may send ICMP echo requests, else why not."""
    try:
        sock, _ = _icmp_socket(family)
    except OSError as err:
        return (
            f"ICMP is not allowed here ({err.strerror or err}): neither an ICMP datagram socket "
            "(net.ipv4.ping_group_range) nor a raw socket (root or CAP_NET_RAW)"
        )
    sock.close()
    return None


def icmp_echo(address: str, timeout: float) -> float | None:
    """Seconds until the echo reply, or None after `timeout`. PermissionError: not allowed."""
    family = _family(address)
    sock, raw = _icmp_socket(family)
    ident = os.getpid() & 0xFFFF
    sequence = int(time.monotonic() * 1000) & 0xFFFF
    payload = b"drp-watch" + struct.pack("!d", time.time())
    header = struct.pack("!BBHHH", _ECHO_REQUEST[family], 0, 0, ident, sequence)
    checksum = _checksum(header + payload) if family == socket.AF_INET else 0
    packet = struct.pack("!BBHHH", _ECHO_REQUEST[family], 0, checksum, ident, sequence) + payload
    with sock:
        started = time.monotonic()
        sock.sendto(packet, (address, 0))
        while True:
            left = timeout - (time.monotonic() - started)
            if left <= 0:
                return None
            readable, _, _ = select.select([sock], [], [], left)
            if not readable:
                return None
            data, source = sock.recvfrom(2048)
            if raw and family == socket.AF_INET:
                data = data[(data[0] & 0x0F) * 4 :]  # the IP header comes first on raw IPv4
            if len(data) < 8 or source[0] != address:
                continue
            kind, _, _, reply_id, reply_seq = struct.unpack("!BBHHH", data[:8])
            # A datagram socket's id is the kernel's; a raw socket sees every echo reply.
            if (
                kind == _ECHO_REPLY[family]
                and reply_seq == sequence
                and (not raw or reply_id == ident)
            ):
                return time.monotonic() - started


def tcp_connect(address: str, port: int, timeout: float) -> float:
    """Seconds to open (and close) a TCP connection; OSError when refused or timed out."""
    started = time.monotonic()
    with socket.create_connection((address, port), timeout=timeout):
        return time.monotonic() - started


def ping(address: str, *, method: str, tcp_port: int, timeout: float) -> PingResult:
    """Availability of `address`: ICMP (`icmp`), TCP (`tcp`), or ICMP when allowed (`auto`)."""
    note = None
    if method in ("auto", "icmp"):
        try:
            family = _family(address)
        except ValueError:
            family = socket.AF_INET
            try:
                address = str(socket.getaddrinfo(address, None, family)[0][4][0])
            except OSError as err:
                return PingResult(address, "icmp", None, f"cannot resolve: {err}")
        why_not = icmp_allowed(family)
        if why_not is None:
            try:
                seconds = icmp_echo(address, timeout)
            except OSError as err:
                return PingResult(address, "icmp", None, f"ICMP echo failed: {err}")
            if seconds is None:
                return PingResult(address, "icmp", None, f"no echo reply within {timeout:g} s")
            return PingResult(address, "icmp", seconds)
        if method == "icmp":
            return PingResult(address, "icmp", None, why_not)
        note = why_not + "; pinged by TCP instead"
    label = f"tcp:{tcp_port}"
    try:
        return PingResult(address, label, tcp_connect(address, tcp_port, timeout), note=note)
    except TimeoutError:
        error = f"no answer on TCP port {tcp_port} within {timeout:g} s"
    except OSError as err:
        error = f"TCP port {tcp_port}: {err.strerror or err}"
    return PingResult(address, label, None, error, note)


# -- DNS blocklists ------------------------------------------------------------------------------


@dataclass(frozen=True)
class BlocklistAnswer:
    """What one blocklist says about one address."""

    address: str
    zone: str
    listed: bool | None  # None: no usable answer (see error)
    codes: tuple[str, ...] = ()  # the A records of a listing (127.0.0.x)
    reason: str | None = None  # its TXT record, when the list gives one
    error: str | None = None


def blocklist_name(address: str, zone: str) -> str:
    """The name a DNSBL is asked: 1.10.0.127.ZONE for 127.0.10.1."""
    reverse = dns.reversename.from_address(address)
    labels = reverse.labels[:-3]  # drop in-addr.arpa. / ip6.arpa.
    return ".".join(label.decode() for label in labels) + "." + zone.rstrip(".") + "."


def _ask(
    name: str,
    rdtype: str,
    nameservers: Sequence[str],
    port: int,
    timeout: float,
) -> tuple[str, list[str]]:
    """(rcode text, answers) from the first server that answers, or the system resolver."""
    if not nameservers:
        resolver = dns.resolver.Resolver()
        resolver.lifetime = timeout
        try:
            answer = resolver.resolve(name, rdtype)
        except dns.resolver.NXDOMAIN:
            return "NXDOMAIN", []
        except dns.resolver.NoAnswer:
            return "NOERROR", []
        return "NOERROR", [r.to_text() for r in answer]
    errors = []
    for server in nameservers:
        query = dns.message.make_query(name, rdtype)
        try:
            response = dns.query.udp(query, server, port=port, timeout=timeout)
        except (dns.exception.DNSException, OSError) as err:
            errors.append(f"{server}: {err or type(err).__name__}")
            continue
        rcode = dns.rcode.to_text(response.rcode())
        answers = [
            r.to_text()
            for rrset in response.answer
            if rrset.rdtype == dns.rdatatype.from_text(rdtype)
            for r in rrset
        ]
        if rcode in ("NOERROR", "NXDOMAIN"):
            return rcode, answers
        errors.append(f"{server}: {rcode}")
    raise dns.exception.DNSException("; ".join(errors))


def blocklist_lookup(
    address: str,
    zone: str,
    *,
    nameservers: Sequence[str] = (),
    port: int = 53,
    timeout: float = 3.0,
) -> BlocklistAnswer:
    """Is `address` listed in the blocklist `zone`? Asked of `nameservers`, else the resolver."""
    name = blocklist_name(address, zone)
    try:
        rcode, codes = _ask(name, "A", nameservers, port, timeout)
    except dns.exception.DNSException as err:
        return BlocklistAnswer(address, zone, None, error=f"no answer: {err or 'timeout'}")
    if rcode == "NXDOMAIN" or not codes:
        return BlocklistAnswer(address, zone, False)
    refused = [c for c in codes if c.startswith("127.255.255.")]
    if refused or not all(
        ipaddress.ip_address(c) in ipaddress.ip_network("127.0.0.0/8") for c in codes
    ):
        return BlocklistAnswer(
            address,
            zone,
            None,
            tuple(codes),
            error=f"the list answered {', '.join(codes)}, which is not a listing (a refused "
            "query: ask through your own resolver, or check the list's terms)",
        )
    reason = None
    try:
        _, texts = _ask(name, "TXT", nameservers, port, timeout)
        reason = " ".join(t.strip('"') for t in texts) or None
    except dns.exception.DNSException:
        pass
    return BlocklistAnswer(address, zone, True, tuple(sorted(codes)), reason)
