"""The backup set's id, layout and manifest, and the shell commands that read a set."""

from __future__ import annotations

import json
import os
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from backup_helpers import LocalRunner, make_set, tree_digest

from runbooks import manifest as mf
from runbooks.manifest import Manifest, Parity, SetKind

T0 = datetime(2026, 11, 29, 2, 0, 5, tzinfo=UTC)


def test_set_id_is_utc_time_and_kind_and_sorts_by_time() -> None:
    paris = T0.astimezone(__import__("zoneinfo").ZoneInfo("Europe/Paris"))
    assert mf.make_set_id(paris, SetKind.DAILY) == "20261129T020005Z-daily"
    assert mf.parse_set_id("20261129T020005Z-user-databases") == (T0, SetKind.USER_DATABASES)
    ids = [mf.make_set_id(T0 + timedelta(hours=h), SetKind.USER_DATABASES) for h in (0, 2, 12, 30)]
    assert sorted(ids) == ids


@pytest.mark.parametrize(
    "bad",
    ["20261129-daily", "20261129T020005Z-weekly", "20261339T020005Z-daily", "notes", "x/../y"],
)
def test_names_that_are_not_set_ids_are_refused(bad: str) -> None:
    assert not mf.is_set_id(bad)
    with pytest.raises(ValueError, match="is not a backup set id"):
        mf.parse_set_id(bad)


def test_set_id_needs_an_aware_time() -> None:
    with pytest.raises(ValueError, match="aware"):
        mf.make_set_id(datetime(2026, 11, 29), SetKind.DAILY)


def test_day_parity_is_the_utc_day_of_month() -> None:
    assert mf.day_parity(datetime(2026, 11, 29, 23, 30, tzinfo=UTC)) is Parity.ODD
    assert mf.day_parity(datetime(2026, 11, 30, 0, 30, tzinfo=UTC)) is Parity.EVEN
    # 00:30 in Paris on the 30th is still the 29th in UTC.
    paris = datetime(2026, 11, 30, 0, 30, tzinfo=__import__("zoneinfo").ZoneInfo("Europe/Paris"))
    assert mf.day_parity(paris) is Parity.ODD
    # The 31st and the 1st are both odd days.
    assert mf.day_parity(datetime(2026, 12, 31, tzinfo=UTC)) is Parity.ODD
    assert mf.day_parity(datetime(2027, 1, 1, tzinfo=UTC)) is Parity.ODD


def test_layout_paths() -> None:
    set_id = "20261129T020005Z-daily"
    assert mf.set_dir("backups", "app", set_id) == "backups/app/20261129T020005Z-daily"
    assert mf.tree_relpath(mf.TreeSection.CONFIGS, "config") == "configs/config"
    assert mf.dump_relpath("app_users", "postgresql") == "databases/app_users.dump"
    assert mf.dump_relpath("app_shop", "mysql") == "databases/app_shop.sql"
    with pytest.raises(ValueError, match="cannot name a directory"):
        mf.set_dir("backups", "../etc", set_id)


def test_tree_names_use_the_last_component_unless_two_trees_share_it() -> None:
    assert mf.tree_names(["srv/app/www", "/var/lib/app/uploads"]) == ["www", "uploads"]
    assert mf.tree_names(["/etc/nginx/sites-enabled", "/etc/apache2/sites-enabled"]) == [
        "etc_nginx_sites-enabled",
        "etc_apache2_sites-enabled",
    ]
    assert mf.tree_names(["srv/app/config/app.ini"]) == ["app.ini"]


def test_manifest_round_trips_through_json(tmp_path: Path) -> None:
    _, manifest = make_set(tmp_path, started=T0)
    text = manifest.to_json()
    data = json.loads(text)
    assert data["format"] == "drp-backup-manifest/1"
    assert data["set_id"] == "20261129T020005Z-daily"
    assert data["trees"][0]["path"] == "files/www"
    assert data["databases"][0]["tables"] == {"public.users": 3}
    assert "sorted listing" in data["digest_covers"]
    again = Manifest.from_json(text)
    assert again == manifest
    assert again.bytes == manifest.trees[0].bytes + len(b"users dump") + len(b"shop dump")


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        (lambda d: d.pop("databases") and d.pop("completed"), "completed: Field required"),
        (lambda d: d.update(set_id="yesterday"), "set_id"),
        (lambda d: d["databases"][0].update(sha256="abc"), "databases.0.sha256"),
        (lambda d: d.update(format="someone-else/9"), "format"),
    ],
)
def test_an_invalid_manifest_says_what_is_wrong(tmp_path: Path, change, reason: str) -> None:
    _, manifest = make_set(tmp_path, started=T0)
    data = json.loads(manifest.to_json())
    change(data)
    with pytest.raises(ValueError, match="invalid manifest") as err:
        Manifest.from_json(json.dumps(data))
    assert reason in str(err.value)


