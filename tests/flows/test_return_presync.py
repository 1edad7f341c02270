"""A return's pre-sync runs while the DRP server still serves: customers keep writing. What they
write during the copy is the final sync's to bring, never a failed pre-sync."""

from __future__ import annotations

import secrets

import pytest
from flow_helpers import LAB_CONFIG

from runbooks.inventory import load_site
from runbooks.returning import prepare_return

pytestmark = [pytest.mark.lab]

WWW = "srv/app/www"


def test_a_write_on_the_serving_drp_server_during_the_pre_sync_is_left_to_the_final_sync(
    lab,
) -> None:
    site = load_site(LAB_CONFIG)
    op = f"return-presync-{secrets.token_hex(3)}"
    prepared = prepare_return(site, op, None)
    upload = f"{WWW}/uploaded-during-the-pre-sync-{op}.txt"
    try:
        step = next(s for s in prepared.runbook.steps if s.key == "pre-sync-app-files-www")
        step.apply()
        prepared.ctx.pool["drp"].run(["sh", "-c", f"echo 'a customer upload' > {upload}"])
        checked = step.verify()
        assert checked.done, checked.reason
        assert "changed there since, for the final sync" in checked.reason
        assert "1 files to create" in checked.reason, checked.reason
        final = next(s for s in prepared.runbook.steps if s.key == "final-sync-app-files-www")
        assert not final.check().done  # the final sync has the upload to bring
    finally:
        prepared.ctx.pool["drp"].run(["rm", "-f", "--", upload])
        prepared.close()


def test_a_freeze_found_in_place_dates_the_downtime_from_its_flag(lab) -> None:
    """A return killed just after freezing the DRP server: its resume finds the flag, and the
    downtime starts when the flag was made, not when the resume found it."""
    from datetime import UTC, datetime

    from lab import topology

    site = load_site(LAB_CONFIG)
    prepared = prepare_return(site, f"return-freeze-{secrets.token_hex(3)}", None)
    drp = prepared.ctx.pool["drp"]
    try:
        drp.run(["sh", "-c", f"touch -d '2026-01-02 03:04:05 UTC' {topology.APP_MAINTENANCE_FLAG}"])
        freeze = next(s for s in prepared.runbook.steps if s.key == "maintenance-on-app-drp")
        found = freeze.check()
        assert found.done and found.since == datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    finally:
        drp.run(["rm", "-f", "--", topology.APP_MAINTENANCE_FLAG])
        prepared.close()
