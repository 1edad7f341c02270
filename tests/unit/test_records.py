"""An operation's record: on the DRP host (here a directory standing for its home, written and
read with the real shell commands; the lab tests run the same commands over SSH), with a copy in
the local reports directory, read from the DRP host first."""

from __future__ import annotations

import json
import logging
import stat
from datetime import UTC, datetime
from pathlib import Path

import pytest
from backup_helpers import LocalRunner

from runbooks.errors import DrpError
from runbooks.records import OperationRecords, record_path, resume_sentence
from runbooks.report import Report, load_report
from runbooks.steps import Outcome, StepRecord

OP = "drill-20261129-0215-7f3a9c01"
AT = datetime(2026, 11, 29, 2, 16, tzinfo=UTC)


def records(directory: Path, home: Path) -> OperationRecords:
    runner = LocalRunner("drp", home)
    return OperationRecords(None, directory, host=lambda: runner)  # type: ignore[arg-type]


def save(where: OperationRecords, report: Report) -> None:
    """Save, and wait until the DRP host has it (what `close()` does at the end of a run)."""
    where.save(report)
    assert where.flush(30)


def report_with_order() -> Report:
    report = Report(OP, "drill", "lab", started=AT, plan_hash="abc123", chosen_at=AT)
    report.order = {
        "decision": "activate", "ordered_by": "Jane Doe", "reference": "1STKYC-42",
        "answered_at": "2026-11-29T02:20:00+00:00", "via": "Prefect UI", "plan_hash": "abc123",
    }  # fmt: skip
    report.backups = [
        {"what": "app files/www", "server": "backup-even", "environment": "app",
         "set_id": "20261129T020000Z-daily", "time": "2026-11-29T02:00:00+00:00"},
    ]  # fmt: skip
    report.add(StepRecord("copy-app-files-www", "Copy files", Outcome.APPLIED, "copied", AT, AT))
    return report


def test_a_save_writes_the_drp_host_record_and_the_local_copy(tmp_path: Path) -> None:
    home, worker_a = tmp_path / "drp-home", tmp_path / "worker-a"
    home.mkdir()
    report = report_with_order()
    save(records(worker_a, home), report)
    on_host = home / record_path(OP)
    assert on_host == home / ".drp" / "operations" / OP / "report.json"
    assert json.loads(on_host.read_text()) == report.data == load_report(worker_a, OP).data
    assert report.revision == 1
    assert stat.S_IMODE(on_host.stat().st_mode) == 0o600  # the order names people
    assert [p.name for p in on_host.parent.iterdir()] == ["report.json"]  # no temporary left


def test_another_worker_resumes_from_the_drp_host_record_and_keeps_a_copy(tmp_path: Path) -> None:
    home, worker_a, worker_b = tmp_path / "drp-home", tmp_path / "a", tmp_path / "b"
    home.mkdir()
    first = report_with_order()
    save(records(worker_a, home), first)

    found = records(worker_b, home).load(OP)
    assert found.report is not None and found.note == ""
    assert found.report.data == first.data
    assert found.source == f"its record on the DRP host (drp:~/.drp/operations/{OP}/report.json)"
    assert load_report(worker_b, OP).data == first.data  # the operator's copy on worker b
    sentence = resume_sentence(found.report, found.source)
    assert sentence.startswith(f"resuming operation {OP} from its record on the DRP host")
    assert "order of Jane Doe (reference 1STKYC-42, 2026-11-29T02:20:00+00:00, via Prefect UI)" in (
        sentence
    )
    assert "backups backup-even:20261129T020000Z-daily (chosen 2026-11-29 02:16:00 UTC)" in (
        sentence
    )
    assert "1 step(s) recorded after the order" in sentence


def test_the_drp_host_record_wins_over_an_older_local_copy(tmp_path: Path) -> None:
    home, worker_a, worker_b = tmp_path / "drp-home", tmp_path / "a", tmp_path / "b"
    home.mkdir()
    report = report_with_order()
    save(records(worker_a, home), report)  # revision 1, on both
    on_b = records(worker_b, home)
    resumed = on_b.load(OP).report
    assert resumed is not None
    resumed.add(StepRecord("restore-app", "Import", Outcome.APPLIED, "restored", AT, AT))
    save(on_b, resumed)  # revision 2 on the DRP host and on b; a still has revision 1
    found = records(worker_a, home).load(OP)
    assert found.report is not None and found.report.revision == 2
    assert [r.step for r in found.report.timeline] == ["copy-app-files-www", "restore-app"]
    assert load_report(worker_a, OP).revision == 2  # a's copy refreshed


