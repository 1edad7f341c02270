"""DNS records on a primary server that takes RFC 2136 dynamic updates signed with TSIG.

For BIND, Knot, PowerDNS and friends (and the lab's Knot). Reads are plain authoritative queries
to the primary over TCP (no recursion); a change is one signed UPDATE that replaces the whole
record set, so the server applies it atomically and bumps the serial. A zone's switch
(`apply_zone`) is one UPDATE carrying every record, whose prerequisites are the values read: the
server applies all of it, or none if someone changed the zone since. There is nothing to
refresh: the primary serves the change at once and notifies its secondaries itself.

`check_credentials()` sends a signed UPDATE whose only content is the prerequisite "the zone
has an SOA": the server checks the key and its update ACL, and changes nothing.
"""

from __future__ import annotations

import binascii
from collections.abc import Callable, Sequence
from typing import TypeVar

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.query
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.tsig
import dns.update

from providers.dns_base import (
    BaseDnsProvider,
    DnsError,
    RecordChange,
    RecordSet,
    SecretLike,
    fqdn,
    normalize_targets,
    normalize_zone,
    record_label,
    reveal_secret,
)

DEFAULT_TIMEOUT = 5.0
DEFAULT_TTL = 300

T = TypeVar("T")
# The answers to an UPDATE whose prerequisite does not hold (RFC 2136 3.2.5).
PREREQUISITE_FAILED = frozenset(
    {dns.rcode.NXRRSET, dns.rcode.YXRRSET, dns.rcode.NXDOMAIN, dns.rcode.YXDOMAIN}
)


class UpdateRefused(DnsError):
    """The primary answered an UPDATE with an error code (`rcode`)."""

    def __init__(self, message: str, rcode: dns.rcode.Rcode, **context: str | None) -> None:
        super().__init__(message, **context)
        self.rcode = rcode


def rcode_hint(rcode: dns.rcode.Rcode, key_name: str, zone: str, server: str) -> str:
    """What to check when the primary answers an UPDATE with an error code."""
    if rcode == dns.rcode.NOTAUTH:
        return (
            f"{server} is not authoritative for {zone}, or refused key {key_name!r}: check that "
            "it is the zone's primary and that the key name, algorithm and secret match its "
            "configuration"
        )
    if rcode == dns.rcode.REFUSED:
        return (
            f"{server} refused the update: check that its ACL for zone {zone} allows updates "
            f"signed with key {key_name!r} (from this machine's address)"
        )
    if rcode == dns.rcode.NOTZONE:
        return f"the record is not inside zone {zone} as {server} serves it"
    if rcode == dns.rcode.SERVFAIL:
        return f"{server} failed to apply it; see its log"
    return f"{server} answered {dns.rcode.to_text(rcode)}"


