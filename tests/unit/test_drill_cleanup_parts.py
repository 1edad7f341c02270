"""The pure parts of `drp drill --cleanup`: argv, names, listings and state comparisons.

The host commands run for real here (bash, find, mv, touch on a temporary directory, through
the same runner shape the SSH provider has): a listing must survive a rename, a put-back must
bring back the very tree that was set aside.
"""

from __future__ import annotations

import os
import shutil
from datetime import UTC, datetime
from pathlib import Path

import pytest
from backup_helpers import LocalRunner

from providers import aside
from providers.dbcommon import DatabaseState, Marker, is_own
from runbooks.cleanup import (
    DatabaseRecord,
    PathRecord,
    PriorState,
    _state_problems,
    mysql_dump_paths,
    nested_pair,
    record_path,
)

OP = "drill-20261129-0215-7f3a"


# -- names and argv --------------------------------------------------------------------------
def test_paths_are_normalized_and_the_home_or_system_dirs_refused() -> None:
    assert aside.normalize_path("~/srv/app/www/") == "srv/app/www"
    assert aside.normalize_path("./srv//app/www") == "srv/app/www"
    assert aside.normalize_path("/var/www/app") == "/var/www/app"
    for refused in ("~", ".", "", "/", "/etc", "../elsewhere", "~other/x"):
        with pytest.raises(ValueError):
            aside.normalize_path(refused)


def test_aside_names_ancestors_and_what_a_drill_creates() -> None:
    assert aside.aside_path("srv/app/www/", OP) == f"srv/app/www.drp-before-{OP}"
    assert aside.ancestors("srv/app/www") == ["srv/app/www", "srv/app", "srv"]
    assert aside.ancestors("/var/www/app") == ["/var/www/app", "/var/www", "/var"]
    exists = {"srv/app/www": False, "srv/app": False, "srv": True}
    assert aside.created_root("srv/app/www", exists) == "srv/app"
    assert aside.created_root("srv/app/www", {**exists, "srv/app": True}) == "srv/app/www"
    assert record_path(OP) == f".drp/drills/{OP}/prior-state.json"
    assert mysql_dump_paths(OP, "app_shop") == (
        f".drp/drills/{OP}/databases/app_shop.sql.gz",
        f".drp/drills/{OP}/databases/app_shop.marker.sql",
    )


def test_nested_destinations_are_found() -> None:
    assert nested_pair(["srv/app/www", "srv/app/config", ".drp/drills"]) is None
    assert nested_pair(["srv/app", "srv/app/config"]) == ("srv/app", "srv/app/config")
    assert nested_pair(["srv/app-2", "srv/app"]) is None  # a shared prefix is not nesting
    assert nested_pair([".drp", ".drp/drills"]) == (".drp", ".drp/drills")


def test_host_commands_are_exact_argv() -> None:
    assert aside.rename_argv("srv/www", "srv/www.x") == [
        "mv",
        "-T",
        "-n",
        "--",
        "srv/www",
        "srv/www.x",
    ]
    assert aside.remove_argv("-odd") == ["rm", "-rf", "--", "-odd"]
    assert aside.touch_argv("srv/app", "1764380000.5") == [
        "touch", "-m", "-c", "-d", "@1764380000.5", "--", "srv/app",
    ]  # fmt: skip
    assert aside.mtime_argv("srv/app") == ["find", "./srv/app", "-maxdepth", "0", "-printf", "%T@"]
    assert aside.exists_argv(["a b", "c"])[-3:] == ["sh", "a b", "c"]
    assert aside.listing_argv("srv/a b")[:4] == ["bash", "-o", "pipefail", "-c"]
    assert aside.listing_argv("srv/a b")[-2:] == ["bash", "./srv/a b"]  # a parameter, not text
    assert aside.read_file_argv("x y")[-1] == "x y"


def test_parsers_refuse_unexpected_output() -> None:
    listing = aside.parse_listing("a" * 64 + "\n3 120\n")
    assert (listing.entries, listing.bytes) == (3, 120)
    with pytest.raises(aside.AsideError):
        aside.parse_listing("find: 'x': No such file or directory\n")
    assert aside.parse_exists("1\n0\n", ["a", "b"]) == {"a": True, "b": False}
    with pytest.raises(aside.AsideError):
        aside.parse_exists("1\n", ["a", "b"])


# -- the commands, run for real ----------------------------------------------------------------
@pytest.fixture
def home(tmp_path: Path) -> Path:
    www = tmp_path / "srv" / "app" / "www"
    (www / "img").mkdir(parents=True)
    (www / "index.html").write_text("<p>app</p>")
    (www / "img" / "a b.png").write_bytes(b"\x89PNG" * 100)
    past = 1_700_000_000.25
    for path in (www / "img", www, www.parent):
        os.utime(path, (past, past))
    return tmp_path


