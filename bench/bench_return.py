"""The return's downtime next to the activation's RTO, on the lab at a chosen size.

Run as root from the repository root (it brings the lab up at that size):

    .venv/bin/python bench/bench_return.py [--files-mb 1024] [--rows 1000000] [--write-mb 20]
                                           [--json] [--keep-lab-size]

What it does, as an operator would, with the `drp` command line:

1. seeds production at the size asked for and takes a backup (`drp backup run`);
2. activates (`drp activate`, unattended order): copy, imports, DNS to the DRP server;
3. writes on the DRP side, as customers would during the outage: `--write-mb` of new files and
   a few rows in each database;
4. returns (`drp return`, unattended order);
5. prints the activation's RTO (order to service verified on the DRP server), the return's
   downtime (write freeze to service verified on production) and where it went (final sync,
   each database's dump-and-restore, the rest), and the goal the return aims at: downtime no
   more than the slowest database's dump-and-restore plus 5 s (databases move side by side).

Afterwards DNS points at production (the return put it back), both maintenance flags are removed
and, unless `--keep-lab-size`, the lab is reset to its seeded state at its previous size
(`drp lab reset`: the benchmark's backup sets, trees and databases go). It holds the lab's
session lock, so test sessions wait. Exits 0 whatever the figures, 1 if a command failed.
"""

from __future__ import annotations

import argparse
import fcntl
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from lab import api, topology
from lab import seed as seeding
from runbooks import connect
from runbooks.inventory import load_site
from runbooks.report import Report, load_report

LAB_CONFIG = topology.REPO_ROOT / "config" / "lab.yaml"
console = Console(stderr=True)


@contextmanager
def lab_to_ourselves() -> Iterator[None]:
    path = topology.paths().root / "sessions.lock"
    with path.open("a") as handle:
        console.print(f"waiting for the lab's session lock ({path})")
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def drp(*args: str, reports: Path) -> str:
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "flows.cli", *args],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "DRP_REPORTS_DIR": str(reports)},
    )
    console.print(f"drp {' '.join(args[:1])}: exit {done.returncode} in "
                  f"{time.monotonic() - started:.1f} s")  # fmt: skip
    if done.returncode != 0:
        raise SystemExit(
            f"drp {' '.join(args)} failed:\n{done.stdout[-3000:]}{done.stderr[-3000:]}"
        )
    return done.stdout


def write_on_drp(megabytes: int) -> None:
    site = load_site(LAB_CONFIG)
    script = (
        'mkdir -p "$1/outage" && head -c "$2" /dev/urandom > "$1/outage/new.bin" '
        '&& date > "$1/outage/when.txt"'
    )
    with connect.HostPool(site) as pool:
        pool["drp"].run(["sh", "-c", script, "sh", topology.APP_FILES_DIR, str(megabytes << 20)])


def seconds(report: Report, prefix: str) -> list[tuple[str, float]]:
    return [(r.step, r.seconds) for r in report.timeline if r.step.startswith(prefix)]


def figures(activation: Report, ret: Report) -> dict[str, Any]:
    databases = seconds(ret, "move-db-")
    final = seconds(ret, "final-sync-")
    slowest_db = max((s for _, s in databases), default=0.0)
    return {
        "activation_rto_seconds": activation.rto_seconds,
        "return_downtime_seconds": ret.downtime_seconds,
        "final_sync_seconds": max((s for _, s in final), default=0.0),
        "databases_seconds": dict(databases),
        "goal_seconds": slowest_db + 5.0,
        "bytes_by_stage": ret.bytes_by_stage,
        "presync_seconds": max((s for _, s in seconds(ret, "pre-sync-")), default=0.0),
    }


def show(result: dict[str, Any], size: seeding.SeedSize) -> None:
    table = Table(title=f"Return vs activation, lab at {size.files_mb} MiB / {size.rows} rows")
    table.add_column("what")
    table.add_column("seconds", justify="right")
    table.add_row("activation RTO (order -> service verified on drp)",
                  f"{result['activation_rto_seconds']:.1f}")  # fmt: skip
    table.add_row("return pre-sync (before the freeze, no downtime)",
                  f"{result['presync_seconds']:.1f}")  # fmt: skip
    table.add_row("return downtime (freeze -> service verified on production)",
                  f"{result['return_downtime_seconds']:.1f}")  # fmt: skip
    table.add_row("  of which final sync (slowest tree)", f"{result['final_sync_seconds']:.1f}")
    for step, secs in result["databases_seconds"].items():
        table.add_row(f"  of which {step} (dump, copy, restore, check)", f"{secs:.1f}")
    table.add_row("goal: slowest database + 5 s", f"{result['goal_seconds']:.1f}")
    Console().print(table)
    moved = ", ".join(f"{k} {v / 1e6:.1f} MB" for k, v in result["bytes_by_stage"].items())
    Console().print(f"moved: {moved}")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--files-mb", type=int, default=1024)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--write-mb", type=int, default=20, help="written on drp during outage")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--keep-lab-size", action="store_true")
    args = parser.parse_args(argv)
    previous = (api.status().seed or None) if api.status().all_running else None
    size = seeding.SeedSize(files_mb=args.files_mb, rows=args.rows)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    reports = Path(tempfile.mkdtemp(prefix="bench-return-"))
    site = load_site(LAB_CONFIG)
    with lab_to_ourselves():
        try:
            api.up(files_mb=size.files_mb, rows=size.rows)
            config = str(LAB_CONFIG)
            drp("backup", "run", "-c", config, reports=reports)
            act, ret = f"activate-bench-{stamp}", f"return-bench-{stamp}"
            drp("activate", "-c", config, "--operation-id", act, "--order-by", "Bench",
                "--reference", "BENCH", "--acknowledge-data-loss", reports=reports)  # fmt: skip
            write_on_drp(args.write_mb)
            drp("return", "-c", config, "--operation-id", ret, "--order-by", "Bench",
                "--reference", "BENCH", reports=reports)  # fmt: skip
            result = figures(load_report(reports, act), load_report(reports, ret))
        finally:
            with connect.HostPool(site) as pool:
                for role in ("production", "drp"):
                    pool[role].run(["rm", "-f", "--", topology.APP_MAINTENANCE_FLAG], check=False)
            if previous is not None and not args.keep_lab_size:
                # Everything the benchmark left (1 GiB backup sets, trees and their set-aside
                # copies, databases) would slow every later drill and test: back to seeded.
                api.reset(files_mb=previous.size.files_mb, rows=previous.size.rows)
    if args.json:
        print(json.dumps({"files_mb": size.files_mb, "rows": size.rows, **result}, indent=2))
    else:
        show(result, size)
    return 0


if __name__ == "__main__":
    sys.exit(main())
