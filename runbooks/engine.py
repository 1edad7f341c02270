"""The engine: one way to run every runbook (activation, drill, return, cleanup...).

A *runbook* is what an operation will do: read-only preflight steps, then, behind the customer's
order, an ordered list of steps cut into phases. The engine runs it:

1. the preflight's findings go into the report; any problem stops here, nothing changed;
2. the order: an order already given for this very plan (a resumed operation) stands, otherwise
   the gate (passed in) waits for one; a refusal or a timeout ends the operation unchanged;
3. the steps, phase by phase: the steps that declare themselves `parallel` within one phase
   run together, any other one alone, in plan order. Before a step that keeps a `memory` first
   runs, what it is about to replace is recorded (the DNS records before a switch). A step that
   `proves` a milestone sets it in the report the first time it succeeds (the RTO and downtime
   clocks). The report is saved after every step, so a crash leaves the timeline so far;
4. the report's outcome and message, saved and published.

The engine never looks at a step's type or key: steps declare what it needs
(`runbooks.steps.Step`). It imports no Prefect: how a step is run is passed in (`Submit`). Flows
pass a Prefect task with its result cache; tests and `drp plan` may run steps here and now.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from runbooks.errors import DrpError, StepFailed
from runbooks.gate import GateTimeout, OrderPolicy, OrderRecord
from runbooks.plan import Plan
from runbooks.report import Report
from runbooks.steps import Outcome, Step, StepRecord


class Pending(Protocol):
    """A step under way: `result()` waits for its timeline record (as data) or raises."""

    def result(self) -> dict[str, Any]: ...


Submit = Callable[[Step], Pending]


class Lock(Protocol):
    """The site lock (`runbooks.site_lock.SiteLock`): one operation per site. Each method
    returns what to log; `take` raises a DrpError naming the holder when another holds it."""

    def take(self) -> str: ...

    def ordered(self, order: dict[str, Any]) -> None: ...

    def release(self) -> str: ...


Gate = Callable[[str], OrderRecord]  # plan hash -> the complete answer (activate or refuse)


@dataclass
class _Done:
    value: dict[str, Any] | None = None
    error: DrpError | None = None

    def result(self) -> dict[str, Any]:
        if self.error is not None:
            raise self.error
        assert self.value is not None
        return self.value


def run_here(step: Step) -> Pending:
    """Run the step in this thread, now (no cache): for tests and tools without Prefect."""
    try:
        return _Done(value=step.run().data)
    except DrpError as err:
        return _Done(error=err)


def phase_groups(steps: Sequence[Step]) -> list[list[Step]]:
    """Plan order cut into groups that run together: consecutive `parallel` steps of one
    phase form a group; any other step is a group of its own."""
    groups: list[list[Step]] = []
    for step in steps:
        last = groups[-1][-1] if groups else None
        if last is not None and step.parallel and last.parallel and last.phase == step.phase:
            groups[-1].append(step)
        else:
            groups.append([step])
    return groups


def sorted_steps(steps: Sequence[Step]) -> list[Step]:
    return sorted(steps, key=lambda s: (s.phase, s.key))


@dataclass
class Runbook:
    """What one operation will do: its preflight and, after the order, its steps."""

    kind: str  # activate | drill | return
    preflight: list[Step]
    steps: list[Step]  # after the order
    facts: dict[str, str] = field(default_factory=dict)  # the brief's facts (part of the hash)
    done: str = "finished"  # the report's message when every step succeeded
    backups: list[dict[str, Any]] = field(default_factory=list)  # what is restored, for the report
    # Data lost if the order were given at that moment (None: not known; 0: none, as on return).
    data_loss_at: Callable[[datetime], float | None] = lambda _moment: None
    # False for runbooks that change nothing served (staging): no gate, no order.
    order_needed: bool = True

    def __post_init__(self) -> None:
        self.steps = sorted_steps(self.steps)

    def plan(self, operation_id: str, site: str) -> Plan:
        return Plan.build(operation_id, self.kind, site, [*self.preflight, *self.steps], self.facts)


@dataclass
class PreflightFinding:
    """One preflight step's result: its record when it passed, else None and the reason."""

    step: Step
    record: StepRecord | None
    reason: str

    @property
    def ok(self) -> bool:
        return self.record is not None

    @property
    def sentence(self) -> str:
        """The reason after the step's title, unless it already starts with it."""
        title = self.step.title
        return self.reason if self.reason.startswith(f"{title}:") else f"{title}: {self.reason}"


