"""Without any Prefect server: the embedded temporary API serves, and the operator answers the
order gate at the terminal prompt."""

from __future__ import annotations

import json
import os
import pty
import select
import subprocess
import sys
import time
from pathlib import Path

import pytest

from lab import topology

pytestmark = [pytest.mark.lab]

LAB_CONFIG = topology.REPO_ROOT / "config" / "lab.yaml"


class Terminal:
    """A program on a pseudo-terminal: read what it shows, type answers."""

    def __init__(self, argv: list[str], env: dict[str, str]) -> None:
        self.master, slave = pty.openpty()
        self.process = subprocess.Popen(
            argv, stdin=slave, stdout=slave, stderr=slave, env=env, close_fds=True
        )
        os.close(slave)
        self.screen = ""
        self.seen = 0  # where the next expect starts looking

    def expect(self, text: str, timeout: float = 180) -> None:
        """Wait for `text` to appear after what the last expect matched."""
        deadline = time.monotonic() + timeout
        while text not in self.screen[self.seen :]:
            remaining = deadline - time.monotonic()
            assert remaining > 0, f"never saw {text!r}; the terminal showed:\n{self.screen[-3000:]}"
            ready, _, _ = select.select([self.master], [], [], min(remaining, 1.0))
            if ready:
                try:
                    chunk = os.read(self.master, 65536)
                except OSError:  # the program ended
                    chunk = b""
                if not chunk and self.process.poll() is not None:
                    raise AssertionError(f"ended before {text!r}:\n{self.screen[-3000:]}")
                self.screen += chunk.decode(errors="replace")
        self.seen = self.screen.index(text, self.seen) + len(text)

    def type(self, line: str) -> None:
        os.write(self.master, (line + "\r").encode())

    def finish(self, timeout: float = 300) -> int:
        deadline = time.monotonic() + timeout
        while self.process.poll() is None:
            assert time.monotonic() < deadline, self.screen[-3000:]
            ready, _, _ = select.select([self.master], [], [], 1.0)
            if ready:
                try:
                    self.screen += os.read(self.master, 65536).decode(errors="replace")
                except OSError:
                    break
        os.close(self.master)
        return self.process.wait()


def test_drill_order_answered_at_the_terminal_prompt(lab, tmp_path: Path) -> None:
    env = {key: value for key, value in os.environ.items() if not key.startswith("PREFECT_API")}
    env.update(
        # No PREFECT_API_URL here: the run goes to the lab's server, named in lab.env.
        PREFECT_HOME=str(tmp_path / "prefect"),
        DRP_REPORTS_DIR=str(tmp_path / "reports"),
        COLUMNS="120",
        TERM="xterm",
    )
    from runbooks.backups import choose_sets
    from runbooks.inventory import load_site

    if not choose_sets(load_site(LAB_CONFIG)).complete:
        subprocess.run(
            [sys.executable, "-m", "flows.cli", "backup", "run", "-c", str(LAB_CONFIG)],
            check=True, capture_output=True, timeout=300, env=env,
        )  # fmt: skip
    op = f"drill-terminal-{time.strftime('%Y%m%d%H%M%S')}"  # records stay on the DRP host
    terminal = Terminal(
        [sys.executable, "-m", "flows.cli", "drill", "-c", str(LAB_CONFIG), "--operation-id", op],
        env,
    )
    try:
        _answer_twice(terminal)
        assert terminal.finish() == 0, terminal.screen[-3000:]
    finally:
        if terminal.process.poll() is None:
            terminal.process.kill()
            terminal.process.wait()
    assert "RTO (order to service verified)" in terminal.screen
    report = json.loads((tmp_path / "reports" / f"{op}.json").read_text())
    assert report["outcome"] == "succeeded"
    assert report["order"]["ordered_by"] == "Jane Doe"
    assert report["order"]["reference"] == "DRILL-TTY"


def _answer_twice(terminal: Terminal) -> None:
    terminal.expect("Who orders", timeout=240)
    assert "will be lost" in terminal.screen  # the brief is shown before the questions
    terminal.type("J")  # too short: the order is refused and the questions come again
    terminal.expect("Order reference")
    terminal.type("DRILL-TTY")
    terminal.expect("Decision")
    terminal.type("activate")
    terminal.expect("Acknowledged?")
    terminal.type("y")
    terminal.expect("The order was not taken")
    terminal.expect("Who orders")
    terminal.type("Jane Doe")
    terminal.expect("Order reference")
    terminal.type("DRILL-TTY")
    terminal.expect("Decision")
    terminal.type("activate")
    terminal.expect("Acknowledged?")
    terminal.type("y")
