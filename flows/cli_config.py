"""`drp config ...`: inventory validation."""

from __future__ import annotations

import typer

config_app = typer.Typer(help="Check inventory files.", no_args_is_help=True)
