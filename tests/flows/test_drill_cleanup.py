"""`drp drill --cleanup` on the lab: a real drill, then the DRP server exactly as before.

What the DRP server held (files with their sizes and times, databases with their tables, rows,
checksums and drp markers) is read before and after; a canary file that no backup holds stands
for the DRP server's own content, which the drill must never lose.
"""

from __future__ import annotations

import json
import os
import secrets
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from flow_helpers import LAB_CONFIG, drp_cli, ensure_backups, production_serves_again, tickets

from flows.prepare import choose_backups, prepare
from providers import mysql, postgres
from runbooks import connect
from runbooks.cleanup import RECORD_DIR, record_dir, record_path
from runbooks.errors import UnsafePlan
from runbooks.inventory import Site, load_site
from runbooks.report import load_report
from runbooks.services import reports_dir
from runbooks.steps import Outcome

pytestmark = [pytest.mark.lab, pytest.mark.prefect]

CANARY = "srv/app/www/drp-canary.txt"  # the DRP server's own file, in no backup
STAGING = ".drp/staging"


@pytest.fixture(scope="module")
def site(lab, prefect_server, tmp_path_factory) -> Iterator[Site]:
    os.environ["DRP_REPORTS_DIR"] = str(tmp_path_factory.mktemp("reports"))
    loaded = load_site(LAB_CONFIG)
    ensure_backups(loaded)
    yield loaded
    os.environ.pop("DRP_REPORTS_DIR", None)


def drp_run(site: Site, *argv: str) -> str:
    with connect.HostPool(site) as pool:
        return pool["drp"].run(list(argv)).stdout


def drp_snapshot(site: Site) -> dict[str, Any]:
    """Everything a drill writes on the DRP server, as a comparable value."""
    listing = drp_run(
        site, "sh", "-c", f"find srv {STAGING} -printf '%p %s %T@\\n' 2>/dev/null | sort; true"
    )
    databases = {}
    for db in site.environments[0].databases:
        endpoint = connect.db_endpoint(site, db, "drp")
        password = connect.database_password(site, db)
        engine = postgres if db.engine == "postgresql" else mysql
        state = engine.read_state(endpoint, password)
        content = (
            (engine.table_counts(endpoint, password), engine.table_checksums(endpoint, password))
            if state.exists
            else None
        )
        databases[db.name] = (
            state.exists,
            state.tables,
            state.other_objects,
            state.marker,
            content,
        )
    return {"files": listing, "databases": databases}


def leftovers(site: Site, operation_id: str) -> list[str]:
    """What a cleanup must not leave behind: set-aside paths, databases and dumps."""
    found = drp_run(
        site, "sh", "-c", f"find . -name '*.drp-before-{operation_id}' 2>/dev/null; true"
    ).split()
    dumps = f"{record_dir(operation_id)}/databases"
    found += drp_run(site, "sh", "-c", f"find {dumps} -type f 2>/dev/null; true").split()
    pg = next(d for d in site.environments[0].databases if d.engine == "postgresql")
    kept = postgres.aside_name(pg.name, operation_id)
    endpoint = connect.db_endpoint(site, pg, "drp").with_dbname(kept)
    if postgres.database_exists(endpoint, connect.database_password(site, pg)):
        found.append(f"database {kept}")
    return found


def drill(api_url: str, operation_id: str, *extra: str) -> Any:
    return drp_cli(
        api_url,
        "drill",
        "-c",
        str(LAB_CONFIG),
        "--operation-id",
        operation_id,
        "--order-by",
        "Lab Operator",
        "--reference",
        "DRILL-CLEAN",
        *extra,
    )


@pytest.fixture
def operation_id(site: Site) -> Iterator[str]:
    """A new drill (tickets and records are per operation); its record is removed at the end."""
    op = f"drill-cleanup-{secrets.token_hex(3)}"
    yield op
    drp_run(site, "rm", "-rf", "--", record_dir(op), CANARY)
    drp_run(site, "rmdir", "--ignore-fail-on-non-empty", "--", RECORD_DIR)


