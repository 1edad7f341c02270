"""The two backup flows under the session's Prefect server, against the lab: each step is a
task, the run leaves a report artifact, and the sets land where the parity says."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from backup_lab import remove_backup_area, write_inventory

from lab import topology
from runbooks.inventory import load_site

pytestmark = [pytest.mark.lab, pytest.mark.prefect]


@pytest.fixture
def inventory(lab, tmp_path: Path) -> Iterator[Path]:
    area = f"drp-test-flows-{os.getpid()}"
    path = write_inventory(tmp_path, area)
    yield path
    remove_backup_area(load_site(path))


async def _task_runs(flow_run_id) -> list[str]:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    async with get_client() as client:
        runs = await client.read_task_runs(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id]))
        )
        return sorted(r.name for r in runs if r.state and r.state.is_completed())


async def _artifact(flow_run_id, key: str) -> str:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        ArtifactFilter,
        ArtifactFilterFlowRunId,
        ArtifactFilterKey,
    )

    async with get_client() as client:
        (artifact,) = await client.read_artifacts(
            artifact_filter=ArtifactFilter(
                flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id]),
                key=ArtifactFilterKey(any_=[key]),
            )
        )
        return str(artifact.data)


def test_backup_flows_run_each_step_as_a_task(prefect_server, inventory: Path) -> None:
    from flows.backup import backup_environment, backup_user_databases

    state = backup_environment(config=str(inventory), parity="even", return_state=True)
    assert state.is_completed(), state.message
    (result,) = state.result()
    assert (result["servers"], result["kind"]) == (["backup-even"], "daily")
    names = asyncio.run(_task_runs(state.state_details.flow_run_id))
    assert names == sorted(
        [
            "open-set-backup-even",
            "copy-files-www-backup-even",
            "copy-configs-config-backup-even",
            "dump-app_users",
            "fetch-app_users-backup-even",
            "dump-app_shop",
            "fetch-app_shop-backup-even",
            "clear-staging",
            "manifest-backup-even",
            "retention-backup-even",
        ]
    )
    report = asyncio.run(_artifact(state.state_details.flow_run_id, "backup-report"))
    assert f"set {result['set_id']} complete on backup-even" in report

    users = backup_user_databases(config=str(inventory), parity="odd")
    (one,) = users
    assert (sorted(one["servers"]), one["kind"]) == (
        ["backup-even", "backup-odd"],
        "user-databases",
    )
    area = topology.paths().host_root("backup-odd") / load_site(inventory).backups.area / "app"
    assert (area / one["set_id"] / "manifest.json").is_file()
