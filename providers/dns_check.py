"""Has a DNS change reached every authoritative server of the zone? Ask each one directly.

After a switch, resolvers follow the zone's NS records to its authoritative servers; until each
of them answers the new targets, some clients still get the old ones. So we find those servers
(the zone's NS records asked from a resolver, then each NS name's A/AAAA), query each one with
recursion off, and poll until all answer exactly the expected targets or the time is up.

The result is a report (who answered what, and how many seconds after the start it matched);
a timeout is a report with `complete == False`, or `PropagationTimeout` when asked for.
`evaluate_answer()` and `build_report()` are pure, so the decision is testable on its own.
"""

from __future__ import annotations

import logging
import socket
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.query
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.resolver

from providers.dns_base import (
    DnsError,
    RecordSet,
    fqdn,
    normalize_targets,
    normalize_zone,
    record_label,
    relative_name,
)

DEFAULT_QUERY_TIMEOUT = 2.0


@dataclass(frozen=True)
class AuthoritativeServer:
    """One address of one authoritative server (a name server with two addresses is two)."""

    name: str  # the NS name ("ns1.example.com."), or the address when given directly
    address: str
    port: int = 53

    @property
    def label(self) -> str:
        shown = self.address if self.port == 53 else f"{self.address}:{self.port}"
        return shown if self.name == self.address else f"{self.name.rstrip('.')} ({shown})"


@dataclass(frozen=True)
class Probe:
    """One server's answer to one query: the targets (empty: no such record) or an error."""

    server: AuthoritativeServer
    answer: tuple[str, ...]
    error: str | None = None
    at: float = 0.0  # seconds since the check started


@dataclass(frozen=True)
class ServerAnswer:
    """Where one server stands: its latest answer, and when it first matched."""

    name: str
    address: str
    port: int
    answer: tuple[str, ...]
    error: str | None
    matched: bool
    seconds_to_match: float | None  # since the check started; None while not matched
    queries: int

    @property
    def label(self) -> str:
        return AuthoritativeServer(self.name, self.address, self.port).label

    def describe(self) -> str:
        if self.error:
            return f"{self.label}: {self.error}"
        answer = ", ".join(self.answer) if self.answer else "no record"
        when = f" after {self.seconds_to_match:.2f} s" if self.seconds_to_match is not None else ""
        return f"{self.label}: {answer}{when}"

    @property
    def data(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "address": self.address,
            "port": self.port,
            "answer": list(self.answer),
            "error": self.error,
            "matched": self.matched,
            "seconds_to_match": self.seconds_to_match,
            "queries": self.queries,
        }


@dataclass(frozen=True)
class PropagationReport:
    """Every authoritative server's answer for one record set, against the expected targets."""

    zone: str
    name: str
    rtype: str
    expected: tuple[str, ...]
    servers: tuple[ServerAnswer, ...]
    elapsed: float

    @property
    def complete(self) -> bool:
        return bool(self.servers) and all(s.matched for s in self.servers)

    @property
    def pending(self) -> tuple[ServerAnswer, ...]:
        return tuple(s for s in self.servers if not s.matched)

    @property
    def record(self) -> str:
        return f"{fqdn(self.zone, self.name)} {self.rtype}"

    def summary(self) -> str:
        expected = ", ".join(self.expected) if self.expected else "no record"
        if self.complete:
            slowest = max(s.seconds_to_match or 0.0 for s in self.servers)
            return (
                f"all {len(self.servers)} authoritative server(s) of {self.zone} answer "
                f"{self.record} {expected} (the last after {slowest:.2f} s)"
            )
        still = "; ".join(s.describe() for s in self.pending)
        return (
            f"after {self.elapsed:.1f} s, {len(self.pending)} of {len(self.servers)} "
            f"authoritative server(s) of {self.zone} do not answer {self.record} {expected} "
            f"yet: {still}"
        )

    @property
    def data(self) -> dict[str, Any]:
        return {
            "zone": self.zone,
            "name": self.name,
            "type": self.rtype,
            "expected": list(self.expected),
            "complete": self.complete,
            "elapsed": round(self.elapsed, 3),
            "servers": [s.data for s in self.servers],
        }