@pytest.fixture
def drp_holds_content(site: Site, prefect_server) -> None:
    """The DRP server holds restored databases (with drp markers), its web root with a file no
    backup has, and no staging dumps (a place the drill creates, and must remove again)."""
    markers = [
        (postgres if db.engine == "postgresql" else mysql).read_marker(
            connect.db_endpoint(site, db, "drp"), connect.database_password(site, db)
        )
        for db in site.environments[0].databases
    ]
    if None in markers:
        done = drill(prefect_server.api_url, f"drill-cleanup-base-{secrets.token_hex(3)}")
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    drp_run(site, "sh", "-c", f"echo 'not in any backup' > {CANARY}")
    drp_run(site, "rm", "-rf", "--", STAGING)


def test_plan_shows_the_cleanup_steps_only_when_asked(site, prefect_server) -> None:
    asked = drp_cli(
        prefect_server.api_url, "plan", "drill", "-c", str(LAB_CONFIG), "--cleanup", "--json"
    )
    assert asked.returncode == 0, asked.stdout[-3000:] + asked.stderr[-3000:]
    plan = json.loads(asked.stdout[asked.stdout.index("{") :])
    keys = [s["key"] for s in plan["steps"]]
    assert keys[keys.index("cleanup-set-aside") + 1].startswith("copy-")  # before any copy
    assert keys[-1] == "cleanup-check"
    assert {
        "cleanup-path-srv-app-www",
        "cleanup-db-app-app_users",
        "cleanup-db-app-app_shop",
    } <= set(keys)
    assert keys.index("ticket-drill-finished") < keys.index("cleanup-path-srv-app-www")
    plain = drp_cli(prefect_server.api_url, "plan", "drill", "-c", str(LAB_CONFIG), "--json")
    assert not [
        s
        for s in json.loads(plain.stdout[plain.stdout.index("{") :])["steps"]
        if s["key"].startswith("cleanup-")
    ]
    refused = drp_cli(
        prefect_server.api_url, "plan", "activate", "-c", str(LAB_CONFIG), "--cleanup"
    )
    assert refused.returncode == 2 and "drills only" in refused.stderr


def test_drill_with_cleanup_leaves_the_drp_server_as_it_found_it(
    site, prefect_server, operation_id, drp_holds_content
) -> None:
    before = drp_snapshot(site)
    assert CANARY in before["files"]

    done = drill(prefect_server.api_url, operation_id, "--cleanup")
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]

    # The drill itself ran in full: restored into an empty place and checked on DRP.
    report = load_report(reports_dir(site), operation_id)
    assert report.outcome == "succeeded", report.message
    assert "back to its state before the drill" in report.message
    steps = {r.step: r for r in report.timeline}
    assert report.service_verified_at is not None and report.rto_seconds > 0
    assert steps["verify-app-drp-ip"].outcome is Outcome.PASSED  # the read-only check
    selection = choose_backups(site, report.chosen_at, None)
    www = next(t for c in selection.environments.values() for t in c.trees if t.tree.name == "www")
    assert steps["copy-app-files-www"].outcome is Outcome.APPLIED
    assert steps["copy-app-files-www"].files == www.tree.files  # everything: nothing was there
    for name in ("app_users", "app_shop"):
        restored = steps[f"restore-app-{name}"]
        assert restored.outcome is Outcome.APPLIED
        assert "kept" not in restored.reason and not restored.details  # nothing to keep: set aside
        assert steps[f"cleanup-db-app-{name}"].outcome is Outcome.APPLIED
    assert steps["cleanup-set-aside"].outcome is Outcome.APPLIED
    assert steps["cleanup-check"].outcome is Outcome.APPLIED
    assert len(tickets(site, "drill-finished", operation_id)) == 1

    # Afterwards: the DRP server as before, canary included, and nothing left aside.
    after = drp_snapshot(site)
    assert after["databases"] == before["databases"]
    assert after["files"] == before["files"]
    assert leftovers(site, operation_id) == []
    record = json.loads(drp_run(site, "cat", record_path(operation_id)))
    assert record["status"] == "restored"

    # Run again: nothing happens, and every step says why (Prefect's cache answers first).
    again = drill(prefect_server.api_url, operation_id, "--cleanup")
    assert again.returncode == 0, again.stdout[-4000:] + again.stderr[-4000:]
    rerun = load_report(reports_dir(site), operation_id)
    assert rerun.outcome == "succeeded"
    assert {r.outcome for r in rerun.timeline if not r.step.startswith("preflight-")} == {
        Outcome.SKIPPED
    }
    assert drp_snapshot(site) == before

    # Without that cache (another machine), each step finds for itself it has nothing to do.
    prepared = prepare(site, "drill", operation_id, None, chosen_at=report.chosen_at, cleanup=True)
    try:
        assert prepared.plan.hash == report.plan_hash  # the same plan: the order still holds
        records = {step.key: step.run() for step in prepared.steps}
    finally:
        prepared.close()
    assert {r.outcome for r in records.values()} == {Outcome.SKIPPED}
    assert "already ended and put the DRP server back" in records["cleanup-set-aside"].reason
    assert records["copy-app-files-www"].reason.startswith("not run again: drill")
    assert "as before the drill" in records["cleanup-path-srv-app-www"].reason
    staging = next(k for k in records if k.startswith("cleanup-path-drp-staging"))
    assert "absent, as before the drill" in records[staging].reason
    assert "as before the drill" in records["cleanup-db-app-app_shop"].reason
    assert "already ended" in records["cleanup-check"].reason
    assert drp_snapshot(site) == before


