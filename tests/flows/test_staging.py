"""The warm DRP server, as an operator runs it: `drp stage` restores the newest backups beside
what the DRP server serves and records them restore-tested; a drill then swaps the stages in
(a final delta for files newer than their stage, a rename for a database staged from the chosen
dump, an import from the dump for a newer one); a set that does not stage raises one ticket;
nothing is staged while the DRP server serves."""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from flow_helpers import (
    DRP,
    LAB_CONFIG,
    PRODUCTION,
    WWW,
    dns_at,
    drp_cli,
    ensure_backups,
    files,
    knot_answers,
    my,
    pg,
    start_cli,
    tickets,
    without_stages,
)

from providers.database import engine_for, stage_endpoint
from runbooks import connect
from runbooks.backups import choose_sets
from runbooks.inventory import Site, load_site
from runbooks.site_lock import read_lock

pytestmark = [pytest.mark.lab, pytest.mark.prefect]

CONFIG = str(LAB_CONFIG)
NEW_USERS = 800_000 + int(time.time()) % 100_000  # rows this module adds to production


def _run(api: str, *args: str) -> tuple[int, str]:
    done = drp_cli(api, *args)
    return done.returncode, done.stdout + done.stderr


def _stages(site: Site) -> list[str]:
    with connect.HostPool(site) as pool:
        out = pool["drp"].run(["sh", "-c", "ls -d srv/app/*.drp-stage/*/ 2>/dev/null; true"])
    return sorted(out.stdout.split())


def _stage_counts(site: Site, name: str) -> dict[str, int]:
    db = next(d for d in site.environments[0].databases if d.name == name)
    stage = stage_endpoint(connect.db_endpoint(site, db, "drp"))
    engine = engine_for(db.engine)
    password = connect.database_password(site, db)
    return engine.table_counts(stage, password) if engine.exists(stage, password) else {}


def _restore_tests(api: str) -> dict[str, Any]:
    code, out = _run(api, "backup", "list", "-c", CONFIG, "--json")
    assert code == 0, out
    data = json.loads(out[out.index("{") :])
    return {
        f"{s['server']}:{s['environment']}/{s['set_id']}": s["restore_test"] for s in data["sets"]
    }


def _report(op: str) -> dict[str, Any]:
    return json.loads((LAB_CONFIG.parent / "reports" / f"{op}.json").read_text())


@pytest.fixture
def site(lab, prefect_server) -> Iterator[Site]:
    """The lab with backups and no stage; no stage left behind, production's files and rows as
    they were."""
    loaded = load_site(LAB_CONFIG)
    ensure_backups(loaded)
    with without_stages(loaded):
        yield loaded
    with connect.HostPool(loaded) as pool:
        pool["production"].run(["sh", "-c", f"rm -rf -- {WWW}/staged-test"])
    with pg(loaded, "production") as conn:
        conn.execute("DELETE FROM users WHERE id >= %s AND id < 900000", (NEW_USERS,))