class PropagationTimeout(DnsError):
    """Some authoritative servers still answer something else; `report` says which and what."""

    def __init__(self, report: PropagationReport) -> None:
        super().__init__(report.summary(), zone=report.zone, record=report.record)
        self.report = report


# -- Pure decisions -------------------------------------------------------------------------


def evaluate_answer(expected: tuple[str, ...], probe: Probe) -> bool:
    """A server matches when it answered (no error) exactly the expected targets."""
    return probe.error is None and probe.answer == expected


def build_report(
    zone: str,
    name: str,
    rtype: str,
    expected: Sequence[str],
    servers: Sequence[AuthoritativeServer],
    probes: Sequence[Probe],
    elapsed: float,
) -> PropagationReport:
    """The report from every probe so far (in time order): each server's latest answer, and
    the time of its first match (a server that matched is considered done)."""
    wanted = normalize_targets(rtype, expected)
    answers: list[ServerAnswer] = []
    for server in servers:
        mine = [p for p in probes if p.server == server]
        first_match = next((p for p in mine if evaluate_answer(wanted, p)), None)
        shown = first_match or (mine[-1] if mine else None)
        answers.append(
            ServerAnswer(
                name=server.name,
                address=server.address,
                port=server.port,
                answer=shown.answer if shown else (),
                error=(shown.error if shown else "not asked yet"),
                matched=first_match is not None,
                seconds_to_match=first_match.at if first_match else None,
                queries=len(mine),
            )
        )
    return PropagationReport(zone, name, rtype, wanted, tuple(answers), elapsed)


# -- Asking servers -------------------------------------------------------------------------


def ask_server(
    server: AuthoritativeServer,
    qname: str,
    rtype: str,
    timeout: float = DEFAULT_QUERY_TIMEOUT,
    started: float | None = None,
) -> Probe:
    """One non-recursive query to one server; an error or a non-authoritative answer is
    reported in the probe, not raised."""
    at = time.monotonic() - started if started is not None else 0.0
    query = dns.message.make_query(qname, rtype)
    query.flags &= ~dns.flags.RD
    try:
        response, _ = dns.query.udp_with_fallback(
            query, server.address, port=server.port, timeout=timeout
        )
    except dns.exception.Timeout:
        return Probe(server, (), f"no answer within {timeout:g} s", at)
    except (dns.exception.DNSException, OSError) as err:
        return Probe(server, (), f"{type(err).__name__}: {err}", at)
    rcode = response.rcode()
    if rcode not in (dns.rcode.NOERROR, dns.rcode.NXDOMAIN):
        return Probe(server, (), f"answered {dns.rcode.to_text(rcode)}", at)
    if not response.flags & dns.flags.AA:
        return Probe(server, (), "answered without authority (not serving the zone?)", at)
    rrset = response.get_rrset(
        response.answer,
        dns.name.from_text(qname),
        dns.rdataclass.IN,
        dns.rdatatype.from_text(rtype),
    )
    targets = normalize_targets(rtype, (r.to_text() for r in rrset)) if rrset else ()
    return Probe(server, targets, None, at)


def _resolver_query(
    resolver: str | None, port: int, qname: str, rtype: str, timeout: float
) -> dns.message.Message:
    """A query with recursion desired: a recursive resolver resolves, an authoritative server
    of the zone answers from its data (and ignores the flag)."""
    if resolver is None:
        nameservers = dns.resolver.Resolver().nameservers  # the system's resolvers
        resolver = str(nameservers[0])
    query = dns.message.make_query(qname, rtype)
    response, _ = dns.query.udp_with_fallback(query, resolver, port=port, timeout=timeout)
    if response.rcode() not in (dns.rcode.NOERROR, dns.rcode.NXDOMAIN):
        raise DnsError(f"{qname} {rtype} answered {dns.rcode.to_text(response.rcode())}")
    return response


