"""The lab from any checkout: one under a directory that other users cannot enter (a clone in
/root, whose path has spaces here too) brings it up, serves the web app and passes the config
check; the next checkout that brings the lab up says which one had it.

The lab is stopped and started again, inside `lab.exclusive()`, and left running from this
checkout, as it was.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from lab import api, topology, webapp

pytestmark = pytest.mark.lab

REPO = topology.REPO_ROOT


def run_from(clone: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """`drp ARGS` as a user of that clone runs it: its code, in its directory."""
    env = {**os.environ, "PYTHONPATH": str(clone), "COLUMNS": "200"}
    env.pop("DRP_LAB_DIR", None)
    return subprocess.run(
        [sys.executable, "-m", "flows.cli", *args],
        cwd=clone,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


@pytest.fixture
def private_clone(tmp_path: Path) -> Path:
    private = tmp_path / "private (mode 0700)"
    private.mkdir()
    private.chmod(0o700)
    clone = private / "drp checkout with space"
    subprocess.run(["git", "clone", "-q", str(REPO), str(clone)], check=True, timeout=120)
    return clone


def test_the_lab_comes_up_from_a_checkout_under_a_private_directory(
    lab, private_clone: Path
) -> None:
    clone = private_clone
    root = lab.paths.root
    production = topology.host("production")
    assert not clone.is_relative_to(root) and not root.is_relative_to(clone)
    with lab.exclusive():
        try:
            assert api.down().none_running
            before = api.status().checkout

            up = run_from(clone, "lab", "up", "--json")
            assert up.returncode == 0, up.stdout + up.stderr
            assert "Traceback" not in up.stderr
            brought = json.loads(up.stdout)
            assert brought["all_running"] is True
            assert brought["lab_dir"] == str(root)
            if before and before != str(clone):
                assert (
                    f"this lab ({root}) was last brought up from {before}; now from {clone}"
                    in brought["notes"]
                )

            # The web app runs from the lab's copy of its code, not from the private checkout.
            assert webapp.answers_http(production.address, topology.WEB_PORT, timeout=5)
            copied = lab.paths.code / "lab" / "webapp.py"
            assert copied.read_bytes() == (clone / "lab" / "webapp.py").read_bytes()

            shown = run_from(clone, "lab", "status")
            assert shown.returncode == 0, shown.stdout + shown.stderr
            assert f"last brought up from the checkout {clone}" in shown.stdout
            assert api.status().checkout == str(clone)

            checked = run_from(
                clone, "config", "check", str(clone / "config" / "lab.yaml"), "--resolve-secrets"
            )
            assert checked.returncode == 0, checked.stdout + checked.stderr
            assert "valid: " in checked.stdout and "do not resolve" not in checked.stdout

            # While it runs, this checkout shares it as it is, and says so.
            shared = api.up()
            assert shared.started == []
            assert shared.notes[0].startswith(
                f"this lab ({root}) is running, brought up from the checkout {clone}; this "
                f"checkout ({REPO}) shares it as it is"
            )
            assert api.status().checkout == str(clone)

            # Brought up again from here: the note names the clone that had it.
            assert api.down().none_running
            again = api.up()
            assert again.all_running
            assert (
                f"this lab ({root}) was last brought up from {clone}; now from {REPO}"
                in again.notes
            )
            assert api.status().checkout == str(REPO)
        finally:
            if not api.status().all_running or api.status().checkout != str(REPO):
                api.down()
                api.up()
    assert api.status().all_running
    assert webapp.answers_http(production.address, topology.WEB_PORT, timeout=5)


@pytest.fixture
def reachable_dir() -> Iterator[Path]:
    """An empty directory that any user could reach (pytest's tmp_path is below a 0700 one)."""
    made = Path(tempfile.mkdtemp(prefix="drp-second-lab ", dir="/var/tmp"))
    yield made
    shutil.rmtree(made)


def test_a_second_lab_is_refused_while_one_runs(
    lab, reachable_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another state directory (DRP_LAB_DIR) would take over the running lab's unix users and
    addresses: `up` and `reset` refuse in one line, and the running lab is left as it was."""
    import pwd

    from typer.testing import CliRunner

    from flows.cli import app

    homes = {h.user: pwd.getpwnam(h.user).pw_dir for h in topology.HOSTS}
    second = reachable_dir
    monkeypatch.setenv("DRP_LAB_DIR", str(second))
    for command in ("up", "reset"):
        result = CliRunner().invoke(app, ["lab", command])
        assert result.exit_code == 1
        assert result.stderr.splitlines() == [
            f"error: another lab runs on this machine, from {lab.paths.root}: its servers hold "
            "the lab's addresses and use the lab hosts' unix users, which this one "
            f"({second}) would take over. Use that lab (unset DRP_LAB_DIR, or set it to "
            f"{lab.paths.root}), or stop it first: `sudo DRP_LAB_DIR={lab.paths.root} drp lab "
            "down`; nothing was changed"
        ]
    assert list(second.iterdir()) == []
    assert {h.user: pwd.getpwnam(h.user).pw_dir for h in topology.HOSTS} == homes
    monkeypatch.delenv("DRP_LAB_DIR")
    assert api.status().all_running
    assert api.up().started == []
