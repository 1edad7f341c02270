"""The engine, with plain in-memory steps: what runs, in which order, and what the report says."""

from __future__ import annotations

import io
import threading
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from rich.console import Console

from runbooks.engine import OperationRun, Runbook, phase_groups, run_here, run_preflight
from runbooks.errors import DrpError, StepFailed
from runbooks.gate import GateTimeout, OrderRecord
from runbooks.render import report_markdown, report_table
from runbooks.report import Report
from runbooks.steps import (
    Applied,
    Change,
    Check,
    Milestone,
    ProgressCallback,
    ReadOnlyStep,
    Step,
)


class World:
    """What the test steps write to, and the order they wrote in."""

    def __init__(self) -> None:
        self.values: dict[str, str] = {}
        self.log: list[str] = []
        self.lock = threading.Lock()


class SetValue(Step):
    def __init__(
        self,
        world: World,
        key: str,
        value: str,
        *,
        phase: int = 20,
        parallel: bool = False,
        proves: Milestone | None = None,
        fail: bool = False,
        delay: float = 0.0,
    ) -> None:
        super().__init__(key, f"Set {key}")
        self.world, self.value, self.fail, self.delay = world, value, fail, delay
        self.phase, self.parallel, self.proves = phase, parallel, proves

    def describe(self) -> list[Change]:
        return [Change("set", self.key, self.value)]

    def check(self) -> Check:
        now = self.world.values.get(self.key)
        return Check(now == self.value, f"{self.key} is {now}")

    def apply(self, progress: ProgressCallback | None = None) -> Applied:
        with self.world.lock:
            self.world.log.append(f"start {self.key}")
        time.sleep(self.delay)
        if self.fail:
            raise StepFailed(f"{self.key} cannot be set")
        with self.world.lock:
            self.world.values[self.key] = self.value
            self.world.log.append(f"end {self.key}")
        return Applied(f"set {self.key}", bytes=10)


class Remembering(SetValue):
    memory = "before"

    def remember(self) -> dict[str, Any]:
        self.world.log.append(f"remember {self.key}")
        return {"value": self.world.values.get(self.key)}


class Reachable(ReadOnlyStep):
    def __init__(self, world: World, ok: bool = True) -> None:
        super().__init__("preflight-reach", "Reach the world")
        self.world, self.ok = world, ok

    def describe(self) -> list[Change]:
        return [Change("check", "world")]

    def check(self) -> Check:
        return Check(self.ok, "reachable" if self.ok else "unreachable: no route")


def order(decision: str = "activate", plan_hash: str = "") -> OrderRecord:
    return OrderRecord(
        ordered_by="Jane Customer",
        reference="REF-1",
        decision=decision,
        data_loss_acknowledged=True,
        plan_hash=plan_hash,
        answered_at=datetime.now(UTC),
        via="test",
    )


def make_run(world: World, steps: list[Step], *, preflight_ok: bool = True):
    runbook = Runbook("drill", [Reachable(world, preflight_ok)], steps, done="all done")
    plan = runbook.plan("drill-20261201-1000-abcd", "lab")
    report = Report("drill-20261201-1000-abcd", "drill", "lab", started=datetime.now(UTC))
    saved: list[str] = []
    run = OperationRun(
        runbook, plan, report, save=lambda r: saved.append(r.outcome), submit=_threaded
    )
    return run, run_preflight(runbook.preflight), saved


class _Thread:
    def __init__(self, step: Step) -> None:
        self.box: dict[str, Any] = {}
        self.thread = threading.Thread(target=self._run, args=(step,))
        self.thread.start()

    def _run(self, step: Step) -> None:
        self.box["pending"] = run_here(step)

    def result(self) -> dict[str, Any]:
        self.thread.join()
        return self.box["pending"].result()


def _threaded(step: Step) -> _Thread:
    return _Thread(step)


def test_parallel_steps_of_one_phase_run_together_others_alone_in_plan_order() -> None:
    world = World()
    steps: list[Step] = [
        SetValue(world, "b-copy", "1", phase=20, parallel=True, delay=0.2),
        SetValue(world, "a-copy", "1", phase=20, parallel=True, delay=0.2),
        SetValue(world, "c-ticket", "1", phase=50),
        SetValue(world, "d-import", "1", phase=30, parallel=True),
    ]
    groups = phase_groups(Runbook("drill", [], steps).steps)
    keys = [[s.key for s in g] for g in groups]
    assert keys == [["a-copy", "b-copy"], ["d-import"], ["c-ticket"]]
    run, findings, _ = make_run(world, steps)
    run.run(findings, gate=lambda plan_hash: order(plan_hash=plan_hash))
    # Both copies started before either ended; the ticket came last.
    assert world.log[:2] == ["start a-copy", "start b-copy"] or world.log[:2] == [
        "start b-copy",
        "start a-copy",
    ]
    assert world.log[-1] == "end c-ticket"
    assert run.report.outcome == "succeeded" and run.report.message == "all done"


