"""What Prefect costs a drill on the lab: `drp drill` wall time against the lab's Prefect server
and with a temporary local API, next to the time its steps take.

Run as root from the repository root, the lab up (`drp lab up`), holding nothing else on it:

    .venv/bin/python bench/bench_drill.py [--repeat 3] [--temporary 1] [--json]

Each drill is `drp drill -c config/lab.yaml --order-by ... --reference ...` in a new process
(a new operation each time, its report in a throwaway directory): the lab's server is found in
lab.env; the temporary API is asked for with `PREFECT_API_URL=` (empty). The drills keep their
compiled modules in a bytecode cache of the bench's own, filled by one untimed drill first, as
drp has when installed or run from a checkout before: a shell with PYTHONDONTWRITEBYTECODE set
would otherwise compile every module changed since its bytecode was last written, at each
drill. For each drill:

- wall: from starting the process to its exit;
- steps: the time at least one step runs (the union of the report's step intervals: steps that
  run side by side count once);
- overhead = wall - steps, and where it goes: start (process start to the flow run's first
  log line: imports, inventory, the server check, the flow run's creation, while the
  operation's SSH connections open; with a temporary API, its start), gate (from the pause to
  the resume: the unattended order goes through the API and the paused run polls for it), end
  (the flow's last log line to the process exit: the report table), and in_flow, the rest,
  inside the flow run: drp's own work outside its steps (drp: reading both backup catalogues,
  the site lock taken and released, over SSH) and Prefect's (prefect: the flow and task runs,
  their results, artifacts, logs).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
CONFIG = REPO / "config" / "lab.yaml"
LOG_TIME = re.compile(r"^(\d\d:\d\d:\d\d\.\d{3}) \| \w+ +\| (.*)$")


def _log_times(stderr: str, day: datetime) -> dict[str, float]:
    """Epoch seconds of the flow run's milestones, from its log lines (local time)."""
    marks: dict[str, float] = {}
    needles = (
        ("begin", "Beginning flow run"),
        ("operation", "Operation "),
        ("locked", "site lock taken"),
        ("released", "site lock released"),
        ("paused", "Pausing flow"),
        ("resumed", "Resuming flow run execution"),
        ("finished", "Finished in state"),
    )
    for line in stderr.splitlines():
        found = LOG_TIME.match(line)
        if not found or not found.group(2).startswith("Flow run "):
            continue
        clock, text = found.groups()
        local = datetime.strptime(f"{day:%Y-%m-%d} {clock}", "%Y-%m-%d %H:%M:%S.%f")
        for name, needle in needles:
            if needle in text:
                marks[name] = marks.get(name, local.astimezone().timestamp())
    return marks


def _spans(report: dict[str, Any]) -> list[tuple[float, float]]:
    return sorted(
        (
            datetime.fromisoformat(r["started"]).timestamp(),
            datetime.fromisoformat(r["ended"]).timestamp(),
        )
        for r in report["timeline"]
        if r.get("started") and r.get("ended")
    )


def _step_seconds(report: dict[str, Any]) -> float:
    """The time at least one step runs: the union of the steps' [started, ended] intervals."""
    spans = _spans(report)
    total, current_start, current_end = 0.0, None, None
    for start, end in spans:
        if current_end is None or start > current_end:
            if current_end is not None and current_start is not None:
                total += current_end - current_start
            current_start, current_end = start, end
        else:
            current_end = max(current_end, end)
    if current_end is not None and current_start is not None:
        total += current_end - current_start
    return total


def drill_env(reports: Path, index: int, temporary: bool) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env.update(DRP_REPORTS_DIR=str(reports), COLUMNS="200", DO_NOT_TRACK="1")
    env.update(PREFECT_SERVER_ANALYTICS_ENABLED="false")
    env["PREFECT_HOME"] = str(reports / f"prefect-home-{index}")
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env["PYTHONPYCACHEPREFIX"] = str(reports / "bytecode")
    if temporary:
        env["PREFECT_API_URL"] = ""  # explicitly none: a temporary local API
    return env


def drill(config: Path, temporary: bool, index: int, reports: Path) -> dict[str, float]:
    env = drill_env(reports, index, temporary)
    before = set(reports.glob("drill-*.json"))
    started = time.time()
    done = subprocess.run(
        [sys.executable, "-m", "flows.cli", "drill", "-c", str(config), "--order-by",
         "Bench operator", "--reference", f"BENCH-{int(started)}-{index}"],
        capture_output=True, text=True, timeout=900, check=False, env=env, cwd=REPO,
    )  # fmt: skip
    ended = time.time()
    if done.returncode != 0:
        raise SystemExit(f"drill {index} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    (new,) = set(reports.glob("drill-*.json")) - before
    report = json.loads(new.read_text())
    marks = _log_times(done.stderr, datetime.now(UTC).astimezone())
    wall = ended - started
    steps = _step_seconds(report)
    row = {"wall": wall, "steps": steps, "overhead": wall - steps}
    row["start"] = marks["begin"] - started
    row["gate"] = marks["resumed"] - marks["paused"]
    row["end"] = ended - marks["finished"]
    row["in_flow"] = row["overhead"] - row["start"] - row["gate"] - row["end"]
    # Of which drp's own work outside its steps: reading both backup catalogues and connecting
    # before the preflight, taking the site lock before the gate, releasing it at the end.
    spans = _spans(report)
    before_gate = [end for start, end in spans if start < marks["paused"]]
    row["drp"] = (
        (spans[0][0] - marks["operation"])
        + (marks["locked"] - max(before_gate))
        + (marks["released"] - max(end for _, end in spans))
    )
    row["prefect"] = row["in_flow"] - row["drp"]
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3, help="drills on the lab's server")
    parser.add_argument("--temporary", type=int, default=1, help="drills on a temporary API")
    parser.add_argument("--json", action="store_true", help="print the rows as JSON")
    parser.add_argument("--config", type=Path, default=CONFIG, help="the lab's inventory")
    args = parser.parse_args()
    rows: dict[str, list[dict[str, float]]] = {"lab server": [], "temporary API": []}
    with tempfile.TemporaryDirectory(prefix="drp-bench-drill-") as tmp:
        reports = Path(tmp)
        drill(args.config, False, -1, reports)  # untimed: fills the bytecode cache
        if args.temporary:  # the temporary API's modules too
            warm_up = [sys.executable, "-c", "import prefect.server.api.server"]
            subprocess.run(warm_up, env=drill_env(reports, -2, True), cwd=REPO, check=True)
        for index in range(args.repeat):
            rows["lab server"].append(drill(args.config, False, index, reports))
        for index in range(args.temporary):
            rows["temporary API"].append(drill(args.config, True, 100 + index, reports))
    if args.json:
        print(json.dumps(rows, indent=2))
        return
    columns = ("wall", "steps", "overhead", "start", "gate", "in_flow", "drp", "prefect", "end")
    print(f"{'':16}" + "".join(f"{c:>10}" for c in columns) + "   (seconds, median)")
    for name, found in rows.items():
        if found:
            medians = [statistics.median(r[c] for r in found) for c in columns]
            print(f"{name:16}" + "".join(f"{m:>10.2f}" for m in medians) + f"   n={len(found)}")
    for name, found in rows.items():
        for r in found:
            print(f"  {name}: " + ", ".join(f"{c} {r[c]:.2f}" for c in columns))


if __name__ == "__main__":
    main()