def run_preflight(steps: Sequence[Step]) -> list[PreflightFinding]:
    """Every read-only check, problems collected rather than raised (a plan shows them all)."""
    findings = []
    for step in steps:
        try:
            record = step.run()
            findings.append(PreflightFinding(step, record, record.reason))
        except DrpError as err:
            findings.append(PreflightFinding(step, None, str(err)))
    return findings


@dataclass
class OperationRun:
    """Runs one runbook for one operation, keeping its report.

    `save` persists the report (called after every change); `publish` shows it where operators
    look (a Prefect artifact); `submit` runs a world-changing step (a cached task) and `check` a
    read-only step after the order (never cached: it says how the world is now)."""

    runbook: Runbook
    plan: Plan
    report: Report
    save: Callable[[Report], None]
    publish: Callable[[Report], None] = lambda _report: None
    submit: Submit = run_here
    check: Submit = run_here
    fresh: Submit = run_here  # runs a step again, bypassing any cache
    log: logging.Logger | logging.LoggerAdapter[Any] = field(
        default_factory=lambda: logging.getLogger("drp.engine")
    )
    lock: Lock | None = None  # the site lock, taken before the gate (None: tools and tests)
    orders: OrderPolicy | None = None  # signs orders and bounds their age (None: hash only)
    asked_again: str = ""  # why an order given earlier was not taken (shown above the form)
    _locked: bool = field(default=False, init=False, repr=False)

    def run(self, findings: Sequence[PreflightFinding], gate: Gate) -> dict[str, Any]:
        self.report.begin_run()
        try:
            self._preflight(findings)
            self._take_lock()
            if self.runbook.order_needed and not self._ordered(gate):
                self._release_lock()
                return self.report.data
            self.run_steps(self.runbook.steps)
        except Exception as err:  # whatever stops the run, the report says so
            if self.report.outcome == "running":  # a timed-out gate has already said so
                self._finish("failed", str(err) or type(err).__name__)
            if self.report.outcome == "timed-out":  # a failed one keeps it for its resume
                self._release_lock()
            raise
        self._finish("succeeded", self.runbook.done)
        self._release_lock()
        return self.report.data

    # -- the site lock -----------------------------------------------------------------------
    def _take_lock(self) -> None:
        if self.lock is not None:
            self.log.info("%s", self.lock.take())
            self._locked = True

    def _release_lock(self) -> None:
        """Once the operation has ended (not on failure: the resume goes on under it)."""
        if self.lock is None or not self._locked:
            return
        try:
            self.log.info("%s", self.lock.release())
            self._locked = False
        except DrpError as err:  # the outcome stands; the lock stays visible in `drp status`
            self.log.error("%s: release it with `drp unlock`", err)

    # -- 1. preflight ------------------------------------------------------------------------
    def _preflight(self, findings: Sequence[PreflightFinding]) -> None:
        report = self.report
        for finding in findings:
            if finding.record is not None:
                report.add(finding.record)
                self.log.info("%s", finding.sentence)
            else:
                self.log.error("%s", finding.sentence)
        report.plan_hash = self.plan.hash
        report.data_loss_seconds = self.runbook.data_loss_at(datetime.now(UTC))
        report.backups = self.runbook.backups
        self.save(report)
        failures = [f.sentence for f in findings if not f.ok]
        if failures:
            raise StepFailed(
                "preflight found problems, nothing was changed: " + "; ".join(failures)
            )

    # -- 2. the order ------------------------------------------------------------------------
    def _ordered(self, gate: Gate) -> bool:
        """True when the order to go on is given (now, or earlier for this very plan)."""
        report, plan_hash = self.report, self.plan.hash
        order = report.order
        if order and self._order_stands(order):
            self.log.info(
                "Order already given by %s (reference %s) at %s for plan %s: going on",
                order["ordered_by"], order["reference"], order["answered_at"], plan_hash,
            )  # fmt: skip
            return True
        try:
            given = gate(plan_hash)
        except GateTimeout as err:
            self._finish("timed-out", str(err))
            raise
        report.order = self._signed(given.data)
        if self.lock is not None and given.decision == "activate":
            self.lock.ordered(report.order)
        report.data_loss_seconds = self.runbook.data_loss_at(given.answered_at)
        self.save(report)
        if given.decision != "activate":
            self._finish("refused", f"order refused by {given.ordered_by}: nothing was changed")
            self.log.info("The order was refused by %s: nothing was changed.", given.ordered_by)
            return False
        return True

    def _order_stands(self, order: dict[str, Any]) -> bool:
        """An order stored in the report goes on only when it is for this plan (and, with a
        policy, signed with the site's secret and not expired); else the gate asks again."""
        if self.orders is None:
            return order.get("decision") == "activate" and order.get("plan_hash") == self.plan.hash
        why = self.orders.problem(self.report.operation_id, order, self.plan.hash, _now())
        if why is None:
            return True
        if order.get("decision") == "activate":
            self.asked_again = f"{why}; the order is asked for again"
            self.log.warning("The order given earlier is not taken: %s", self.asked_again)
        return False

    def _signed(self, order: dict[str, Any]) -> dict[str, Any]:
        return self.orders.sign(self.report.operation_id, order) if self.orders else order

    # -- 3. the steps ------------------------------------------------------------------------
    def run_steps(self, steps: Sequence[Step]) -> None:
        """Phase by phase; the first failure stops the operation once its group has ended."""
        run_started = datetime.now(UTC)
        for group in phase_groups(sorted_steps(steps)):
            for step in group:
                self._remember(step)
            pending = [
                (step, self.submit(step) if step.changes_world else self.check(step))
                for step in group
            ]
            failures: list[Exception] = []
            for step, under_way in pending:
                try:
                    record = StepRecord.from_data(under_way.result())
                    if record.started < run_started:  # from the cache: done in an earlier run
                        record = self._confirm_cached(step, record)
                except Exception as err:  # any error of a step is that step's failure
                    now = datetime.now(UTC)
                    # The timeline shows the title beside the reason: not twice.
                    why = (str(err) or type(err).__name__).removeprefix(f"{step.title}: ")
                    record = StepRecord(step.key, step.title, Outcome.FAILED, why, now, now)
                    failures.append(err)
                    self.report.add(record)
                    self.save(self.report)
                    continue
                self.report.add(record)
                self.log.info("%s: %s — %s", step.title, record.outcome.value, record.reason)
                at = _milestone_time(record)
                if step.proves is not None and self.report.reach(step.proves, at):
                    self.log.info("Milestone %s reached at %s", step.proves.value, at)
                self.save(self.report)
            if failures:
                raise failures[0]

    def _confirm_cached(self, step: Step, record: StepRecord) -> StepRecord:
        """A record from the cache counts only if the step's own check still says done (the
        world may have changed since: a database dropped, a tree altered). Otherwise the step
        runs again, for real."""
        try:
            state = step.check()
        except DrpError:
            raise
        except Exception as err:
            raise StepFailed(f"{step.title}: could not check the current state: {err}") from err
        if state.done:
            record.outcome = Outcome.SKIPPED
            record.reason = (
                f"done in an earlier run of {self.report.operation_id} at "
                f"{record.ended:%Y-%m-%d %H:%M:%S} UTC (cached), and checked again now: "
                f"{state.reason}"
            )
            return record
        self.log.warning(
            "%s: the cache says done, but the world does not (%s): running it again",
            step.title,
            state.reason,
        )
        return StepRecord.from_data(self.fresh(step).result())

    def _remember(self, step: Step) -> None:
        if step.memory is None or self.report.remembered(step.memory, step.key) is not None:
            return
        self.report.remember(step.memory, step.key, step.remember())
        self.save(self.report)

    # -- 4. the end --------------------------------------------------------------------------
    def _finish(self, outcome: str, message: str) -> None:
        self.report.finish(outcome, message)
        self.save(self.report)
        self.publish(self.report)


def _now() -> datetime:
    return datetime.now(UTC)


def _milestone_time(record: StepRecord) -> datetime:
    """When a step's success proves its milestone: when it ended, or, for a step found done,
    when the world says its state came about (a resume must not move the milestone later)."""
    since = record.details.get("since")
    if not since:
        return record.ended
    try:
        return min(record.ended, datetime.fromisoformat(str(since)))
    except ValueError:
        return record.ended
