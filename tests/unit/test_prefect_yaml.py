"""prefect.yaml: every deployment points at a flow that loads, with the parameters it accepts."""

from __future__ import annotations

import inspect
import re
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


def test_the_docs_name_deployments_as_prefect_deployment_ls_lists_them(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """FLOW/DEPLOYMENT, the flow's name (not its function's) before the deployment's."""
    monkeypatch.chdir(ROOT)
    flows = {d["name"]: load_flow_from_entrypoint(d["entrypoint"]).name for d in DEPLOYMENTS}
    listed = {f"{flow}/{name}" for name, flow in flows.items()}
    assert "drp-drill/drill" in listed and "backup-environment/daily" in listed
    for doc in ("README.md", "RUNBOOK.md", "prefect.yaml"):
        text = (ROOT / doc).read_text()
        named = set(re.findall(r"prefect deployment run '?([^\s`']+)", text))
        named |= set(re.findall(r"\*\*([\w-]+/[\w-]+)\*\*", text))  # bold in the docs
        pattern = "|".join(re.escape(f) for f in set(flows.values()))
        named |= set(re.findall(rf"(?<![\w.-])((?:{pattern})/[\w-]+)", text))
        assert named, doc
        assert named <= listed, f"{doc} names {sorted(named - listed)}; listed: {sorted(listed)}"


def test_staging_runs_after_every_backup_and_every_hour() -> None:
    """The stage deployment's trigger is one Prefect takes, and fires on a completed run of
    either backup flow (and of nothing else)."""
    from prefect.cli.deploy._triggers import _initialize_deployment_triggers

    stage = next(d for d in DEPLOYMENTS if d["entrypoint"] == "flows/stage.py:drp_stage")
    assert stage["schedules"][0]["cron"] == "45 * * * *"
    (trigger,) = _initialize_deployment_triggers("stage", stage["triggers"])
    backups = {d["entrypoint"].split(":")[1] for d in DEPLOYMENTS if "backup" in d["tags"]}
    assert backups == {"backup_environment", "backup_user_databases"}
    related = trigger.match_related
    specification = related[0] if isinstance(related, list) else related
    names = specification.get("prefect.resource.name")
    assert sorted(names) == ["backup-environment", "backup-user-databases"]
    assert trigger.expect == {"prefect.flow-run.Completed"}
