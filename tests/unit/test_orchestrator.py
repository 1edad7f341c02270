"""Which Prefect server `drp` runs on: the environment first, then the inventory's env_file.

The rules are checked on a mapping standing for the environment; the command line is run in a
subprocess (Prefect not imported yet, as for a user), against addresses where nothing listens.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from flows.orchestrator import apply_inventory
from lab import topology
from runbooks.inventory import Site, load_site

REPO = Path(__file__).resolve().parents[2]
LAB_URL = "http://127.0.10.70:4200/api"


def inventory_with(tmp_path: Path, env_lines: str) -> Path:
    """config/lab.yaml in a throwaway tree whose lab.env (its env_file) holds `env_lines`."""
    lab_dir = tmp_path / "lab-state"
    lab_dir.mkdir()
    (lab_dir / "lab.env").write_text(env_lines)
    text = (REPO / "config" / "lab.yaml").read_text()
    text = text.replace("${DRP_LAB_DIR:-/var/lib/drp-lab}", str(lab_dir))
    path = tmp_path / "lab.yaml"
    path.write_text(text)
    return path


@pytest.fixture
def site(tmp_path: Path) -> Site:
    return load_site(
        inventory_with(
            tmp_path,
            f"DRP_LAB_PG_PASSWORD=x\nPREFECT_API_URL={LAB_URL}\n"
            "PREFECT_API_AUTH_STRING=drp-lab:s3cret\nPREFECT_UI_URL=http://127.0.10.70:4200/v2\n",
        )
    )


def test_without_prefect_api_url_the_env_file_names_the_server(site: Site) -> None:
    environ: dict[str, str] = {"HOME": "/root"}
    assert apply_inventory(site, environ) == site.env_file
    assert environ == {
        "HOME": "/root",
        "PREFECT_API_URL": LAB_URL,
        "PREFECT_API_AUTH_STRING": "drp-lab:s3cret",
        "PREFECT_UI_URL": "http://127.0.10.70:4200/v2",
    }  # only the PREFECT_* lines: the other secrets stay in the file


def test_prefect_api_url_in_the_environment_wins(site: Site) -> None:
    environ = {"PREFECT_API_URL": "http://127.0.0.1:4200/api"}
    assert apply_inventory(site, environ) is None
    assert environ == {"PREFECT_API_URL": "http://127.0.0.1:4200/api"}


def test_an_empty_prefect_api_url_means_no_server(site: Site) -> None:
    environ = {"PREFECT_API_URL": ""}
    assert apply_inventory(site, environ) is None
    assert environ == {"PREFECT_API_URL": ""}


def test_the_same_server_in_the_environment_gets_the_file_s_auth(site: Site) -> None:
    environ = {"PREFECT_API_URL": LAB_URL + "/", "PREFECT_UI_URL": "http://elsewhere/"}
    assert apply_inventory(site, environ) == site.env_file
    assert environ["PREFECT_API_URL"] == LAB_URL + "/"
    assert environ["PREFECT_API_AUTH_STRING"] == "drp-lab:s3cret"
    assert environ["PREFECT_UI_URL"] == "http://elsewhere/"  # what the environment sets stays


def test_an_env_file_without_prefect_lines_changes_nothing(tmp_path: Path) -> None:
    site = load_site(inventory_with(tmp_path, "DRP_LAB_PG_PASSWORD=x\n"))
    environ: dict[str, str] = {}
    assert apply_inventory(site, environ) is None
    assert environ == {}


# -- the command line ----------------------------------------------------------------------------
def closed_port(address: str = "127.0.0.1") -> int:
    with socket.socket() as probe:
        probe.bind((address, 0))
        return int(probe.getsockname()[1])  # free now, and nothing listens there


def drp(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "flows.cli", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env=env,
        cwd=REPO,
    )


def clean_env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_API")}
    return {**env, "PREFECT_HOME": str(tmp_path / "prefect"), "COLUMNS": "200"}


def test_a_server_that_does_not_answer_is_one_line_and_nothing_runs(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{closed_port()}/api"
    inventory = inventory_with(tmp_path, f"PREFECT_API_URL={url}\nPREFECT_API_AUTH_STRING=a:b\n")
    done = drp("drill", "-c", str(inventory), "--order-by", "Jane Doe", "--reference", "R",
               env=clean_env(tmp_path))  # fmt: skip
    assert done.returncode == 1
    assert f"Prefect server {url} (from {inventory.parent / 'lab-state' / 'lab.env'}, the " in (
        " ".join(done.stdout.split())
    )
    lines = done.stderr.splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith(f"error: the Prefect server {url} (from ")
    assert "does not answer" in lines[0] and "`drp lab up`" in lines[0]
    assert lines[0].endswith("nothing was done")
    assert "a:b" not in done.stdout + done.stderr
    assert not (tmp_path / "reports").exists() and "Beginning flow run" not in done.stdout


def test_the_environment_s_server_is_the_one_used_and_named(tmp_path: Path) -> None:
    inventory = inventory_with(tmp_path, f"PREFECT_API_URL={LAB_URL}\n")
    url = f"http://127.0.0.1:{closed_port()}/api"
    done = drp("approve", "6f1c0a52-5b7a-4a8e-9a59-1d1f1a2b3c4d", "--by", "Jane Doe",
               "--reference", "R", "-c", str(inventory),
               env={**clean_env(tmp_path), "PREFECT_API_URL": url})  # fmt: skip
    assert done.returncode == 1
    assert done.stderr.splitlines() == [
        f"error: the Prefect server {url} (from PREFECT_API_URL in the environment) does not "
        "answer (ConnectError: [Errno 111] Connection refused): start it (the lab's: `drp lab "
        "up`), or run without a server with PREFECT_API_URL= (empty); nothing was done"
    ]
    assert topology.PREFECT_ADDRESS not in done.stdout + done.stderr
