"""Backups against the lab: real sshd, rsync, PostgreSQL and MariaDB on loopback.

Each test writes into a backup area of its own (`drp-test-...` under the backup users' homes),
removed afterwards, so the lab's `backups` area stays as other tests expect it.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml
from backup_lab import remove_backup_area, write_inventory
from typer.testing import CliRunner

from flows.cli_backup import backup_app
from lab import topology
from providers import mysql, postgres
from runbooks import manifest as mf
from runbooks.backup_run import (
    BackupContext,
    JobOutcome,
    clear_staging,
    copy_tree,
    open_set,
    plan_environment_backup,
    plan_user_database_backup,
    run_jobs,
)
from runbooks.backups import choose_sets, open_catalogue
from runbooks.connect import database_password, db_endpoint
from runbooks.inventory import Site, load_site
from runbooks.manifest import Parity, SetKind, TreeSection

pytestmark = pytest.mark.lab


@dataclass
class Scene:
    """An inventory with a backup area of its own, and everything the backups said."""

    path: Path
    site: Site
    area: str
    said: list[str] = field(default_factory=list)

    def context(self) -> BackupContext:
        return BackupContext(self.site, say=self.said.append)

    def run(self, jobs: list) -> list[JobOutcome]:
        ctx = self.context()
        try:
            return run_jobs(ctx, jobs)
        finally:
            ctx.close()

    def daily(self, parity: str, only: str | None = None) -> JobOutcome:
        (outcome,) = self.run(plan_environment_backup(self.site, parity=parity, only=only))  # type: ignore[arg-type]
        return outcome

    def set_root(self, server: str, set_id: str, environment: str = "app") -> Path:
        return topology.paths().host_root(server) / self.area / environment / set_id


@pytest.fixture
def scene(lab, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Callable[..., Scene]]:
    made: list[Scene] = []

    def make(**options) -> Scene:
        area = f"drp-test-{request.node.name[:40].replace('_', '-')}-{os.getpid()}-{len(made)}"
        path = write_inventory(tmp_path, area, **options)
        s = Scene(path, load_site(path), area)
        made.append(s)
        return s

    yield make
    for s in made:
        remove_backup_area(s.site)


def invoke(app, args: list[str], env: dict[str, str] | None = None):
    """Run a `drp backup` command; wide enough that table cells are not cut."""
    return CliRunner().invoke(app, args, env={"COLUMNS": "250", **(env or {})})


def next_second() -> None:
    """Set ids have one-second resolution: two backups of a kind need two seconds."""
    time.sleep(1.05 - (time.time() % 1))


def production_files(relative: str, excludes: tuple[str, ...] = ()) -> tuple[int, int]:
    """(regular files, bytes) of a tree on production, read from the lab's disk."""
    root = topology.paths().host_root("production") / relative
    count = size = 0
    for path in root.rglob("*"):
        parts = path.relative_to(root).parts
        if any(f"{part}/" in excludes for part in parts[:-1]):
            continue
        if path.is_file() and not path.is_symlink():
            count += 1
            size += path.stat().st_size
    return count, size


# -- a daily backup ----------------------------------------------------------------------------


def test_daily_backup_writes_a_set_whose_manifest_matches_production(scene) -> None:
    s = scene()
    today = mf.day_parity(datetime.now(UTC))
    outcome = s.daily(parity=None)  # type: ignore[arg-type]
    server = f"backup-{today.value}"
    assert list(outcome.manifests) == [server]
    manifest = outcome.manifests[server]
    assert manifest.kind is SetKind.DAILY and manifest.backup_host == server
    root = s.set_root(server, manifest.set_id)
    assert sorted(p.name for p in root.iterdir()) == [
        "configs",
        "databases",
        "files",
        "manifest.json",
    ]
    assert mf.Manifest.from_json((root / "manifest.json").read_text()) == manifest

    env = s.site.environment("app")
    www = manifest.tree(TreeSection.FILES, "www")
    assert www is not None
    assert (www.files, www.bytes) == production_files(
        env.files[0].path, tuple(env.files[0].exclude)
    )
    assert www.files > 100  # the seeded site, not an empty copy
    config = manifest.tree(TreeSection.CONFIGS, "config")
    assert config is not None and (config.files, config.bytes) == production_files(
        env.configs[0].path
    )

    for db in env.databases:
        dump = manifest.dump(db.name)
        assert dump is not None
        data = (root / dump.path).read_bytes()
        assert (len(data), hashlib.sha256(data).hexdigest()) == (dump.size, dump.sha256)
        reader = postgres if db.engine == "postgresql" else mysql
        counts = reader.table_counts(
            db_endpoint(s.site, db, "production"), database_password(s.site, db)
        )
        assert dump.tables == counts and sum(counts.values()) > 0
        assert dump.counts_exact  # nothing writes to the lab databases during the dump
    # The staged dumps are gone from production.
    assert not (topology.paths().host_root("production") / ".drp-staging").exists()