def test_a_milestone_is_set_by_its_first_proof_and_memory_is_kept_before_the_change() -> None:
    world = World()
    world.values["dns"] = "production"
    steps: list[Step] = [
        SetValue(world, "verify-1", "ok", phase=40, proves=Milestone.SERVICE_VERIFIED),
        Remembering(world, "dns", "drp", phase=60),
        SetValue(world, "verify-2", "ok", phase=70, proves=Milestone.SERVICE_VERIFIED),
    ]
    run, findings, _ = make_run(world, steps)
    run.run(findings, gate=lambda plan_hash: order(plan_hash=plan_hash))
    report = run.report
    first = next(r for r in report.timeline if r.step == "verify-1")
    assert report.service_verified_at == first.ended
    assert report.rto_seconds is not None and report.rto_seconds >= 0
    assert report.memory["before"] == [{"key": "dns", "value": "production"}]
    assert world.log.index("remember dns") < world.log.index("start dns")
    assert report.bytes_by_stage == {}  # the test steps name no stage


def test_a_failure_stops_after_its_group_and_the_report_says_failed() -> None:
    world = World()
    steps: list[Step] = [
        SetValue(world, "a", "1", parallel=True, fail=True),
        SetValue(world, "b", "1", parallel=True),
        SetValue(world, "later", "1", phase=50),
    ]
    run, findings, saved = make_run(world, steps)
    with pytest.raises(StepFailed, match="a cannot be set"):
        run.run(findings, gate=lambda plan_hash: order(plan_hash=plan_hash))
    assert world.values == {"b": "1"}  # its group-mate finished; nothing after it ran
    assert run.report.outcome == "failed"
    outcomes = {r.step: r.outcome.value for r in run.report.timeline}
    assert outcomes["a"] == "failed" and outcomes["b"] == "applied" and "later" not in outcomes
    assert saved[-1] == "failed"


def test_a_preflight_problem_stops_before_the_gate_with_nothing_changed() -> None:
    world = World()
    asked: list[str] = []
    run, findings, _ = make_run(world, [SetValue(world, "a", "1")], preflight_ok=False)
    with pytest.raises(DrpError, match="unreachable: no route"):
        run.run(findings, gate=lambda plan_hash: asked.append(plan_hash) or order())
    assert asked == [] and world.values == {} and run.report.outcome == "failed"


def test_preflight_checks_that_pass_show_as_passed_in_the_timeline() -> None:
    world = World()
    run, findings, _ = make_run(world, [SetValue(world, "a", "1")])
    world.values["a"] = "1"  # nothing to do: skipped
    run.run(findings, gate=lambda plan_hash: order(plan_hash=plan_hash))
    outcomes = {r.step: (r.outcome.value, r.reason) for r in run.report.timeline}
    assert outcomes == {"preflight-reach": ("passed", "reachable"), "a": ("skipped", "a is 1")}
    assert run.report.totals["passed"] == 1 and run.report.totals["skipped"] == 1
    # The artifact's timeline and the terminal's table say so too.
    row = next(line for line in report_markdown(run.report).splitlines() if "Reach the" in line)
    assert "| passed | reachable |" in row
    console = Console(file=io.StringIO(), width=200)
    console.print(report_table(run.report))
    table_row = next(line for line in console.file.getvalue().splitlines() if "Reach the" in line)
    assert "passed" in table_row and "skipped" not in table_row


def test_a_refusal_or_a_timeout_ends_the_operation_with_nothing_changed() -> None:
    world = World()
    run, findings, _ = make_run(world, [SetValue(world, "a", "1")])
    run.run(findings, gate=lambda plan_hash: order("refuse", plan_hash))
    assert run.report.outcome == "refused" and world.values == {}

    def closed(plan_hash: str) -> OrderRecord:
        raise GateTimeout("no order was given within 5 s; nothing was changed")

    run, findings, _ = make_run(world, [SetValue(world, "a", "1")])
    with pytest.raises(GateTimeout):
        run.run(findings, gate=closed)
    assert run.report.outcome == "timed-out" and world.values == {}


def test_an_order_given_for_this_plan_stands_on_resume_and_done_steps_are_skipped() -> None:
    world = World()
    steps: list[Step] = [SetValue(world, "a", "1"), SetValue(world, "b", "2", phase=30)]
    run, findings, _ = make_run(world, steps)
    run.report.order = order(plan_hash=run.plan.hash).data
    world.values["a"] = "1"  # done by an earlier run

    def never(plan_hash: str) -> OrderRecord:
        raise AssertionError("the gate must not open again for an order already given")

    run.run(findings, gate=never)
    outcomes = {r.step: (r.outcome.value, r.reason) for r in run.report.timeline}
    assert outcomes["a"] == ("skipped", "a is 1") and outcomes["b"][0] == "applied"


