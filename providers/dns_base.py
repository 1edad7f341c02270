"""What every DNS provider shares: record values, the change plan, errors and the workflow.

A provider is read in one place and written in another. `get_records()` is a pure reader;
`describe_change()` reads and plans without writing (dry runs, `drp plan`); `set_records()`
plans, refuses unsafe changes, applies only what differs and reads the result back. Setting a
record that is already at its targets changes nothing and says so (`RecordChange.reason`).

Names are relative to the zone: `""` (or `"@"`) is the apex, `"www"` is www.<zone>. Absolute
names (`"www.example.com."`) inside the zone are accepted and made relative.

Secrets reach a provider either as plain strings or as objects with `.reveal()` (a masked
secret type); providers reveal them only when they build the client that needs them and never
put them in messages, logs or reprs.
"""

from __future__ import annotations

import ipaddress
import logging
from abc import ABC, abstractmethod
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol, runtime_checkable


class DnsError(Exception):
    """A DNS provider could not read or change a record; the message says what to check.

    `zone`, `record` ("www A") and `call` (the API call or DNS operation) give the context
    without any credential in them.
    """

    def __init__(
        self,
        message: str,
        *,
        zone: str | None = None,
        record: str | None = None,
        call: str | None = None,
    ) -> None:
        super().__init__(message)
        self.zone = zone
        self.record = record
        self.call = call


class RootNsChange(DnsError):
    """Refused: a change to the zone's own NS or SOA records.

    Changing them can take the whole zone off the internet and is never part of a DR switch;
    drp does not do it. Change them in the DNS provider's console if you really mean to.
    """


# -- Secrets --------------------------------------------------------------------------------


@runtime_checkable
class Revealable(Protocol):
    """A masked secret: `str()`/`repr()` show `***`, `reveal()` gives the value."""

    def reveal(self) -> str: ...


SecretLike = str | Revealable


def reveal_secret(value: SecretLike) -> str:
    """The secret's value, called at the last moment (when a client or key is built)."""
    return value if isinstance(value, str) else value.reveal()


def scrub(text: str, secrets: Iterable[str]) -> str:
    """`text` with every secret value replaced by `***` (library messages may echo a key)."""
    for secret in secrets:
        if secret and len(secret) >= 4:
            text = text.replace(secret, "***")
    return text


# -- Names and values -----------------------------------------------------------------------

# Types whose targets are domain names: compared lower-case and absolute (trailing dot).
NAME_TARGET_TYPES = frozenset({"CNAME", "NS", "PTR", "DNAME"})
# The zone's own records a DR switch must never touch (at the apex).
ROOT_GUARDED_TYPES = frozenset({"NS", "SOA"})


def normalize_zone(zone: str) -> str:
    """`Example.COM.` -> `example.com`."""
    cleaned = zone.strip().rstrip(".").lower()
    if not cleaned:
        raise DnsError("empty zone name: give the zone as `example.com`")
    return cleaned


def relative_name(zone: str, name: str) -> str:
    """The record name relative to the zone: `""` for the apex, `"www"` for www.<zone>.

    Accepts `"@"`, relative names and absolute names inside the zone (`"www.example.com."`);
    refuses an absolute name outside the zone.
    """
    zone = normalize_zone(zone)
    cleaned = name.strip().lower()
    if cleaned in ("", "@"):
        return ""
    if cleaned.endswith("."):
        absolute = cleaned.rstrip(".")
        if absolute == zone:
            return ""
        if absolute.endswith("." + zone):
            return absolute[: -len(zone) - 1]
        raise DnsError(f"record name {name!r} is not in zone {zone}", zone=zone)
    return cleaned


def fqdn(zone: str, name: str) -> str:
    """Absolute name with the trailing dot: `www.example.com.`, `example.com.` for the apex."""
    zone = normalize_zone(zone)
    return f"{name}.{zone}." if name else f"{zone}."


def record_label(name: str, rtype: str) -> str:
    """`www A`, `@ A` for the apex: how messages name a record set inside its zone."""
    return f"{name or '@'} {rtype}"