def find_authoritative_servers(
    zone: str,
    *,
    resolver: str | None = None,
    port: int = 53,
    timeout: float = DEFAULT_QUERY_TIMEOUT,
) -> tuple[AuthoritativeServer, ...]:
    """The addresses of the zone's name servers: NS records of the zone asked from `resolver`
    (None: the system's resolver), then each name's A and AAAA (glue first). The servers are
    asked on `port`, the same for all (the lab serves DNS on one port)."""
    zone = normalize_zone(zone)
    origin = fqdn(zone, "")
    where = f"{resolver or 'the system resolver'}:{port}"
    hint = "check the resolver address, or give the servers' addresses explicitly (servers=)"
    try:
        response = _resolver_query(resolver, port, origin, "NS", timeout)
        ns_rrset = response.get_rrset(
            response.answer, dns.name.from_text(origin), dns.rdataclass.IN, dns.rdatatype.NS
        )
        if not ns_rrset:
            raise DnsError("no NS records in the answer")
        servers: list[AuthoritativeServer] = []
        for ns in sorted(r.to_text() for r in ns_rrset):
            addresses = _addresses_of(ns, response, resolver, port, timeout)
            if not addresses:
                raise DnsError(f"name server {ns} has no A/AAAA record")
            servers.extend(AuthoritativeServer(ns, a, port) for a in addresses)
    except DnsError as err:
        raise DnsError(
            f"looking up the name servers of {zone} via {where} failed: {err}; {hint}", zone=zone
        ) from err
    except dns.exception.Timeout:
        raise DnsError(
            f"no answer from {where} within {timeout:g} s while looking up the name servers of "
            f"{zone}; {hint}",
            zone=zone,
        ) from None
    except (dns.exception.DNSException, OSError) as err:
        raise DnsError(
            f"looking up the name servers of {zone} via {where} failed: {err}; {hint}", zone=zone
        ) from err
    return tuple(servers)


def _addresses_of(
    ns: str, response: dns.message.Message, resolver: str | None, port: int, timeout: float
) -> list[str]:
    owner = dns.name.from_text(ns)
    found: list[str] = []
    for rdtype in (dns.rdatatype.A, dns.rdatatype.AAAA):
        glue = response.get_rrset(response.additional, owner, dns.rdataclass.IN, rdtype)
        if glue is None:
            answer = _resolver_query(resolver, port, ns, dns.rdatatype.to_text(rdtype), timeout)
            glue = answer.get_rrset(answer.answer, owner, dns.rdataclass.IN, rdtype)
        found.extend(sorted(r.to_text() for r in glue or ()))
    return found


def servers_from_addresses(
    addresses: Sequence[str | AuthoritativeServer], port: int = 53
) -> tuple[AuthoritativeServer, ...]:
    """Servers given by address ("192.0.2.53", asked on `port`) or as they are."""
    return tuple(
        a if isinstance(a, AuthoritativeServer) else AuthoritativeServer(a, a, port)
        for a in addresses
    )


RecordReader = Callable[[str, str, str], RecordSet]  # (zone, name, type) -> the record set


def servers_of_zone(
    zone: str, read: RecordReader, port: int = 53
) -> tuple[AuthoritativeServer, ...]:
    """Every name server of the zone, each address of each: the apex NS records as the DNS
    provider holds them (`read`, e.g. `provider.get_records`), never a resolver's cache. A
    name inside the zone takes its A/AAAA from the provider too; a name outside it is looked
    up by this machine (only its address: the answers are then asked of it directly)."""
    zone = normalize_zone(zone)
    names = read(zone, "", "NS").targets
    if not names:
        raise DnsError(
            f"the DNS provider holds no NS record at the apex of {zone}: give the servers to "
            "ask in dns.nameservers",
            zone=zone,
        )
    servers: list[AuthoritativeServer] = []
    for ns in names:
        absolute = ns.rstrip(".")
        if absolute == zone or absolute.endswith("." + zone):
            inside = relative_name(zone, ns)
            addresses = [a for t in ("A", "AAAA") for a in read(zone, inside, t).targets]
        else:
            try:
                infos = socket.getaddrinfo(absolute, port, proto=socket.IPPROTO_UDP)
            except OSError as err:
                raise DnsError(
                    f"name server {ns} of {zone} has no address here ({err}): give the servers "
                    "to ask in dns.nameservers",
                    zone=zone,
                ) from None
            addresses = sorted({str(info[4][0]) for info in infos})
        if not addresses:
            raise DnsError(f"name server {ns} of {zone} has no A/AAAA record", zone=zone)
        servers.extend(AuthoritativeServer(ns, a, port) for a in addresses)
    return tuple(servers)


