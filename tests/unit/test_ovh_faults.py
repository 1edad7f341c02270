"""The OVH emulator's faults file (lab/ovh_api.py): which writes it fails or holds, and how it
is used up."""

from __future__ import annotations

import json
from http import HTTPStatus
from pathlib import Path

from lab.ovh_api import FAULTS_FILE, injected_fault

RECORD = "/domain/zone/drp-lab.test/record/1000001"
REFRESH = "/domain/zone/drp-lab.test/refresh"


def _faults(tmp_path: Path, **fault: object) -> Path:
    path = tmp_path / FAULTS_FILE
    path.write_text(json.dumps(fault))
    return path


def test_writes_pass_then_fail_then_the_file_is_used_up(tmp_path: Path) -> None:
    path = _faults(tmp_path, method="PUT", fail=2, **{"pass": 1})
    assert injected_fault(path, "GET", RECORD) is None  # reads are never touched
    assert injected_fault(path, "POST", RECORD) is None  # another method
    assert injected_fault(path, "PUT", RECORD) is None  # the one let through
    for _ in range(2):
        fault = injected_fault(path, "PUT", RECORD)
        assert fault is not None and fault.stall == 0 and fault.error is not None
        assert fault.error.status == HTTPStatus.INTERNAL_SERVER_ERROR
    assert not path.exists()
    assert injected_fault(path, "PUT", RECORD) is None


def test_a_stall_holds_one_write_then_applies_it_or_answers_500(tmp_path: Path) -> None:
    path = _faults(tmp_path, method="PUT", stall_seconds=20, **{"pass": 1})
    assert injected_fault(path, "PUT", RECORD) is None
    held = injected_fault(path, "PUT", RECORD)
    assert held is not None and held.stall == 20 and held.error is None  # applied after
    assert not path.exists(), "used up as soon as the held write starts waiting"
    path = _faults(tmp_path, method="*", stall_seconds=5, fail=1)
    held = injected_fault(path, "DELETE", RECORD)
    assert held is not None and held.stall == 5 and held.error is not None  # never applied


def test_the_refresh_is_touched_only_when_the_file_names_it(tmp_path: Path) -> None:
    path = _faults(tmp_path, method="POST", fail=1)
    assert injected_fault(path, "POST", REFRESH) is None  # record writes only, by default
    path = _faults(tmp_path, method="POST", path="/refresh", stall_seconds=3)
    assert injected_fault(path, "POST", RECORD) is None
    held = injected_fault(path, "POST", REFRESH)
    assert held is not None and held.stall == 3


def test_no_file_or_an_unreadable_one_changes_nothing(tmp_path: Path) -> None:
    assert injected_fault(None, "PUT", RECORD) is None
    assert injected_fault(tmp_path / FAULTS_FILE, "PUT", RECORD) is None
    (tmp_path / FAULTS_FILE).write_text("{not json")
    assert injected_fault(tmp_path / FAULTS_FILE, "PUT", RECORD) is None
