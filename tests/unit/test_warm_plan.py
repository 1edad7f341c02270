"""What the plan says of a warm DRP server: which parts are staged, and the RTO it estimates
from the rates staging measured (the brief shows both, and the order approves them)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from backup_helpers import make_set

from runbooks.activation import DiskSpace, Operation, backup_id, plan_facts
from runbooks.backups import (
    BackupSet,
    ChosenDump,
    ChosenTree,
    EnvironmentChoice,
    Selection,
    SetStatus,
)
from runbooks.inventory import load_site
from runbooks.warm import Rates, StagedDatabase, StagedTree, WarmState

LAB = Path(__file__).resolve().parents[2] / "config" / "lab.yaml"
GB = 10**9


def _operation(tmp_path: Path) -> tuple[Operation, ChosenTree, list[ChosenDump]]:
    now = datetime(2026, 12, 2, 3, 0, tzinfo=UTC)
    _root, manifest = make_set(tmp_path, started=now)
    backup_set = BackupSet(
        "backup-even", "backups", "app", manifest.set_id, manifest.kind, now,
        SetStatus.COMPLETE, manifest=manifest, verified=True,
    )  # fmt: skip
    tree = ChosenTree(backup_set, manifest.trees[0].model_copy(update={"bytes": 10 * GB}))
    dumps = [
        ChosenDump(backup_set, d.model_copy(update={"size": GB, "tables": {"t": 5_000_000}}))
        for d in manifest.databases
    ]
    selection = Selection(now, {"app": EnvironmentChoice("app", now, [tree], dumps)})
    op = Operation(load_site(LAB), "activate-warm-plan", "activate", selection)
    return op, tree, dumps


def test_a_cold_plan_says_nothing_is_staged_and_estimates_with_assumed_rates(
    tmp_path: Path,
) -> None:
    op, _tree, _dumps = _operation(tmp_path)
    facts = plan_facts(op)
    assert facts["app: warm"].startswith("nothing staged")
    # Side by side: 10 GB at 100 MB/s (100 s) and each import, 1 GB at 100 MB/s + 5M rows at
    # 50k rows/s (110 s); then the checks (5 s).
    assert facts["estimated RTO"].startswith("about 1 min 55 s (assumed rates")


def test_a_warm_plan_names_the_staged_parts_and_estimates_from_measured_rates(
    tmp_path: Path,
) -> None:
    op, _tree, dumps = _operation(tmp_path)
    users = next(d for d in dumps if d.dump.database == "app_users")
    op.warm = WarmState(
        [StagedTree("app", "srv/app/www", "srv/app/www.drp-stage/x", "backup-even:app/x",
                    "2026-12-02T02:10:00+00:00", 1, 1)],
        [StagedDatabase("app", "app_users", "app_users__drp_stage", backup_id(users),
                        "2026-12-02T02:12:00+00:00")],
        Rates(200e6, 100_000.0, "2026-12-02T02:12:30+00:00"),
    )  # fmt: skip
    facts = plan_facts(op)
    warm = facts["app: warm"]
    assert "files www: staged set backup-even:app/x at 2026-12-02T02:10:00+00:00" in warm
    assert f"database app_users: staged {backup_id(users)}" in warm
    assert "app_shop" not in warm  # its dump is not staged: imported as before
    # Side by side: the files a swap (2 s), the shop's 1 GB at 200 MB/s + 5M rows at 100k
    # rows/s (55 s), the users' a rename; then the checks (5 s).
    assert facts["estimated RTO"].startswith("about 1 min 00 s (rates measured by staging at")
    # The disk-space check counts no room for what is swapped in: only the shop's dump twice.
    assert DiskSpace(op, "drp").needed == 2 * GB
