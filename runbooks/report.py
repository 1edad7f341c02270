"""The report of an operation: the timeline, the order, RTO and RPO.

Written as JSON (`<reports dir>/<operation id>.json`), shown as a rich table in the terminal and
as a Prefect markdown artifact. It never holds a secret: only what steps recorded (names, counts,
addresses) and the order.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from runbooks.errors import ConfigError
from runbooks.steps import Milestone, Outcome, StepRecord


@dataclass
class Report:
    operation_id: str
    kind: str  # activate, return, drill
    site: str
    started: datetime
    plan_hash: str = ""
    ended: datetime | None = None
    outcome: str = "running"  # succeeded, refused, timed-out, failed
    message: str = ""
    order: dict[str, Any] | None = None
    backups: list[dict[str, Any]] = field(default_factory=list)  # what was restored, with times
    timeline: list[StepRecord] = field(default_factory=list)
    data_loss_seconds: float | None = None  # RPO: order time minus the oldest chosen backup
    chosen_at: datetime | None = None  # when the backups were chosen; a resume keeps that choice
    milestones: dict[str, datetime] = field(default_factory=dict)  # Milestone value -> when
    memory: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # what steps replaced
    # Earlier runs of this operation (outcome, message, ended) and the step records a later
    # attempt replaced when they had failed: a resume adds to the history, never erases it.
    history: list[dict[str, Any]] = field(default_factory=list)
    # How many times this record was saved: of two copies of one record (the DRP host's and a
    # worker's), the one saved more often is the later (`runbooks.records`).
    revision: int = 0

    def begin_run(self) -> None:
        """A new run of this operation starts: an ended run goes into the history."""
        if self.outcome != "running":
            self.history.append(
                {
                    "run_ended": self.ended.isoformat() if self.ended else None,
                    "outcome": self.outcome,
                    "message": self.message,
                }
            )
            self.outcome, self.message, self.ended = "running", "", None

    # -- milestones and memory ---------------------------------------------------------------
    def reach(self, milestone: Milestone, at: datetime) -> bool:
        """Record a milestone the first time it is proved; True if this was the first time."""
        if milestone.value in self.milestones:
            return False
        self.milestones[milestone.value] = at
        return True

    @property
    def service_verified_at(self) -> datetime | None:
        return self.milestones.get(Milestone.SERVICE_VERIFIED.value)

    @service_verified_at.setter
    def service_verified_at(self, at: datetime | None) -> None:
        if at is None:
            self.milestones.pop(Milestone.SERVICE_VERIFIED.value, None)
        else:
            self.milestones[Milestone.SERVICE_VERIFIED.value] = at

    @property
    def frozen_at(self) -> datetime | None:
        return self.milestones.get(Milestone.FROZEN.value)

    def remembered(self, section: str, key: str) -> dict[str, Any] | None:
        return next((d for d in self.memory.get(section, []) if d.get("key") == key), None)

    def remember(self, section: str, key: str, data: dict[str, Any]) -> None:
        if self.remembered(section, key) is None:
            self.memory.setdefault(section, []).append({"key": key, **data})

    @property
    def dns_before(self) -> list[dict[str, Any]]:
        """The DNS records as they were before the first switch, one entry per record (zone,
        name, type, targets): what a return puts back. A zone's switch keeps its records
        together (`records`); they are listed one by one here."""
        entries: list[dict[str, Any]] = []
        for d in self.memory.get("dns_before", []):
            if "records" in d:
                entries += [{"key": d["key"], "zone": d["zone"], **r} for r in d["records"]]
            else:
                entries.append(d)
        return entries

    # -- measures ----------------------------------------------------------------------------
    @property
    def rto_seconds(self) -> float | None:
        """Order to service verified on the target."""
        if not self.order or self.service_verified_at is None:
            return None
        ordered = datetime.fromisoformat(self.order["answered_at"])
        return (self.service_verified_at - ordered).total_seconds()

    @property
    def downtime_seconds(self) -> float | None:
        """Write freeze to service verified on the target (a return's downtime)."""
        if self.frozen_at is None or self.service_verified_at is None:
            return None
        return (self.service_verified_at - self.frozen_at).total_seconds()

    @property
    def bytes_by_stage(self) -> dict[str, int]:
        totals: dict[str, int] = {}
        for r in self.timeline:
            if r.stage:
                totals[r.stage] = totals.get(r.stage, 0) + r.bytes
        return totals

    def add(self, record: StepRecord) -> None:
        for earlier in self.timeline:
            if earlier.step == record.step and earlier.outcome is Outcome.FAILED:
                self.history.append({"failed_step": earlier.data})
        self.timeline = [r for r in self.timeline if r.step != record.step] + [record]

    @property
    def totals(self) -> dict[str, int]:
        counts = {o.value: 0 for o in Outcome}
        for r in self.timeline:
            counts[r.outcome.value] += 1
        return {
            **counts,
            "bytes": sum(r.bytes for r in self.timeline),
            "files": sum(r.files for r in self.timeline),
        }

    # -- persistence -------------------------------------------------------------------------
    @property
    def data(self) -> dict[str, Any]:
        return {
            "operation_id": self.operation_id,
            "kind": self.kind,
            "site": self.site,
            "plan_hash": self.plan_hash,
            "started": self.started.isoformat(),
            "ended": self.ended.isoformat() if self.ended else None,
            "outcome": self.outcome,
            "message": self.message,
            "order": self.order,
            "backups": self.backups,
            "dns_before": self.dns_before,
            "memory": {k: v for k, v in self.memory.items() if k != "dns_before"},
            "milestones": {k: v.isoformat() for k, v in self.milestones.items()},
            "service_verified_at": (
                self.service_verified_at.isoformat() if self.service_verified_at else None
            ),
            "frozen_at": self.frozen_at.isoformat() if self.frozen_at else None,
            "rto_seconds": self.rto_seconds,
            "downtime_seconds": self.downtime_seconds,
            "bytes_by_stage": self.bytes_by_stage,
            "rpo_seconds": self.data_loss_seconds,
            "chosen_at": self.chosen_at.isoformat() if self.chosen_at else None,
            "totals": self.totals,
            "timeline": [r.data for r in self.timeline],
            "history": self.history,
            "revision": self.revision,
        }

    @classmethod
    def from_data(cls, data: dict[str, Any]) -> Report:
        milestones = {k: datetime.fromisoformat(v) for k, v in data.get("milestones", {}).items()}
        verified = data.get("service_verified_at")
        if verified and Milestone.SERVICE_VERIFIED.value not in milestones:
            milestones[Milestone.SERVICE_VERIFIED.value] = datetime.fromisoformat(verified)
        memory = {k: list(v) for k, v in data.get("memory", {}).items()}
        if data.get("dns_before"):
            memory["dns_before"] = list(data["dns_before"])
        return cls(
            operation_id=data["operation_id"],
            kind=data["kind"],
            site=data["site"],
            started=datetime.fromisoformat(data["started"]),
            plan_hash=data.get("plan_hash", ""),
            ended=datetime.fromisoformat(data["ended"]) if data.get("ended") else None,
            outcome=data.get("outcome", "running"),
            message=data.get("message", ""),
            order=data.get("order"),
            backups=data.get("backups", []),
            timeline=[StepRecord.from_data(r) for r in data.get("timeline", [])],
            milestones=milestones,
            memory=memory,
            history=list(data.get("history", [])),
            data_loss_seconds=data.get("rpo_seconds"),
            chosen_at=datetime.fromisoformat(data["chosen_at"]) if data.get("chosen_at") else None,
            revision=int(data.get("revision", 0)),
        )

    def finish(self, outcome: str, message: str) -> None:
        self.outcome = outcome
        self.message = message
        self.ended = datetime.now(UTC)


def report_path(reports_dir: Path, operation_id: str) -> Path:
    return reports_dir / f"{operation_id}.json"


def save_report(report: Report, reports_dir: Path) -> Path:
    """Write atomically: a crash never leaves half a report."""
    reports_dir.mkdir(parents=True, exist_ok=True)
    path = report_path(reports_dir, report.operation_id)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(report.data, indent=2) + "\n")
    os.replace(tmp, path)
    return path


def load_report(reports_dir: Path, operation_id: str) -> Report:
    path = report_path(reports_dir, operation_id)
    if not path.exists():
        known = sorted(p.stem for p in reports_dir.glob("*.json")) if reports_dir.exists() else []
        hint = f"; known: {', '.join(known[-5:])}" if known else ""
        raise ConfigError(f"no report for operation {operation_id!r} in {reports_dir}{hint}")
    return Report.from_data(json.loads(path.read_text()))