def test_a_record_from_an_earlier_run_is_reported_as_skipped_with_its_time() -> None:
    world = World()
    step = SetValue(world, "a", "1")
    earlier = step.run().data
    earlier["started"] = (datetime.now(UTC) - timedelta(hours=1)).isoformat()
    earlier["ended"] = (datetime.now(UTC) - timedelta(minutes=59)).isoformat()

    class Cached:
        def result(self) -> dict[str, Any]:
            return earlier

    run, findings, _ = make_run(world, [step])
    run.submit = lambda _step: Cached()
    run.run(findings, gate=lambda plan_hash: order(plan_hash=plan_hash))
    record = next(r for r in run.report.timeline if r.step == "a")
    assert record.outcome.value == "skipped"
    assert record.reason.startswith("done in an earlier run of drill-20261201-1000-abcd at ")


def test_a_cached_record_whose_check_no_longer_holds_runs_the_step_again() -> None:
    world = World()
    step = SetValue(world, "a", "1")
    earlier = step.run().data
    earlier["started"] = (datetime.now(UTC) - timedelta(hours=1)).isoformat()
    earlier["ended"] = (datetime.now(UTC) - timedelta(minutes=59)).isoformat()
    del world.values["a"]  # the world changed since: what the step did is gone

    class Cached:
        def result(self) -> dict[str, Any]:
            return earlier

    run, findings, _ = make_run(world, [step])
    run.submit = lambda _step: Cached()
    run.run(findings, gate=lambda plan_hash: order(plan_hash=plan_hash))
    record = next(r for r in run.report.timeline if r.step == "a")
    assert record.outcome.value == "applied" and world.values["a"] == "1"


class BrokenVerify(SetValue):
    def verify(self) -> Check:
        raise ConnectionError("the database went away")


def test_an_error_in_verify_is_a_failed_step_and_a_failed_report() -> None:
    world = World()
    run, findings, saved = make_run(world, [BrokenVerify(world, "a", "1")])
    with pytest.raises(DrpError, match="could not be verified: the database went away"):
        run.run(findings, gate=lambda plan_hash: order(plan_hash=plan_hash))
    record = next(r for r in run.report.timeline if r.step == "a")
    assert record.outcome.value == "failed" and run.report.outcome == "failed"
    assert saved[-1] == "failed"


class Crashing(SetValue):
    def check(self) -> Check:
        raise KeyError("unexpected")


def test_any_error_of_a_step_ends_the_report_failed_never_running() -> None:
    world = World()
    run, findings, _ = make_run(world, [Crashing(world, "a", "1")])
    run.submit = lambda step: _Raising(KeyError("unexpected"))
    with pytest.raises(KeyError):
        run.run(findings, gate=lambda plan_hash: order(plan_hash=plan_hash))
    assert run.report.outcome == "failed"
    assert next(r for r in run.report.timeline if r.step == "a").outcome.value == "failed"


class _Raising:
    def __init__(self, error: Exception) -> None:
        self.error = error

    def result(self) -> dict[str, Any]:
        raise self.error


def test_a_resume_keeps_the_failed_attempt_and_the_earlier_outcome_in_the_history() -> None:
    world = World()
    flaky = SetValue(world, "a", "1", fail=True)
    run, findings, _ = make_run(world, [flaky])
    with pytest.raises(StepFailed):
        run.run(findings, gate=lambda plan_hash: order(plan_hash=plan_hash))
    report = run.report
    flaky.fail = False  # the cause was fixed; the operation is resumed
    again = OperationRun(run.runbook, run.plan, report, save=lambda r: None)
    again.run(findings, gate=lambda plan_hash: order(plan_hash=plan_hash))
    assert report.outcome == "succeeded"
    assert next(r for r in report.timeline if r.step == "a").outcome.value == "applied"
    assert {"run_ended", "outcome", "message"} <= set(report.history[0])
    assert report.history[0]["outcome"] == "failed"
    failed = [h["failed_step"] for h in report.history if "failed_step" in h]
    assert failed and failed[0]["step"] == "a" and "cannot be set" in failed[0]["reason"]
    assert report.data["history"] == report.history


class FoundFrozen(SetValue):
    """A freeze already in place when the step runs (a run killed after making it): the world
    says since when."""

    def __init__(self, world: World, since: datetime) -> None:
        super().__init__(world, "freeze", "on", phase=30, proves=Milestone.FROZEN)
        self.since = since

    def check(self) -> Check:
        done = self.world.values.get(self.key) == self.value
        return Check(done, "frozen", since=self.since if done else None)


def test_a_milestone_found_done_on_resume_dates_from_when_the_world_says() -> None:
    """Killed right after the freeze was made: the resume finds it, and the downtime starts
    when the freeze was made, not when the resume saw it."""
    world = World()
    made = datetime.now(UTC) - timedelta(minutes=7)
    world.values["freeze"] = "on"
    run, findings, _ = make_run(world, [FoundFrozen(world, made)])
    run.run(findings, gate=lambda plan_hash: order(plan_hash=plan_hash))
    [record] = [r for r in run.report.timeline if r.step == "freeze"]
    assert record.outcome.value == "skipped"
    assert run.report.frozen_at == made
