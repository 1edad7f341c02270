"""`drp stage`: keep the DRP server warm, and prove the newest backups restorable."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from flows.cli_ops import (
    ConfigOpt,
    EnvOpt,
    TerminalProgress,
    _check_before_starting,
    _drp_errors_without_traceback,
    _fail,
    _RunSeen,
    _show_report,
    _show_run_link,
    _use_server,
    console,
)
from runbooks.errors import DrpError
from runbooks.inventory import Site

RemoveOpt = Annotated[
    bool,
    typer.Option(
        "--remove",
        help="Remove every stage from the DRP server instead (the `.drp-stage` directories and "
        "the `__drp_stage` databases): activations then copy and import everything. The "
        "restore certificates stay.",
    ),
]


def stage_command(
    config: ConfigOpt = Path("config/site.yaml"),
    environments: EnvOpt = None,
    remove: RemoveOpt = False,
) -> None:
    """Stage the newest verified backups on the DRP server, so that an activation swaps them
    in instead of copying and importing everything after the order.

    Files go beside each tree (`<tree>.drp-stage/`, unchanged files hard-linked to the
    previous stage, so only changes move); databases are restored as `<name>__drp_stage` and
    their rows checked against the manifest. [bold]Writes to the DRP server[/bold], never to
    what it serves; needs no order; holds the site lock while it runs, and does nothing while
    the DRP server serves (after an activation, until the return).

    Each set staged is recorded as restore-tested (`drp backup list` shows it); a set that
    fails to stage raises a ticket. Turn staging off with `staging: {enabled: false}` in the
    inventory. Exit code 0 when staged (or nothing to do), 1 when a set failed.

    Examples: drp stage -c config/lab.yaml; drp stage -c config/lab.yaml --remove
    """
    site = _check_before_starting("stage", config, None, environments)
    if remove:
        _remove(site)
        return
    _use_server(site)
    seen = _RunSeen()
    from flows.stage import drp_stage

    try:
        with TerminalProgress(), _drp_errors_without_traceback(seen):
            result = drp_stage(config=str(config.resolve()), environments=environments)
    except DrpError as err:
        _show_run_link(seen)
        raise _fail(err) from None
    if result.get("operation_id"):
        _show_report(config, result["operation_id"])
    else:
        console.print(escape(str(result.get("message", ""))), highlight=False)
    _show_run_link(seen)


def _remove(site: Site) -> None:
    """The stages removed under the site lock (not while another operation holds it)."""
    from runbooks.connect import HostPool
    from runbooks.operation import new_operation_id
    from runbooks.site_lock import SiteLock
    from runbooks.staging import KIND, remove_stages

    lock = SiteLock(site, new_operation_id(KIND), KIND, run="drp stage --remove")
    try:
        lock.take()
        try:
            with HostPool(site) as pool:
                removed = remove_stages(site, pool["drp"])
        finally:
            lock.release()
    except DrpError as err:
        raise _fail(err) from None
    for what in removed:
        console.print(f"removed {escape(what)}", highlight=False)
    console.print(
        f"{len(removed)} stage(s) removed" if removed else "no stage on the DRP server",
        highlight=False,
    )
