"""`drp drift` on the lab: drift made for real on the hosts (a crontab line for the DRP host's
SSH user, a changed file in production's configuration tree, a service listening on production's
address), seen as new once with one ticket, then unchanged with no ticket (through the step the
staging runbook runs), then gone when it is undone. Everything changed on the lab is put back.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from lab import topology
from runbooks import connect
from runbooks.context import OperationContext
from runbooks.drift import PREVIOUS_FILE, STATE_FILE, CheckDrift
from runbooks.drift_facts import server_version
from runbooks.inventory import load_site
from runbooks.steps import Outcome

pytestmark = pytest.mark.lab

LAB_CONFIG = topology.REPO_ROOT / "config" / "lab.yaml"
CONFIG_FILE = "srv/app/config/app.ini"  # in production's configuration tree
CRON_LINE = "17 3 * * * true # drp drift lab test"


def inventory(tmp_path: Path) -> Path:
    """lab.yaml with its tickets to a file of the test's own (the e-mails still go out)."""
    text = LAB_CONFIG.read_text()
    old = "path: ${DRP_LAB_DIR:-/var/lib/drp-lab}/tickets.jsonl"
    assert text.count(old) == 1
    path = tmp_path / "lab.yaml"
    path.write_text(text.replace(old, f"path: {tmp_path}/tickets.jsonl"))
    return path


def drp_drift(config: Path, *args: str) -> tuple[int, list[str]]:
    """`drp drift` as an operator runs it: exit code and printed lines."""
    env = {**os.environ, "PREFECT_API_URL": ""}
    run = [sys.executable, "-m", "flows.cli", "drift", "-c", str(config), *args]
    done = subprocess.run(run, capture_output=True, text=True, timeout=60, check=False, env=env)
    assert "Traceback" not in done.stderr, done.stderr
    return done.returncode, done.stdout.splitlines()


def tickets(tmp_path: Path) -> list[dict[str, Any]]:
    path = tmp_path / "tickets.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def marked(lines: list[str], mark: str) -> list[str]:
    """The items a check printed with `mark` (NEW, SAME, GONE), as `what: production ...`."""
    return [line[len(mark) :].strip() for line in lines if line.startswith(f"{mark} ")]


def names(lines: list[str], mark: str) -> list[str]:
    """The names of the items a check printed with `mark`, sorted."""
    return sorted(line.split(": production ", 1)[0] for line in marked(lines, mark))


@contextlib.contextmanager
def kept(runner: Any, paths: list[str]) -> Iterator[None]:
    """What `paths` on the host hold now (or that they are absent) is put back afterwards,
    and their directory removed if it was not there."""
    directory = os.path.dirname(paths[0])
    existed = runner.run(["test", "-d", directory], check=False).ok
    before = {}
    for path in paths:
        result = runner.run(["cat", "--", path], check=False)
        before[path] = result.stdout if result.ok else None
    try:
        yield
    finally:
        for path, text in before.items():
            if text is None:
                runner.run(["rm", "-f", "--", path], check=False)
            else:
                runner.run(["sh", "-c", 'umask 077; cat > "$1"', "sh", path], stdin=text)
        if not existed:
            runner.run(["rmdir", "--", directory], check=False)


@contextlib.contextmanager
def crontab_line(runner: Any, line: str) -> Iterator[None]:
    """`line` added to the host's SSH user's crontab; the crontab as it was put back."""
    before = runner.run(["crontab", "-l"], check=False)
    had = before.ok
    runner.run(["crontab", "-"], stdin=(before.stdout if had else "") + line + "\n")
    try:
        yield
    finally:
        if had:
            runner.run(["crontab", "-"], stdin=before.stdout)
        else:
            runner.run(["crontab", "-r"], check=False)


@contextlib.contextmanager
def changed_file(runner: Any, path: str) -> Iterator[None]:
    """A line appended to `path`; its content and time put back afterwards."""
    aside = f".drift-lab-test-{os.getpid()}"  # in the SSH user's home, outside the tree
    runner.run(["cp", "-p", "--", path, aside])
    try:
        runner.run(["sh", "-c", 'echo "; changed by the drift test" >> "$1"', "sh", path])
        yield
    finally:
        runner.run(["sh", "-c", 'cat -- "$2" > "$1" && touch -r "$2" -- "$1"', "sh", path, aside])
        runner.run(["rm", "-f", "--", aside])


