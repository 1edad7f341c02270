"""Renderers of plans and reports: terminal (rich), Markdown (Prefect artifacts, the order brief).

Kept apart from the values they render (`runbooks.plan.Plan`, `runbooks.report.Report`).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from rich.console import Group
from rich.table import Table
from rich.text import Text

from runbooks.plan import Plan
from runbooks.report import Report
from runbooks.steps import Outcome


def human_bytes(n: int | None) -> str:
    if n is None:
        return "?"
    size = float(n)
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if size < 1000 or unit == "TB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    return f"{n} B"


def human_duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    seconds = max(0.0, seconds)
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, sec = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {sec:02d} s"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours} h {minutes:02d} min"
    days, hours = divmod(hours, 24)
    return f"{days} d {hours} h"


def data_loss_sentence(oldest_backup: datetime, now: datetime | None = None) -> str:
    """'data written after 02:00 today (UTC) will be lost (3 h 12 min)'."""
    now = now or datetime.now(UTC)
    when = oldest_backup.astimezone(UTC)
    if when.date() == now.date():
        day = "today"
    elif when.date() == (now - timedelta(days=1)).date():
        day = "yesterday"
    else:
        day = f"on {when:%Y-%m-%d}"
    window = human_duration((now - when).total_seconds())
    return f"data written after {when:%H:%M} {day} (UTC) will be lost ({window} of data)"


# -- plans ------------------------------------------------------------------------------------
def plan_table(plan: Plan) -> Table:
    table = Table(title=f"Plan {plan.hash} — {plan.kind} {plan.operation_id} ({plan.site})")
    table.add_column("#", justify="right")
    table.add_column("step")
    table.add_column("changes")
    table.add_column("what", overflow="fold")
    table.add_column("size", justify="right")
    for i, step in enumerate(plan.steps, 1):
        kind = "[yellow]writes[/]" if step.changes_world else "[green]reads[/]"
        whats = (
            "\n".join(
                f"{c.action} {c.target}" + (f" — {c.detail}" if c.detail else "")
                for c in step.changes
            )
            or "-"
        )
        size = sum(c.bytes or 0 for c in step.changes)
        table.add_row(str(i), step.title, kind, whats, human_bytes(size) if size else "")
    return table


def plan_renderable(plan: Plan) -> Group:
    facts = Text()
    for key, value in plan.facts:
        facts.append(f"{key}: ", style="bold")
        facts.append(f"{value}\n")
    counts = ", ".join(f"{k}: {v}" for k, v in plan.counts.items())
    return Group(facts, plan_table(plan), Text(f"{counts}; plan hash {plan.hash}"))


def plan_markdown(plan: Plan, heading: str = "Plan") -> str:
    lines = [f"### {heading} `{plan.hash}` — {plan.kind} `{plan.operation_id}`", ""]
    for key, value in plan.facts:
        lines.append(f"- **{key}**: {value}")
    lines += ["", "| # | step | what it changes |", "|---|---|---|"]
    for i, step in enumerate(plan.steps, 1):
        whats = "<br>".join(
            f"{c.action} `{c.target}`" + (f" — {c.detail}" if c.detail else "")
            for c in step.changes
        )
        lines.append(f"| {i} | {step.title} | {whats or '-'} |")
    return "\n".join(lines) + "\n"


# -- reports ----------------------------------------------------------------------------------
_STYLE = {
    Outcome.APPLIED: "green",
    Outcome.SKIPPED: "cyan",
    Outcome.PASSED: "green",
    Outcome.WOULD_APPLY: "yellow",
    Outcome.FAILED: "red",
}


def report_table(report: Report) -> Table:
    table = Table(title=f"{report.kind} {report.operation_id} — {report.outcome}")
    table.add_column("step")
    table.add_column("start (UTC)")
    table.add_column("duration", justify="right")
    table.add_column("bytes", justify="right")
    table.add_column("outcome")
    table.add_column("reason", overflow="fold")
    for r in report.timeline:
        table.add_row(
            r.title,
            f"{r.started:%H:%M:%S}",
            human_duration(r.seconds),
            human_bytes(r.bytes) if r.bytes else "",
            f"[{_STYLE[r.outcome]}]{r.outcome.value}[/]",
            r.reason,
        )
    return table


def report_summary_lines(report: Report) -> list[str]:
    lines = [f"Outcome: {report.outcome}" + (f" — {report.message}" if report.message else "")]
    if report.order:
        o = report.order
        lines.append(
            f"Order: {o['decision']} by {o['ordered_by']} (reference {o['reference']}) at "
            f"{o['answered_at']} via {o['via']}"
        )
    if report.kind == "return":
        lines.append(
            "Downtime (write freeze to service verified on production): "
            f"{human_duration(report.downtime_seconds)}"
        )
        moved = ", ".join(f"{stage} {human_bytes(n)}" for stage, n in report.bytes_by_stage.items())
        lines.append(f"Moved: {moved or 'nothing'}")
        if report.outcome == "succeeded":
            lines.append(
                "RPO 0: everything written on the DRP server until the freeze is on "
                "production (files equal by checksum, rows equal per table)"
            )
        return lines
    lines.append(f"RTO (order to service verified): {human_duration(report.rto_seconds)}")
    lines.append(f"RPO (data-loss window): {human_duration(report.data_loss_seconds)}")
    return lines


def report_renderable(report: Report) -> Group:
    return Group(report_table(report), Text("\n".join(report_summary_lines(report))))


def report_markdown(report: Report) -> str:
    lines = [f"## {report.kind} `{report.operation_id}` — {report.outcome}", ""]
    lines += [f"- {line}" for line in report_summary_lines(report)]
    if report.backups:
        lines += [
            "",
            "### Backups restored",
            "",
            "| what | server | set | time |",
            "|---|---|---|---|",
        ]
        for b in report.backups:
            lines.append(
                f"| {b.get('what')} | {b.get('server')} | {b.get('set_id')} | {b.get('time')} |"
            )
    if report.dns_before:
        lines += ["", "### DNS before the switch (for the return)", ""]
        for d in report.dns_before:
            lines.append(
                f"- `{d.get('name')}` {d.get('type')} -> {', '.join(d.get('targets', []))}"
            )
    if report.history:
        lines += ["", "### Earlier attempts", ""]
        for h in report.history:
            if "failed_step" in h:
                f = h["failed_step"]
                lines.append(
                    f"- step `{f.get('step')}` failed at {f.get('ended')}: {f.get('reason')}"
                )
            else:
                lines.append(
                    f"- a run ended {h.get('outcome')} at {h.get('run_ended')}: {h.get('message')}"
                )
    lines += [
        "",
        "### Timeline",
        "",
        "| step | start (UTC) | duration | bytes | outcome | reason |",
        "|---|---|---|---|---|---|",
    ]
    for r in report.timeline:
        reason = r.reason.replace("|", "\\|")
        lines.append(
            f"| {r.title} | {r.started:%H:%M:%S} | {human_duration(r.seconds)} | "
            f"{human_bytes(r.bytes) if r.bytes else ''} | {r.outcome.value} | {reason} |"
        )
    return "\n".join(lines) + "\n"