def normalize_target(rtype: str, target: str) -> str:
    """One target in canonical text, so equal values compare equal whatever their spelling."""
    rtype = rtype.upper()
    value = target.strip()
    if rtype in ("A", "AAAA"):
        try:
            address = ipaddress.ip_address(value)
        except ValueError as err:
            raise DnsError(f"{value!r} is not an IP address, as an {rtype} record needs") from err
        if (rtype == "A") != (address.version == 4):
            raise DnsError(f"{value!r} is an IPv{address.version} address, not for an {rtype}")
        return str(address)
    if rtype in NAME_TARGET_TYPES:
        return value.lower().rstrip(".") + "."
    return value


def normalize_targets(rtype: str, targets: Iterable[str]) -> tuple[str, ...]:
    """Targets normalized, deduplicated and sorted: a record set is a set."""
    return tuple(sorted({normalize_target(rtype, t) for t in targets}))


# -- Values ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class RecordSet:
    """What the zone holds for one name and type. No targets: the record set does not exist."""

    zone: str
    name: str  # relative: "" for the apex
    rtype: str
    targets: tuple[str, ...]  # normalized and sorted
    ttl: int | None  # None when the set does not exist (or the provider's zone default)

    @property
    def exists(self) -> bool:
        return bool(self.targets)

    @property
    def fqdn(self) -> str:
        return fqdn(self.zone, self.name)

    @property
    def label(self) -> str:
        return record_label(self.name, self.rtype)

    def describe(self) -> str:
        """`www.example.com. A 192.0.2.1 (ttl 60)`, or `... A absent`."""
        if not self.targets:
            return f"{self.fqdn} {self.rtype} absent"
        ttl = f" (ttl {self.ttl})" if self.ttl is not None else ""
        return f"{self.fqdn} {self.rtype} {', '.join(self.targets)}{ttl}"

    @property
    def data(self) -> dict[str, Any]:
        return {
            "zone": self.zone,
            "name": self.name,
            "type": self.rtype,
            "targets": list(self.targets),
            "ttl": self.ttl,
        }


@dataclass(frozen=True)
class RecordChange:
    """The plan (or result) of setting one record set: before, after, and how.

    Truthy when something changes. `operations` lists the provider's own calls in order
    ("PUT /domain/zone/example.com/record/12 target 192.0.2.1 -> 192.0.2.2") so a dry run
    shows exactly what would be done; `reason` is the sentence to show the operator.
    """

    before: RecordSet
    after: RecordSet
    reason: str
    operations: tuple[str, ...] = ()
    needs_refresh: bool = False  # the change reaches the name servers only after refresh()
    applied: bool = False  # False for a plan (describe_change) or a no-op

    @property
    def changed(self) -> bool:
        return self.before.targets != self.after.targets or self.before.ttl != self.after.ttl

    def __bool__(self) -> bool:
        return self.changed

    @property
    def zone(self) -> str:
        return self.after.zone

    @property
    def target(self) -> str:
        """`example.com www A`, as plans name what they change."""
        return f"{self.after.zone} {self.after.label}"

    @property
    def data(self) -> dict[str, Any]:
        return {
            "before": self.before.data,
            "after": self.after.data,
            "changed": self.changed,
            "applied": self.applied,
            "reason": self.reason,
            "operations": list(self.operations),
            "needs_refresh": self.needs_refresh,
        }


@dataclass(frozen=True)
class ZoneChange:
    """The plan (or result) of setting several record sets of one zone together.

    A provider applies it all or nothing (`BaseDnsProvider.apply_zone`): RFC 2136 as one
    UPDATE whose prerequisites are the values read, OVH as every write then one refresh, the
    writes put back if one fails. `changes` keeps the order asked, no-ops included, so a plan
    shows every record before -> after.
    """

    zone: str
    changes: tuple[RecordChange, ...]
    operations: tuple[str, ...] = ()
    applied: bool = False
    reason: str = ""

    @property
    def changed(self) -> bool:
        return any(c.changed for c in self.changes)

    def __bool__(self) -> bool:
        return self.changed

    @property
    def data(self) -> dict[str, Any]:
        return {
            "zone": self.zone,
            "changes": [c.data for c in self.changes],
            "operations": list(self.operations),
            "applied": self.applied,
            "reason": self.reason,
        }


