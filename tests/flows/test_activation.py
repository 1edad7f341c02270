"""The activation and drill flows on the lab, under a real Prefect server.

The order gate is answered the way the UI does it (the resume API, with the input schema the UI
renders its form from); what a user would notice is checked for real: what Knot answers, what
the DRP web page shows, what the DRP databases hold, what the report says.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest
from flow_helpers import (
    DRP,
    LAB_CONFIG,
    NAMES,
    PRODUCTION,
    FlowInThread,
    dns_at,
    drp_cli,
    drp_state,
    ensure_backups,
    knot_answers,
    read_form,
    resume,
    tickets,
    web_page,
)

from runbooks import connect
from runbooks.inventory import Site, load_site
from runbooks.report import load_report
from runbooks.services import reports_dir

pytestmark = [pytest.mark.lab, pytest.mark.prefect]
# Operation records stay on the lab's DRP host between sessions: a fixed id would find the
# order an earlier session gave, and go on without asking.
RUN = secrets.token_hex(3)


# -- fixtures ----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def site(lab, prefect_server, tmp_path_factory) -> Iterator[Site]:
    os.environ["DRP_REPORTS_DIR"] = str(tmp_path_factory.mktemp("reports"))
    loaded = load_site(LAB_CONFIG)
    ensure_backups(loaded)
    yield loaded
    os.environ.pop("DRP_REPORTS_DIR", None)


@pytest.fixture
def dns_back_to_production(site: Site) -> Iterator[None]:
    """Whatever a test does to the lab zone, it ends pointing at production again."""
    yield
    dns_at(site, PRODUCTION)


# -- the gate ----------------------------------------------------------------------------------
def test_refused_order_changes_nothing_and_incomplete_answers_keep_the_gate_open(
    site, prefect_server
) -> None:
    from flows.activate import drp_activate

    before = (drp_state(site), knot_answers())
    run = FlowInThread(drp_activate, config=str(LAB_CONFIG), operation_id=f"activate-refused-{RUN}")
    run_id = run.wait_paused()
    schema, brief = read_form(run_id)
    props = schema["properties"]
    assert set(schema["required"]) == {"ordered_by", "reference"}
    assert props["decision"]["enum"] == ["activate", "refuse"]
    assert props["data_loss_acknowledged"]["type"] == "boolean"
    report = load_report(reports_dir(site), f"activate-refused-{RUN}")
    assert props["plan_hash"]["default"] == report.plan_hash
    assert "will be lost" in brief and report.plan_hash in brief
    assert "backup-" in brief  # the backups chosen are named

    # No name: the server validates against the schema and keeps the run paused.
    with pytest.raises(RuntimeError, match="ordered_by"):
        resume(run_id, {"reference": "T-1", "decision": "activate", "plan_hash": report.plan_hash})
    # Data loss not acknowledged: taken by the server, refused by the gate, which opens again.
    resume(run_id, {"ordered_by": "Jane Doe", "reference": "T-1", "decision": "activate",
                    "plan_hash": report.plan_hash})  # fmt: skip
    run_id = run.wait_paused(after=1)
    _, brief = read_form(run_id)
    assert "The previous answer was not taken" in brief and "not acknowledged" in brief
    # From a terminal, `drp approve` goes through the same API; it checks the answer first.
    unacknowledged = drp_cli(prefect_server.api_url, "approve", str(run_id), "--by", "Jane Doe",
                             "--reference", "T-2")  # fmt: skip
    assert unacknowledged.returncode == 1
    assert "data loss is not acknowledged" in unacknowledged.stderr
    refused = drp_cli(prefect_server.api_url, "approve", str(run_id), "--by", "Jane Doe",
                      "--reference", "T-2", "--refuse")  # fmt: skip
    assert refused.returncode == 0, refused.stdout + refused.stderr
    assert "will be lost" in refused.stdout  # the brief is shown to whoever answers
    result = run.join()
    assert result["outcome"] == "refused"
    assert result["order"]["ordered_by"] == "Jane Doe"
    assert "nothing was changed" in result["message"]
    assert (drp_state(site), knot_answers()) == before


def test_gate_timeout_ends_the_run_with_nothing_changed(site) -> None:
    from flows.activate import drp_activate

    before = (drp_state(site), knot_answers())
    run = FlowInThread(
        drp_activate, config=str(LAB_CONFIG), operation_id=f"activate-timeout-{RUN}",
        gate_timeout_seconds=4,
    )  # fmt: skip
    run.wait_paused()
    run.join()
    assert run.error is not None and "no order was given within 4 s" in str(run.error)
    report = load_report(reports_dir(site), f"activate-timeout-{RUN}")
    assert report.outcome == "timed-out" and "nothing was changed" in report.message
    assert (drp_state(site), knot_answers()) == before


# -- a full activation -------------------------------------------------------------------------
def test_activation_restores_on_drp_then_switches_dns(site, dns_back_to_production) -> None:
    from flows.activate import drp_activate

    assert set(map(tuple, knot_answers().values())) == {(PRODUCTION,)}
    production_page = web_page(PRODUCTION)
    with connect.HostPool(site) as pool:  # the DRP server starts without the web root
        pool["drp"].run(["rm", "-rf", "srv/app/www"])
    op = f"activate-full-{RUN}"
    run = FlowInThread(drp_activate, config=str(LAB_CONFIG), operation_id=op)
    run_id = run.wait_paused()
    plan_hash = load_report(reports_dir(site), op).plan_hash
    resume(run_id, {"ordered_by": "Jane Doe", "reference": "1STKYC-42", "decision": "activate",
                    "data_loss_acknowledged": True, "plan_hash": plan_hash})  # fmt: skip
    result = run.join()
    assert run.error is None, run.error
    assert result["outcome"] == "succeeded"

    # Knot now answers the DRP address for every switched name.
    assert knot_answers() == {name: [DRP] for name in NAMES}
    # The DRP web page shows the restored files and rows (as production's did at backup time).
    drp_page = web_page(DRP)
    assert "Served by lab host <b>drp</b>" in drp_page
    files, tables = _counts(drp_page)
    restored = _restored_counts(site, op)
    assert restored[0] > 1000 and len(restored[1]) == 6 and all(restored[1].values())
    assert files == restored[0]
    assert {t: tables.get(t) for t in restored[1]} == restored[1]
    # (drp's own marker table is left out: a return to production leaves one there too)
    production_tables = {t for t in _counts(production_page)[1] if not t.startswith("_drp")}
    assert production_tables == set(restored[1])
    # The report: order, timeline, RTO/RPO, the records before the switch.
    report = load_report(reports_dir(site), op)
    assert report.order["reference"] == "1STKYC-42"
    assert report.rto_seconds is not None and report.rto_seconds > 0
    assert report.data_loss_seconds is not None and report.data_loss_seconds > 0
    assert {d["targets"][0] for d in report.dns_before} == {PRODUCTION}
    outcomes = {r.step: r.outcome.value for r in report.timeline}
    assert outcomes["copy-app-files-www"] == "applied"
    assert outcomes["verify-app-drp-ip"] == "passed"  # a read-only check
    assert {outcomes[k] for k in outcomes if k.startswith("preflight-")} == {"passed"}
    assert len(tickets(site, "drp-finalized", op)) == 1


def _restored_counts(site: Site, op: str) -> tuple[int, dict[str, int]]:
    """What the backups this operation restored hold, from their manifests."""
    from flows.prepare import choose_backups

    chosen_at = load_report(reports_dir(site), op).chosen_at
    choice = next(iter(choose_backups(site, chosen_at, None).environments.values()))
    files = next(t.tree.files for t in choice.trees if t.tree.name == "www")
    tables = {
        name.rsplit(".", 1)[-1]: rows for d in choice.dumps for name, rows in d.dump.tables.items()
    }
    return files, tables


def _counts(page: str) -> tuple[int, dict[str, int]]:
    """What the lab page shows: the file count and the rows of each table."""
    import re

    files = int(re.search(r'id="file-count">(\d+)<', page).group(1))
    tables = {t: int(n) for t, n in re.findall(r"<td>(\w+)</td><td class=n>(\d+)</td>", page)}
    return files, tables


# -- drill -------------------------------------------------------------------------------------
def test_drill_from_the_command_line_leaves_dns_untouched(site, prefect_server) -> None:
    before = knot_answers()
    op = f"drill-cli-{RUN}"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "flows.cli",
            "drill",
            "-c",
            str(LAB_CONFIG),
            "--operation-id",
            op,
            "--order-by",
            "Lab Operator",
            "--reference",
            "DRILL-7",
        ],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
        env={**os.environ, "PREFECT_API_URL": prefect_server.api_url},
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "RTO (order to service verified)" in done.stdout
    assert knot_answers() == before
    report = load_report(reports_dir(site), op)
    assert report.outcome == "succeeded"
    assert not any(r.step.startswith("dns-") for r in report.timeline)
    assert report.order["via"] and report.order["ordered_by"] == "Lab Operator"
    assert len(tickets(site, "drill-finished", op)) == 1


# -- a restored database written to since ------------------------------------------------------
def test_a_restored_database_changed_since_is_restored_again_and_the_change_kept(
    site, prefect_server
) -> None:
    """drp's marker alone does not make a restore "done": the rows must be the manifest's."""
    import psycopg

    def drill(op: str) -> None:
        done = drp_cli(prefect_server.api_url, "drill", "-c", str(LAB_CONFIG), "--operation-id",
                       op, "--order-by", "Lab Operator", "--reference", "DRILL-8")  # fmt: skip
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]

    stamp = int(time.time())
    drill(f"drill-first-{stamp}")
    db = site.environments[0].databases[0]
    endpoint = connect.db_endpoint(site, db, "drp")
    password = connect.database_password(site, db).reveal()

    def connection() -> psycopg.Connection:
        return psycopg.connect(host=endpoint.address, port=endpoint.port, user=endpoint.user,
                               dbname=db.name, password=password, autocommit=True)  # fmt: skip

    def users() -> int:
        with connection() as conn:
            return conn.execute("SELECT count(*) FROM users").fetchone()[0]

    restored = users()
    with connection() as conn:
        conn.execute(
            "INSERT INTO users (id, email, full_name, password_hash, created_at, active) "
            "VALUES (%s, %s, 'Written after the drill', 'x', now(), true)",
            (800_000_000 + stamp % 1_000_000, f"after-{stamp}@drp.test"),
        )
    assert users() == restored + 1

    op = f"drill-again-{stamp}"
    drill(op)
    assert users() == restored  # the manifest's rows again
    report = load_report(reports_dir(site), op)
    step = next(r for r in report.timeline if r.step == f"restore-app-{db.name}")
    assert step.outcome.value == "applied" and "kept" in step.reason
    assert step.details["kept_as"].startswith(f"{db.name}_before_")


# -- a cached step is checked again ------------------------------------------------------------
def test_a_resumed_activation_restores_a_database_dropped_since_its_cached_restore(
    site, prefect_server, dns_back_to_production
) -> None:
    """Prefect's cache says the restore is done; the world says the database is gone: the
    step runs again instead of being reported done."""
    import pymysql

    op = f"activate-cache-{int(time.time())}"
    args = ("activate", "-c", str(LAB_CONFIG), "--operation-id", op, "--order-by", "Jane Doe",
            "--reference", "1STKYC-44", "--acknowledge-data-loss")  # fmt: skip
    first = drp_cli(prefect_server.api_url, *args)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    db = site.environments[0].databases[1]  # the MySQL one
    endpoint = connect.db_endpoint(site, db, "drp")
    connection = pymysql.connect(host=endpoint.address, port=endpoint.port, user=endpoint.user,
                                 password=connect.database_password(site, db).reveal(),
                                 autocommit=True)  # fmt: skip
    with connection, connection.cursor() as cursor:
        cursor.execute(f"DROP DATABASE `{db.name}`")

    again = drp_cli(prefect_server.api_url, *args)  # the same operation, resumed
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    report = load_report(reports_dir(site), op)
    step = next(r for r in report.timeline if r.step == f"restore-app-{db.name}")
    assert step.outcome.value == "applied", (step.outcome, step.reason)
    assert "as in the manifest" in step.reason
    copy = next(r for r in report.timeline if r.step == "copy-app-files-www")
    assert copy.outcome.value == "skipped" and "checked again now" in copy.reason