def test_staging_is_a_restore_test_and_the_drill_swaps_the_stage_in(
    site: Site, prefect_server, monkeypatch: pytest.MonkeyPatch
) -> None:
    api = prefect_server.api_url
    served = files(site, "drp", WWW)
    choice = choose_sets(site).environments["app"]
    daily = choice.trees[0].set

    # 1. Staging: the newest sets restored beside what the DRP server serves, rows checked.
    code, out = _run(api, "stage", "-c", CONFIG)
    assert code == 0, out[-3000:]
    assert "Outcome: succeeded" in out
    assert files(site, "drp", WWW) == served  # what it serves is untouched
    staged_www = f"{WWW}.drp-stage/{daily.server}-{daily.set_id}"
    assert f"{staged_www}/" in _stages(site)
    assert files(site, "drp", staged_www) == files(
        site, connect.backup_role(site, daily.server), f"{daily.path}/files/www"
    )
    for dump in choice.dumps:
        assert _stage_counts(site, dump.dump.database) == dump.dump.tables
    tested = _restore_tests(api)[daily.label]
    assert tested["ok"] and tested["host"] == "drp", tested
    monkeypatch.setenv("COLUMNS", "250")  # a wide terminal: the table's cells unfolded
    code, table = _run(api, "backup", "list", "-c", CONFIG)
    monkeypatch.delenv("COLUMNS")
    assert "restore-tested at" in table and "(rows match)" in table

    # 2. A day goes by: 5 files changed or added on production, users added; then a files
    # backup and a user-database backup, newer than the stage.
    with connect.HostPool(site) as pool:
        script = (
            'mkdir -p "$1/staged-test" && for i in 1 2 3 4 5; do '
            'head -c 20000 /dev/urandom > "$1/staged-test/new-$i.bin"; done'
        )
        pool["production"].run(["sh", "-c", script, "sh", WWW])
    with pg(site, "production") as conn:
        conn.execute(
            "INSERT INTO users (id, email, full_name, password_hash, created_at, active) "
            "SELECT g, 'staged' || g || '@test', 'Staged', 'x', now(), true "
            "FROM generate_series(%s, %s) g",
            (NEW_USERS, NEW_USERS + 9),
        )
    for part in ("files", "user-databases"):
        code, out = _run(api, "backup", "run", "-c", CONFIG, "--only", part)
        assert code == 0, out[-3000:]
        # Not a flow run: no staging run follows it, and the operator is told what will.
        assert f"or now with `drp stage -c {CONFIG}`" in " ".join(out.split()), out[-3000:]
    chosen = choose_sets(site).environments["app"]
    users = next(d for d in chosen.dumps if d.dump.database == "app_users")
    shop = next(d for d in chosen.dumps if d.dump.database == "app_shop")
    staged = {d.dump.database: d.set.label for d in choice.dumps}
    assert users.set.label != staged["app_users"] and shop.set.label == staged["app_shop"]

    # 3. The plan says what is warm, and estimates the RTO.
    code, out = _run(api, "plan", "drill", "-c", CONFIG)
    assert code == 0, out[-3000:]
    assert "warm" in out and "estimated RTO" in out and "swap-in" in out

    # 4. The drill (putting the DRP server back afterwards) swaps in: files after a final
    # delta, the shop database renamed; the user database, newer than its stage, imported from
    # its dump. Each proved as always: the tree against the set, rows against the manifest.
    op = f"drill-warm-{datetime.now(UTC):%H%M%S}"
    code, out = _run(api, "drill", "-c", CONFIG, "--operation-id", op, "--cleanup",
                     "--order-by", "Jane Doe", "--reference", "WARM-1")  # fmt: skip
    assert code == 0, out[-3000:]
    steps = {r["step"]: r for r in _report(op)["timeline"]}
    www = steps["copy-app-files-www"]
    assert www["outcome"] == "applied" and www["details"].get("warm"), www
    # Only what changed since the stage moved: at least the 5 files, far from the whole tree.
    assert "after a final delta of" in www["reason"] and "matches" in www["reason"], www
    www_bytes = next(t.tree.bytes for t in chosen.trees if t.tree.name == "www")
    assert www["files"] >= 5 and www["bytes"] < www_bytes / 2, www
    shop_step, users_step = steps["restore-app-app_shop"], steps["restore-app-app_users"]
    assert shop_step["details"].get("warm") and "renamed" not in shop_step["reason"], shop_step
    assert f"{sum(shop.dump.tables.values())} rows as in the manifest" in shop_step["reason"]
    assert not users_step["details"].get("warm")
    assert f"{sum(users.dump.tables.values())} rows as in the manifest" in users_step["reason"]
    assert "hard-linked (the stage stays for the activation)" in www["reason"]
    assert files(site, "drp", WWW) == served  # put back as it was before the drill
    # The drill linked the stage of the files, which stays ready (its final delta included);
    # the shop database's stage was renamed in: the next staging restores it again.
    assert f"{staged_www}/" in _stages(site) and len(_stages(site)) == 2  # www and config
    assert files(site, "drp", staged_www) == files(site, "production", WWW)
    assert _stage_counts(site, "app_shop") == {}


def test_a_set_that_does_not_stage_raises_one_ticket(site: Site, prefect_server) -> None:
    api = prefect_server.api_url
    db = next(d for d in site.environments[0].databases if d.engine == "mysql")
    stage = stage_endpoint(connect.db_endpoint(site, db, "drp"))
    conn = my(site, "drp")
    with conn.cursor() as cursor:  # a database of that name that staging did not write
        cursor.execute(f"CREATE DATABASE `{stage.dbname}`")
        cursor.execute(f"CREATE TABLE `{stage.dbname}`.notes (id INT PRIMARY KEY)")
        cursor.execute(f"INSERT INTO `{stage.dbname}`.notes VALUES (1)")
    try:
        code, out = _run(api, "stage", "-c", CONFIG)
        assert code == 1, out[-3000:]
        op = out[out.index("stage-20") :].split()[0].rstrip(".:;,")
        sent = tickets(site, "stage-failed", op)
        assert len(sent) == 1 and "did not restore on the DRP server" in sent[0]["title"], sent
        label = next(lbl for lbl, t in _restore_tests(api).items() if t and not t["ok"])
        assert label in sent[0]["title"]
        # The same set failing again an hour later: no second ticket.
        code, out = _run(api, "stage", "-c", CONFIG)
        assert code == 1
        again = out[out.index("stage-20") :].split()[0].rstrip(".:;,")
        assert again != op and tickets(site, "stage-failed", again) == []
        with conn.cursor() as cursor:  # the foreign database is untouched
            cursor.execute(f"SELECT count(*) FROM `{stage.dbname}`.notes")
            assert cursor.fetchone()[0] == 1
    finally:
        with conn.cursor() as cursor:
            cursor.execute(f"DROP DATABASE IF EXISTS `{stage.dbname}`")
        conn.close()