RecordKey = tuple[str, str]  # (relative name, type)
Wanted = tuple[str, str, Sequence[str]]  # (name, type, targets)


def before_after(before: RecordSet, after: RecordSet) -> str:
    """`www A 127.0.10.1 -> 127.0.10.4`, as a plan shows one record (octoDNS style)."""
    was = ", ".join(before.targets) or "absent"
    will = ", ".join(after.targets) or "absent"
    same = " (no change)" if before.targets == after.targets else ""
    return f"{after.label} {was} -> {will}{same}"


def guard_record_change(zone: str, name: str, rtype: str) -> None:
    """Refuse changes to the zone's apex NS/SOA records (RootNsChange)."""
    if name == "" and rtype.upper() in ROOT_GUARDED_TYPES:
        raise RootNsChange(
            f"refusing to change the {rtype.upper()} records at the apex of zone {zone}: they "
            "delegate and define the zone itself, and a DR switch never needs to touch them. "
            "Change them in the DNS provider's console if you really mean to.",
            zone=zone,
            record=record_label(name, rtype.upper()),
        )


def plan_record_change(
    current: RecordSet,
    targets: Sequence[str],
    ttl: int | None = None,
    default_ttl: int | None = None,
) -> tuple[RecordSet, str]:
    """The wanted record set and a sentence saying whether anything has to change.

    `ttl=None` keeps the current TTL; a new record gets `default_ttl` (None: the service's).
    """
    wanted_targets = normalize_targets(current.rtype, targets)
    if ttl is not None:
        wanted_ttl: int | None = ttl
    else:
        wanted_ttl = current.ttl if current.exists else default_ttl
    if not wanted_targets:
        wanted_ttl = None
    wanted = RecordSet(current.zone, current.name, current.rtype, wanted_targets, wanted_ttl)
    if wanted.targets == current.targets and wanted.ttl == current.ttl:
        return wanted, f"{current.describe()} already: nothing to do"
    if not wanted.targets:
        return wanted, f"delete {current.describe()}"
    if not current.targets:
        return wanted, f"create {wanted.describe()}"
    return wanted, f"change {current.describe()} -> {', '.join(wanted.targets)}" + (
        f" (ttl {current.ttl} -> {wanted.ttl})" if wanted.ttl != current.ttl else ""
    )


# -- Providers ------------------------------------------------------------------------------


class DnsProvider(Protocol):
    """The interface runbooks use, whatever the DNS service."""

    kind: ClassVar[str]  # "ovh", "rfc2136"
    needs_refresh: ClassVar[bool]  # True: changes reach the name servers only after refresh()
    supported_types: ClassVar[frozenset[str]]  # types set_records() may write

    def get_records(self, zone: str, name: str, rtype: str) -> RecordSet: ...

    def describe_change(
        self, zone: str, name: str, rtype: str, targets: Sequence[str], ttl: int | None = None
    ) -> RecordChange: ...

    def set_records(
        self, zone: str, name: str, rtype: str, targets: Sequence[str], ttl: int | None = None
    ) -> RecordChange: ...

    def refresh(self, zone: str) -> str: ...

    def check_credentials(self, zone: str) -> str: ...


@dataclass
class _Context:
    zone: str
    name: str
    rtype: str
    log: logging.Logger = field(repr=False)


