"""`drp lab ...`: the local DR lab of real servers on loopback addresses."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.table import Table

from lab import seed, topology
from lab.errors import LabError

if TYPE_CHECKING:
    from lab.api import LabStatus

lab_app = typer.Typer(
    help=(
        "The local DR lab: real sshd, PostgreSQL, MariaDB, Knot DNS, web servers and an OVH API "
        "emulator, each lab host on its own loopback address (production 127.0.10.1, "
        "backup-even .2, backup-odd .3, drp .4), and a Prefect server (API and UI, basic auth) "
        "on 127.0.10.70:4200 that drp's drills on the lab run through. Drills and integration "
        "tests run against it. "
        "State lives in /var/lib/drp-lab (or $DRP_LAB_DIR), outside any checkout. `up`, `down` and "
        "`reset` need root."
    ),
    no_args_is_help=True,
    rich_markup_mode="rich",
)

console = Console()
errors = Console(stderr=True, soft_wrap=True)  # one error, one line, whatever the width

FilesMb = Annotated[
    int | None,
    typer.Option(
        "--files-mb",
        min=1,
        help=(
            "Total MiB of application files seeded on production: a few thousand small files "
            "plus four large ones taking the rest. Default "
            f"{seed.DEFAULT_FILES_MB}, or the size of the previous seeding; benchmarks use 1024."
        ),
        show_default=False,
    ),
]
Rows = Annotated[
    int | None,
    typer.Option(
        "--rows",
        min=seed.MIN_ROWS,
        help=(
            "Total rows over the six seeded tables (users, sessions, audit in PostgreSQL; "
            "products, orders, order_items in MySQL). Default "
            f"{seed.DEFAULT_ROWS}, or the size of the previous seeding; benchmarks use 1000000."
        ),
        show_default=False,
    ),
]
JsonOutput = Annotated[
    bool, typer.Option("--json", help="Print the lab's status as JSON instead of a table.")
]

_STATE_STYLE = {"running": "green", "not answering": "yellow", "stopped": "red"}


def status_table(status: LabStatus) -> Table:
    table = Table(title=f"drp lab ({status.lab_dir})", title_justify="left")
    for column in ("host", "service", "address:port", "pid", "state"):
        table.add_column(column, justify="right" if column == "pid" else "left")
    for service in status.services:
        style = _STATE_STYLE[service.state]
        table.add_row(
            service.host,
            service.name,
            f"{service.address}:{service.port}",
            str(service.pid) if service.pid else "-",
            f"[{style}]{service.state}[/{style}]",
        )
    return table


def _seed_line(status: LabStatus) -> str:
    if status.seed is None:
        return "production: not seeded yet"
    s = status.seed
    pg_rows, mysql_rows = sum(s.postgresql_rows.values()), sum(s.mysql_rows.values())
    return (
        f"production seeded {s.seeded_at:%Y-%m-%d %H:%M} UTC (seed {s.seed_id}): "
        f"{s.file_count} files, {s.size.files_mb} MiB; {pg_rows} rows in "
        f"{topology.APP_PG_DB}, {mysql_rows} rows in {topology.APP_MYSQL_DB}"
    )


def _show(status: LabStatus, as_json: bool) -> None:
    if as_json:
        print(status.to_json())
        return
    console.print(status_table(status))
    console.print(_seed_line(status))
    if status.checkout:
        console.print(f"last brought up from the checkout {status.checkout}")


def _fail(err: LabError) -> typer.Exit:
    errors.print(f"[red]error:[/red] {err}", highlight=False)
    return typer.Exit(code=1)


# Help texts are single-line paragraphs: rich help keeps a docstring's line breaks.
UP_HELP = (
    "Start the lab; create and seed whatever is missing. [bold]Changes the machine.[/bold]\n\n"
    "Idempotent: what already runs is left alone and only missing daemons start. On first use "
    "it generates the lab's secrets (lab.env in the lab's state directory, with the Prefect "
    "server's address and basic auth, which drp reads from there) and SSH keys, "
    "creates one unix user per lab host, initializes the databases and seeds production with "
    "a sample application. Asking for other sizes than the current seeding re-seeds production.\n\n"
    "Benchmark sizes: [cyan]sudo drp lab up --files-mb 1024 --rows 1000000[/cyan]"
)
DOWN_HELP = (
    "Stop every lab daemon. [bold]Changes the machine.[/bold]\n\n"
    "Data, keys, secrets and users stay: [cyan]drp lab up[/cyan] brings the same lab back. "
    "Afterwards nothing listens on the lab's addresses."
)
STATUS_HELP = (
    "Show each lab daemon: host, service, address:port, pid and state. Read-only.\n\n"
    "[green]running[/green] means the process is the one the lab started and its port answers. "
    "Exits 1 unless all are running, so scripts can test it."
)
RESET_HELP = (
    "Return the lab to its freshly seeded state. [bold]Destroys lab data.[/bold]\n\n"
    "Stops everything, wipes the data directories, the host roots (whatever restores and drills "
    "wrote there) and the backup areas, then starts again and seeds production anew. Keys, "
    "secrets and unix users are kept, and the Prefect server keeps running with its runs. "
    "Sizes default to the previous seeding's."
)


@lab_app.command(help=UP_HELP)
def up(files_mb: FilesMb = None, rows: Rows = None, as_json: JsonOutput = False) -> None:
    from lab import api  # the lab's machinery, for `drp lab` only

    try:
        status = api.up(files_mb=files_mb, rows=rows)
    except LabError as err:
        raise _fail(err) from err
    if not as_json:
        for note in status.notes:
            console.print(f"- {note}")
        if status.started:
            console.print(
                f"started {len(status.started)} daemons in {status.seconds:.1f} s: "
                + ", ".join(status.started)
            )
        elif status.all_running:
            console.print(f"lab already running, nothing to start ({status.seconds:.1f} s)")
        else:
            console.print(f"nothing started ({status.seconds:.1f} s): see above")
    _show(status, as_json)
    if not status.all_running:
        raise typer.Exit(code=1)


@lab_app.command(help=DOWN_HELP)
def down(as_json: JsonOutput = False) -> None:
    from lab import api

    try:
        status = api.down()
    except LabError as err:
        raise _fail(err) from err
    if not as_json:
        stopped = ", ".join(status.stopped) if status.stopped else "nothing was running"
        console.print(f"stopped in {status.seconds:.1f} s: {stopped}")
    _show(status, as_json)


@lab_app.command(help=STATUS_HELP)
def status(as_json: JsonOutput = False) -> None:
    from lab import api

    try:
        current = api.status()
    except LabError as err:
        raise _fail(err) from err
    _show(current, as_json)
    if not current.all_running:
        raise typer.Exit(code=1)


@lab_app.command(help=RESET_HELP)
def reset(files_mb: FilesMb = None, rows: Rows = None, as_json: JsonOutput = False) -> None:
    from lab import api

    try:
        status = api.reset(files_mb=files_mb, rows=rows)
    except LabError as err:
        raise _fail(err) from err
    if not as_json:
        for note in status.notes:
            console.print(f"- {note}")
        console.print(f"lab reset and started in {status.seconds:.1f} s")
    _show(status, as_json)
    if not status.all_running:
        raise typer.Exit(code=1)
