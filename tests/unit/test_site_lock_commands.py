"""The site lock with its real shell commands, run here in a directory standing for the DRP
host's home (the lab tests run the same commands over SSH), and the engine taking it."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from backup_helpers import LocalRunner

from runbooks import site_lock
from runbooks.engine import OperationRun, Runbook, run_preflight
from runbooks.errors import DrpError, StepFailed
from runbooks.gate import GateTimeout, OrderRecord
from runbooks.inventory import Site
from runbooks.report import Report
from runbooks.site_lock import LockInfo, SiteLock, SiteLocked
from runbooks.steps import Applied, Change, Check, ProgressCallback, ReadOnlyStep, Step

SITE = "lab"


class Touch(Step):
    """Writes a file in the home: what a world-changing step leaves behind."""

    def __init__(self, home: Path, name: str, fail: bool = False) -> None:
        super().__init__(f"touch-{name}", f"Touch {name}")
        self.home, self.name, self.fail = home, name, fail

    def describe(self) -> list[Change]:
        return [Change("create", self.name)]

    def check(self) -> Check:
        return Check((self.home / self.name).exists(), f"{self.name} exists")

    def apply(self, progress: ProgressCallback | None = None) -> Applied:
        if self.fail:
            raise StepFailed(f"{self.name} cannot be written")
        (self.home / self.name).write_text("x")
        return Applied(f"wrote {self.name}")


class Fine(ReadOnlyStep):
    def __init__(self) -> None:
        super().__init__("preflight-fine", "Everything reachable")

    def describe(self) -> list[Change]:
        return [Change("check", "world")]

    def check(self) -> Check:
        return Check(True, "reachable")


class FakeSite:
    """Only what SiteLock reads of a site: its name and inventory file."""

    name = SITE
    source = Path("config/site.yaml")


def lock_for(home: Path, operation_id: str, kind: str = "drill") -> SiteLock:
    @contextlib.contextmanager
    def host(_site: Site) -> Iterator[LocalRunner]:
        yield LocalRunner("drp", home)

    return SiteLock(FakeSite(), operation_id, kind, host=host)  # type: ignore[arg-type]


def answer(plan_hash: str, decision: str = "activate") -> OrderRecord:
    return OrderRecord(
        "Jane Customer", "REF-1", decision, True, plan_hash, datetime.now(UTC), "test"
    )


def operation(home: Path, operation_id: str, *, fail: bool = False) -> OperationRun:
    runbook = Runbook("drill", [Fine()], [Touch(home, f"{operation_id}.done", fail)], done="done")
    report = Report(operation_id, "drill", SITE, started=datetime.now(UTC))
    return OperationRun(
        runbook,
        runbook.plan(operation_id, SITE),
        report,
        save=lambda _r: None,
        lock=lock_for(home, operation_id),
    )


def holder(home: Path) -> LockInfo | None:
    return site_lock.read_lock(LocalRunner("drp", home))


def test_of_many_orchestrators_racing_for_the_lock_exactly_one_wins(tmp_path: Path) -> None:
    results: dict[str, str] = {}
    start = threading.Barrier(8)

    def race(n: int) -> None:
        lock = lock_for(tmp_path, f"drill-2026-{n}")
        start.wait()
        try:
            results[lock.operation_id] = lock.take()
        except SiteLocked as err:
            results[lock.operation_id] = f"refused: {err}"

    threads = [threading.Thread(target=race, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    winners = [op for op, said in results.items() if not said.startswith("refused")]
    assert len(winners) == 1
    held = holder(tmp_path)
    assert held is not None and held.operation_id == winners[0]
    for op, said in results.items():
        if op != winners[0]:
            assert "\n" not in said
            assert f"site lab is locked by operation {winners[0]} (drill, since " in said
            assert f"drp unlock -c config/site.yaml --operation-id {winners[0]}" in said
    assert sorted(p.name for p in (tmp_path / ".drp-lock").iterdir()) == [
        "ledger.jsonl",
        "lock.json",
    ]  # no temporary file left
    taken = [e["operation_id"] for e in site_lock.ledger(LocalRunner("drp", tmp_path))]
    assert taken == winners  # the winner, once, in the ledger


def test_a_second_operation_is_refused_before_its_gate_and_changes_nothing(
    tmp_path: Path,
) -> None:
    first = operation(tmp_path, "drill-a")
    second = operation(tmp_path, "drill-b")
    second_asked: list[str] = []

    def first_gate(plan_hash: str) -> OrderRecord:
        # While the first waits at its gate, the second one starts.
        with pytest.raises(SiteLocked) as refused:
            second.run(
                run_preflight(second.runbook.preflight),
                lambda h: second_asked.append(h) or answer(h),
            )
        assert "site lab is locked by operation drill-a (drill, since" in str(refused.value)
        assert "not ordered yet" in str(refused.value)
        return answer(plan_hash)

    first.run(run_preflight(first.runbook.preflight), first_gate)
    assert second_asked == []  # it never reached the gate
    assert not (tmp_path / "drill-b.done").exists()
    assert second.report.outcome == "failed"
    assert "locked by operation drill-a" in second.report.message
    assert first.report.outcome == "succeeded"
    assert holder(tmp_path) is None  # released at the end


def test_the_lock_names_who_ordered_once_the_order_is_given(tmp_path: Path) -> None:
    run = operation(tmp_path, "drill-a", fail=True)
    with pytest.raises(StepFailed):
        run.run(run_preflight(run.runbook.preflight), lambda h: answer(h))
    held = holder(tmp_path)
    assert held is not None
    assert (held.operation_id, held.ordered_by, held.reference) == (
        "drill-a",
        "Jane Customer",
        "REF-1",
    )
    assert "ordered by Jane Customer" in held.holder()


def test_a_failed_operation_keeps_the_lock_and_its_resume_goes_on_and_releases_it(
    tmp_path: Path,
) -> None:
    failed = operation(tmp_path, "drill-a", fail=True)
    with pytest.raises(StepFailed):
        failed.run(run_preflight(failed.runbook.preflight), lambda h: answer(h))
    assert failed.report.outcome == "failed"
    held = holder(tmp_path)
    assert held is not None and held.operation_id == "drill-a"
    other = operation(tmp_path, "drill-b")
    with pytest.raises(SiteLocked):
        other.run(run_preflight(other.runbook.preflight), lambda h: answer(h))

    resumed = operation(tmp_path, "drill-a")
    resumed.report.order = failed.report.order
    resumed.run(run_preflight(resumed.runbook.preflight), lambda h: answer(h))
    assert resumed.report.outcome == "succeeded"
    assert (tmp_path / "drill-a.done").exists()
    assert holder(tmp_path) is None


def test_a_refused_or_timed_out_order_releases_the_lock(tmp_path: Path) -> None:
    refused = operation(tmp_path, "drill-a")
    refused.run(run_preflight(refused.runbook.preflight), lambda h: answer(h, "refuse"))
    assert refused.report.outcome == "refused"
    assert holder(tmp_path) is None

    def closed(_plan_hash: str) -> OrderRecord:
        raise GateTimeout("no order was given within 5 s; nothing was changed")

    late = operation(tmp_path, "drill-b")
    with pytest.raises(GateTimeout):
        late.run(run_preflight(late.runbook.preflight), closed)
    assert late.report.outcome == "timed-out"
    assert holder(tmp_path) is None


def test_unlock_refuses_a_wrong_id_and_records_the_release_in_the_ledger(tmp_path: Path) -> None:
    runner = LocalRunner("drp", tmp_path)
    lock_for(tmp_path, "activate-a", "activate").take()
    with pytest.raises(DrpError) as wrong:
        site_lock.unlock(runner, "activate-b", "crashed")
    assert "held by operation activate-a (activate, since" in str(wrong.value)
    assert "nothing was released" in str(wrong.value)
    assert holder(tmp_path) is not None
    taken = site_lock.ledger(runner)
    assert [(e["event"], e["operation_id"]) for e in taken] == [("taken", "activate-a")]

    entry = site_lock.unlock(runner, "activate-a", "worker lost, checked by hand", by="Ops Bob")
    assert holder(tmp_path) is None
    assert site_lock.ledger(runner) == [*taken, entry]
    assert (entry["operation_id"], entry["released_by"], entry["reason"]) == (
        "activate-a",
        "Ops Bob",
        "worker lost, checked by hand",
    )
    with pytest.raises(DrpError, match="the site is not locked"):
        site_lock.unlock(runner, "activate-a", "again")


def test_a_lock_file_that_is_not_ours_is_reported_not_overwritten(tmp_path: Path) -> None:
    (tmp_path / ".drp-lock").mkdir()
    (tmp_path / ".drp-lock" / "lock.json").write_text("garbage")
    with pytest.raises(DrpError, match="is not a drp lock file"):
        lock_for(tmp_path, "drill-a").take()
    assert (tmp_path / ".drp-lock" / "lock.json").read_text() == "garbage"


def test_a_lock_whose_run_ended_before_its_order_goes_but_an_ordered_one_stays(
    tmp_path: Path,
) -> None:
    """What the orchestrator says of the holder's run frees the site only when the holder never
    got its order; an ordered operation's lock waits for its resume or `drp unlock`."""
    waiting = lock_for(tmp_path, "drill-waited")
    waiting.take()  # then cancelled at its gate: it never runs again
    ended = lock_for(tmp_path, "drill-next")
    ended.stale = lambda held: f"its flow run of {held.operation_id} ended cancelled"
    said = ended.take()
    assert said.startswith(
        "site lock of operation drill-waited released: its flow run of drill-waited ended "
        "cancelled, before any order, so nothing had been done under it (written in the lock "
        "ledger); site lock taken"
    )
    held = holder(tmp_path)
    assert held is not None and held.operation_id == "drill-next"
    [entry] = [e for e in site_lock.ledger(LocalRunner("drp", tmp_path)) if e["event"] != "taken"]
    assert entry["event"] == "released-unordered" and entry["operation_id"] == "drill-waited"

    ended.ordered({"ordered_by": "Jane Customer", "reference": "R", "answered_at": "now"})
    third = lock_for(tmp_path, "drill-third")
    third.stale = lambda held: "its flow run ended failed"
    with pytest.raises(SiteLocked, match=r"locked by operation drill-next .*ordered by Jane"):
        third.take()
    assert holder(tmp_path).operation_id == "drill-next"  # type: ignore[union-attr]
    third.stale = lambda held: None  # running, or the orchestrator cannot tell
    ended.release()
    waiting_again = lock_for(tmp_path, "drill-w2")
    waiting_again.take()
    with pytest.raises(SiteLocked, match="not ordered yet"):
        third.take()
