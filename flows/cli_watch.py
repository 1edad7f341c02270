"""`drp watch`: supervision of every host, once or every minute, with Prometheus metrics."""

from __future__ import annotations

import ipaddress
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape

from flows.cli_ops import ConfigOpt
from runbooks.errors import DrpError
from runbooks.inventory import Site, load_site
from runbooks.watch.alerts import StartActivation
from runbooks.watch.records import Status

console = Console(soft_wrap=True)
errors = Console(stderr=True, soft_wrap=True)
EXIT_CRITICAL = 2  # --once: a probe is critical


def _fail(message: str, code: int = 1) -> typer.Exit:
    errors.print(f"[red]error:[/] {escape(message)}", highlight=False)
    return typer.Exit(code)


def parse_listen(text: str) -> tuple[str, int]:
    """`ADDRESS:PORT` (`[ADDRESS]:PORT` for IPv6) -> (address, port); ValueError says why."""
    address, sep, port = text.rpartition(":")
    address = address.strip("[]")
    if not sep or not address or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(
            f"--serve expects ADDRESS:PORT such as 127.0.0.1:9108 (or [::1]:9108), got {text!r}"
        )
    try:
        ipaddress.ip_address(address)
    except ValueError:
        if address != "localhost":
            raise ValueError(
                f"--serve expects an IP address to listen on, such as 127.0.0.1 or 0.0.0.0, got "
                f"{address!r}"
            ) from None
    return address, int(port)


def _activation_starter(site: Site) -> StartActivation:
    """Starts the activation deployment on the inventory's Prefect server, found as `drp drill`
    finds it (settled when the alarm is raised, the first time Prefect is needed)."""

    def start(deployment: str) -> str:
        from flows import orchestrator

        server = orchestrator.settle(site)
        if not server.api_url:
            raise DrpError(
                "no Prefect server is configured (PREFECT_API_URL, or the inventory's "
                f"env_file): start it by hand: prefect deployment run {deployment}"
            )
        orchestrator.check(server, site)
        from flows.watch import start_activation

        return start_activation(deployment)

    return start


WATCH_HELP = """Watch every host of the inventory: what the site security policy's supervision
lists, with the thresholds of the inventory's watch: section (defaults otherwise).

Availability (ping, SSH); per mount, free space, inodes and the user's quota; load, CPU, memory,
swap; clock drift against this machine; uptime (a reboot shows); the processes and services
named in the inventory (running, listening); URL tests (status, delay, content) through
production's address; the databases answer; replicas and their lag; disk health (smartctl, "not
available" where it is not installed or usable); interfaces, default route; public addresses in
DNS blocklists. One SSH command per host and round; a round takes about a second.

Each line is host, probe, target, status (ok, warning, critical, or unknown: the probe could not
tell), the value and what it means. --json prints one JSON object per line instead, with host,
probe, target, status, value, unit, threshold and message.

[bold]Sends alert tickets[/bold] (through the inventory's ticket backends) on state changes
only: after watch.alerts.after_failures failed rounds in a row, then once when it clears; the
state is kept in the reports directory (watch-state.json). When production fails as
watch.disaster declares a disaster (default: ping, SSH and every URL check critical for 10 min),
the alarm ticket goes out and the activation deployment is started on the inventory's Prefect
server: it waits at its order gate, never further. --no-alerts only looks.

Without --once, a round runs every watch.interval_seconds (60 s) until Ctrl-C. --serve
ADDRESS:PORT serves the latest round's metrics for Prometheus (OpenMetrics or text, at
/metrics); --textfile PATH writes them for node_exporter's textfile collector (a .prom file in
its directory).

Examples:

  drp watch -c config/lab.yaml --once

  drp watch -c config/site.yaml --once --json | jq 'select(.status != "ok")'

  drp watch -c config/site.yaml --serve 127.0.0.1:9108

  drp watch -c config/site.yaml --textfile /var/lib/node_exporter/textfile/drp.prom

--once exits 0, or 2 when a probe is critical; a bad inventory or option exits 1 or 2 with one
line saying why."""


