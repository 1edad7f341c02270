"""The one Step shape every runbook step follows.

A step reads the world, decides, then writes:

- `describe()` says what the step would change, without touching anything (dry runs, plans);
- `check()` says whether the target state is already there, with a sentence giving the reason
  ("backup 2026-11-29T02:00 already restored on drp/app_users, marker present");
- `apply()` makes the change and returns what it did (bytes, files, details);
- `verify()` proves the result (row counts against the manifest, a URL through the DRP address)
  and raises `VerifyFailed` when it does not hold.

`Step.run()` owns the workflow and is the only thing flows call: check -> (skip with the reason)
or apply -> verify, timed, as a `StepRecord` for the report. A re-run after a crash re-checks and
skips what is done, so correctness never depends on the orchestrator's database.
"""

from __future__ import annotations

import logging
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any, Literal

from runbooks.errors import DrpError, StepFailed, VerifyFailed


class Outcome(StrEnum):
    APPLIED = "applied"  # the step changed the world and verified it
    SKIPPED = "skipped"  # check() found the target state already there
    PASSED = "passed"  # a read-only check (preflight, service check) found what it checks for
    WOULD_APPLY = "would-apply"  # dry run: the step would change the world
    FAILED = "failed"


@dataclass(frozen=True)
class Change:
    """One thing a step would change: what, where, how much. Part of the plan (and its hash)."""

    action: str  # copy, restore, update-record, send-ticket, check, ...
    target: str  # "drp:srv/app/www", "drp-lab.test www A", "ticket file:/var/tickets.jsonl"
    detail: str = ""  # "from backup-even set 2026-11-29T02:00 (1 204 files, 1.2 GB)"
    bytes: int | None = None  # data to move, when known

    @property
    def data(self) -> dict[str, Any]:
        return {
            "action": self.action,
            "target": self.target,
            "detail": self.detail,
            "bytes": self.bytes,
        }


@dataclass(frozen=True)
class Check:
    """The answer of `check()`/`verify()`: is the state there, and why we think so.

    `checked` is False when the step is not to run at all (done, with the reason why not): a
    read-only check then counts as skipped, not passed."""

    done: bool
    reason: str
    checked: bool = True
    # When the state came about, as the world says (a flag file's time): a milestone proved by
    # a step found done (a resume after a kill) dates from then, not from the resume.
    since: datetime | None = None


@dataclass(frozen=True)
class Applied:
    """What `apply()` did, for the timeline."""

    summary: str
    bytes: int = 0
    files: int = 0
    details: dict[str, Any] = field(default_factory=dict)


@dataclass
class StepRecord:
    """One line of the timeline."""

    step: str
    title: str
    outcome: Outcome
    reason: str
    started: datetime
    ended: datetime
    bytes: int = 0
    files: int = 0
    details: dict[str, Any] = field(default_factory=dict)
    stage: str = ""  # the part of the runbook it belongs to ("copy", "pre-sync"...), for totals

    @property
    def seconds(self) -> float:
        return (self.ended - self.started).total_seconds()

    @property
    def data(self) -> dict[str, Any]:
        return {
            "step": self.step,
            "title": self.title,
            "outcome": self.outcome.value,
            "reason": self.reason,
            "started": self.started.isoformat(),
            "ended": self.ended.isoformat(),
            "seconds": round(self.seconds, 3),
            "bytes": self.bytes,
            "files": self.files,
            "details": self.details,
            "stage": self.stage,
        }

    @classmethod
    def from_data(cls, data: dict[str, Any]) -> StepRecord:
        return cls(
            step=data["step"],
            title=data["title"],
            outcome=Outcome(data["outcome"]),
            reason=data["reason"],
            started=datetime.fromisoformat(data["started"]),
            ended=datetime.fromisoformat(data["ended"]),
            bytes=data.get("bytes", 0),
            files=data.get("files", 0),
            details=data.get("details", {}),
            stage=data.get("stage", ""),
        )


ProgressCallback = Callable[[str, float], None]  # (step key, percent 0-100)


class Milestone(StrEnum):
    """A moment an operation's measures are taken from, proved by the step that reaches it."""

    # The service answers on the target (the DRP server, or production on return): ends the RTO
    # (order -> here) and the downtime (frozen -> here). The first proof counts.
    SERVICE_VERIFIED = "service-verified"
    # Nothing more is written on the side being left (its write freeze): starts the downtime.
    FROZEN = "frozen"


WriteKind = Literal["files", "database", "dns", "ticket", "maintenance"]


@dataclass(frozen=True)
class Write:
    """One part of the world a step writes: on which host role, what kind, where.

    Runbooks read these instead of a step's type: a drill's cleanup sets aside every `files`
    and `database` write on its target before the drill runs."""

    role: str  # inventory role of the host written to ("drp", "production"); "" for DNS, tickets
    kind: WriteKind
    path: str = ""  # files: the directory written; database: the database's name
    environment: str = ""
    database: Any = None  # database writes: the inventory's `Database`