class BaseDnsProvider(ABC):
    """Owns the workflow; subclasses only read, plan their calls and write.

    - `get_records()`: normalizes names, then `_read()`;
    - `describe_change()`: guard -> read -> plan (`plan_record_change`) -> `_operations()`;
      never writes;
    - `set_records()`: the same plan; a no-op returns it as is ("already: nothing to do");
      otherwise `_write()`, then reads back and raises DnsError if the zone does not hold
      the wanted targets.

    Subclasses set the class attributes and implement `_read`, `_operations`, `_write`,
    `refresh` and `check_credentials`. Loggers are named `ClassName[zone]`.
    """

    kind: ClassVar[str] = "dns"
    needs_refresh: ClassVar[bool] = False
    supported_types: ClassVar[frozenset[str]] = frozenset({"A", "AAAA", "CNAME", "TXT"})
    default_ttl: int | None = None  # TTL of a new record set; None: the service's default

    # -- hooks -----------------------------------------------------------------------------
    @abstractmethod
    def _read(self, zone: str, name: str, rtype: str) -> RecordSet:
        """The record set as the service holds it (targets normalized)."""

    @abstractmethod
    def _operations(self, current: RecordSet, wanted: RecordSet) -> tuple[str, ...]:
        """The calls `_write` would make, in words, for dry runs."""

    @abstractmethod
    def _write(self, current: RecordSet, wanted: RecordSet) -> None:
        """Make the service hold `wanted`. Only called when it differs from `current`."""

    @abstractmethod
    def refresh(self, zone: str) -> str:
        """Publish pending changes to the name servers; returns what was done, in words."""

    @abstractmethod
    def check_credentials(self, zone: str) -> str:
        """Read-only preflight: can we read (and are we allowed to change) the zone? Returns a
        sentence; raises DnsError saying what to fix."""

    # -- workflow --------------------------------------------------------------------------
    def logger(self, zone: str) -> logging.Logger:
        return logging.getLogger(f"{type(self).__name__}[{normalize_zone(zone)}]")

    def _context(self, zone: str, name: str, rtype: str) -> _Context:
        zone = normalize_zone(zone)
        return _Context(zone, relative_name(zone, name), rtype.strip().upper(), self.logger(zone))

    def get_records(self, zone: str, name: str, rtype: str) -> RecordSet:
        ctx = self._context(zone, name, rtype)
        ctx.log.debug("read %s", record_label(ctx.name, ctx.rtype))
        return self._read(ctx.zone, ctx.name, ctx.rtype)

    def describe_change(
        self, zone: str, name: str, rtype: str, targets: Sequence[str], ttl: int | None = None
    ) -> RecordChange:
        ctx = self._context(zone, name, rtype)
        self._refuse_unsafe(ctx)
        current = self._read(ctx.zone, ctx.name, ctx.rtype)
        wanted, reason = plan_record_change(current, targets, ttl, self.default_ttl)
        operations = self._operations(current, wanted) if wanted != current else ()
        return RecordChange(
            before=current,
            after=wanted,
            reason=reason,
            operations=operations,
            needs_refresh=self.needs_refresh and wanted != current,
        )

    def set_records(
        self, zone: str, name: str, rtype: str, targets: Sequence[str], ttl: int | None = None
    ) -> RecordChange:
        plan = self.describe_change(zone, name, rtype, targets, ttl)
        log = self.logger(plan.zone)
        if not plan.changed:
            log.info("%s", plan.reason)
            return plan
        log.info("%s (%d call(s))", plan.reason, len(plan.operations))
        self._write(plan.before, plan.after)
        readback = self._read(plan.zone, plan.after.name, plan.after.rtype)
        if readback.targets != plan.after.targets:
            raise DnsError(
                f"after writing, {readback.describe()} instead of {', '.join(plan.after.targets)}"
                " (someone else changed it meanwhile?); run again to re-check and re-apply",
                zone=plan.zone,
                record=plan.after.label,
            )
        reason = plan.reason[0].upper() + plan.reason[1:]
        return RecordChange(
            before=plan.before,
            after=readback,
            reason=f"{reason}: done" + (", pending a zone refresh" if plan.needs_refresh else ""),
            operations=plan.operations,
            needs_refresh=plan.needs_refresh,
            applied=True,
        )

    # -- a zone at once ---------------------------------------------------------------------
    def read_records(self, zone: str, keys: Sequence[RecordKey]) -> dict[RecordKey, RecordSet]:
        """Each record set read once, by (relative name, type)."""
        found: dict[RecordKey, RecordSet] = {}
        for name, rtype in keys:
            ctx = self._context(zone, name, rtype)
            if (ctx.name, ctx.rtype) not in found:
                found[(ctx.name, ctx.rtype)] = self._read(ctx.zone, ctx.name, ctx.rtype)
        return found

    def plan_zone(
        self,
        zone: str,
        wanted: Sequence[Wanted],
        current: dict[RecordKey, RecordSet] | None = None,
    ) -> ZoneChange:
        """Every record before -> after; `current` (from `read_records`) saves reading again.
        Never writes. Refuses apex NS/SOA and unsupported types before reading anything."""
        contexts = [(self._context(zone, n, t), targets) for n, t, targets in wanted]
        for ctx, _ in contexts:
            self._refuse_unsafe(ctx)
        zone = normalize_zone(zone)
        if current is None:
            current = self.read_records(zone, [(c.name, c.rtype) for c, _ in contexts])
        changes = []
        for ctx, targets in contexts:
            before = current[(ctx.name, ctx.rtype)]
            after, reason = plan_record_change(before, targets, None, self.default_ttl)
            changes.append(
                RecordChange(
                    before=before,
                    after=after,
                    reason=reason,
                    needs_refresh=self.needs_refresh and after != before,
                )
            )
        moving = [c for c in changes if c.changed]
        operations = self._zone_operations(zone, moving) if moving else ()
        reason = "; ".join(before_after(c.before, c.after) for c in changes)
        return ZoneChange(zone, tuple(changes), operations, reason=reason)

    def apply_zone(self, plan: ZoneChange) -> ZoneChange:
        """Make the zone hold every `after` of the plan, all or nothing; then read each changed
        record back once. The plan's `before` values are the ones the provider expects to
        find: RFC 2136 makes them the UPDATE's prerequisites."""
        moving = [c for c in plan.changes if c.changed]
        log = self.logger(plan.zone)
        if not moving:
            log.info("zone %s: every record already as wanted", plan.zone)
            return plan
        log.info("zone %s: %d record(s) change together", plan.zone, len(moving))
        published = self._write_zone(plan.zone, moving)
        readback = self.read_records(plan.zone, [(c.after.name, c.after.rtype) for c in moving])
        wrong = [
            f"{got.describe()} instead of {', '.join(c.after.targets) or 'absent'}"
            for c in moving
            if (got := readback[(c.after.name, c.after.rtype)]).targets != c.after.targets
        ]
        if wrong:
            raise DnsError(
                f"after writing zone {plan.zone}, " + "; ".join(wrong) + " (someone else changed "
                "it meanwhile?); run again to re-check and re-apply",
                zone=plan.zone,
            )
        done = tuple(
            RecordChange(
                before=c.before,
                after=readback.get((c.after.name, c.after.rtype), c.after),
                reason=c.reason,
                needs_refresh=c.needs_refresh,
                applied=c.changed,
            )
            for c in plan.changes
        )
        return ZoneChange(
            plan.zone,
            done,
            plan.operations,
            applied=True,
            reason=f"{len(moving)} record(s) of {plan.zone} changed together: {published}",
        )

    def _zone_operations(self, zone: str, changes: Sequence[RecordChange]) -> tuple[str, ...]:
        """The calls `_write_zone` would make, in words."""
        return tuple(op for c in changes for op in self._operations(c.before, c.after))

    def _write_zone(self, zone: str, changes: Sequence[RecordChange]) -> str:
        """Write every change, all or nothing; returns how it was published, in words.
        Providers that cannot do it atomically override this with their own undo."""
        raise NotImplementedError(f"{type(self).__name__} cannot change a zone at once")

    def _refuse_unsafe(self, ctx: _Context) -> None:
        guard_record_change(ctx.zone, ctx.name, ctx.rtype)
        if ctx.rtype not in self.supported_types:
            raise DnsError(
                f"{type(self).__name__} does not change {ctx.rtype} records (it changes "
                f"{', '.join(sorted(self.supported_types))})",
                zone=ctx.zone,
                record=record_label(ctx.name, ctx.rtype),
            )
