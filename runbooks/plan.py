"""A run plan is a value: ordered steps, what each will change, counts, JSON and a hash.

The person who orders approves the plan's hash; a run refuses to apply a plan whose hash changed
since (the world moved: a newer backup, another DNS target). Renderers live in `runbooks.render`.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from runbooks.errors import UnsafePlan
from runbooks.steps import Change, Step


@dataclass(frozen=True)
class PlannedStep:
    key: str
    title: str
    phase: int
    changes_world: bool
    changes: tuple[Change, ...]

    @property
    def data(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "title": self.title,
            "phase": self.phase,
            "changes_world": self.changes_world,
            "changes": [c.data for c in self.changes],
        }


@dataclass(frozen=True)
class Plan:
    """What an operation will do, in order. Equal plans have equal hashes."""

    operation_id: str
    kind: str
    site: str
    steps: tuple[PlannedStep, ...]
    facts: tuple[tuple[str, str], ...] = ()  # the brief's facts: backups chosen, data-loss window

    @classmethod
    def build(
        cls,
        operation_id: str,
        kind: str,
        site: str,
        steps: Sequence[Step],
        facts: dict[str, str] | None = None,
    ) -> Plan:
        ordered = sorted(steps, key=lambda s: (s.phase, s.key))
        keys = [s.key for s in ordered]
        duplicates = sorted(k for k, n in Counter(keys).items() if n > 1)
        if duplicates:
            raise UnsafePlan(f"two steps share a key: {', '.join(duplicates)}")
        planned = tuple(
            PlannedStep(s.key, s.title, s.phase, s.changes_world, tuple(s.describe()))
            for s in ordered
        )
        return cls(operation_id, kind, site, planned, tuple(sorted((facts or {}).items())))

    @property
    def counts(self) -> dict[str, int]:
        actions = Counter(c.action for s in self.steps for c in s.changes)
        return {
            "steps": len(self.steps),
            "changes": sum(actions.values()),
            **dict(sorted(actions.items())),
        }

    @property
    def total_bytes(self) -> int:
        return sum(c.bytes or 0 for s in self.steps for c in s.changes)

    @property
    def data(self) -> dict[str, Any]:
        """Everything the hash covers. The operation id is in it: an order is for one operation."""
        return {
            "operation_id": self.operation_id,
            "kind": self.kind,
            "site": self.site,
            "facts": dict(self.facts),
            "steps": [s.data for s in self.steps],
        }

    @property
    def hash(self) -> str:
        canonical = json.dumps(self.data, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()[:16]

    def to_json(self) -> str:
        return json.dumps({**self.data, "counts": self.counts, "hash": self.hash}, indent=2)

    def require_hash(self, approved: str) -> None:
        """Refuse to go on when the plan changed since it was approved."""
        if approved != self.hash:
            raise UnsafePlan(
                f"the plan changed since it was approved (approved {approved}, now {self.hash}): "
                "review the new plan with `drp plan` and order again"
            )
