"""The whole cycle on the lab: activate, write on the DRP side, return to production.

Driven as an operator drives it, with the `drp` command line against the session's Prefect
server, with the OVH provider (the lab's emulator) and with RFC 2136 straight to Knot. What a
user would notice is checked for real: the rows and files on production, what was kept aside,
what Knot answers, which side is in maintenance, and what the report says.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from flow_helpers import (
    FLAG,
    LAB_CONFIG,
    NAMES,
    PRODUCTION,
    WWW,
    activate,
    drp_cli,
    ensure_backups,
    exists,
    files,
    knot_answers,
    lab_inventory,
    pg,
    production_serves_again,
    rows,
    write_on_drp,
)

from lab import topology
from runbooks import connect
from runbooks.inventory import Site, load_site
from runbooks.report import load_report
from runbooks.services import dns_provider

pytestmark = [pytest.mark.lab, pytest.mark.prefect]


@pytest.fixture(scope="module")
def reports(lab, prefect_server, tmp_path_factory) -> Iterator[Path]:
    directory = tmp_path_factory.mktemp("return-reports")
    os.environ["DRP_REPORTS_DIR"] = str(directory)
    ensure_backups(load_site(LAB_CONFIG))
    yield directory
    os.environ.pop("DRP_REPORTS_DIR", None)


@pytest.fixture
def lab_as_found(reports) -> Iterator[None]:
    """Whatever the cycle does, the lab ends with production serving: DNS at production and no
    maintenance on either side (production keeps what the return brought, which is the
    application's data plus the test's rows and files)."""
    site = load_site(LAB_CONFIG)
    yield
    production_serves_again(site)


def _deleted_name(site: Site) -> str:
    with connect.HostPool(site) as pool:
        return pool["drp"].run(["cat", "srv/app/deleted-name"]).stdout.strip().removeprefix("./")


# -- the cycle --------------------------------------------------------------------------------
@pytest.mark.parametrize("provider", ["ovh", "rfc2136"])
def test_activate_write_on_drp_then_return_puts_everything_on_production(
    provider: str, reports: Path, prefect_server, tmp_path: Path, lab_as_found
) -> None:
    inventory = lab_inventory(tmp_path, provider)
    site = load_site(inventory)
    activate(prefect_server.api_url, inventory, f"activate-cycle-{provider}-{int(time.time())}")
    write_on_drp(site)
    deleted = _deleted_name(site)
    drp_rows, drp_files = rows(site, "drp"), files(site, "drp", WWW)
    production_before = files(site, "production", WWW)
    assert drp_rows != rows(site, "production") and deleted in production_before

    planned = drp_cli(prefect_server.api_url, "plan", "return", "-c", str(inventory))
    assert planned.returncode == 0, planned.stdout[-3000:] + planned.stderr[-3000:]
    assert "DNS goes back to the values recorded before activation" in planned.stdout
    assert "estimated" in planned.stdout and "Data to copy before the freeze" in planned.stdout

    op = f"return-cycle-{provider}-{int(time.time()) % 100000}"
    done = drp_cli(prefect_server.api_url, "return", "-c", str(inventory), "--operation-id", op,
                   "--order-by", "Jane Doe", "--reference", "1STKYC-71")  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "Downtime (write freeze to service verified on production)" in done.stdout
    assert "RPO 0" in done.stdout

    # Every row and file written on the DRP server is on production.
    assert rows(site, "production") == drp_rows
    assert files(site, "production", WWW) == drp_files
    # The deleted file is gone from production's tree, but kept aside, as were changed ones.
    assert deleted not in files(site, "production", WWW)
    kept = files(site, "production", f"{WWW}.drp-before-{op}")
    assert any(name.endswith(deleted) for name in kept)
    assert any(name.endswith("index.html") for name in kept)
    # Production's previous databases are kept aside too (PostgreSQL renamed).
    with pg(site, "production") as conn:
        names = [r[0] for r in conn.execute("SELECT datname FROM pg_database").fetchall()]
    assert any(n.startswith("app_users_before_") for n in names), names
    # DNS answers production; production serves; the DRP server stays frozen.
    assert knot_answers() == {name: [PRODUCTION] for name in NAMES}
    assert not exists(site, "production", FLAG) and exists(site, "drp", FLAG)
    report = load_report(reports, op)
    assert report.outcome == "succeeded"
    assert report.downtime_seconds is not None and report.downtime_seconds > 0
    assert report.frozen_at is not None and report.service_verified_at > report.frozen_at
    assert report.order["reference"] == "1STKYC-71"
    assert set(report.bytes_by_stage) >= {"pre-sync", "final sync", "databases"}
    tickets = [json.loads(line) for line in Path(site.tickets[0].path).read_text().splitlines()]
    sent = [t for t in tickets if t["event"] == "return-to-production" and t["operation_id"] == op]
    assert len(sent) == 1

    # A finished return, run again, skips every step and says why.
    again = drp_cli(prefect_server.api_url, "return", "-c", str(inventory), "--operation-id", op,
                    "--order-by", "Jane Doe", "--reference", "1STKYC-71")  # fmt: skip
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    report = load_report(reports, op)
    # (the service checks pass again: they change nothing, there is nothing to skip)
    after_order = {r.step: r for r in report.timeline if not r.step.startswith("preflight-")}
    expected = {k: "passed" if k.startswith("verify-") else "skipped" for k in after_order}
    wrong = [(k, r.outcome.value, r.reason) for k, r in after_order.items()
             if r.outcome.value != expected[k]]  # fmt: skip
    assert after_order and not wrong, wrong
    assert not exists(site, "production", FLAG)  # never back into maintenance
    assert rows(site, "production") == drp_rows


def test_a_record_changed_by_someone_stops_the_switch_back_unless_forced(
    reports: Path, prefect_server, tmp_path: Path, lab_as_found
) -> None:
    inventory = lab_inventory(tmp_path, "ovh")
    site = load_site(inventory)
    activate(prefect_server.api_url, inventory, f"activate-changed-{int(time.time())}")
    provider = dns_provider(site)
    provider.set_records(topology.ZONE, "www", "A", ["127.0.10.99"])  # someone's change
    provider.refresh(topology.ZONE)
    op = f"return-changed-{int(time.time()) % 100000}"
    args = ("return", "-c", str(inventory), "--operation-id", op, "--order-by", "Jane Doe",
            "--reference", "1STKYC-72")  # fmt: skip
    stopped = drp_cli(prefect_server.api_url, *args)
    assert stopped.returncode == 1
    assert "www.drp-lab.test A points at 127.0.10.99" in stopped.stderr
    assert "--force" in stopped.stderr and "Traceback" not in stopped.stderr
    # Production stays in maintenance: never half-restored and serving.
    assert exists(site, "production", FLAG)
    forced = drp_cli(prefect_server.api_url, *args, "--force")
    assert forced.returncode == 0, forced.stdout[-3000:] + forced.stderr[-3000:]
    assert knot_answers() == {name: [PRODUCTION] for name in NAMES}
    assert not exists(site, "production", FLAG)


# -- kill and resume --------------------------------------------------------------------------
