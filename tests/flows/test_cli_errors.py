"""Mistakes on the first paths get one clear line, a non-zero exit and no traceback, and start
nothing: no flow run is created for what the command can tell before starting one."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import yaml
from backup_lab import write_inventory
from flow_helpers import DRP, LAB_CONFIG, PRODUCTION, drp_cli, drp_state, ensure_backups

from lab import topology
from runbooks.inventory import load_site

pytestmark = [pytest.mark.prefect]

MISSING_RUN = "11111111-1111-1111-1111-111111111111"


def _flow_runs() -> int:
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        return client.count_flow_runs()


def _one_error_line(done: subprocess.CompletedProcess[str]) -> str:
    """The command failed with exactly one line, an error, and no traceback."""
    output = done.stdout + done.stderr
    assert done.returncode != 0, output
    assert "Traceback" not in output, output
    lines = output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), output
    return lines[0]


@pytest.mark.parametrize("command", ["activate", "drill"])
def test_unknown_environment_is_refused_before_any_flow_run(prefect_server, command) -> None:
    before = _flow_runs()
    done = drp_cli(prefect_server.api_url, command, "-c", str(LAB_CONFIG), "-e", "nosuchenv")
    line = _one_error_line(done)
    assert "no environment named nosuchenv in the inventory" in line
    assert "known: app" in line
    assert _flow_runs() == before


def test_invalid_operation_id_is_refused_before_any_flow_run(prefect_server) -> None:
    before = _flow_runs()
    done = drp_cli(prefect_server.api_url, "drill", "-c", str(LAB_CONFIG),
                   "--operation-id", "../etc/passwd")  # fmt: skip
    assert "operation id '../etc/passwd' is not valid" in _one_error_line(done)
    assert _flow_runs() == before


def test_approve_names_a_flow_run_that_does_not_exist(prefect_server) -> None:
    before = _flow_runs()
    done = drp_cli(prefect_server.api_url, "approve", MISSING_RUN, "--by", "Jane Doe",
                   "--reference", "1STKYC-1", "--acknowledge-data-loss")  # fmt: skip
    line = _one_error_line(done)
    assert f"no flow run {MISSING_RUN} on the Prefect server at {prefect_server.api_url}" in line
    assert _flow_runs() == before


def test_approve_says_what_a_flow_run_id_looks_like(prefect_server) -> None:
    done = drp_cli(prefect_server.api_url, "approve", "run-42", "--by", "Jane Doe",
                   "--reference", "1STKYC-1")  # fmt: skip
    assert "'run-42' is not a flow run id" in _one_error_line(done)


@pytest.mark.lab
def test_host_key_refusal_in_a_drill_prints_drp_message_without_traceback(
    lab, prefect_server, tmp_path: Path
) -> None:
    """An inventory whose known_hosts has another host's key for the DRP server."""
    ensure_backups(load_site(LAB_CONFIG))
    inventory = write_inventory(tmp_path, "backups")  # the lab's own backups
    data = yaml.safe_load(inventory.read_text())
    lines = Path(data["known_hosts"]).read_text().splitlines()
    port = topology.SSH_PORT
    production_key = next(x for x in lines if x.startswith(f"[{PRODUCTION}]:{port} "))
    known_hosts = tmp_path / "known_hosts"
    known_hosts.write_text(
        "".join(f"{x}\n" for x in lines if not x.startswith(f"[{DRP}]:{port} "))
        + production_key.replace(f"[{PRODUCTION}]", f"[{DRP}]", 1) + "\n"
    )  # fmt: skip
    data["known_hosts"] = str(known_hosts)
    inventory.write_text(yaml.safe_dump(data, sort_keys=False))
    site = load_site(LAB_CONFIG)
    world_before = drp_state(site)

    done = drp_cli(prefect_server.api_url, "drill", "-c", str(inventory),
                   "--order-by", "Jane Doe", "--reference", "DRILL-KEY")  # fmt: skip
    output = done.stdout + done.stderr
    assert done.returncode == 1, output
    assert "Traceback" not in output, output
    errors = [x for x in output.splitlines() if x.startswith("error: ")]
    assert len(errors) == 1, output
    assert f"the host key of drp ({DRP}:{port}) changed" in errors[0]
    assert "nothing was changed" in errors[0]
    assert drp_state(site) == world_before