def test_second_daily_set_hard_links_unchanged_files(scene) -> None:
    s = scene()
    first = s.daily("even").manifests["backup-even"]
    next_second()
    second = s.daily("even").manifests["backup-even"]
    www = second.tree(TreeSection.FILES, "www")
    assert www is not None and www.linked_to == first.set_id
    assert www.transferred_bytes == 0
    old = s.set_root("backup-even", first.set_id) / "files" / "www"
    new = s.set_root("backup-even", second.set_id) / "files" / "www"
    sample = next(p for p in new.rglob("*") if p.is_file())
    assert sample.stat().st_ino == (old / sample.relative_to(new)).stat().st_ino


# -- the user databases ------------------------------------------------------------------------


def test_user_database_backup_goes_to_both_servers_and_is_chosen_for_the_user_db(scene) -> None:
    s = scene(both=True)
    s.daily("odd")
    next_second()
    (outcome,) = s.run(plan_user_database_backup(s.site))
    assert sorted(outcome.manifests) == ["backup-even", "backup-odd"]
    manifest = outcome.manifests["backup-even"]
    assert manifest.kind is SetKind.USER_DATABASES
    assert [d.database for d in manifest.databases] == ["app_users"] and manifest.trees == []
    assert outcome.manifests["backup-odd"].databases[0].sha256 == manifest.databases[0].sha256

    selection = choose_sets(s.site)
    app = selection["app"]
    assert selection.warnings == [] and app.complete
    users, shop = app.dump("app_users"), app.dump("app_shop")
    assert users is not None and users.set.kind is SetKind.USER_DATABASES
    assert shop is not None and shop.set.kind is SetKind.DAILY and shop.set.server == "backup-odd"
    # The data-loss window is measured from the oldest chosen backup: the daily's tree copy.
    oldest = min(t.captured for t in app.trees)
    assert app.data_loss_seconds == pytest.approx((selection.now - oldest).total_seconds())


# -- listing, interrupted and corrupt sets -----------------------------------------------------


def test_interrupted_backup_is_listed_incomplete_and_never_chosen(scene) -> None:
    s = scene()
    done = s.daily("even").manifests["backup-even"]
    next_second()
    # A backup that stops after copying the files: no dumps, no manifest.
    (job,) = plan_environment_backup(s.site, parity="odd")
    ctx = s.context()
    try:
        opened = open_set(ctx, job, "backup_odd")
        copy_tree(ctx, job, opened, TreeSection.FILES, "www")
        clear_staging(ctx, job)
    finally:
        ctx.close()

    result = invoke(backup_app, ["list", "--config", str(s.path)])
    assert result.exit_code == 0, result.output
    lines = [line for line in result.output.splitlines() if "backup-" in line]
    assert any("backup-even" in line and "complete" in line for line in lines)
    assert any(
        "backup-odd" in line and "incomplete: no manifest.json: the backup was interrupted" in line
        for line in lines
    )

    listed = json.loads(invoke(backup_app, ["list", "--config", str(s.path), "--json"]).stdout)
    statuses = {(x["server"], x["status"]) for x in listed["sets"]}
    assert statuses == {("backup-even", "complete"), ("backup-odd", "incomplete")}

    app = choose_sets(s.site)["app"]
    assert {x.set.set_id for x in [*app.trees, *app.dumps]} == {done.set_id}


