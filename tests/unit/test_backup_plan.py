"""Planning backups (which server, which kind), the rsync pull argv, staging clean-up and the
retention decision: pure logic, plus the small shell commands run here for real."""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from backup_helpers import LocalRunner

from providers.rsync import RemoteEndpoint, copy_argv
from runbooks import backup_run as br
from runbooks.backups import BackupSet, SetStatus
from runbooks.errors import ConfigError
from runbooks.inventory import load_site
from runbooks.manifest import Parity, SetKind, make_set_id, parse_set_id

LAB_CONFIG = Path(__file__).resolve().parents[2] / "config" / "lab.yaml"
NOW = datetime(2026, 11, 29, 12, 0, 0, tzinfo=UTC)  # an odd day


@pytest.fixture(scope="module")
def site():
    return load_site(LAB_CONFIG)


def test_daily_backup_goes_to_the_server_of_the_day(site) -> None:
    (job,) = br.plan_environment_backup(site, now=NOW)
    assert (job.environment, job.kind, job.servers, job.parity) == (
        "app",
        SetKind.DAILY,
        ("backup_odd",),
        Parity.ODD,
    )
    assert job.set_id == "20261129T120000Z-daily"
    (even,) = br.plan_environment_backup(site, now=NOW + timedelta(days=1))
    assert even.servers == ("backup_even",)
    (forced,) = br.plan_environment_backup(site, now=NOW, parity="even")
    assert (forced.servers, forced.set_id) == (("backup_even",), "20261129T120000Z-daily")


def test_only_picks_the_kind_and_what_it_holds(site) -> None:
    (files,) = br.plan_environment_backup(site, now=NOW, only="files")
    assert files.kind is SetKind.FILES
    assert [(s.value, n) for s, n, _ in br.job_trees(site, files)] == [
        ("files", "www"),
        ("configs", "config"),
    ]
    assert br.job_databases(site, files) == []
    (dbs,) = br.plan_environment_backup(site, now=NOW, only="databases")
    assert [d.name for d in br.job_databases(site, dbs)] == ["app_users", "app_shop"]
    assert br.job_trees(site, dbs) == []


def test_user_database_backup_goes_to_both_servers_when_configured(site) -> None:
    assert site.backups.user_db_to_both_servers is True
    (job,) = br.plan_user_database_backup(site, now=NOW)
    assert job.kind is SetKind.USER_DATABASES
    assert job.servers == ("backup_even", "backup_odd")
    assert [d.name for d in br.job_databases(site, job)] == ["app_users"]
    (one,) = br.plan_user_database_backup(site, now=NOW, both=False)
    assert one.servers == ("backup_odd",)
    (same,) = br.plan_environment_backup(site, now=NOW, only="user-databases")
    assert same == job


def test_unknown_environment_is_refused_with_the_known_ones(site) -> None:
    with pytest.raises(ConfigError, match="no environment named 'shop'") as err:
        br.plan_environment_backup(site, environments=["shop"])
    assert "app" in str(getattr(err.value, "expected", ""))


def test_tree_copy_options_link_to_the_previous_set_and_filter_a_single_file(site) -> None:
    www = site.environment("app").files[0]
    options = br.tree_copy_options(www, link_dest="../../../P/files/www", only_name=None)
    assert (options.delete, options.excludes, options.includes, options.link_dest) == (
        True,
        ("cache/",),
        (),
        "../../../P/files/www",
    )
    one = br.tree_copy_options(www, link_dest=None, only_name="app.ini")
    assert (one.includes, one.excludes, one.link_dest) == (("/app.ini",), ("*",), None)
    argv = copy_argv(RemoteEndpoint("production", "127.0.10.1", 2222, "u", "srv/app"), "d", one)
    assert argv.index("--include=/app.ini") < argv.index("--exclude=*") < argv.index("--")


def test_source_kind_and_staging_cleanup_run_here(tmp_path: Path) -> None:
    runner = LocalRunner("production", tmp_path)
    (tmp_path / "dir").mkdir()
    (tmp_path / "file").write_text("x")
    kinds = [runner.run(br.source_kind_argv(p)).stdout.strip() for p in ("dir", "file", "none")]
    assert kinds == ["dir", "file", "missing"]

    staging = tmp_path / br.STAGING_DIR / "app"
    for name in ("S-now", "S-other-recent", "S-stale"):
        (staging / name / "db").mkdir(parents=True)
    old = (NOW - timedelta(days=3)).timestamp()
    os.utime(staging / "S-stale", (old, old))
    argv = br.clear_staging_argv("app", "S-now", 720)
    assert argv[:2] == ["sh", "-c"] and argv[3:] == ["sh", ".drp-staging", "app", "S-now", "720"]
    runner.run(br.clear_staging_argv("app", "S-now", 720))
    assert sorted(p.name for p in staging.iterdir()) == ["S-other-recent"]
    runner.run(br.clear_staging_argv("app", "S-other-recent", 720))
    assert not (tmp_path / br.STAGING_DIR).exists()  # empty directories go too


# -- retention ---------------------------------------------------------------------------------


def a_set(hours_ago: float, kind: SetKind, status: SetStatus = SetStatus.COMPLETE) -> BackupSet:
    set_id = make_set_id(NOW - timedelta(hours=hours_ago), kind)
    started, _ = parse_set_id(set_id)
    reason = "" if status is SetStatus.COMPLETE else "no manifest.json: interrupted"
    return BackupSet("backup-even", "backups", "app", set_id, kind, started, status, reason)


def test_retention_keeps_the_n_newest_complete_sets_of_each_kind() -> None:
    dailies = [a_set(24 * d + 1, SetKind.DAILY) for d in range(5)]
    users = [a_set(2 * h + 0.5, SetKind.USER_DATABASES) for h in range(4)]
    kept, removed = br.retention_plan([*users, *dailies], keep=3, now=NOW)
    assert [s.set_id for s, _ in removed] == [users[3].set_id, dailies[3].set_id, dailies[4].set_id]
    assert removed[1][1] == "older than the 3 newest complete daily sets"
    assert len(kept) == 6 and kept[0] == users[0]


def test_retention_removes_only_abandoned_incomplete_sets() -> None:
    newest = a_set(30, SetKind.DAILY)
    running = a_set(1, SetKind.DAILY, SetStatus.INCOMPLETE)  # may still be running
    abandoned = a_set(50, SetKind.DAILY, SetStatus.INCOMPLETE)
    corrupt = a_set(60, SetKind.DAILY, SetStatus.CORRUPT)
    kept, removed = br.retention_plan([running, newest, abandoned, corrupt], keep=1, now=NOW)
    assert dict((s.set_id, why) for s, why in removed) == {
        abandoned.set_id: "incomplete (no manifest.json), started 2 d 2 h ago",
        corrupt.set_id: "corrupt (no manifest.json: interrupted), started 2 d 12 h ago",
    }
    assert kept == [running, newest]


def test_retention_keeps_failed_sets_when_nothing_newer_is_complete() -> None:
    abandoned = a_set(50, SetKind.DAILY, SetStatus.INCOMPLETE)
    older_complete = a_set(70, SetKind.DAILY)
    kept, removed = br.retention_plan([abandoned, older_complete], keep=1, now=NOW)
    assert removed == [] and kept == [abandoned, older_complete]


def test_retention_never_removes_the_newest_complete_set() -> None:
    only = a_set(100, SetKind.FILES)
    kept, removed = br.retention_plan([only], keep=1, now=NOW)
    assert kept == [only] and removed == []
    with pytest.raises(ValueError, match="at least one"):
        br.retention_plan([only], keep=0, now=NOW)
