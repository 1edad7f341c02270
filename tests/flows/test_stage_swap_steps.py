"""An activation's use of a stage, step by step on the lab (no Prefect needed): the staged
tree is renamed into place after its final delta, and the tree it replaces is kept whole."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from flow_helpers import LAB_CONFIG, WWW, ensure_backups, files, without_stages

from flows.prepare import choose_backups
from runbooks import connect
from runbooks.activation import Operation, SwapInStagedTree, restore_tree
from runbooks.inventory import Site, load_site
from runbooks.staging import StageTree
from runbooks.steps import Outcome
from runbooks.warm import read_warm_state

pytestmark = [pytest.mark.lab]


@pytest.fixture
def site(lab) -> Iterator[Site]:
    loaded = load_site(LAB_CONFIG)
    ensure_backups(loaded)
    with without_stages(loaded):
        yield loaded


def test_an_activation_renames_the_stage_in_and_keeps_the_tree_it_replaces(site: Site) -> None:
    selection = choose_backups(site, datetime.now(UTC), None)
    env = site.environments[0]
    tree = next(t for _s, _n, t in connect.environment_trees(env) if t.path == WWW)
    chosen = next(c for c in selection[env.name].trees if c.tree.name == "www")
    tag = secrets.token_hex(3)
    stager = Operation(site, f"stage-steps-{tag}", "stage", selection)
    activation = Operation(site, f"activate-swap-{tag}", "activate", selection)
    try:
        assert StageTree(stager, env, tree, chosen, None).run().outcome is Outcome.APPLIED
        drp = activation.pool["drp"]
        activation.warm = read_warm_state(site, drp)
        step = restore_tree(activation, env, tree, chosen)
        assert isinstance(step, SwapInStagedTree)
        drp.run(["sh", "-c", 'mkdir -p "$1" && echo "written on drp" > "$1/stray.txt"', "sh", WWW])
        before = files(site, "drp", WWW)
        assert "stray.txt" in before

        record = step.run()
        assert record.outcome is Outcome.APPLIED and record.details["warm"], record.reason
        assert "renamed into place" in record.reason
        # Proved on the DRP host alone, by the set's manifest (no dry run against the backup).
        assert f"matches the manifest of {chosen.set.label}" in record.reason
        kept = record.details["kept_as"]
        assert kept.startswith(f"{WWW}.drp-before-{activation.operation_id}/swapped-")
        assert files(site, "drp", kept) == before  # the tree it replaced, whole
        assert "stray.txt" not in files(site, "drp", WWW) and step.check().done
        # The stage was used up (renamed): no stage is left, none is listed.
        assert read_warm_state(site, drp).tree(env.name, WWW) is None
        assert step.run().outcome is Outcome.SKIPPED  # resumed: nothing to do
        drp.run(["rm", "-rf", "--", f"{WWW}.drp-before-{activation.operation_id}"])
    finally:
        stager.close()
        activation.close()
