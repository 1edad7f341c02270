"""One operation per site, on the lab: the lock lives on the DRP host, so two orchestrators
(here two `drp` processes) see the same one. What a user notices is checked: exit codes, the one
error line, `drp status`, the reports, the DRP host's lock ledger."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest
from flow_helpers import LAB_CONFIG, drp_cli, ensure_backups

from runbooks import connect, site_lock
from runbooks.inventory import Site, load_site
from runbooks.report import load_report
from runbooks.services import reports_dir

pytestmark = [pytest.mark.lab, pytest.mark.prefect]

SUFFIX = time.strftime("%H%M%S")


@pytest.fixture(scope="module")
def site(lab, prefect_server, tmp_path_factory) -> Iterator[Site]:
    os.environ["DRP_REPORTS_DIR"] = str(tmp_path_factory.mktemp("reports"))
    loaded = load_site(LAB_CONFIG)
    ensure_backups(loaded)
    yield loaded
    os.environ.pop("DRP_REPORTS_DIR", None)


def start_drill(op: str, api_url: str, *extra: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "flows.cli", "drill", "-c", str(LAB_CONFIG),
         "--operation-id", op, "--gate-timeout", "600", *extra],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
        start_new_session=True,
        env={**os.environ, "PREFECT_API_URL": api_url},
    )  # fmt: skip


def ordered(reference: str) -> tuple[str, ...]:
    return ("--order-by", "Lab Operator", "--reference", reference)


def lock_on_drp(site: Site) -> site_lock.LockInfo | None:
    with connect.HostPool(site) as pool:
        return site_lock.read_lock(pool["drp"])


def ledger(site: Site) -> list[dict[str, str]]:
    with connect.HostPool(site) as pool:
        return site_lock.ledger(pool["drp"])


def killed_at_the_gate(site: Site, op: str, api_url: str) -> None:
    """A drill that took the lock and waits for its order, then dies (SIGKILL)."""
    process = start_drill(op, api_url)
    deadline = time.monotonic() + 180
    while (held := lock_on_drp(site)) is None or held.operation_id != op:
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, "the drill never took the lock"
        time.sleep(0.5)
    os.killpg(process.pid, signal.SIGKILL)
    process.communicate(timeout=30)  # and its pipes closed


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("error:")]


def test_two_drills_started_at_once_one_runs_the_other_is_refused_with_one_line(
    site, prefect_server
) -> None:
    """Both start unattended, so the one that takes the lock still holds it, waiting at its
    gate, when the other asks for it: however fast a drill is, they meet."""
    first, second = f"drill-race-a-{SUFFIX}", f"drill-race-b-{SUFFIX}"
    processes = {
        first: start_drill(first, prefect_server.api_url),
        second: start_drill(second, prefect_server.api_url),
    }
    try:
        race_at_the_gate(site, prefect_server, processes)
    finally:  # never a drill left waiting at its gate, holding the site
        for process in processes.values():
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
                process.communicate(timeout=30)


def race_at_the_gate(site, prefect_server, processes: dict[str, subprocess.Popen[str]]) -> None:
    first, second = processes
    deadline = time.monotonic() + 300
    while all(p.poll() is None for p in processes.values()):
        assert time.monotonic() < deadline, "neither drill ended"
        time.sleep(0.2)
    loser = next(op for op, p in processes.items() if p.poll() is not None)
    winner = second if loser == first else first
    code, _out, err = processes[loser].returncode, *processes[loser].communicate()
    assert code == 1, err[-3000:]
    lines = error_lines(err)
    assert len(lines) == 1, err[-3000:]
    assert f"site drp-lab is locked by operation {winner} (drill, since " in lines[0]
    assert f"resume it with --operation-id {winner}" in lines[0]
    assert f"drp unlock -c {LAB_CONFIG} --operation-id {winner} --reason TEXT" in lines[0]
    assert "Traceback" not in err

    # The winner waits at its gate, holding the site; its order is given from a terminal.
    held = lock_on_drp(site)
    assert held is not None and held.operation_id == winner and held.run
    run_id = held.run.split()[-1]  # "flow run <id>"
    approve = drp_cli(prefect_server.api_url, "approve", run_id, "--by", "Lab Operator",
                      "--reference", "RACE-1", "--acknowledge-data-loss")  # fmt: skip
    assert approve.returncode == 0, approve.stdout + approve.stderr
    code, _out, err = processes[winner].wait(600), *processes[winner].communicate()
    assert code == 0, err[-3000:]

    refused = load_report(reports_dir(site), loser)
    assert refused.outcome == "failed" and "is locked by operation" in refused.message
    assert refused.order is None  # it never reached the gate
    assert all(r.step.startswith("preflight") for r in refused.timeline), refused.timeline
    ran = load_report(reports_dir(site), winner)
    assert ran.outcome == "succeeded"
    assert ran.order is not None and ran.order["via"] == "drp approve"
    assert lock_on_drp(site) is None  # released when the drill ended

    status = drp_cli(prefect_server.api_url, "status", "-c", str(LAB_CONFIG))
    assert status.returncode == 0 and "Site drp-lab: free" in status.stdout


def test_a_killed_drill_keeps_the_site_locked_until_its_resume_ends(site, prefect_server) -> None:
    crashed, other = f"drill-crash-{SUFFIX}", f"drill-other-{SUFFIX}"
    killed_at_the_gate(site, crashed, prefect_server.api_url)

    status = drp_cli(prefect_server.api_url, "status", "-c", str(LAB_CONFIG))
    assert status.returncode == 0
    assert f"Site drp-lab: locked by operation {crashed} (drill, since " in status.stdout
    assert "not ordered yet" in status.stdout
    assert f"--operation-id {crashed}" in status.stdout

    refused = start_drill(other, prefect_server.api_url, *ordered("OTHER-1"))
    code, _out, err = refused.wait(300), *refused.communicate()
    assert code == 1
    assert len(error_lines(err)) == 1
    assert f"is locked by operation {crashed} (drill" in error_lines(err)[0]
    assert load_report(reports_dir(site), other).order is None

    wrong = drp_cli(
        prefect_server.api_url, "unlock", "-c", str(LAB_CONFIG),
        "--operation-id", other, "--reason", "wrong one",
    )  # fmt: skip
    assert wrong.returncode == 1
    assert error_lines(wrong.stderr) == [
        line for line in wrong.stderr.splitlines() if line.strip()
    ], wrong.stderr
    assert f"the lock is held by operation {crashed}" in wrong.stderr
    assert f"not by operation {other}: nothing was released" in wrong.stderr
    held = lock_on_drp(site)
    assert held is not None and held.operation_id == crashed

    resumed = start_drill(crashed, prefect_server.api_url, *ordered("CRASH-1"))
    code, out, err = resumed.wait(600), *resumed.communicate()
    assert code == 0, out[-2000:] + err[-2000:]
    assert load_report(reports_dir(site), crashed).outcome == "succeeded"
    assert lock_on_drp(site) is None


def test_drp_unlock_releases_a_left_lock_and_records_who_when_and_why(site, prefect_server) -> None:
    left = f"drill-left-{SUFFIX}"
    killed_at_the_gate(site, left, prefect_server.api_url)
    released = drp_cli(
        prefect_server.api_url, "unlock", "-c", str(LAB_CONFIG), "--operation-id", left,
        "--reason", "orchestrator lost; DRP host checked by hand", "--by", "Ops Bob",
    )  # fmt: skip
    assert released.returncode == 0, released.stderr
    assert f"Site drp-lab unlocked: operation {left} (drill, since" in released.stdout
    assert "released by Ops Bob" in released.stdout
    assert lock_on_drp(site) is None
    status = drp_cli(prefect_server.api_url, "status", "-c", str(LAB_CONFIG))
    assert "Site drp-lab: free" in status.stdout

    entry = ledger(site)[-1]
    assert (entry["event"], entry["operation_id"], entry["released_by"]) == (
        "unlocked",
        left,
        "Ops Bob",
    )
    assert entry["reason"] == "orchestrator lost; DRP host checked by hand"
    assert entry["released_at"]
    report = json.loads((reports_dir(site) / f"{left}.json").read_text())
    assert report["memory"]["unlocked"][0]["reason"] == entry["reason"]

    again = drp_cli(
        prefect_server.api_url, "unlock", "-c", str(LAB_CONFIG), "--operation-id", left,
        "--reason", "twice",
    )  # fmt: skip
    assert again.returncode == 1 and "the site is not locked" in again.stderr