class Step(ABC):
    """Base class of every step. Subclasses fill in the hooks; `run()` owns the workflow.

    Class attributes:
      - `changes_world`: False for read-only steps (preflight checks); True ones never run
        before the customer's order.
      - `phase`: orders steps in a plan (lower first); steps of one phase may run in parallel.
    """

    changes_world: bool = True
    phase: int = 50
    # What the engine needs to know, declared by each step (the engine never looks at types
    # or keys): whether the step may run together with the other parallel steps of its phase,
    # which milestone its success proves, and which report section keeps what it is about to
    # replace (`remember()`), recorded once before the step first runs.
    parallel: bool = False
    proves: Milestone | None = None
    stage: str = ""  # what the report adds this step's bytes up under ("copy", "import"...)
    memory: str | None = None

    def __init__(self, key: str, title: str) -> None:
        self.key = key  # unique within an operation, stable across runs (cache key, report)
        self.title = title
        self.log = logging.getLogger(f"{type(self).__name__}[{key}]")

    # -- hooks -------------------------------------------------------------------------------
    @abstractmethod
    def describe(self) -> list[Change]:
        """What this step would change. Reads nothing it must not; never writes."""

    @abstractmethod
    def check(self) -> Check:
        """Is the target state already there? The reason is a sentence an operator can read."""

    @abstractmethod
    def apply(self, progress: ProgressCallback | None = None) -> Applied:
        """Make the change. Only called when `check()` said it is not done."""

    def verify(self) -> Check:
        """Prove the result; by default, `check()` must now say done."""
        return self.check()

    def writes(self) -> list[Write]:
        """The parts of the world this step writes (none for a read-only step)."""
        return []

    def remember(self) -> dict[str, Any]:
        """For a step with a `memory` section: the state it is about to replace."""
        raise NotImplementedError(f"{type(self).__name__} keeps no memory")

    # -- workflow ----------------------------------------------------------------------------
    def run(self, *, dry_run: bool = False, progress: ProgressCallback | None = None) -> StepRecord:
        """check -> skip (with its reason) | dry-run description | apply -> verify."""
        started = datetime.now(UTC)
        t0 = time.monotonic()

        def record(outcome: Outcome, reason: str, applied: Applied | None = None) -> StepRecord:
            ended = started + timedelta(seconds=time.monotonic() - t0)
            return StepRecord(
                step=self.key,
                title=self.title,
                outcome=outcome,
                reason=reason,
                started=started,
                ended=ended,
                bytes=applied.bytes if applied else 0,
                files=applied.files if applied else 0,
                details=dict(applied.details) if applied else {},
                stage=self.stage,
            )

        try:
            state = self.check()
        except DrpError:
            raise
        except Exception as err:  # a reader failing is a step failure with context
            raise StepFailed(f"{self.title}: could not check the current state: {err}") from err
        if state.done and not self.changes_world and state.checked:
            self.log.info("passed: %s", state.reason)
            return record(Outcome.PASSED, state.reason)
        if state.done:
            self.log.info("skip: %s", state.reason)
            skipped = record(Outcome.SKIPPED, state.reason)
            if state.since is not None:
                skipped.details["since"] = state.since.isoformat()
            return skipped
        if dry_run:
            changes = "; ".join(f"{c.action} {c.target}" for c in self.describe())
            return record(Outcome.WOULD_APPLY, f"would {changes}" if changes else state.reason)
        if not self.changes_world:
            # A read-only step that is not "done" found a problem: that is its failure.
            raise StepFailed(f"{self.title}: {state.reason}")
        self.log.info("apply: %s", state.reason)
        try:
            applied = self.apply(progress)
        except DrpError:
            raise
        except Exception as err:
            raise StepFailed(f"{self.title}: {err}") from err
        try:
            proof = self.verify()
        except DrpError:
            raise
        except Exception as err:  # a reader failing after the change is a failed step too
            raise VerifyFailed(f"{self.title}: applied, but could not be verified: {err}") from err
        if not proof.done:
            raise VerifyFailed(f"{self.title}: applied, but verification failed: {proof.reason}")
        return record(Outcome.APPLIED, f"{applied.summary}; verified: {proof.reason}", applied)


class ReadOnlyStep(Step):
    """A check that changes nothing (preflight, service checks): `check()` is the whole step;
    satisfied, the step has passed (not skipped: there was nothing to do in the first place);
    not satisfied, the step fails with its reason."""

    changes_world = False

    def apply(self, progress: ProgressCallback | None = None) -> Applied:
        raise StepFailed(f"{self.title}: a read-only step has nothing to apply")