def ask_every_server(
    servers: Sequence[AuthoritativeServer],
    name: str,
    rtype: str,
    timeout: float = DEFAULT_QUERY_TIMEOUT,
) -> tuple[tuple[str, ...] | None, str]:
    """What every server answers for `name` (absolute), asked directly: the targets when all
    of them answer the same, else None; and a sentence saying who answered what."""
    qname = name if name.endswith(".") else name + "."
    probes = [ask_server(server, qname, rtype, timeout) for server in servers]
    failed = [f"{p.server.label}: {p.error}" for p in probes if p.error]
    if failed:
        return None, f"{qname} {rtype}: " + "; ".join(failed)
    answers = {p.answer for p in probes}
    said = "; ".join(f"{p.server.label}: {', '.join(p.answer) or 'no record'}" for p in probes)
    if len(answers) != 1:
        return None, f"the authoritative servers disagree on {qname} {rtype}: {said}"
    (answer,) = answers
    if not answer:
        return None, f"no {rtype} record for {qname} at {len(probes)} authoritative server(s)"
    shown = ", ".join(answer)
    return answer, f"{qname} {rtype} {shown} at all {len(probes)} authoritative server(s)"


def wait_for_propagation(
    zone: str,
    name: str,
    rtype: str,
    expected: Sequence[str],
    *,
    servers: Sequence[str | AuthoritativeServer] | None = None,
    resolver: str | None = None,
    port: int = 53,
    timeout: float = 60.0,
    interval: float = 1.0,
    query_timeout: float = DEFAULT_QUERY_TIMEOUT,
    raise_on_timeout: bool = False,
    sleep: Callable[[float], None] = time.sleep,
) -> PropagationReport:
    """Ask every authoritative server until each answers exactly `expected` (empty: the record
    must be gone), polling every `interval` seconds for up to `timeout` (0: one round).

    `servers` overrides discovery (addresses, or `AuthoritativeServer`s each with its own port);
    otherwise they are found through `resolver`.
    On timeout, returns the report (or raises PropagationTimeout with it if
    `raise_on_timeout`).
    """
    zone = normalize_zone(zone)
    name = relative_name(zone, name)
    rtype = rtype.upper()
    log = logging.getLogger(f"DnsCheck[{zone}]")
    if isinstance(servers, str):  # one address given as a string, not its characters
        servers = [servers]
    targets = (
        servers_from_addresses(servers, port)
        if servers is not None
        else find_authoritative_servers(zone, resolver=resolver, port=port, timeout=query_timeout)
    )
    if not targets:
        raise DnsError(f"no authoritative server to ask for {zone}", zone=zone)
    qname = fqdn(zone, name)
    started = time.monotonic()
    probes: list[Probe] = []
    while True:
        done = build_report(zone, name, rtype, expected, targets, probes, 0.0)
        matched = {(s.address, s.port) for s in done.servers if s.matched}
        for server in targets:
            if (server.address, server.port) not in matched:
                probes.append(ask_server(server, qname, rtype, query_timeout, started))
        elapsed = time.monotonic() - started
        report = build_report(zone, name, rtype, expected, targets, probes, elapsed)
        if report.complete or elapsed + interval > timeout:
            break
        log.debug(
            "%s %s: %d server(s) pending", record_label(name, rtype), zone, len(report.pending)
        )
        sleep(interval)
    report = replace(report, elapsed=time.monotonic() - started)
    if report.complete:
        log.info("%s", report.summary())
        return report
    log.warning("%s", report.summary())
    if raise_on_timeout:
        raise PropagationTimeout(report)
    return report