class Rfc2136Dns(BaseDnsProvider):
    """Records on an RFC 2136 primary (`primary` address, `port`), updates signed with TSIG.

    `key_secret` is the base64 TSIG secret, a string or a masked secret (`.reveal()`),
    revealed when a message is signed.
    """

    kind = "rfc2136"
    needs_refresh = False
    supported_types = frozenset({"A", "AAAA", "CNAME", "TXT"})

    def __init__(
        self,
        *,
        primary: str,
        key_name: str,
        key_secret: SecretLike,
        key_algorithm: str = "hmac-sha256",
        port: int = 53,
        timeout: float = DEFAULT_TIMEOUT,
        default_ttl: int = DEFAULT_TTL,
    ) -> None:
        self.primary = primary
        self.port = port
        self.key_name = key_name
        self.key_algorithm = key_algorithm
        self.timeout = timeout
        self.default_ttl = default_ttl
        self._key_secret = key_secret

    def __repr__(self) -> str:
        return (
            f"Rfc2136Dns(primary={self.primary!r}, port={self.port}, key_name={self.key_name!r},"
            f" key_algorithm={self.key_algorithm!r}, key_secret=***)"
        )

    @property
    def server(self) -> str:
        return f"{self.primary}:{self.port}"

    def _key(self, zone: str) -> dns.tsig.Key:
        try:
            return dns.tsig.Key(self.key_name, reveal_secret(self._key_secret), self.key_algorithm)
        except (binascii.Error, ValueError, dns.exception.DNSException) as err:
            # The library's message may quote the secret: say what is wrong without it.
            raise DnsError(
                f"TSIG key {self.key_name!r} ({self.key_algorithm}) is unusable: the secret must "
                f"be base64 and the algorithm one dnspython knows ({type(err).__name__})",
                zone=zone,
            ) from None

    def _exchange(self, zone: str, what: str, record: str | None, send: Callable[[], T]) -> T:
        """Run one exchange with the primary, turning transport and TSIG failures into
        DnsError saying what to check."""
        where = f"zone {zone}" + (f", record {record}" if record else "")
        context = f"{what} to {self.server} failed ({where})"
        try:
            return send()
        except dns.tsig.PeerBadKey:
            # Knot also answers BADKEY for a known key its ACL does not allow for the zone.
            hint = (
                f"the server does not know key {self.key_name!r} or does not allow it for "
                f"{zone}; check the key name and the server's update ACL for the zone"
            )
        except dns.tsig.PeerBadSignature:
            hint = (
                f"the server rejected the signature of key {self.key_name!r}; check the key's "
                f"secret and algorithm ({self.key_algorithm})"
            )
        except dns.tsig.PeerBadTime:
            hint = "the server rejected the signature's time; check this machine's clock"
        except dns.exception.Timeout:
            hint = (
                f"no answer within {self.timeout:g} s; check the primary's address and port, "
                "and that it is running"
            )
        except ConnectionRefusedError:
            hint = "connection refused; check the primary's address and port"
        except dns.message.UnknownTSIGKey:
            hint = "the answer was signed with another key; check the key name"
        except dns.exception.FormError as err:
            # Servers answer NOTAUTH unsigned for a zone they do not serve.
            hint = (
                f"the answer was unusable ({err}); check that {self.server} is the primary of "
                f"{zone} and knows key {self.key_name!r}"
            )
        except (dns.exception.DNSException, OSError) as err:
            hint = f"{type(err).__name__}: {err}"
        raise DnsError(f"{context}: {hint}", zone=zone, record=record, call=what)

    # -- hooks -----------------------------------------------------------------------------
    def _read(self, zone: str, name: str, rtype: str) -> RecordSet:
        qname = dns.name.from_text(fqdn(zone, name))
        query = dns.message.make_query(qname, rtype)
        query.flags &= ~dns.flags.RD  # ask the primary itself, never a recursion
        label = record_label(name, rtype)
        response = self._exchange(
            zone,
            f"query {label}",
            label,
            lambda: dns.query.tcp(query, self.primary, port=self.port, timeout=self.timeout),
        )
        rcode = response.rcode()
        if rcode not in (dns.rcode.NOERROR, dns.rcode.NXDOMAIN) or not (
            response.flags & dns.flags.AA
        ):
            raise DnsError(
                f"query {label} to {self.server} (zone {zone}): "
                f"{dns.rcode.to_text(rcode)}, {'' if response.flags & dns.flags.AA else 'not '}"
                f"authoritative; check that {self.server} is the primary of {zone}",
                zone=zone,
                record=label,
                call=f"query {label}",
            )
        rdtype = dns.rdatatype.from_text(rtype)
        rrset = response.get_rrset(response.answer, qname, dns.rdataclass.IN, rdtype)
        if rrset is None:
            return RecordSet(zone, name, rtype, (), None)
        targets = normalize_targets(rtype, (r.to_text() for r in rrset))
        return RecordSet(zone, name, rtype, targets, rrset.ttl)

    def _operations(self, current: RecordSet, wanted: RecordSet) -> tuple[str, ...]:
        if not wanted.targets:
            return (f"UPDATE {wanted.zone}: delete {wanted.fqdn} {wanted.rtype}",)
        ttl = wanted.ttl if wanted.ttl is not None else self.default_ttl
        return (
            f"UPDATE {wanted.zone}: replace {wanted.fqdn} {wanted.rtype} with "
            f"{', '.join(wanted.targets)} (ttl {ttl})",
        )

    def _write(self, current: RecordSet, wanted: RecordSet) -> None:
        zone = wanted.zone
        update = dns.update.UpdateMessage(zone, keyring=self._key(zone))
        owner = dns.name.from_text(wanted.fqdn)
        if wanted.targets:
            ttl = wanted.ttl if wanted.ttl is not None else self.default_ttl
            update.replace(owner, ttl, wanted.rtype, *wanted.targets)
        else:
            update.delete(owner, wanted.rtype)
        self._send_update(zone, update, wanted.label)

    def _zone_operations(self, zone: str, changes: Sequence[RecordChange]) -> tuple[str, ...]:
        lines = [f"UPDATE {zone} (one message, applied all or nothing):"]
        for c in changes:
            was = ", ".join(c.before.targets)
            lines.append(
                f"  prerequisite {c.before.fqdn} {c.before.rtype} "
                + (f"is exactly {was}" if was else "does not exist")
            )
        for c in changes:
            lines.extend(f"  {op.split(': ', 1)[1]}" for op in self._operations(c.before, c.after))
        return tuple(lines)

    def _write_zone(self, zone: str, changes: Sequence[RecordChange]) -> str:
        """One signed UPDATE: prerequisites that each record set is exactly what was read, then
        every replacement. The primary applies all of it or, if a prerequisite fails (someone
        changed the zone since it was read), none of it."""
        update = dns.update.UpdateMessage(zone, keyring=self._key(zone))
        for c in changes:
            owner = dns.name.from_text(c.before.fqdn)
            if c.before.targets:
                update.present(owner, c.before.rtype, *c.before.targets)
            else:
                update.absent(owner, c.before.rtype)
        for c in changes:
            owner = dns.name.from_text(c.after.fqdn)
            if c.after.targets:
                ttl = c.after.ttl if c.after.ttl is not None else self.default_ttl
                update.replace(owner, ttl, c.after.rtype, *c.after.targets)
            else:
                update.delete(owner, c.after.rtype)
        labels = ", ".join(c.after.label for c in changes)
        try:
            self._send_update(zone, update, labels)
        except UpdateRefused as err:
            if err.rcode in PREREQUISITE_FAILED:
                raise DnsError(
                    f"zone {zone} changed since it was read ({labels}): {self.server} refused "
                    "the update and changed nothing; run again to read it anew",
                    zone=zone,
                    record=labels,
                    call="signed UPDATE",
                ) from None
            raise
        return f"one UPDATE to {self.server}, served at once"

    def _send_update(self, zone: str, update: dns.update.UpdateMessage, record: str | None) -> None:
        response = self._exchange(
            zone,
            "signed UPDATE",
            record,
            lambda: dns.query.tcp(update, self.primary, port=self.port, timeout=self.timeout),
        )
        rcode = response.rcode()
        if rcode != dns.rcode.NOERROR:
            hint = rcode_hint(rcode, self.key_name, zone, self.server)
            raise UpdateRefused(
                f"signed UPDATE to {self.server} failed (zone {zone}"
                + (f", record {record}" if record else "")
                + f"): {dns.rcode.to_text(rcode)}: {hint}",
                rcode,
                zone=zone,
                record=record,
                call="signed UPDATE",
            )

    # -- zone ------------------------------------------------------------------------------
    def refresh(self, zone: str) -> str:
        return f"nothing to refresh: {self.server} serves updates of {normalize_zone(zone)} at once"

    def check_credentials(self, zone: str) -> str:
        """A signed UPDATE holding only the prerequisite "the zone has an SOA": the server
        checks the key and its update ACL and changes nothing."""
        zone = normalize_zone(zone)
        update = dns.update.UpdateMessage(zone, keyring=self._key(zone))
        update.present(dns.name.from_text(fqdn(zone, "")), dns.rdatatype.SOA)
        self._send_update(zone, update, None)
        return (
            f"{self.server} accepts updates of {zone} signed with key {self.key_name!r} "
            "(empty update: nothing changed)"
        )
