"""The `drp` command line: one entry point, one sub-command group per concern."""

from __future__ import annotations

import typer

from flows.cli_config import config_app
from flows.cli_lab import lab_app

app = typer.Typer(
    name="drp",
    help=(
        "Disaster-recovery runbooks as Prefect flows: plan, drill, activate the DRP server and "
        "return to production. Read-only unless a command says otherwise."
    ),
    no_args_is_help=True,
    rich_markup_mode="rich",
)
app.add_typer(config_app, name="config")
app.add_typer(lab_app, name="lab")


def main() -> None:
    app()
