"""`drp drift`: what differs between production and the DRP server, and what changed since."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape

from flows.cli_ops import ConfigOpt
from runbooks.errors import DrpError
from runbooks.inventory import load_site

errors = Console(stderr=True, soft_wrap=True)
EXIT_DRIFT = 1  # the DRP server differs from production
EXIT_ERROR = 2  # the check could not be made, or its ticket could not be sent

DRIFT_HELP = """Compare the DRP server with production, and say what changed since the last
check: the DRP server must be able to take production's place.

Compared, read-only, on both hosts: the OS release (/etc/os-release); the version of each
database server of the inventory (asked on production's and the DRP's endpoints); the output
of the inventory's drift.versions commands (e.g. `php: php -v`); the TCP ports listening on
the host's own addresses or on every address (and on loopback unless drift.loopback is
false); the SSH user's crontab, /etc/crontab and each /etc/cron.d file (digests, never their
content); each configuration tree of the inventory, file by file (size and sha256, never the
content); and whether the DRP's disk holding each tree is at least as big as production's used
space. drift.ignore leaves out differences that are expected.

Each line is NEW (not there at the last check, or changed), SAME (unchanged), GONE (no longer
differs), KEPT (could not be read this time: kept from the last check) or NOT CHECKED, with
what production and the DRP server have.

[bold]Records what it saw and sends a ticket[/bold]: the drift seen is kept on the DRP host
(~/.drp/drift/last.json, the one before as previous.json), so that the next check reports
only changes; when there are NEW items, one ticket goes through the inventory's ticket
backends (never the same drift twice). --no-record only looks: it compares with the last
record but writes nothing and sends nothing. Each staging run (`drp stage`) runs the same
check.

Examples:

  drp drift -c config/lab.yaml

  drp drift -c config/site.yaml --no-record

  drp drift -c config/site.yaml --json | jq '.new'

Exit codes: 0 no drift (nothing differs now; items gone are no drift), 1 drift (new or
unchanged items), 2 the check could not be made (a bad inventory or option, a host that cannot
be read) or its ticket could not be sent (then nothing is recorded: the next check sends it);
one line says why."""


def drift_command(
    config: ConfigOpt = Path("config/site.yaml"),
    no_record: Annotated[
        bool,
        typer.Option(
            "--no-record",
            help="Only look: compare with the last record, write nothing, send no ticket.",
        ),
    ] = False,
    as_json: Annotated[
        bool,
        typer.Option(
            "--json", help="Print the comparison as one JSON object (new, unchanged, gone...)."
        ),
    ] = False,
) -> None:
    # Here, not above: `drp --help` and the other commands need none of it.
    from runbooks import connect
    from runbooks.drift import check_drift, drift_lines, state_where
    from runbooks.services import ticket_backends

    try:
        site = load_site(config)
        backends = [] if no_record else ticket_backends(site)
        with connect.HostPool(site) as pool:
            run = check_drift(site, pool, backends, record=not no_record)
    except DrpError as err:
        errors.print(f"[red]error:[/] {escape(str(err))}", highlight=False)
        raise typer.Exit(EXIT_ERROR) from None
    comparison = run.comparison
    if as_json:
        print(json.dumps(run.data, indent=2))
    else:
        for line in drift_lines(comparison):
            print(line)
        if run.recorded:
            print(f"Recorded on {state_where()}. Ticket: {run.ticket}.")
        elif no_record:
            print("Only looked (--no-record): nothing recorded, no ticket.")
    if run.ticket_error:
        errors.print(
            f"[red]error:[/] {escape(run.ticket_error)}; nothing was recorded: the next check "
            "finds the same items new and sends it again",
            highlight=False,
        )
        raise typer.Exit(EXIT_ERROR)
    if comparison.has_drift:
        raise typer.Exit(EXIT_DRIFT)


drift_command.__doc__ = DRIFT_HELP