def test_an_unreachable_drp_host_falls_back_to_the_local_copy_and_says_so(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    home, worker = tmp_path / "drp-home", tmp_path / "a"
    home.mkdir()
    save(records(worker, home), report_with_order())
    down = records(worker, tmp_path / "unreachable")
    found = down.load(OP)
    assert found.report is not None and found.report.order is not None
    assert found.note.startswith(f"the DRP host's record of operation {OP} cannot be read (")
    assert "going on from this machine's copy of its record" in found.note
    assert "misses whatever another worker recorded since" in found.note
    # A save goes on locally and says once that the DRP host has not got it.
    with caplog.at_level(logging.WARNING, logger="drp.records"):
        save(down, found.report)
        save(down, found.report)
    said = [r.getMessage() for r in caplog.records if "was not written on the DRP host" in r.msg]
    assert len(said) == 1 and not down.written_on_host
    assert load_report(worker, OP).revision == 3

    nothing = records(tmp_path / "c", tmp_path / "unreachable").load(OP)
    assert nothing.report is None and "this machine has no copy of it" in nothing.note


def test_a_run_that_could_not_read_the_record_never_overwrites_it(tmp_path: Path) -> None:
    home, worker = tmp_path / "drp-home", tmp_path / "a"
    home.mkdir()
    first = report_with_order()
    save(records(tmp_path / "other", home), first)
    unread = OperationRecords(
        None,  # type: ignore[arg-type]
        worker,
        host=iter(
            [LocalRunner("drp", tmp_path / "down")] + [LocalRunner("drp", home)] * 5
        ).__next__,
    )
    assert unread.load(OP).report is None  # the DRP host did not answer; no copy here
    fresh = Report(OP, "drill", "lab", started=datetime.now(UTC))
    save(unread, fresh)  # the DRP host answers again: its record is another one, kept
    assert json.loads((home / record_path(OP)).read_text()) == first.data
    assert not unread.written_on_host


def test_a_later_local_save_of_the_same_record_wins(tmp_path: Path) -> None:
    home, worker = tmp_path / "drp-home", tmp_path / "a"
    home.mkdir()
    report = report_with_order()
    save(records(worker, home), report)
    save(records(worker, tmp_path / "unreachable"), report)  # revision 2, here only
    found = records(worker, home).load(OP)
    assert found.report is not None and found.report.revision == 2
    assert "is a later save (revision 2) than the one on the DRP host (revision 1)" in found.note


def test_a_record_of_another_kind_is_refused(tmp_path: Path) -> None:
    home = tmp_path / "drp-home"
    home.mkdir()
    save(records(tmp_path / "a", home), report_with_order())
    with pytest.raises(DrpError, match=f"operation {OP} is a drill, not a activate"):
        records(tmp_path / "b", home).load_or_start(OP, "activate", "lab")


def test_a_return_finds_the_activation_recorded_on_the_drp_host_by_another_machine(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from types import SimpleNamespace

    from runbooks.records import records_on_host
    from runbooks.returning import find_activation

    home = tmp_path / "drp-home"
    home.mkdir()
    activation = Report("activate-20261129-0215-7f3a9c01", "activate", "lab", started=AT)
    activation.remember("dns_before", "dns-switch-lab.test", {
        "zone": "lab.test", "records": [{"name": "www", "type": "A", "targets": ["192.0.2.1"]}],
    })  # fmt: skip
    save(records(tmp_path / "orchestrator-1", home), activation)
    save(records(tmp_path / "orchestrator-1", home), report_with_order())  # a drill: not it
    (home / ".drp" / "operations" / "activate-broken").mkdir()
    (home / ".drp" / "operations" / "activate-broken" / "report.json").write_text(
        '{"kind": "activate"'
    )

    drp = LocalRunner("drp", home)
    assert [r.operation_id for r in records_on_host(drp, "activate")] == [activation.operation_id]
    monkeypatch.setenv("DRP_REPORTS_DIR", str(tmp_path / "orchestrator-2"))  # has no report
    site = SimpleNamespace(name="lab", source=None)
    assert find_activation(site) is None  # type: ignore[arg-type]
    found = find_activation(site, drp)  # type: ignore[arg-type]
    assert found is not None and found.operation_id == activation.operation_id
    assert found.dns_before[0]["targets"] == ["192.0.2.1"]
