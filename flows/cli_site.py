"""`drp status` (who holds the site) and `drp unlock` (release a lock left behind)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape

from runbooks import connect, site_lock
from runbooks.errors import DrpError
from runbooks.inventory import load_site
from runbooks.records import OperationRecords
from runbooks.services import reports_dir

console = Console(soft_wrap=True)
errors = Console(stderr=True, soft_wrap=True)

ConfigOpt = Annotated[
    Path,
    typer.Option(
        "--config",
        "-c",
        envvar="DRP_CONFIG",
        help="The inventory YAML file (or $DRP_CONFIG), e.g. config/site.yaml.",
        show_default=False,
    ),
]


def _fail(err: Exception, code: int = 1) -> typer.Exit:
    errors.print(f"[red]error:[/] {escape(str(err))}", highlight=False)
    return typer.Exit(code)


def status_command(
    config: ConfigOpt = Path("config/site.yaml"),
    as_json: Annotated[bool, typer.Option("--json", help="Print the lock as JSON.")] = False,
) -> None:
    """Show which operation holds the site lock (read on the DRP host), if any.

    Activation, drill and return take the lock before the order gate and release it when they
    end; a failed or killed operation keeps it until its resume ends, or `drp unlock`.
    """
    try:
        site = load_site(config)
        with connect.HostPool(site) as pool:
            held = site_lock.read_lock(pool["drp"])
    except DrpError as err:
        raise _fail(err) from None
    if as_json:
        console.print_json(json.dumps({"site": site.name, "lock": held.data if held else None}))
        return
    if held is None:
        console.print(f"Site {site.name}: free (no operation holds the lock).", highlight=False)
        return
    console.print(f"Site {site.name}: locked by {held.holder()}.", highlight=False)
    for name, value in held.data.items():
        if value:
            console.print(f"  {name}: {value}", highlight=False)
    console.print(
        f"Release it by resuming the operation (--operation-id {held.operation_id}) or with "
        f"`{site_lock.unlock_hint(site).format(operation_id=held.operation_id)}`.",
        highlight=False,
    )


def unlock_command(
    operation_id: Annotated[
        str,
        typer.Option(
            "--operation-id", help="The operation that holds the lock.", show_default=False
        ),
    ],
    reason: Annotated[
        str,
        typer.Option(
            "--reason", help="Why it is released (goes into the ledger).", show_default=False
        ),
    ],
    config: ConfigOpt = Path("config/site.yaml"),
    by: Annotated[
        str | None,
        typer.Option("--by", help="Who releases it. Default: user@machine.", show_default=False),
    ] = None,
) -> None:
    """Release the site lock held by an operation that will not be resumed. [bold]Writes on
    the DRP host[/bold]: the release (who, when, why) is appended to its lock ledger
    (~/.drp-lock/ledger.jsonl) and to the operation's record, if it has one. A lock held by
    another operation is refused.
    """
    if not reason.strip():
        raise _fail(ValueError("--reason is empty: say why the lock is released"), 2)
    try:
        site = load_site(config)
        with connect.HostPool(site) as pool:
            entry = site_lock.unlock(pool["drp"], operation_id, reason.strip(), by)
    except DrpError as err:
        raise _fail(err) from None
    where = "the DRP host's lock ledger"
    with OperationRecords(site, reports_dir(site)) as records:
        report = records.load(operation_id).report
        if report is not None:  # the operation's record says it was released, and by whom
            report.remember("unlocked", entry["released_at"], entry)
            records.save(report)
            if records.flush() and records.written_on_host:
                where += f", the operation's record ({records.where(operation_id)})"
            where += f" and {records.local_path(operation_id)}"
    console.print(
        f"Site {site.name} unlocked: operation {operation_id} ({entry['kind']}, since "
        f"{entry['held_since']}) released by {entry['released_by']}: {entry['reason']}. "
        f"Recorded in {where}.",
        highlight=False,
    )
