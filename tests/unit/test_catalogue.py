"""The catalogue: set status, choosing the newest usable sets across both servers, the data-loss
window. Backup servers are two temporary directories read with the real shell commands."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from backup_helpers import LocalRunner, make_set

from runbooks.backups import (
    BackupServer,
    Catalogue,
    SetStatus,
    WantedDatabase,
    WantedEnvironment,
    data_loss_window,
    parse_listing,
)
from runbooks.manifest import SetKind, TreeSection

NOW = datetime(2026, 11, 29, 9, 0, 0, tzinfo=UTC)
YESTERDAY = datetime(2026, 11, 28, 2, 0, 0, tzinfo=UTC)
TODAY = datetime(2026, 11, 29, 2, 0, 0, tzinfo=UTC)

APP = WantedEnvironment(
    "app",
    trees=((TreeSection.FILES, "www"),),
    databases=(WantedDatabase("app_users", True), WantedDatabase("app_shop", False)),
)


@pytest.fixture
def homes(tmp_path: Path) -> dict[str, Path]:
    result = {name: tmp_path / name for name in ("backup-even", "backup-odd")}
    for home in result.values():
        home.mkdir()
    return result


def catalogue(homes: dict[str, Path], now: datetime = NOW) -> Catalogue:
    servers = [
        BackupServer(
            "backup-even",
            "backup_even",
            "backups",
            LocalRunner("backup-even", homes["backup-even"]),
        ),
        BackupServer(
            "backup-odd", "backup_odd", "backups", LocalRunner("backup-odd", homes["backup-odd"])
        ),
    ]
    return Catalogue(servers, now)


# -- status ------------------------------------------------------------------------------------


def test_listing_classifies_complete_incomplete_and_corrupt(tmp_path: Path) -> None:
    _, good = make_set(tmp_path, started=TODAY)
    wrong_dir = good.model_copy(update={"environment": "shop"})
    old_format = base64.b64encode(b'{"format": 1}').decode()
    listing = "\n".join(
        [
            f"app/20261129T020000Z-daily\t{base64.b64encode(good.to_json().encode()).decode()}",
            "app/20261129T080000Z-user-databases\t",
            "app/20261128T020000Z-daily\tnot base64!",
            f"app/20261127T020000Z-daily\t{old_format}",
            f"app/20261126T020000Z-daily\t{base64.b64encode(wrong_dir.to_json().encode()).decode()}",
            "app/operator-notes\t",
        ]
    )
    sets = parse_listing("backup-even", "backups", listing, NOW)
    assert [(s.set_id, s.status) for s in sets] == [
        ("20261129T080000Z-user-databases", SetStatus.INCOMPLETE),
        ("20261129T020000Z-daily", SetStatus.COMPLETE),
        ("20261128T020000Z-daily", SetStatus.CORRUPT),
        ("20261127T020000Z-daily", SetStatus.CORRUPT),
        ("20261126T020000Z-daily", SetStatus.CORRUPT),
    ]
    reasons = {s.set_id: s.reason for s in sets}
    assert reasons["20261129T080000Z-user-databases"] == (
        "no manifest.json: the backup was interrupted or is still running (started 1 h 00 min ago)"
    )
    assert reasons["20261128T020000Z-daily"].startswith("unreadable manifest")
    assert reasons["20261127T020000Z-daily"].startswith("invalid manifest: format")
    assert "describes shop/20261129T020000Z-daily" in reasons["20261126T020000Z-daily"]
    assert sets[1].bytes == good.bytes
    assert sets[1].path == "backups/app/20261129T020000Z-daily"


def test_catalogue_lists_both_servers_newest_first(homes: dict[str, Path]) -> None:
    make_set(homes["backup-odd"], started=YESTERDAY, server="backup-odd")
    make_set(homes["backup-even"], started=TODAY)
    make_set(homes["backup-even"], started=TODAY + timedelta(hours=6), kind=SetKind.USER_DATABASES)
    sets = catalogue(homes).sets()
    assert [(s.server, s.set_id, s.status.value) for s in sets] == [
        ("backup-even", "20261129T080000Z-user-databases", "complete"),
        ("backup-even", "20261129T020000Z-daily", "complete"),
        ("backup-odd", "20261128T020000Z-daily", "complete"),
    ]
    json.dumps([s.data for s in sets])  # serialisable for `drp backup list --json`


# -- choosing ----------------------------------------------------------------------------------


def test_newest_daily_and_newer_user_database_set_are_chosen(homes: dict[str, Path]) -> None:
    make_set(homes["backup-odd"], started=YESTERDAY, server="backup-odd")
    make_set(homes["backup-even"], started=TODAY)
    make_set(
        homes["backup-odd"],
        started=TODAY + timedelta(hours=6),
        kind=SetKind.USER_DATABASES,
        server="backup-odd",
    )

    selection = catalogue(homes).choose([APP])
    app = selection["app"]
    assert selection.warnings == []
    assert app.complete
    assert [(t.set.label, t.path) for t in app.trees] == [
        ("backup-even:app/20261129T020000Z-daily", "backups/app/20261129T020000Z-daily/files/www")
    ]
    assert {d.dump.database: d.set.label for d in app.dumps} == {
        "app_users": "backup-odd:app/20261129T080000Z-user-databases",
        "app_shop": "backup-even:app/20261129T020000Z-daily",
    }
    # The oldest chosen backup is today's daily tree copy at 02:00: 7 hours of data.
    seconds, words = data_loss_window(selection, "app")
    assert seconds == 7 * 3600
    assert words == "data written after 02:00 today (UTC) will be lost (7 h 00 min of data)"
    assert app.copy_bytes == app.trees[0].tree.bytes + len(b"users dump") + len(b"shop dump")
    json.dumps(selection.data)


def test_incomplete_set_is_never_chosen(homes: dict[str, Path]) -> None:
    make_set(homes["backup-odd"], started=YESTERDAY, server="backup-odd")
    make_set(homes["backup-even"], started=TODAY, write_manifest=False)  # interrupted
    app = catalogue(homes).choose([APP])["app"]
    assert {t.set.label for t in app.trees} == {"backup-odd:app/20261128T020000Z-daily"}
    assert {d.set.label for d in app.dumps} == {"backup-odd:app/20261128T020000Z-daily"}


def test_damaged_dump_falls_back_to_the_older_set_on_the_other_server(
    homes: dict[str, Path],
) -> None:
    make_set(homes["backup-odd"], started=YESTERDAY, server="backup-odd")
    newest, _ = make_set(homes["backup-even"], started=TODAY)
    dump = newest / "databases" / "app_users.dump"
    dump.write_bytes(b"users dumq")  # one byte changed, same size

    cat = catalogue(homes)
    selection = cat.choose([APP])
    app = selection["app"]
    assert {t.set.label for t in app.trees} == {"backup-odd:app/20261128T020000Z-daily"}
    assert {d.set.label for d in app.dumps} == {"backup-odd:app/20261128T020000Z-daily"}
    assert selection.warnings == [
        "skipping backup-even:app/20261129T020000Z-daily: "
        "databases/app_users.dump: sha256 mismatch (file is damaged)"
    ]
    assert data_loss_window(selection, "app")[0] == (NOW - YESTERDAY).total_seconds()
    # The list shows it corrupt, with the reason, once verified.
    shown = cat.status(next(s for s in cat.sets() if s.server == "backup-even"))
    assert shown.status is SetStatus.CORRUPT and "sha256 mismatch" in shown.reason


def test_missing_tree_file_or_dump_makes_a_set_unusable(homes: dict[str, Path]) -> None:
    make_set(homes["backup-odd"], started=YESTERDAY, server="backup-odd")
    newest, _ = make_set(
        homes["backup-even"], started=TODAY, files={"index.html": b"x", "a/b.css": b"yy"}
    )
    (newest / "files" / "www" / "a" / "b.css").unlink()
    (newest / "databases" / "app_shop.sql").unlink()
    selection = catalogue(homes).choose([APP])
    assert selection.warnings == [
        "skipping backup-even:app/20261129T020000Z-daily: files/www: 1 files, manifest says 2; "
        "files/www: 1 bytes, manifest says 3; databases/app_shop.sql: missing"
    ]
    assert {d.set.server for d in selection["app"].dumps} == {"backup-odd"}


def test_renamed_file_is_caught_by_the_tree_digest(homes: dict[str, Path]) -> None:
    make_set(homes["backup-odd"], started=YESTERDAY, server="backup-odd")
    newest, _ = make_set(homes["backup-even"], started=TODAY)
    www = newest / "files" / "www"
    (www / "index.html").rename(www / "index.htm")
    selection = catalogue(homes).choose([APP])
    assert "listing digest differs" in selection.warnings[0]
    assert selection["app"].trees[0].set.server == "backup-odd"


def test_nothing_usable_is_reported_missing(homes: dict[str, Path]) -> None:
    make_set(homes["backup-even"], started=TODAY, write_manifest=False)
    selection = catalogue(homes).choose([APP])
    app = selection["app"]
    assert not selection.complete
    assert app.missing == [
        "app: no usable backup of the files on any backup server",
        "app: no usable backup of database app_users on any backup server",
        "app: no usable backup of database app_shop on any backup server",
    ]
    assert app.data_loss_seconds is None
    assert app.data_loss_words == "no usable backup of environment app"


def test_tree_added_to_the_inventory_since_the_backup_is_missing(homes: dict[str, Path]) -> None:
    make_set(homes["backup-even"], started=TODAY)
    wanted = WantedEnvironment(
        "app", ((TreeSection.FILES, "www"), (TreeSection.CONFIGS, "config")), ()
    )
    app = catalogue(homes).choose([wanted])["app"]
    assert [t.tree.name for t in app.trees] == ["www"]
    assert app.missing == [
        "app: tree configs/config is not in the newest usable set "
        "backup-even:app/20261129T020000Z-daily (added to the inventory since?)"
    ]


def test_unreachable_server_is_a_warning_and_the_other_is_used(
    homes: dict[str, Path], tmp_path: Path
) -> None:
    make_set(homes["backup-odd"], started=YESTERDAY, server="backup-odd")
    servers = [
        BackupServer(
            "backup-even", "backup_even", "backups", LocalRunner("backup-even", tmp_path / "gone")
        ),
        BackupServer(
            "backup-odd", "backup_odd", "backups", LocalRunner("backup-odd", homes["backup-odd"])
        ),
    ]
    selection = Catalogue(servers, NOW).choose([APP])
    assert selection.warnings[0].startswith("backup server backup-even could not be read: ")
    assert selection["app"].complete
    assert {t.set.server for t in selection["app"].trees} == {"backup-odd"}


def test_each_set_is_verified_once(homes: dict[str, Path]) -> None:
    make_set(homes["backup-even"], started=TODAY)
    cat = catalogue(homes)
    cat.choose([APP])
    cat.choose([APP])
    runner = cat.servers["backup-even"].runner
    assert isinstance(runner, LocalRunner)
    assert len(runner.commands) == 3  # one listing, one tree digest, one pass over the dumps


def test_not_after_keeps_a_resumed_operation_on_its_first_choice(homes: dict[str, Path]) -> None:
    make_set(homes["backup-odd"], started=YESTERDAY, server="backup-odd")
    make_set(homes["backup-even"], started=TODAY)
    app = catalogue(homes).choose([APP], not_after=TODAY - timedelta(seconds=1))["app"]
    assert {t.set.set_id for t in app.trees} == {"20261128T020000Z-daily"}


def test_a_kept_choice_restores_those_sets_only_even_when_newer_ones_exist(
    homes: dict[str, Path],
) -> None:
    make_set(homes["backup-odd"], started=YESTERDAY, server="backup-odd")
    make_set(homes["backup-even"], started=TODAY)
    kept = ["backup-odd:app/20261128T020000Z-daily"]
    selection = catalogue(homes).choose([APP], only=kept)
    assert selection.gone == [] and selection.complete
    assert {t.set.label for t in selection["app"].trees} == set(kept)
    assert {d.set.label for d in selection["app"].dumps} == set(kept)


def test_kept_sets_removed_or_damaged_since_are_named_with_why(
    homes: dict[str, Path], tmp_path: Path
) -> None:
    older, _ = make_set(homes["backup-odd"], started=YESTERDAY, server="backup-odd")
    newest, _ = make_set(homes["backup-even"], started=TODAY)
    (newest / "databases" / "app_users.dump").write_bytes(b"users dumq")
    older.rename(tmp_path / "removed")  # someone cleaned the backup server
    kept = ["backup-even:app/20261129T020000Z-daily", "backup-odd:app/20261128T020000Z-daily"]
    selection = catalogue(homes).choose([APP], only=kept)
    assert selection.gone == [
        "backup-even:app/20261129T020000Z-daily (corrupt: databases/app_users.dump: sha256 "
        "mismatch (file is damaged))",
        "backup-odd:app/20261128T020000Z-daily (no longer on backup-odd)",
    ]
    assert not selection.complete  # nothing else is taken in their place


def test_closing_the_catalogue_closes_its_connections(homes: dict[str, Path]) -> None:
    closed: list[bool] = []
    with Catalogue([], NOW, on_close=lambda: closed.append(True)) as cat:
        assert cat.sets() == []
    cat.close()
    assert closed == [True]