def test_a_cleanup_cut_short_is_finished_by_the_next_run(
    site, operation_id, drp_holds_content
) -> None:
    """The machine running the drill is lost while the DRP server is being put back; the next
    run (elsewhere: no Prefect cache, only the record on the DRP server) finishes the job and
    never runs the drill's own steps again."""
    before = drp_snapshot(site)
    first = prepare(site, "drill", operation_id, None, chosen_at=datetime.now(UTC), cleanup=True)
    try:
        for step in first.steps:
            step.run()
            if step.key.startswith("cleanup-path-"):
                break  # lost here: one path put back, the rest still the drill's
    finally:
        first.close()
    assert drp_snapshot(site) != before
    assert json.loads(drp_run(site, "cat", record_path(operation_id)))["status"] == "putting-back"

    second = prepare(site, "drill", operation_id, None, chosen_at=datetime.now(UTC), cleanup=True)
    try:
        records = {step.key: step.run() for step in second.steps}
    finally:
        second.close()
    for key in ("copy-app-files-www", "restore-app-app_shop", "verify-app-drp-ip"):
        assert records[key].outcome is Outcome.SKIPPED
        assert "not run again" in records[key].reason and "putting the DRP" in records[key].reason
    assert records["cleanup-db-app-app_users"].outcome is Outcome.APPLIED
    assert records["cleanup-check"].outcome is Outcome.APPLIED
    assert drp_snapshot(site) == before
    assert leftovers(site, operation_id) == []