def test_truncated_manifest_is_invalid(tmp_path: Path) -> None:
    _, manifest = make_set(tmp_path, started=T0)
    with pytest.raises(ValueError, match="invalid manifest"):
        Manifest.from_json(manifest.to_json()[:100])


# -- commands, run for real here ----------------------------------------------------------------


def test_tree_stats_argv_is_exact() -> None:
    argv = mf.tree_stats_argv("backups/app/x/files/www")
    assert argv[:2] == ["sh", "-c"]
    assert argv[3:] == ["sh", "./backups/app/x/files/www"]  # never an option of find
    assert "LC_ALL=C sort" in argv[2] and "%P\\t%s\\t%Ts\\n" in argv[2]


def test_tree_stats_match_the_documented_listing(tmp_path: Path) -> None:
    tree = tmp_path / "tree with space"
    (tree / "sub dir").mkdir(parents=True)
    (tree / "a.txt").write_bytes(b"alpha")
    (tree / "sub dir" / "b.bin").write_bytes(b"\0" * 1000)
    (tree / "Z.txt").write_bytes(b"")
    os.symlink("a.txt", tree / "link")  # not a regular file: not counted
    runner = LocalRunner("here", tmp_path)
    out = runner.run(mf.tree_stats_argv("tree with space")).stdout
    assert mf.parse_tree_stats(out) == tree_digest(tree)
    digest, files, size = mf.parse_tree_stats(out)
    assert (files, size) == (3, 1005)

    # Re-dating one file changes the digest, not the counts.
    old = time.time() - 3600
    os.utime(tree / "a.txt", (old, old))
    digest2, files2, size2 = mf.parse_tree_stats(
        runner.run(mf.tree_stats_argv("tree with space")).stdout
    )
    assert (files2, size2) == (files, size) and digest2 != digest


def test_tree_stats_of_a_missing_tree_fail(tmp_path: Path) -> None:
    result = LocalRunner("here", tmp_path).run(mf.tree_stats_argv("nope"), check=False)
    assert not result.ok
    assert "no such directory: nope" in result.stderr


def test_file_stats_give_size_and_sha256_or_missing(tmp_path: Path) -> None:
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "x.dump").write_bytes(b"hello")
    out = LocalRunner("here", tmp_path).run(mf.file_stats_argv(["d/x.dump", "d/none.sql"])).stdout
    assert mf.parse_file_stats(out) == {
        "d/x.dump": (5, "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"),
        "d/none.sql": None,
    }


def test_list_sets_gives_one_line_per_set_with_its_manifest(tmp_path: Path) -> None:
    make_set(tmp_path, started=T0)
    make_set(
        tmp_path, started=T0 + timedelta(hours=2), kind=SetKind.USER_DATABASES, write_manifest=False
    )
    runner = LocalRunner("here", tmp_path)
    lines = runner.run(mf.list_sets_argv("backups")).stdout.splitlines()
    assert len(lines) == 2
    by_set = dict(line.split("\t") for line in lines)
    assert by_set["app/20261129T040005Z-user-databases"] == ""
    import base64

    decoded = base64.b64decode(by_set["app/20261129T020005Z-daily"])
    assert Manifest.from_json(decoded).set_id == "20261129T020005Z-daily"


def test_list_sets_of_a_missing_area_is_empty(tmp_path: Path) -> None:
    result = LocalRunner("here", tmp_path).run(mf.list_sets_argv("backups"))
    assert result.stdout == ""


def test_write_file_atomically_replaces_the_whole_file(tmp_path: Path) -> None:
    runner = LocalRunner("here", tmp_path)
    (tmp_path / "m.json").write_text("old")
    runner.run(mf.write_file_atomically_argv("m.json"), stdin='{"new": true}\n')
    assert (tmp_path / "m.json").read_text() == '{"new": true}\n'
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.json"]  # no temp file left
