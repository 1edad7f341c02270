"""A round for people (a terminal table), for tools (JSON lines) and for Prefect (table rows)."""

from __future__ import annotations

import json
from typing import Any

from rich.table import Table
from rich.text import Text

from runbooks.watch.alerts import AlertEvent
from runbooks.watch.records import Status, WatchRound

STYLES = {
    Status.OK: "green",
    Status.WARNING: "yellow",
    Status.CRITICAL: "bold red",
    Status.UNKNOWN: "dim",
}


def _value(value: float | None, unit: str) -> str:
    if value is None:
        return "-"
    shown = f"{value:g}" if abs(value) >= 0.01 or value == 0 else f"{value:.4f}"
    suffix = {"percent": "%", "seconds": " s", "per_cpu": "/cpu"}.get(unit, "")
    return f"{shown}{suffix}"


def round_table(watch: WatchRound, *, only_problems: bool = False) -> Table:
    """Host, probe, target, status, value, message; `only_problems` leaves the ok lines out."""
    table = Table(title=f"drp watch {watch.site}: {watch.summary()}", title_justify="left")
    for column in ("host", "probe", "target", "status", "value"):
        table.add_column(column, no_wrap=True)
    table.add_column("message", overflow="fold")
    for record in watch.records:
        if only_problems and record.status is Status.OK:
            continue
        table.add_row(
            record.host,
            record.probe,
            record.target,
            Text(record.status.value, style=STYLES[record.status]),
            _value(record.value, record.unit),
            record.message,
        )
    return table


def json_lines(watch: WatchRound) -> str:
    """One JSON object per record and line, each with the round's time."""
    started = watch.started.isoformat(timespec="seconds")
    return "\n".join(
        json.dumps({"site": watch.site, "time": started, **record.data}) for record in watch.records
    )


def table_rows(watch: WatchRound) -> list[dict[str, Any]]:
    """Rows of a Prefect table artifact, the worst first."""
    records = sorted(watch.records, key=lambda r: -r.status.severity)
    return [
        {
            "status": r.status.value,
            "host": r.host,
            "probe": r.probe,
            "target": r.target,
            "value": _value(r.value, r.unit),
            "threshold": r.threshold,
            "message": r.message,
        }
        for r in records
    ]


def event_lines(events: list[AlertEvent]) -> list[str]:
    return [f"{e.kind}: {e.title} ({e.event}; {e.sent})" for e in events]
