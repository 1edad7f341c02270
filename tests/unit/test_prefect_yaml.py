"""prefect.yaml: every deployment points at a flow that loads, with the parameters it accepts."""

from __future__ import annotations

import inspect
from pathlib import Path

import pytest
import yaml
from prefect.flows import load_flow_from_entrypoint

ROOT = Path(__file__).resolve().parents[2]
DEPLOYMENTS = yaml.safe_load((ROOT / "prefect.yaml").read_text())["deployments"]


@pytest.mark.parametrize("deployment", DEPLOYMENTS, ids=[d["name"] for d in DEPLOYMENTS])
def test_deployment_entrypoint_loads(deployment: dict, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)
    flow = load_flow_from_entrypoint(deployment["entrypoint"])
    accepted = set(inspect.signature(flow.fn).parameters)
    assert set(deployment.get("parameters") or {}) <= accepted
    assert "config" in accepted  # or DRP_CONFIG on the worker


def test_activation_drill_and_return_are_deployed_without_a_schedule() -> None:
    by_entry = {d["entrypoint"]: d for d in DEPLOYMENTS}
    for entry in (
        "flows/activate.py:drp_activate",
        "flows/drill.py:drp_drill",
        "flows/returning.py:drp_return",
    ):
        assert entry in by_entry
        assert not by_entry[entry].get("schedules")  # started by a person, never by a clock