def test_nothing_is_staged_while_the_drp_server_serves(site: Site, prefect_server) -> None:
    """After an activation (DNS at the DRP server), until the return: staging waits, says
    why, and changes nothing."""
    api = prefect_server.api_url
    dns_at(site, DRP)
    try:
        code, out = _run(api, "stage", "-c", CONFIG)
    finally:
        dns_at(site, PRODUCTION)
    assert code == 0, out[-3000:]
    said = " ".join(out.split())
    assert f"drp-lab.test A points at the DRP server ({DRP})" in said, said
    assert "after the return" in said and "Staging skipped" in said
    assert _stages(site) == [] and _stage_counts(site, "app_users") == {}


def test_staging_waits_while_another_operation_holds_the_site(site: Site, prefect_server) -> None:
    """An activation under way holds the site lock: staging takes nothing, changes nothing,
    says who holds the site, and the activation's lock stays."""
    from runbooks.site_lock import SiteLock

    op = f"activate-busy-{datetime.now(UTC):%H%M%S}"
    lock = SiteLock(site, op, "activate", run="a test holding the site")
    lock.take()
    try:
        code, out = _run(prefect_server.api_url, "stage", "-c", CONFIG)
        with connect.HostPool(site) as pool:
            held = read_lock(pool["drp"])
    finally:
        lock.release()
    said = " ".join(out.split())
    assert code == 0, said[-3000:]
    assert "Staging skipped, the site is busy" in said and op in said, said
    assert held is not None and held.operation_id == op
    assert _stages(site) == [] and _stage_counts(site, "app_users") == {}


def _served(site: Site) -> tuple[Any, ...]:
    """What the DRP server serves and what DNS says: the web root and both databases."""
    state = []
    for db in site.environments[0].databases:
        engine = engine_for(db.engine)
        endpoint = connect.db_endpoint(site, db, "drp")
        password = connect.database_password(site, db)
        exists = engine.exists(endpoint, password)
        state.append((db.name, exists, engine.table_counts(endpoint, password) if exists else {}))
    return files(site, "drp", WWW), tuple(state), knot_answers()


def test_an_activation_that_meets_a_staging_run_changes_nothing_and_says_to_wait(
    site: Site, prefect_server, tmp_path
) -> None:
    """A staging run holds the site (frozen here while it stages, as a long staging over a slow
    link would be): `drp activate` stops on one line saying it is a staging run, to wait for or
    to cancel, and changes nothing the DRP server serves; the staging then ends as usual and
    frees the site."""
    api = prefect_server.api_url
    staging = start_cli(api, tmp_path / "stage.log", "stage", "-c", CONFIG)
    try:
        deadline = time.monotonic() + 120
        while True:
            with connect.HostPool(site) as pool:
                held = read_lock(pool["drp"])
            if held is not None and held.kind == "stage":
                break
            assert staging.poll() is None, (tmp_path / "stage.log").read_text()[-3000:]
            assert time.monotonic() < deadline, "the staging run never took the site"
            time.sleep(0.05)
        os.killpg(staging.pid, signal.SIGSTOP)
        before = _served(site)
        op = f"activate-meets-stage-{datetime.now(UTC):%H%M%S}"
        done = drp_cli(api, "activate", "-c", CONFIG, "--operation-id", op, "--order-by",
                       "Jane Doe", "--reference", "T-STAGE", "--acknowledge-data-loss")  # fmt: skip
        after = _served(site)
    finally:
        os.killpg(staging.pid, signal.SIGCONT)
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert done.returncode == 1, done.stdout[-2000:] + done.stderr[-2000:]
    assert len(errors) == 1, done.stderr[-3000:]
    said = errors[0]
    assert f"is locked by operation {held.operation_id}" in said, said
    assert "It is a staging run" in said and "nothing the DRP server serves" in said, said
    assert "wait for it to end, or cancel its run in the Prefect UI" in said, said
    assert "Traceback" not in done.stderr
    assert after == before
    report = _report(op)
    assert report["outcome"] == "failed" and report.get("order") is None

    assert staging.wait(300) == 0, (tmp_path / "stage.log").read_text()[-3000:]
    with connect.HostPool(site) as pool:
        assert read_lock(pool["drp"]) is None
    assert _stages(site), "the staging run, resumed, staged the trees"
