"""What the DRP server holds ready, as drp reads and records it (`runbooks.warm`): where stages
live, how a stage's done file is found, the certificates `drp backup list` shows."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from backup_helpers import LocalRunner

from providers.database import stage_endpoint
from providers.dbcommon import DbEndpoint
from runbooks.warm import (
    Certificate,
    Rates,
    StagedDatabase,
    StagedTree,
    WarmState,
    _done_files_argv,
    add_certificates,
    latest_certificates,
    read_certificates,
    stage_base,
)


def test_a_stage_lives_beside_its_tree_never_inside() -> None:
    assert stage_base("srv/app/www") == "srv/app/www.drp-stage"
    assert stage_base("~/srv/app/www/") == "srv/app/www.drp-stage"
    assert stage_base("/var/www/site") == "/var/www/site.drp-stage"
    with pytest.raises(ValueError):
        stage_base("/")  # the root has no beside


def test_a_staged_database_is_named_after_its_database_within_the_servers_limit() -> None:
    endpoint = DbEndpoint("drp", "127.0.0.1", 5432, "drp", "app_users")
    assert stage_endpoint(endpoint).dbname == "app_users__drp_stage"
    long = DbEndpoint("drp", "127.0.0.1", 5432, "drp", "a" * 60)
    name = stage_endpoint(long).dbname
    assert len(name) <= 63 and name != stage_endpoint(endpoint.with_dbname("a" * 59)).dbname


def test_the_warm_state_kept_in_a_record_plans_the_same_operation_again() -> None:
    state = WarmState(
        [StagedTree("app", "srv/app/www", "srv/app/www.drp-stage/b-1", "b:app/1", "t", 3, 10)],
        [StagedDatabase("app", "app_users", "app_users__drp_stage", "1@b", "t")],
        Rates(1e6, 5e4, "t"),
    )
    again = WarmState.from_data(json.loads(json.dumps(state.data)))
    assert again == state
    assert again.tree("app", "srv/app/www") is not None and again.tree("other", "x") is None
    assert again.database("app", "app_users") is not None and not again.empty


def test_complete_stages_are_found_by_their_done_files(tmp_path: Path) -> None:
    """A stage counts once its done file is written; a directory without one (a staging killed
    half-way) does not."""
    base = tmp_path / "srv/app/www.drp-stage"
    (base / "backup-even-1").mkdir(parents=True)
    (base / "backup-even-1.json").write_text(json.dumps({"set": "backup-even:app/1"}) + "\n")
    (base / "backup-odd-2").mkdir()  # no done file
    runner = LocalRunner("drp", tmp_path)
    out = runner.run(_done_files_argv(["srv/app/www.drp-stage", "srv/none.drp-stage"])).stdout
    lines = out.splitlines()
    assert len(lines) == 1
    path, text = lines[0].split("\t")
    assert path == "srv/app/www.drp-stage/backup-even-1.json"
    assert json.loads(text)["set"] == "backup-even:app/1"


def test_certificates_keep_the_newest_per_set_and_say_what_was_proved(tmp_path: Path) -> None:
    runner = LocalRunner("drp", tmp_path)
    assert read_certificates(runner) == []
    first = Certificate("b:app/1", "2026-12-01T01:10:00+00:00", "drp", True, ("files www",))
    failed = Certificate("b:app/2", "2026-12-02T01:10:00+00:00", "drp", False, (), "rows differ")
    add_certificates(runner, [first])
    add_certificates(runner, [failed])
    assert read_certificates(runner) == [first, failed]
    latest = latest_certificates(read_certificates(runner))
    assert latest["b:app/1"].words == "restore-tested at 2026-12-01 01:10 UTC on drp (rows match)"
    failed_words = "FAILED to restore at 2026-12-02 01:10 UTC on drp: rows differ"
    assert latest["b:app/2"].words == failed_words
    stored = (tmp_path / ".drp/stage/certificates.json").stat().st_mode & 0o777
    assert stored == 0o600
