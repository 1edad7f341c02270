"""`drp backup ...`: make a backup now, list the backup sets of both backup servers."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer
from rich import box
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, Progress, TaskID, TextColumn, TimeElapsedColumn
from rich.table import Table

from runbooks.backup_run import (
    BackupContext,
    JobOutcome,
    failures,
    plan_environment_backup,
    run_jobs,
)
from runbooks.backups import BackupSet, SetStatus, open_catalogue, wanted_environments
from runbooks.connect import site_from
from runbooks.errors import ConfigError, DrpError
from runbooks.inventory import Site
from runbooks.render import human_bytes, human_duration
from runbooks.warm import Certificate, latest_certificates, read_certificates

backup_app = typer.Typer(
    help="Backups: make one now, list the sets on both backup servers.",
    no_args_is_help=True,
    rich_markup_mode="rich",
)

EXIT_FAILED = 1
EXIT_CONFIG = 2

CONFIG_HELP = (
    "The inventory YAML file (required: give --config or set DRP_CONFIG), e.g. config/lab.yaml."
)
ConfigOption = Annotated[
    Path | None,
    typer.Option("--config", "-c", envvar="DRP_CONFIG", help=CONFIG_HELP, show_default=False),
]


class OnlyChoice(StrEnum):
    FILES = "files"
    DATABASES = "databases"
    USER_DATABASES = "user-databases"


class ParityChoice(StrEnum):
    EVEN = "even"
    ODD = "odd"


def _site(config: Path | None, console: Console) -> Site:
    try:
        return site_from(config)
    except DrpError as err:
        console.print(f"[red]{escape(str(err))}[/red]")
        raise typer.Exit(EXIT_CONFIG) from None


RUN_HELP = "\n\n".join(
    [
        "Make a backup now ([bold]writes[/bold] to a backup server and, for dumps, a staging "
        "directory on production).",
        "Without --only: files, configs and every database of each environment (all, or those "
        "given with --env), to the even-day server on even days of the UTC date and to the "
        "odd-day server on odd days (--parity forces one). --only user-databases makes the "
        "2-hourly backup of the user databases (to both servers when the inventory says so).",
        "Each set gets a manifest, written last; an interrupted backup leaves a set without "
        "one, listed as incomplete and never restored. Older sets beyond the inventory's "
        "retention are removed afterwards, and listed.",
        "With the warm DRP server on (the inventory's staging), a backup run as a flow (--flow, "
        "as the backup deployments run it) starts a staging run when it ends; a backup run "
        "without --flow is staged by the next hourly staging run, or by `drp stage`.",
        "Examples:\n\n  drp backup run --config config/lab.yaml\n"
        "  DRP_CONFIG=config/site.yaml drp backup run --env app --only user-databases",
    ]
)


@backup_app.command("run", help=RUN_HELP)
def run(
    config: ConfigOption = None,
    env: Annotated[
        list[str] | None,
        typer.Option(
            "--env", "-e", help="Environment to back up (repeat; default: all).", show_default=False
        ),
    ] = None,
    only: Annotated[
        OnlyChoice | None,
        typer.Option("--only", help="Back up only this part.", show_default=False),
    ] = None,
    parity: Annotated[
        ParityChoice | None,
        typer.Option(
            "--parity",
            help="Force the day parity (which server receives the set); default: today's UTC date.",
            show_default=False,
        ),
    ] = None,
    flow: Annotated[
        bool,
        typer.Option("--flow", help="Run through the Prefect flow (recorded in Prefect)."),
    ] = False,
) -> None:
    console = Console(highlight=False, soft_wrap=True)
    site = _site(config, console)
    try:
        if flow:
            _use_server(site, console)
            _run_flow(site, config, env, only, parity, console)
            return
        jobs = plan_environment_backup(
            site,
            environments=env or None,
            only=only.value if only else None,  # type: ignore[arg-type]
            parity=parity.value if parity else None,
        )
        if not jobs:
            console.print("Nothing to back up (no environment has a user database).")
            return
        outcomes = _run_with_progress(site, jobs, console)
    except DrpError as err:
        console.print(f"[red]backup failed: {escape(str(err))}[/red]")
        raise typer.Exit(EXIT_FAILED) from None
    _print_outcomes(outcomes, console)
    failed = failures(outcomes)
    if failed:
        for line in failed:
            console.print(f"[red]backup failed: {escape(line)}[/red]")
        console.print("A set whose backup failed has no manifest: it is listed as incomplete.")
        raise typer.Exit(EXIT_FAILED)
    if site.staging.enabled:
        where = f" -c {config}" if config else ""
        console.print(
            "Staging: this backup is staged on the DRP server by the next hourly run of the "
            f"drp-stage/stage deployment where it is deployed, or now with `drp stage{where}`. "
            "(A backup run as a flow, as the backup deployments and --flow run it, starts a "
            "staging run when it ends.)",
            style="dim",
        )


def _run_with_progress(site: Site, jobs: list[Any], console: Console) -> list[JobOutcome]:
    progress = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.percentage:>3.0f}%"),
        TimeElapsedColumn(),
        console=console,
        transient=True,
    )
    bars: dict[str, TaskID] = {}

    def on_progress(what: str, percent: float) -> None:
        if what not in bars:
            bars[what] = progress.add_task(escape(what), total=100)
        progress.update(bars[what], completed=percent)

    def say(message: str) -> None:
        progress.console.print(escape(message))

    with progress:
        ctx = BackupContext(site, say=say, progress=on_progress)
        try:
            return run_jobs(ctx, jobs)
        finally:
            ctx.close()


def _use_server(site: Site, console: Console) -> None:
    """The Prefect server the flow runs on (see flows.orchestrator), said and checked."""
    from flows import orchestrator

    server = orchestrator.settle(site)
    console.print(escape(server.describe()), style="dim")
    orchestrator.check(server, site)


def _run_flow(
    site: Site,
    config: Path | None,
    env: list[str] | None,
    only: OnlyChoice | None,
    parity: ParityChoice | None,
    console: Console,
) -> None:
    from flows.backup import backup_environment, backup_user_databases

    path = str(config.resolve()) if config else str(site.source) if site.source else None
    names: list[str | None] = [*env] if env else [None]
    for name in names:
        if only is OnlyChoice.USER_DATABASES:
            results = backup_user_databases(
                config=path, environment=name, parity=parity.value if parity else None
            )
        else:
            results = backup_environment(
                config=path,
                environment=name,
                parity=parity.value if parity else None,
                only=only.value if only else None,  # type: ignore[arg-type]
            )
        for result in results:
            console.print(
                f"{result['environment']}: set {result['set_id']} complete on "
                f"{', '.join(result['servers'])} in {result['seconds']} s"
            )


def _print_outcomes(outcomes: list[JobOutcome], console: Console) -> None:
    table = Table(title="Backups made", box=box.SIMPLE_HEAVY)
    for column in ("environment", "set", "server", "trees", "dumps", "size", "seconds"):
        table.add_column(column, justify="right" if column in ("size", "seconds") else "left")
    for outcome in outcomes:
        for server, manifest in outcome.manifests.items():
            trees = ", ".join(f"{t.path} ({t.files} files)" for t in manifest.trees) or "-"
            dumps = ", ".join(d.database for d in manifest.databases) or "-"
            table.add_row(
                manifest.environment,
                manifest.set_id,
                server,
                trees,
                dumps,
                human_bytes(manifest.bytes),
                f"{outcome.seconds:.1f}",
            )
    if table.row_count:
        console.print(table)
    for outcome in outcomes:
        for retention in outcome.retention:
            console.print(escape(retention.summary()))
        for warning in outcome.warnings:
            console.print(f"[yellow]warning: {escape(warning)}[/yellow]")


LIST_HELP = "\n\n".join(
    [
        "List the backup sets of both backup servers (read-only).",
        "Status: [bold]complete (not verified)[/bold] (manifest present and valid; its files "
        "were not checked), [bold]complete, verified[/bold] (with --verify: every file matches "
        "the manifest), [bold]incomplete[/bold] (no manifest: interrupted, or still running), "
        "[bold]corrupt[/bold] (unreadable manifest; with --verify, also a missing file or a "
        "size, checksum or tree digest that no longer matches the manifest), each with the "
        "reason.",
        "With --verify, also shows which sets a restore would use now and the data-loss window.",
        "Examples:\n\n  drp backup list --config config/lab.yaml\n"
        "  drp backup list --config config/lab.yaml --verify --json",
    ]
)


@backup_app.command("list", help=LIST_HELP)
def list_sets(
    config: ConfigOption = None,
    env: Annotated[
        str | None, typer.Option("--env", "-e", help="Only this environment.", show_default=False)
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
    verify: Annotated[
        bool,
        typer.Option("--verify", help="Check every complete set's files against its manifest."),
    ] = False,
) -> None:
    console = Console(highlight=False, soft_wrap=True)
    site = _site(config, console)
    if env is not None:
        try:
            site.environment(env)
        except ConfigError as err:
            console.print(f"[red]{escape(f'{err}; expected {err.expected}')}[/red]")
            raise typer.Exit(EXIT_CONFIG) from None
    now = datetime.now(UTC)
    try:
        with open_catalogue(site, now) as catalogue:
            sets = catalogue.sets(env)
            if verify:
                sets = [catalogue.status(s) for s in sets]
            selection = None
            if verify:
                wanted = wanted_environments(site, [env] if env else None)
                selection = catalogue.choose(wanted)
    except DrpError as err:
        console.print(f"[red]backup list failed: {escape(str(err))}[/red]")
        raise typer.Exit(EXIT_FAILED) from None
    tested, tested_note = _certificates(site)
    if as_json:
        data: dict[str, Any] = {
            "now": now.isoformat(),
            "sets": [
                {**s.data, "restore_test": tested[s.label].data if s.label in tested else None}
                for s in sets
            ],
            "unreachable": catalogue.unreachable,
        }
        if selection is not None:
            data["selection"] = selection.data
        typer.echo(json.dumps(data, indent=2))
        return
    console.print(sets_table(sets, now, tested))
    if tested_note:
        console.print(f"[yellow]{escape(tested_note)}[/yellow]")
    if not verify and any(s.usable for s in sets):
        console.print(
            "Not verified: only the manifests were read. Run with --verify to check every file "
            "against its manifest (a damaged set then shows as corrupt)."
        )
    for server, why in catalogue.unreachable.items():
        console.print(f"[red]backup server {escape(server)} could not be read: {escape(why)}[/red]")
    if selection is not None:
        for warning in selection.warnings:
            console.print(f"[yellow]{escape(warning)}[/yellow]")
        for name, choice in sorted(selection.environments.items()):
            sources = ", ".join(sorted({s.label for s in choice.sets})) or "nothing"
            console.print(
                f"{escape(name)}: a restore now would use {escape(sources)}; "
                f"{escape(choice.data_loss_words)}; {human_bytes(choice.copy_bytes)} to copy"
            )
            for missing in choice.missing:
                console.print(f"[red]{escape(missing)}[/red]")


_STATUS_STYLE = {
    SetStatus.COMPLETE: "green",
    SetStatus.INCOMPLETE: "yellow",
    SetStatus.CORRUPT: "red",
}


def _certificates(site: Site) -> tuple[dict[str, Certificate], str]:
    """Each set's newest restore test by staging (`drp stage`), read from the DRP host; and a
    note when it cannot be read."""
    from runbooks.connect import HostPool

    pool = HostPool(site)
    try:
        return latest_certificates(read_certificates(pool["drp"])), ""
    except DrpError as err:
        return {}, f"restore tests unknown: the DRP host could not be read ({err})"
    finally:
        pool.close()


def sets_table(
    sets: list[BackupSet], now: datetime, tested: dict[str, Certificate] | None = None
) -> Table:
    table = Table(title="Backup sets", box=box.SIMPLE_HEAVY)
    for column in ("environment", "kind", "server", "time (UTC)", "age", "size", "status"):
        table.add_column(column, justify="right" if column in ("age", "size") else "left")
    table.add_column("restore test (drp stage)")
    for s in sets:
        status = s.status_words
        certificate = (tested or {}).get(s.label)
        test = "-"
        if certificate is not None:
            style = "green" if certificate.ok else "red"
            test = f"[{style}]{escape(certificate.words)}[/]"
        table.add_row(
            s.environment,
            s.kind.value,
            s.server,
            s.started.strftime("%Y-%m-%d %H:%M:%S"),
            human_duration(s.age_seconds(now)),
            human_bytes(s.bytes) if s.bytes is not None else "-",
            f"[{_STATUS_STYLE[s.status]}]{escape(status)}[/]",
            test,
        )
    if not sets:
        table.caption = "no backup set found"
    return table