def watch_command(
    config: ConfigOpt = Path("config/site.yaml"),
    once: Annotated[
        bool, typer.Option("--once", help="One round, then exit (2 if a probe is critical).")
    ] = False,
    as_json: Annotated[
        bool, typer.Option("--json", help="One JSON object per host, probe and target.")
    ] = False,
    alerts: Annotated[
        bool,
        typer.Option(
            "--alerts/--no-alerts",
            help="Send alert tickets on state changes, raise the disaster alarm (default); "
            "--no-alerts only looks.",
        ),
    ] = True,
    serve: Annotated[
        str | None,
        typer.Option(
            "--serve",
            metavar="ADDRESS:PORT",
            help="Serve Prometheus metrics at http://ADDRESS:PORT/metrics (e.g. 127.0.0.1:9108).",
            show_default=False,
        ),
    ] = None,
    textfile: Annotated[
        Path | None,
        typer.Option(
            "--textfile",
            metavar="PATH",
            help="Write the metrics to PATH after each round (node_exporter's textfile "
            "collector reads *.prom files).",
            show_default=False,
        ),
    ] = None,
    interval: Annotated[
        float | None,
        typer.Option(
            "--interval",
            min=1,
            help="Seconds between rounds (default: watch.interval_seconds, 60).",
            show_default=False,
        ),
    ] = None,
    problems: Annotated[
        bool, typer.Option("--problems", help="Show only what is not ok (the table).")
    ] = False,
) -> None:
    # Here, not above: `drp --help` and the other commands need none of it.
    from runbooks.watch import metrics
    from runbooks.watch.render import event_lines, json_lines, round_table
    from runbooks.watch.watcher import Watcher

    try:
        site = load_site(config)
    except DrpError as err:
        raise _fail(str(err)) from None
    listen = None
    if serve is not None:
        try:
            listen = parse_listen(serve)
        except ValueError as err:
            raise _fail(str(err), 2) from None
    if textfile is not None and not textfile.parent.is_dir():
        raise _fail(
            f"--textfile {textfile}: the directory {textfile.parent} does not exist; give a "
            "file in node_exporter's textfile directory",
            2,
        )
    collector = metrics.WatchCollector() if (listen or textfile) else None
    registry = metrics.registry_with(collector) if collector else None
    server: Any = None
    if listen is not None and registry is not None:
        try:
            server = metrics.serve(registry, *listen)
        except OSError as err:
            raise _fail(f"cannot serve metrics on {serve}: {err.strerror or err}") from None
        if not as_json:
            console.print(f"Metrics: http://{serve}/metrics", style="dim", highlight=False)
    starter = _activation_starter(site) if alerts else None
    every = interval or site.watch.interval_seconds
    worst = Status.OK
    try:
        with Watcher(site, alerts=alerts, start_activation=starter, collector=collector) as w:
            while True:
                began = time.monotonic()
                try:
                    result = w.round()
                except (DrpError, OSError) as err:
                    # The alert state or a ticket could not be written: said, and the next
                    # round tries again (a watch loop never stops on its own).
                    if once:
                        raise
                    errors.print(f"[red]error:[/] {escape(str(err))}", highlight=False)
                    time.sleep(max(0.0, every - (time.monotonic() - began)))
                    continue
                watch = result.watch
                if as_json:
                    print(json_lines(watch), flush=True)
                else:
                    console.print(round_table(watch, only_problems=problems))
                for line in event_lines(result.events):
                    errors.print(escape(line), highlight=False)
                if textfile is not None and registry is not None:
                    try:
                        metrics.write_textfile(registry, textfile)
                    except OSError as err:
                        raise _fail(f"cannot write {textfile}: {err}") from None
                worst = watch.status
                if once:
                    break
                time.sleep(max(0.0, every - (time.monotonic() - began)))
    except KeyboardInterrupt:
        errors.print("stopped", style="dim")
        return
    except (DrpError, OSError) as err:
        raise _fail(str(err)) from None
    finally:
        if server is not None:
            server.shutdown()
    if once and worst is Status.CRITICAL:
        raise typer.Exit(EXIT_CRITICAL)


watch_command.__doc__ = WATCH_HELP
