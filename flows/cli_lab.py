"""`drp lab ...`: the local DR lab."""

from __future__ import annotations

import typer

lab_app = typer.Typer(help="The local DR lab of real servers on loopback addresses.", no_args_is_help=True)