def test_a_set_aside_tree_comes_back_with_the_same_listing(home: Path) -> None:
    drp = LocalRunner("drp", home)
    path, kept = "srv/app/www", aside.aside_path("srv/app/www", OP)
    before = aside.listing(drp, path)
    anchor_time = aside.mtime(drp, "srv/app")
    assert before.entries == 4 and before.bytes > 400

    assert aside.set_aside_path(drp, path, kept) is True
    assert aside.probe(drp, [path, kept]) == {path: False, kept: True}
    assert aside.listing(drp, kept) == before  # relative names: a rename keeps the digest
    assert aside.set_aside_path(drp, path, kept) is False  # a second time: already aside

    shutil.copytree(home / kept, home / path)  # what the drill restores
    (home / path / "restored.txt").write_text("from the backup")
    assert aside.listing(drp, path) != before

    aside.put_back_path(drp, path, kept)
    assert aside.listing(drp, path) == before
    assert not (home / kept).exists() and not (home / path / "restored.txt").exists()
    assert aside.mtime(drp, "srv/app") != anchor_time  # the renames touched the parent...
    assert aside.restore_mtime(drp, "srv/app", anchor_time)
    assert aside.mtime(drp, "srv/app") == anchor_time  # ...and its time is put back


def test_set_aside_refuses_an_occupied_name_and_put_back_a_missing_copy(home: Path) -> None:
    drp = LocalRunner("drp", home)
    path, kept = "srv/app/www", aside.aside_path("srv/app/www", OP)
    (home / kept).mkdir()
    with pytest.raises(aside.AsideError, match="already exists"):
        aside.set_aside_path(drp, path, kept)
    (home / kept).rmdir()
    with pytest.raises(aside.AsideError, match="nothing to put back"):
        aside.put_back_path(drp, path, kept)
    assert (home / path / "index.html").exists()  # nothing was removed


def test_record_file_is_written_whole_and_read_back(home: Path) -> None:
    drp = LocalRunner("drp", home)
    path = record_path(OP)
    assert aside.read_file(drp, path) is None
    state = PriorState(
        operation_id=OP,
        site="drp-lab",
        status="set-aside",
        recorded_at=datetime(2026, 11, 29, 2, 15, tzinfo=UTC),
        paths=[PathRecord(path="srv/app/www", existed=True, aside="x", anchor="srv/app")],
        databases=[_record(marker=_marker("drill-old"))],
    )
    aside.write_file(drp, path, state.model_dump_json())
    assert PriorState.model_validate_json(aside.read_file(drp, path) or "") == state
    assert sorted(p.name for p in (home / path).parent.iterdir()) == ["prior-state.json"]


# -- comparing databases with their record -----------------------------------------------------
def _marker(operation_id: str) -> Marker:
    at = datetime(2026, 11, 29, 1, 0, tzinfo=UTC)
    return Marker(
        backup_id="20261129T010000Z-daily@backup-odd",
        manifest_digest="d" * 64,
        operation_id=operation_id,
        started_at=at,
        restored_at=at,
    )


def _record(**changes: object) -> DatabaseRecord:
    values: dict[str, object] = {
        "environment": "app",
        "name": "app_shop",
        "engine": "mysql",
        "existed": True,
        "tables": 2,
        "other_objects": 1,
        "counts": {"orders": 10, "items": 30},
    }
    return DatabaseRecord.model_validate({**values, **changes})


def test_state_comparison_names_every_difference() -> None:
    marker = _marker("drill-old")
    record = _record(marker=marker)
    same = DatabaseState(exists=True, tables=2, other_objects=1, marker=marker)
    assert _state_problems(record, same, {"orders": 10, "items": 30}) == ""
    drill = DatabaseState(exists=True, tables=2, other_objects=1, marker=_marker(OP))
    assert "drp marker" in _state_problems(record, drill, {"orders": 10, "items": 30})
    assert "row counts differ in items" in _state_problems(
        record, same, {"orders": 10, "items": 29}
    )
    assert "3 tables" in _state_problems(record, DatabaseState(True, 3, None, marker, 1), {})
    assert _state_problems(record, DatabaseState(exists=False), {}) == "drp/app_shop is missing"
    absent = _record(existed=False)
    assert _state_problems(absent, DatabaseState(exists=False), {}) == ""
    assert "did not before" in _state_problems(absent, drill, {})


def test_only_this_operations_restore_is_the_drills_own() -> None:
    assert is_own(DatabaseState(exists=True, tables=1, marker=_marker(OP)), OP)
    assert not is_own(DatabaseState(exists=True, tables=1, marker=_marker("x-1")), OP)
    assert not is_own(DatabaseState(exists=True, tables=1), OP)
