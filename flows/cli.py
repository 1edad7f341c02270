"""The `drp` command line: one entry point, one sub-command group per concern."""

from __future__ import annotations

import gc
import inspect
from collections.abc import Callable

from flows.startup import imports_without_gc

with imports_without_gc():
    import typer

    from flows.cli_backup import backup_app
    from flows.cli_config import config_app
    from flows.cli_drift import drift_command
    from flows.cli_lab import lab_app
    from flows.cli_ops import (
        activate_command,
        approve_command,
        drill_command,
        plan_command,
        report_command,
        return_command,
    )
    from flows.cli_site import status_command, unlock_command
    from flows.cli_stage import stage_command
    from flows.cli_watch import watch_command

app = typer.Typer(
    name="drp",
    help=(
        "Disaster-recovery runbooks as Prefect flows: check the inventory, take and list "
        "backups, plan, drill and activate the DRP server, and return to production. Read-only "
        "unless a command says otherwise; nothing changes the DRP server, a database or DNS "
        "before the order.\n\n"
        "Typical rehearsal on the local lab:\n\n"
        "  drp lab up\n\n"
        "  drp backup run -c config/lab.yaml\n\n"
        "  drp plan drill -c config/lab.yaml\n\n"
        "  drp drill -c config/lab.yaml --order-by 'Jane Doe' --reference DRILL-1"
    ),
    no_args_is_help=True,
    rich_markup_mode="rich",
    pretty_exceptions_show_locals=False,
)
app.add_typer(config_app, name="config")
app.add_typer(lab_app, name="lab")
app.add_typer(backup_app, name="backup")


def _help(command: Callable[..., None]) -> str:
    """The command's docstring with each paragraph on one line (rich keeps single newlines)."""
    paragraphs = inspect.cleandoc(command.__doc__ or "").split("\n\n")
    return "\n\n".join(" ".join(p.split()) for p in paragraphs)


for name, command in (
    ("plan", plan_command),
    ("drill", drill_command),
    ("activate", activate_command),
    ("return", return_command),
    ("approve", approve_command),
    ("report", report_command),
    ("status", status_command),
    ("unlock", unlock_command),
    ("stage", stage_command),
    ("watch", watch_command),
    ("drift", drift_command),
):
    app.command(name, help=_help(command))(command)


def main() -> None:
    try:
        app()
    finally:
        # Once a command is done, the interpreter's last garbage collections over the objects
        # of ~2,000 modules (Prefect's) take about 0.5 s of the exit. Nothing needs them: the
        # atexit handlers (Prefect sends its last logs there) and the flushes still run.
        gc.freeze()


if __name__ == "__main__":
    main()
