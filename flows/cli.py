"""The `drp` command line: one entry point, one sub-command group per concern."""

from __future__ import annotations

import typer

from flows.cli_backup import backup_app
from flows.cli_config import config_app
from flows.cli_lab import lab_app
from flows.cli_ops import (
    activate_command,
    approve_command,
    drill_command,
    plan_command,
    report_command,
)

app = typer.Typer(
    name="drp",
    help=(
        "Disaster-recovery runbooks as Prefect flows: check the inventory, take and list "
        "backups, plan, drill and activate the DRP server. Read-only unless a command says "
        "otherwise; nothing changes the DRP server, a database or DNS before the order.\n\n"
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
app.command("plan")(plan_command)
app.command("drill")(drill_command)
app.command("activate")(activate_command)
app.command("approve")(approve_command)
app.command("report")(report_command)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
