"""`drp config ...`: inventory validation."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer
from rich import box
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from providers.tickets import masked_url
from runbooks.errors import ConfigError
from runbooks.inventory import OvhDns, Site, load_site
from runbooks.secrets import SecretRef

config_app = typer.Typer(
    help="Check inventory files (the YAML description of a site).",
    no_args_is_help=True,
    rich_markup_mode="rich",
)

EXIT_INVALID = 1
EXIT_NO_FILE = 2


CHECK_HELP = "\n\n".join(
    [
        "Validate an inventory file (read-only).",
        "Checks the structure (every field known, of the right type), then the rules of the "
        "disaster-recovery plan: backup servers and the DRP server outside production's "
        "datacenter, the DRP server distinct from production, every DNS record in a managed "
        "zone, secrets given as references (env:NAME or prefect-secret:NAME), never inline.",
        "Valid: prints a summary (secrets only as references) and exits 0. Invalid: prints "
        "every problem, one per line, as [bold]file:line: field: what is wrong and what is "
        "expected[/bold], and exits 1. A file that does not exist exits 2.",
        "Examples:\n\n  drp config check config/lab.yaml\n"
        "  drp config check config/site.yaml --resolve-secrets",
    ]
)


@config_app.command("check", help=CHECK_HELP)
def check(
    file: Annotated[
        Path,
        typer.Argument(
            help="The inventory YAML file, e.g. config/site.yaml or config/lab.yaml.",
            show_default=False,
        ),
    ],
    resolve_secrets: Annotated[
        bool,
        typer.Option(
            "--resolve-secrets",
            help="Also check that every referenced secret can be read now (environment, "
            "env_file or Prefect Secret block). Prints the names of those that cannot; "
            "never a value.",
        ),
    ] = False,
) -> None:
    if not file.is_file():
        what = "is a directory" if file.is_dir() else "does not exist"
        typer.echo(f"{file}: {what}; expected an inventory YAML file", err=True)
        raise typer.Exit(EXIT_NO_FILE)
    try:
        site = load_site(file)
    except ConfigError as err:
        problems = err.problems or (err,)
        for problem in problems:
            typer.echo(str(problem), err=True)
        typer.echo(f"{file}: {len(problems)} problem(s); nothing else was checked", err=True)
        raise typer.Exit(EXIT_INVALID) from None

    console = Console(highlight=False, soft_wrap=True)
    _print_summary(console, file, site)
    for warning in site_warnings(site):
        console.print(f"[yellow]warning:[/] {escape(warning)}")
    if resolve_secrets:
        from flows.orchestrator import apply_for_secrets

        apply_for_secrets(site)  # prefect-secret: references, from the inventory's server
        if not _print_secret_resolution(console, site):
            raise typer.Exit(EXIT_INVALID)


def site_warnings(site: Site) -> list[str]:
    """What is valid but will surprise on the day: each says what to change."""
    warnings = []
    if site.orders.secret is None:
        warnings.append(
            "orders.secret is not set: a stored order cannot be trusted, so every resume asks "
            "the customer for the order again; set orders.secret: env:DRP_ORDER_SECRET (a long "
            "random value in that variable)"
        )
    return warnings


def _print_summary(console: Console, file: Path, site: Site) -> None:
    console.print(
        f"[green]valid[/green]: {escape(str(file))} -- site [bold]{escape(site.name)}[/bold], "
        f"customer {escape(site.customer)}"
    )

    hosts = Table(title="Hosts", title_justify="left", box=box.SIMPLE_HEAD)
    widest_target = max(len(host.ssh_target) for host in site.hosts.by_role().values())
    hosts.add_column("role")
    hosts.add_column("ssh", min_width=min(widest_target, 40), overflow="fold")
    hosts.add_column("public address", overflow="fold")
    hosts.add_column("datacenter", overflow="fold")
    for role, host in site.hosts.by_role().items():
        public = str(host.public_ipv4) + (f" {host.public_ipv6}" if host.public_ipv6 else "")
        hosts.add_row(role, escape(host.ssh_target), public, escape(host.datacenter))
    console.print(hosts)

    environments = Table(title="Environments", title_justify="left", box=box.SIMPLE_HEAD)
    environments.add_column("name", overflow="fold")
    for column in (
        "files",
        "configs",
        "databases",
        "user dbs",
        "records",
        "url checks",
    ):
        environments.add_column(column, justify="right")
    for env in site.environments:
        environments.add_row(
            escape(env.name),
            str(len(env.files)),
            str(len(env.configs)),
            str(len(env.databases)),
            str(sum(db.user_database for db in env.databases)),
            str(len(env.dns_records)),
            str(len(env.url_checks)),
        )
    console.print(environments)

    dns = site.dns
    if isinstance(dns, OvhDns):
        where = f"endpoint {dns.endpoint}" + (f" ({dns.url})" if dns.url else "")
    else:
        where = (
            f"server {dns.server} port {dns.port}, key {dns.tsig_key_name} ({dns.tsig_algorithm})"
        )
    console.print(f"DNS: {dns.provider}, {escape(where)}; zones: {escape(', '.join(dns.zones))}")

    tickets = []
    for backend in site.tickets:
        if backend.type == "file":
            tickets.append(f"file {_shown_path(backend.path)}")
        elif backend.type == "smtp":
            tickets.append(f"smtp {backend.host}:{backend.port} to {len(backend.recipients)}")
        else:
            url = backend.url
            tickets.append(f"webhook {masked_url(url) if isinstance(url, str) else url}")
    console.print(f"Tickets: {escape('; '.join(tickets))}")

    backups = site.backups
    both = "both backup servers" if backups.user_db_to_both_servers else "the server of the day"
    console.print(
        f"Backups: area {escape(backups.area)}, {backups.retention} sets kept, user databases "
        f"every {backups.user_db_interval_hours} h to {both}"
    )
    t = site.timeouts
    console.print(
        f"Timeouts: commands {t.command_seconds:g} s, copies {t.copy_seconds:g} s "
        f"(idle {t.copy_idle_seconds:g} s), databases {t.database_seconds:g} s"
    )
    w = site.watch
    alarm = (
        f"starts {w.disaster.deployment}, which waits at its order gate"
        if w.disaster.start_activation
        else "a ticket only"
    )
    console.print(
        f"Watch: every {w.interval_seconds:g} s; alert tickets after {w.alerts.after_failures} "
        f"failed rounds; disaster alarm when production's {', '.join(w.disaster.probes)} are "
        f"critical for {w.disaster.for_seconds:g} s ({alarm})",
        highlight=False,
    )
    d = site.drift
    versions = ", ".join(d.versions) or "none besides the OS and databases"
    console.print(
        f"Drift (drp drift): versions {escape(versions)}; {len(d.ignore)} ignore pattern(s); "
        f"loopback {'compared' if d.loopback else 'not compared'}",
        highlight=False,
    )
    refs = _refs_by_reference(site)
    console.print(
        f"Secrets: {len(refs)} reference(s): {escape(', '.join(str(ref) for ref in refs)) or '-'}"
    )


def _print_secret_resolution(console: Console, site: Site) -> bool:
    """Resolve every reference; print which do not resolve (never a value). True if all do."""
    failures = 0
    for ref, fields in _refs_by_reference(site).items():
        try:
            site.resolve_secret(ref)
        except ConfigError as err:
            failures += 1
            console.print(
                f"[red]unresolved[/red] {escape(str(ref))} ({escape(', '.join(fields))}): "
                f"{escape(err.message)}"
            )
        else:
            console.print(f"[green]resolves[/green] {escape(str(ref))}")
    if failures:
        console.print(f"{failures} secret reference(s) do not resolve")
    return failures == 0


def _refs_by_reference(site: Site) -> dict[SecretRef, list[str]]:
    refs: dict[SecretRef, list[str]] = {}
    for field, ref in site.secret_refs():
        refs.setdefault(ref, []).append(field)
    return refs


def _shown_path(path: Path) -> str:
    """Relative to the working directory when below it, else absolute (never `../../var/...`)."""
    relative = os.path.relpath(path)
    return str(path) if relative == ".." or relative.startswith("../") else relative