def test_a_cleanup_refuses_to_put_back_over_what_is_no_longer_the_drills(
    site, operation_id, drp_holds_content
) -> None:
    """A drill's cleanup is cut short; an activation then runs and the service writes a file;
    the cleanup run again must not put the pre-drill web root back over it. Once the web root
    is the drill's restore again, the cleanup finishes."""
    from runbooks.activation import Operation, copy_from_backup

    before = drp_snapshot(site)
    first = prepare(site, "drill", operation_id, None, chosen_at=datetime.now(UTC), cleanup=True)
    try:
        for step in first.steps:
            if step.key.startswith("cleanup-path-"):
                break  # lost here: the drill ran, nothing is put back yet
            step.run()
    finally:
        first.close()

    # An activation (another operation) copies the same backup over the web root, and the
    # service, live on the DRP server, writes a file there.
    selection = choose_backups(site, datetime.now(UTC), None)
    activation = Operation(site, f"activate-after-{operation_id}", "activate", selection)
    try:
        env = site.environments[0]
        for section, name, tree in connect.environment_trees(env):
            chosen = selection[env.name].tree(section, name)
            if chosen is not None and tree.path.rstrip("/") == "srv/app/www":
                copy_from_backup(activation, env, tree, chosen).run()
    finally:
        activation.close()
    upload = "srv/app/www/uploaded-after-the-activation.txt"
    drp_run(site, "sh", "-c", f"echo 'a customer upload' > {upload}")

    second = prepare(site, "drill", operation_id, None, chosen_at=datetime.now(UTC), cleanup=True)
    try:
        step = next(s for s in second.steps if s.key == "cleanup-path-srv-app-www")
        with pytest.raises(UnsafePlan) as refused:
            step.run()
    finally:
        second.close()
    message = str(refused.value)
    assert "drp:srv/app/www is not the drill's restore of" in message
    assert "differs from the manifest's" in message and "Nothing was removed" in message
    assert drp_run(site, "cat", upload) == "a customer upload\n"  # the activation's stays
    assert f"srv/app/www.drp-before-{operation_id}" in drp_run(
        site, "find", "srv/app", "-maxdepth", "1"
    )  # the pre-drill web root still waits

    # The web root is the drill's restore again: the cleanup now puts everything back.
    drp_run(site, "rm", "-f", "--", upload)
    third = prepare(site, "drill", operation_id, None, chosen_at=datetime.now(UTC), cleanup=True)
    try:
        records = {step.key: step.run() for step in third.steps}
    finally:
        third.close()
    assert records["cleanup-check"].outcome is Outcome.APPLIED
    assert drp_snapshot(site) == before
    assert leftovers(site, operation_id) == []


def test_a_drill_resumed_after_an_activation_changes_nothing_the_activation_did(
    site, prefect_server, operation_id, drp_holds_content
) -> None:
    """A drill with --cleanup fails before putting back and is abandoned (`drp unlock`); the
    site is activated; the drill is run again. It must neither run its steps over the live DRP
    server nor put the pre-drill state back over the activation: it says why, changes nothing."""
    from lab import topology
    from runbooks import site_lock

    drp_run(site, "sh", "-c", f"touch {topology.APP_MAINTENANCE_FLAG}")  # the check fails
    failed = drill(prefect_server.api_url, operation_id, "--cleanup")
    assert failed.returncode == 1, failed.stdout[-3000:] + failed.stderr[-3000:]
    drp_run(site, "rm", "-f", "--", topology.APP_MAINTENANCE_FLAG)
    unlocked = drp_cli(prefect_server.api_url, "unlock", "-c", str(LAB_CONFIG), "--operation-id",
                       operation_id, "--reason", "drill abandoned")  # fmt: skip
    assert unlocked.returncode == 0, unlocked.stdout + unlocked.stderr
    activation = f"activate-after-{operation_id}"
    try:
        done = drp_cli(prefect_server.api_url, "activate", "-c", str(LAB_CONFIG),
                       "--operation-id", activation, "--order-by", "Jane Doe",
                       "--reference", "1STKYC-80", "--acknowledge-data-loss")  # fmt: skip
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
        activated = drp_snapshot(site)

        again = drill(prefect_server.api_url, operation_id, "--cleanup")
        output = " ".join((again.stdout + again.stderr).split())
        assert again.returncode == 1, output
        assert (
            f"operation {activation} (activate) took the site after drill {operation_id} set "
            "the DRP server's state aside: putting it back now would undo what came after. "
            "Nothing was put back"
        ) in output, output
        assert drp_snapshot(site) == activated  # the activation's files and databases stand
        report = load_report(reports_dir(site), operation_id)
        skipped = [r for r in report.timeline if "took the site after this drill" in r.reason]
        assert {r.step for r in skipped} >= {"copy-app-files-www", "restore-app-app_users"}
    finally:
        with connect.HostPool(site) as pool:
            held = site_lock.read_lock(pool["drp"])
            if held is not None:
                site_lock.unlock(pool["drp"], held.operation_id, "test ends")
        production_serves_again(site)