@contextlib.contextmanager
def listening_on(address: str) -> Iterator[int]:
    """A TCP service listening on `address`, on a free port (yielded)."""
    server = socket.socket()
    server.bind((address, 0))
    server.listen()
    try:
        yield int(server.getsockname()[1])
    finally:
        server.close()


def test_drift_made_on_the_lab_is_new_once_then_unchanged_then_gone(
    lab: Any, tmp_path: Path
) -> None:
    started = time.monotonic()
    config = inventory(tmp_path)
    site = load_site(config)
    production = topology.host("production").address
    with connect.HostPool(site) as pool:
        has_cron = pool["drp"].run(["sh", "-c", "command -v crontab"], check=False).ok
        assert has_cron, "cron is not installed on this machine: run `bash scripts/setup.sh`"
        with kept(pool["drp"], [STATE_FILE, PREVIOUS_FILE]):
            # Whatever the lab differs by now is the baseline; it is recorded first.
            code, lines = drp_drift(config)
            assert code in (0, 1), lines
            baseline = sorted(names(lines, "NEW") + names(lines, "SAME"))
            assert f"config {CONFIG_FILE}" not in baseline, baseline
            assert "crontab of the SSH user" not in baseline, baseline
            before = len(tickets(tmp_path))

            with (
                crontab_line(pool["drp"], CRON_LINE),
                changed_file(pool["production"], CONFIG_FILE),
                listening_on(production) as port,
            ):
                code, lines = drp_drift(config)
                assert code == 1, lines
                made = sorted(
                    [f"config {CONFIG_FILE}", "crontab of the SSH user", f"listening tcp/{port}"]
                )
                assert names(lines, "NEW") == made
                new = marked(lines, "NEW")
                assert (
                    f"listening tcp/{port}: production {production}:{port}; drp nothing "
                    "listens" in new
                )
                assert any(
                    line.startswith(
                        "crontab of the SSH user: production none; drp 1 entries, sha256 "
                    )
                    for line in new
                )
                assert names(lines, "SAME") == baseline
                assert not [line for line in lines if line.startswith("NOT CHECKED")], lines
                compared = next(line for line in lines if line.startswith("Compared: "))
                assert "2 version command(s), 2 database server(s)" in compared
                assert lines[-1].startswith("Recorded on drp:~/.drp/drift/last.json. Ticket: ")
                sent = tickets(tmp_path)[before:]
                assert len(sent) == 1, sent
                assert sent[0]["operation_id"] == "drift-drp-lab"
                assert sent[0]["title"] == (
                    "Drift between production and the DRP server of drp-lab: 3 new item(s)"
                )
                assert f"listening tcp/{port}" in sent[0]["body"]
                assert "changed by the drift test" not in sent[0]["body"]  # never a content
                mode = pool["drp"].run(["stat", "-c", "%a", "--", STATE_FILE]).stdout.strip()
                assert mode == "600"

                # The staging runbook's step, the next night: the same drift, nothing new.
                ctx = OperationContext(site, f"stage-drift-{int(time.time())}", "stage")
                try:
                    record = CheckDrift(ctx).run()
                finally:
                    ctx.close()
                assert record.outcome is Outcome.APPLIED
                assert record.reason.startswith(
                    "drift between production and the DRP server: 0 new, "
                    f"{len(baseline) + 3} unchanged, 0 gone; verified: recorded on drp:"
                )
                assert record.details["drift_new"] == 0
                markdown = record.details["drift_markdown"]
                assert "**0 new**" in markdown and f"| listening tcp/{port} |" in markdown
                assert len(tickets(tmp_path)) == before + 1  # no ticket for the same drift

            code, lines = drp_drift(config)
            assert code == (1 if baseline else 0), lines
            assert names(lines, "GONE") == made
            assert names(lines, "NEW") == []
            assert names(lines, "SAME") == baseline
            assert len(tickets(tmp_path)) == before + 1
    assert time.monotonic() - started < 30


def test_the_database_servers_say_their_versions_on_both_sides(lab: Any) -> None:
    site = load_site(LAB_CONFIG)
    databases = {db.engine: db for env in site.environments for db in env.databases}
    for role in ("production", "drp"):
        postgres = server_version(site, databases["postgresql"], role)
        mariadb = server_version(site, databases["mysql"], role)
        assert re.fullmatch(r"\d+\.\d+( \(.+\))?", postgres), postgres  # 15.10 (Debian ...)
        assert re.match(r"\d+\.\d+\.\d+-MariaDB", mariadb), mariadb
