"""What a round of supervision produces: one record per host, probe and target.

A record says `ok`, `warning`, `critical` or `unknown` (the probe could not tell: a tool is
missing, the host did not answer the question), with the value measured, the threshold it was
held against and one sentence. `unknown` is never turned into `ok`.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any


class Status(StrEnum):
    OK = "ok"
    WARNING = "warning"
    CRITICAL = "critical"
    UNKNOWN = "unknown"

    @property
    def code(self) -> int:
        """Nagios' plugin codes, which Prometheus users know too: 0, 1, 2, 3."""
        return _CODES[self]

    @property
    def severity(self) -> int:
        """For "the worst of": unknown above ok, below warning."""
        return _SEVERITY[self]


_CODES = {Status.OK: 0, Status.WARNING: 1, Status.CRITICAL: 2, Status.UNKNOWN: 3}
_SEVERITY = {Status.OK: 0, Status.UNKNOWN: 1, Status.WARNING: 2, Status.CRITICAL: 3}


def worst(statuses: list[Status]) -> Status:
    return max(statuses, key=lambda s: s.severity, default=Status.OK)


_SLUG = re.compile(r"[^a-z0-9]+")


def slug(text: str, limit: int = 40) -> str:
    """A ticket-event-safe form of `text`; a hash is added when the form loses something, so
    that two targets never share one (`/srv` and `srv` differ)."""
    plain = _SLUG.sub("-", text.lower()).strip("-")[:limit].strip("-")
    if plain == text:
        return plain
    digest = hashlib.sha256(text.encode()).hexdigest()[:6]
    return f"{plain}-{digest}" if plain else digest


@dataclass(frozen=True)
class ProbeRecord:
    """One probe's finding on one host (and one target: a mount, a URL, a process...)."""

    host: str
    probe: str
    status: Status
    message: str
    value: float | None = None
    unit: str = ""  # seconds, percent, count, per_cpu, bool
    threshold: str = ""
    target: str = ""

    @property
    def key(self) -> str:
        """Identifies the record from one round to the next."""
        return f"{self.host}|{self.probe}|{self.target}"

    @property
    def event_name(self) -> str:
        """`HOST-PROBE[-TARGET]`, safe in a ticket event."""
        parts = [slug(self.host), self.probe] + ([slug(self.target)] if self.target else [])
        return "-".join(parts)

    @property
    def label(self) -> str:
        """`production disk /`, as people read it."""
        return " ".join(p for p in (self.host, self.probe, self.target) if p)

    @property
    def data(self) -> dict[str, Any]:
        return {
            "host": self.host,
            "probe": self.probe,
            "target": self.target,
            "status": self.status.value,
            "value": self.value,
            "unit": self.unit,
            "threshold": self.threshold,
            "message": self.message,
        }


@dataclass
class WatchRound:
    """Every record of one round, and how long it took."""

    site: str
    started: datetime
    seconds: float = 0.0
    records: list[ProbeRecord] = field(default_factory=list)
    host_seconds: dict[str, float] = field(default_factory=dict)  # gathering over SSH, per host

    @property
    def status(self) -> Status:
        return worst([r.status for r in self.records])

    def counts(self) -> dict[str, int]:
        found = {s.value: 0 for s in Status}
        for record in self.records:
            found[record.status.value] += 1
        return found

    def summary(self) -> str:
        counts = self.counts()
        shown = ", ".join(f"{n} {s}" for s, n in counts.items() if n)
        return (
            f"{len(self.records)} probes on {len({r.host for r in self.records})} hosts in "
            f"{self.seconds:.2f} s: {shown or 'nothing watched'}"
        )

    def of(self, host: str, probe: str) -> list[ProbeRecord]:
        return [r for r in self.records if r.host == host and r.probe == probe]
