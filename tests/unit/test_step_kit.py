"""The step kit: a step over a real file shows the contract every step keeps."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from flows.order_form import Order
from runbooks.errors import StepFailed, UnsafePlan, VerifyFailed
from runbooks.gate import order_problems
from runbooks.operation import check_operation_id, new_operation_id
from runbooks.plan import Plan
from runbooks.render import data_loss_sentence, human_duration, report_markdown
from runbooks.report import Report, load_report, save_report
from runbooks.steps import Applied, Change, Check, Outcome, Step


class WriteFile(Step):
    def __init__(self, path: Path, text: str, *, break_verify: bool = False) -> None:
        super().__init__(f"write-{path.name}", f"Write {path.name}")
        self.path, self.text, self.break_verify = path, text, break_verify

    def describe(self) -> list[Change]:
        return [Change("write", str(self.path), f"{len(self.text)} characters", len(self.text))]

    def check(self) -> Check:
        if self.path.exists() and self.path.read_text() == self.text:
            return Check(True, f"{self.path.name} already holds the text")
        return Check(False, f"{self.path.name} does not hold the text yet")

    def apply(self, progress=None) -> Applied:
        self.path.write_text(self.text if not self.break_verify else "wrong")
        return Applied(f"wrote {self.path.name}", bytes=len(self.text), files=1)


class ReadOnlyProbe(Step):
    changes_world = False
    phase = 10

    def __init__(self, ok: bool) -> None:
        super().__init__("probe", "Probe")
        self.ok = ok

    def describe(self) -> list[Change]:
        return [Change("check", "somewhere")]

    def check(self) -> Check:
        return Check(self.ok, "reachable" if self.ok else "host unreachable on port 22")

    def apply(self, progress=None) -> Applied:  # pragma: no cover - never called
        raise AssertionError("read-only steps never apply")


def test_dry_run_changes_nothing_and_says_what_it_would_do(tmp_path: Path) -> None:
    record = WriteFile(tmp_path / "a.txt", "hello").run(dry_run=True)
    assert record.outcome is Outcome.WOULD_APPLY
    assert "would write" in record.reason
    assert not (tmp_path / "a.txt").exists()


def test_apply_then_second_run_skips_with_its_reason(tmp_path: Path) -> None:
    step = WriteFile(tmp_path / "a.txt", "hello")
    first = step.run()
    assert first.outcome is Outcome.APPLIED and first.bytes == 5
    assert (tmp_path / "a.txt").read_text() == "hello"
    second = step.run()
    assert second.outcome is Outcome.SKIPPED
    assert second.reason == "a.txt already holds the text"


def test_failed_verification_is_an_error_not_a_success(tmp_path: Path) -> None:
    with pytest.raises(VerifyFailed, match=r"verification failed: a\.txt does not hold"):
        WriteFile(tmp_path / "a.txt", "hello", break_verify=True).run()


def test_read_only_step_that_finds_a_problem_fails_with_the_reason() -> None:
    assert ReadOnlyProbe(True).run().outcome is Outcome.PASSED
    with pytest.raises(StepFailed, match="Probe: host unreachable on port 22"):
        ReadOnlyProbe(False).run()


class NotToRun(ReadOnlyProbe):
    def check(self) -> Check:
        return Check(True, "not run again: the drill is over", checked=False)


def test_a_check_that_passes_is_passed_and_one_not_made_is_skipped() -> None:
    passed = ReadOnlyProbe(True).run()
    assert (passed.outcome.value, passed.reason) == ("passed", "reachable")
    skipped = NotToRun(True).run()
    assert skipped.outcome.value == "skipped"
    assert skipped.reason == "not run again: the drill is over"


def test_plan_is_sorted_counted_and_hash_follows_content(tmp_path: Path) -> None:
    steps = [
        WriteFile(tmp_path / "b.txt", "x"),
        ReadOnlyProbe(True),
        WriteFile(tmp_path / "a.txt", "y"),
    ]
    plan = Plan.build("drill-20261129-0200-abcd", "drill", "lab", steps, {"backup": "set 1"})
    assert [s.key for s in plan.steps] == ["probe", "write-a.txt", "write-b.txt"]
    assert plan.counts == {"steps": 3, "changes": 3, "check": 1, "write": 2}
    same = Plan.build(
        "drill-20261129-0200-abcd", "drill", "lab", list(reversed(steps)), {"backup": "set 1"}
    )
    assert same.hash == plan.hash
    other = Plan.build("drill-20261129-0200-abcd", "drill", "lab", steps, {"backup": "set 2"})
    assert other.hash != plan.hash
    assert json.loads(plan.to_json())["hash"] == plan.hash
    plan.require_hash(plan.hash)
    with pytest.raises(UnsafePlan, match="plan changed since it was approved"):
        plan.require_hash(other.hash)


def test_plan_refuses_two_steps_with_one_key(tmp_path: Path) -> None:
    with pytest.raises(UnsafePlan, match=r"two steps share a key: write-a\.txt"):
        Plan.build("op-1234", "drill", "lab", [WriteFile(tmp_path / "a.txt", "1")] * 2)


def test_operation_ids() -> None:
    op = new_operation_id("activate", datetime(2026, 11, 29, 2, 15, tzinfo=UTC))
    assert op.startswith("activate-20261129-0215-")
    assert check_operation_id(op) == op
    with pytest.raises(ValueError, match="lowercase letters"):
        check_operation_id("../etc/passwd")


def test_incomplete_orders_are_refused_with_reasons() -> None:
    order = Order(ordered_by="Jane Doe", reference="T-1", decision="activate", plan_hash="abc")
    assert order_problems(order, "abc") == [
        "the data loss is not acknowledged (tick 'Data loss acknowledged' to activate)"
    ]
    good = order.model_copy(update={"data_loss_acknowledged": True})
    assert order_problems(good, "abc") == []
    assert "is not the plan shown" in order_problems(good, "def")[0]
    refuse = Order(ordered_by="Jane Doe", reference="T-1", decision="refuse")
    assert order_problems(refuse, "abc") == []


def test_report_round_trip_and_rto(tmp_path: Path) -> None:
    t0 = datetime(2026, 11, 29, 10, 0, tzinfo=UTC)
    report = Report("drill-20261129-1000-abcd", "drill", "lab", started=t0)
    report.order = {
        "decision": "activate",
        "ordered_by": "Jane",
        "reference": "T-1",
        "answered_at": (t0 + timedelta(minutes=1)).isoformat(),
        "via": "terminal",
    }
    report.add(WriteFile(tmp_path / "a.txt", "hello").run())
    report.service_verified_at = t0 + timedelta(minutes=31)
    report.data_loss_seconds = 5400
    report.finish("succeeded", "service verified on the DRP server")
    assert report.rto_seconds == 1800
    save_report(report, tmp_path / "reports")
    again = load_report(tmp_path / "reports", report.operation_id)
    assert again.data == report.data
    md = report_markdown(again)
    assert "RTO (order to service verified): 30 min 00 s" in md
    assert "RPO (data-loss window): 1 h 30 min" in md


def test_data_loss_sentence_says_when_in_plain_words() -> None:
    now = datetime(2026, 11, 29, 5, 12, tzinfo=UTC)
    assert data_loss_sentence(datetime(2026, 11, 29, 2, 0, tzinfo=UTC), now) == (
        "data written after 02:00 today (UTC) will be lost (3 h 12 min of data)"
    )
    assert "yesterday" in data_loss_sentence(datetime(2026, 11, 28, 23, 0, tzinfo=UTC), now)
    assert human_duration(59.94) == "59.9 s"
