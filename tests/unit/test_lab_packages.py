"""What `drp lab up` refuses before changing anything: a machine without the lab's Debian
packages (it names them and the script that installs them), a lab directory that the hosts'
users could not enter."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from flows.cli import app
from lab import api

REPO = Path(__file__).resolve().parents[2]
runner = CliRunner()


def test_missing_packages_names_the_package_of_each_missing_program(tmp_path: Path) -> None:
    absent = tmp_path / "usr" / "sbin" / "knotd"
    not_executable = tmp_path / "kdig"
    not_executable.write_text("#!/bin/sh\n")
    table = (
        ("/bin/sh", "dash"),
        (str(absent), "knot"),
        (str(not_executable), "knot-dnsutils"),
        (str(tmp_path / "mariadbd"), "mariadb-server"),
        (str(tmp_path / "mariadb-install-db"), "mariadb-server"),
    )
    assert api.missing_packages(table) == {
        "knot": [str(absent)],
        "knot-dnsutils": [str(not_executable)],
        "mariadb-server": [str(tmp_path / "mariadbd"), str(tmp_path / "mariadb-install-db")],
    }
    assert api.missing_packages((("/bin/sh", "dash"),)) == {}


def test_setup_installs_every_package_the_lab_needs() -> None:
    script = (REPO / "scripts" / "setup.sh").read_text()
    listed = re.search(r"packages=\(([^)]*)\)", script)
    assert listed is not None
    installed = set(listed.group(1).split())
    assert {package for _, package in api.REQUIRED_PROGRAMS} <= installed


def test_the_docs_ask_dns_with_what_setup_installs() -> None:
    """kdig (knot-dnsutils, installed by setup), never dig (bind9-dnsutils, absent)."""
    script = (REPO / "scripts" / "setup.sh").read_text()
    listed = re.search(r"packages=\(([^)]*)\)", script)
    assert listed is not None and "knot-dnsutils" in listed.group(1).split()
    texts = {doc: (REPO / doc).read_text() for doc in ("README.md", "RUNBOOK.md", "lab/README.md")}
    for doc, text in texts.items():
        assert not re.search(r"(?<![\w-])dig [@+\w]", text), f"{doc} uses dig"
    assert all("kdig @" in texts[doc] for doc in ("RUNBOOK.md", "lab/README.md"))


@pytest.fixture
def without_knot(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The lab's programs, knotd replaced by one that is not installed; the lab's state
    directory a fresh path, so anything written would show."""
    missing = str(tmp_path / "no-such-bin" / "knotd")
    programs = tuple(
        (missing if package == "knot" else program, package)
        for program, package in api.REQUIRED_PROGRAMS
    )
    monkeypatch.setattr(api, "REQUIRED_PROGRAMS", programs)
    state = tmp_path / "lab state"
    monkeypatch.setenv("DRP_LAB_DIR", str(state))
    return state


def test_require_packages_names_the_package_and_the_script(without_knot: Path) -> None:
    with pytest.raises(api.LabError) as caught:
        api.require_packages()
    message = str(caught.value)
    assert message.startswith("the lab needs Debian packages that are not installed: knot (")
    assert "no-such-bin/knotd" in message
    assert "`bash scripts/setup.sh`" in message
    assert message.endswith("nothing was changed")


@pytest.mark.skipif(os.geteuid() != 0, reason="`drp lab up` asks for root before anything else")
@pytest.mark.parametrize("command", ["up", "reset"])
def test_cli_refuses_in_one_line_and_changes_nothing(without_knot: Path, command: str) -> None:
    result = runner.invoke(app, ["lab", command])

    assert result.exit_code == 1
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr  # one line, however long
    assert lines[0].startswith("error: the lab needs Debian packages that are not installed: knot")
    assert "bash scripts/setup.sh" in lines[0]
    assert "Traceback" not in result.output
    assert not without_knot.exists()  # no state directory, no lock, no secrets


@pytest.mark.skipif(os.geteuid() != 0, reason="`drp lab up` asks for root before anything else")
def test_a_lab_directory_others_cannot_enter_is_refused_before_it_is_made(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(api, "REQUIRED_PROGRAMS", (("/bin/sh", "dash"),))
    private = tmp_path / "private"
    private.mkdir(mode=0o700)
    private.chmod(0o700)
    state = private / "lab state"
    monkeypatch.setenv("DRP_LAB_DIR", str(state))

    result = runner.invoke(app, ["lab", "up"])

    assert result.exit_code == 1
    assert result.stderr.splitlines() == [
        f"error: the lab directory {state} is inside {private}, which other users cannot "
        "enter; the lab hosts' users need to reach their homes below it. Unset DRP_LAB_DIR "
        "(the default is /var/lib/drp-lab) or choose one under /srv or /var/tmp; nothing was "
        "changed"
    ]
    assert not state.exists()