@pytest.mark.parametrize("damage", ["change-a-byte-in-a-dump", "delete-a-file-of-the-tree"])
def test_damaged_newest_set_falls_back_to_the_older_one_on_the_other_server(
    scene, damage: str
) -> None:
    s = scene()
    older = s.daily("even").manifests["backup-even"]
    next_second()
    newest = s.daily("odd").manifests["backup-odd"]
    root = s.set_root("backup-odd", newest.set_id)
    if damage == "change-a-byte-in-a-dump":
        dump = root / "databases" / "app_users.dump"
        data = bytearray(dump.read_bytes())
        data[len(data) // 2] ^= 0xFF
        dump.write_bytes(bytes(data))
        why = "databases/app_users.dump: sha256 mismatch (file is damaged)"
    else:
        victim = sorted(p for p in (root / "files" / "www").rglob("*") if p.is_file())[-1]
        victim.unlink()
        why = "files/www: "

    selection = choose_sets(s.site)
    app = selection["app"]
    assert app.complete
    assert {x.set.label for x in [*app.trees, *app.dumps]} == {f"backup-even:app/{older.set_id}"}
    assert len(selection.warnings) == 1
    assert selection.warnings[0].startswith(f"skipping backup-odd:app/{newest.set_id}: {why}")

    result = invoke(backup_app, ["list", "--config", str(s.path), "--verify"])
    assert result.exit_code == 0, result.output
    assert "corrupt: " in result.output and why.strip() in result.output
    assert f"a restore now would use backup-even:app/{older.set_id}" in result.output


# -- retention ---------------------------------------------------------------------------------


def test_retention_keeps_the_newest_sets_and_says_what_it_removed(scene) -> None:
    s = scene(retention=2, both=False)
    outcomes = []
    for _ in range(3):
        (outcome,) = s.run(plan_user_database_backup(s.site, parity="even"))
        outcomes.append(outcome)
        next_second()
    made = [o.job.set_id for o in outcomes]
    assert [r.set_id for r in outcomes[1].retention[0].removed] == []
    (removal,) = outcomes[2].retention[0].removed
    assert removal.set_id == made[0]
    assert removal.reason == "older than the 2 newest complete user-databases sets"
    assert any(f"backup-even: removed set app/{made[0]}: older than" in line for line in s.said)

    # An abandoned set from two days ago, and one that may still be running.
    area = topology.paths().host_root("backup-even") / s.area / "app"
    abandoned = mf.make_set_id(datetime.now(UTC) - timedelta(days=2), SetKind.FILES)
    running = mf.make_set_id(datetime.now(UTC), SetKind.FILES)
    for name in (abandoned, running):
        (area / name).mkdir()
        os.chown(area / name, *_owner(area))
    (outcome,) = s.run(plan_user_database_backup(s.site, parity="even"))
    removed = {r.set_id: r.reason for r in outcome.retention[0].removed}
    assert sorted(removed) == sorted([abandoned, made[1]])
    assert removed[abandoned].startswith("incomplete (no manifest.json), started 2 d 0 h ago")
    left = sorted(p.name for p in area.iterdir())
    assert left == sorted([made[2], outcome.job.set_id, running])


def _owner(path: Path) -> tuple[int, int]:
    st = path.stat()
    return st.st_uid, st.st_gid


# -- the command line, and secrets -------------------------------------------------------------


def test_backup_run_command_and_no_secret_anywhere(
    scene, lab, caplog: pytest.LogCaptureFixture
) -> None:
    s = scene()
    caplog.set_level(logging.DEBUG)
    result = invoke(backup_app, ["run", "--config", str(s.path), "--parity", "even"])
    assert result.exit_code == 0, result.output
    assert "Backups made" in result.output and "backup-even" in result.output
    assert "databases/app_users.dump: copied, sha256 verified" in result.output
    next_second()
    users = invoke(
        backup_app,
        ["run", "--only", "user-databases", "--parity", "odd"],
        env={"DRP_CONFIG": str(s.path)},
    )
    assert users.exit_code == 0, users.output
    listed = invoke(backup_app, ["list", "--config", str(s.path), "--verify", "--json"])
    data = json.loads(listed.stdout)
    kinds = sorted((x["server"], x["kind"], x["status"]) for x in data["sets"])
    assert kinds == [
        ("backup-even", "daily", "complete"),
        ("backup-even", "user-databases", "complete"),
        ("backup-odd", "user-databases", "complete"),
    ]
    manifests = [
        p.read_text()
        for server in ("backup-even", "backup-odd")
        for p in (topology.paths().host_root(server) / s.area).rglob("manifest.json")
    ]
    everything = "\n".join([result.output, users.output, listed.output, caplog.text, *manifests])
    for name, value in lab.secrets.items():
        assert value not in everything, f"{name} leaked"


def test_backup_commands_require_an_inventory(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DRP_CONFIG", raising=False)
    result = invoke(backup_app, ["list"])
    assert result.exit_code == 2
    assert "pass --config FILE" in result.output and "DRP_CONFIG" in result.output
    helptext = invoke(backup_app, ["run", "--help"]).output
    assert "DRP_CONFIG" in helptext


def test_parity_picks_the_server(scene) -> None:
    s = scene()
    (even,) = plan_environment_backup(s.site, now=datetime(2026, 11, 30, 1, tzinfo=UTC))
    (odd,) = plan_environment_backup(
        s.site, now=datetime(2026, 11, 30, 1, tzinfo=UTC), parity="odd"
    )
    assert (even.parity, even.servers) == (Parity.EVEN, ("backup_even",))
    assert (odd.parity, odd.servers) == (Parity.ODD, ("backup_odd",))
    # A backup area that does not exist yet holds no set, and is no error.
    catalogue = open_catalogue(s.site)
    assert catalogue.sets() == [] and catalogue.unreachable == {}


def test_failed_backup_exits_1_names_the_step_and_leaves_an_incomplete_set(scene) -> None:
    s = scene()
    s.path.write_text(s.path.read_text().replace("srv/app/www", "srv/app/no-such-tree"))
    result = invoke(backup_app, ["run", "--config", str(s.path), "--parity", "odd"])
    assert result.exit_code == 1, result.output
    assert "copy-files-no-such-tree-backup-odd" in result.output
    assert "srv/app/no-such-tree does not exist on production" in result.output
    assert "it is listed as incomplete" in result.output
    listed = json.loads(invoke(backup_app, ["list", "--config", str(s.path), "--json"]).stdout)
    assert [(x["server"], x["status"]) for x in listed["sets"]] == [("backup-odd", "incomplete")]


# -- a single file whose name rsync would read as a pattern -----------------------------------


@pytest.mark.parametrize("name", ["report[1].conf", "all*.conf", "who?.conf"])
def test_single_file_named_like_a_pattern_is_backed_up_with_its_bytes(scene, name: str) -> None:
    """rsync reads `[`, `*`, `?` in an include as wildcards: unescaped, the set came out
    complete with 0 files. Then `drp backup list` says what it checked, and finds the damage."""
    s = scene()
    directory = f"srv/drp-test-single-{os.getpid()}"
    production = topology.paths().host_root("production")
    (production / directory).mkdir()
    os.chown(production / directory, *_owner(production / "srv"))
    content = f"setting = {name}\n".encode() * 100
    (production / directory / name).write_bytes(content)
    os.chown(production / directory / name, *_owner(production / "srv"))
    try:
        data = yaml.safe_load(s.path.read_text())
        data["environments"][0]["configs"].append({"path": f"{directory}/{name}"})
        s.path.write_text(yaml.safe_dump(data, sort_keys=False))
        s.site = load_site(s.path)

        manifest = s.daily("even", only="files").manifests["backup-even"]

        [record] = [t for t in manifest.trees if t.source == f"{directory}/{name}"]
        assert (record.source_is_file, record.files, record.bytes) == (True, 1, len(content))
        copied = s.set_root("backup-even", manifest.set_id) / record.path
        assert [p.name for p in copied.iterdir()] == [name]
        assert (copied / name).read_bytes() == content

        listed = invoke(backup_app, ["list", "--config", str(s.path)])
        assert "complete (not verified)" in listed.output
        assert "Not verified: only the manifests were read." in listed.output
        verified = invoke(backup_app, ["list", "--config", str(s.path), "--verify"])
        assert "complete, verified" in verified.output and "Not verified" not in verified.output

        (copied / name).write_bytes(content + b"x")
        listed = invoke(backup_app, ["list", "--config", str(s.path)])
        assert "complete (not verified)" in listed.output and "corrupt:" not in listed.output
        verified = invoke(backup_app, ["list", "--config", str(s.path), "--verify", "--json"])
        [found] = json.loads(verified.stdout)["sets"]
        assert (found["status"], found["verified"]) == ("corrupt", True)
        assert f"{record.path}: {len(content) + 1} bytes, manifest says" in found["reason"]
    finally:
        for path in sorted((production / directory).rglob("*"), reverse=True):
            path.unlink()
        (production / directory).rmdir()
