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
