"""`drp plan`, `drp drill`, `drp activate`, `drp return`, `drp approve`, `drp report`."""

from __future__ import annotations

import contextlib
import json
import logging
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Annotated, Any
from uuid import UUID

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, Progress, TaskID, TextColumn, TimeElapsedColumn
from rich.prompt import Confirm, Prompt

from flows import progress, stop_guard
from flows.connections import close_early, connect_early
from flows.startup import imports_without_gc
from runbooks.errors import DrpError
from runbooks.gate import VIA_APPROVE, VIA_OPTION, VIA_TERMINAL, signature_problems
from runbooks.inventory import Site, load_site
from runbooks.render import plan_renderable, report_renderable
from runbooks.report import load_report
from runbooks.services import reports_dir

console = Console()
errors = Console(stderr=True, soft_wrap=True)  # one error, one line, whatever the width
# After Ctrl-C or SIGTERM, how long Prefect may take to record the run's end before drp leaves.
STOP_SECONDS = 20.0

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
OperationOpt = Annotated[
    str | None,
    typer.Option(
        "--operation-id",
        help="Resume (or name) this operation: finished steps are skipped with their reason. "
        "Default: one named after the flow run, such as activate-20261129-0215-7f3a9c01.",
        show_default=False,
    ),
]
EnvOpt = Annotated[
    list[str] | None,
    typer.Option("--env", "-e", help="Only this environment (repeat for several). Default: all."),
]
ForceOpt = Annotated[
    bool,
    typer.Option(
        "--force",
        help="Allow restoring over DRP databases that drp did not restore. Their content is "
        "kept aside first (renamed, or dumped), never dropped.",
    ),
]
TimeoutOpt = Annotated[
    int,
    typer.Option(
        "--gate-timeout",
        min=1,
        help="Seconds to wait for the order before ending with nothing changed (default 24 h).",
    ),
]
BwlimitOpt = Annotated[
    int | None,
    typer.Option(
        "--bwlimit",
        min=1,
        help="Limit each copy to this many KiB/s, to spare a shared link. Default: full speed.",
        show_default=False,
    ),
]
OrderByOpt = Annotated[
    str | None,
    typer.Option(
        "--order-by",
        help="Answer the order gate with this name (unattended runs). With --reference.",
        show_default=False,
    ),
]
ReferenceOpt = Annotated[
    str | None,
    typer.Option("--reference", help="The order's reference (ticket, e-mail).", show_default=False),
]
CleanupOpt = Annotated[
    bool,
    typer.Option(
        "--cleanup",
        help="Return the DRP server to its state before the drill: what it held is set aside "
        "first and put back afterwards.",
    ),
]


def _gate() -> Any:
    """flows.gate, imported when needed: it loads Prefect, which `drp lab` does not need."""
    from flows import gate

    return gate


def _fail(err: Exception, code: int = 1) -> typer.Exit:
    errors.print(f"[red]error:[/] {escape(str(err))}", highlight=False)
    return typer.Exit(code)


# -- plan --------------------------------------------------------------------------------------
def plan_command(
    kind: Annotated[str, typer.Argument(help="activate, drill or return.")] = "activate",
    config: ConfigOpt = Path("config/site.yaml"),
    environments: EnvOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the plan as JSON.")] = False,
    cleanup: CleanupOpt = False,
) -> None:
    """Show what an activation, drill or return would do, changing nothing and asking no order.

    Runs the read-only preflight (DRP host and databases reachable, restore targets safe, disk
    space, newest verified backups on both servers, DNS credentials), then prints the plan,
    the data-loss window and the plan hash that the order will approve. For a return: both
    sides reachable, their databases, room on production, the activation being reversed, the
    data to move and the estimated downtime.
    """
    from flows.prepare import prepare_plan

    if kind not in ("activate", "drill", "return"):
        raise _fail(ValueError(f"expected activate, drill or return, got {kind!r}"), 2)
    if cleanup and kind != "drill":
        raise _fail(ValueError("--cleanup is for drills only"), 2)
    if kind == "return":
        _plan_return(config, environments, as_json)
        return
    try:
        _apply_inventory_server(config)
        prepared = prepare_plan(config, kind, environments, cleanup=cleanup)
    except DrpError as err:
        raise _fail(err) from None
    if as_json:
        console.print_json(prepared.plan.to_json())
    else:
        console.print(prepared.preflight_table())
        console.print(plan_renderable(prepared.plan))
        console.print(f"[bold]Data loss if started now:[/] {prepared.data_loss_words}")
        for warning in prepared.operation.selection.warnings:
            console.print(f"[yellow]warning:[/] {warning}")
    prepared.close()
    if not prepared.preflight_ok:
        raise typer.Exit(1)


def _plan_return(config: Path, environments: list[str] | None, as_json: bool) -> None:
    from flows.prepare import check_environments
    from runbooks.operation import check_operation_id, new_operation_id
    from runbooks.returning import prepare_return

    try:
        site = load_site(config)
        _apply_inventory_server(config, site)
        check_environments(site, environments)
        operation_id = check_operation_id(new_operation_id("return"))
        prepared = prepare_return(site, operation_id, environments)
    except DrpError as err:
        raise _fail(err) from None
    try:
        if as_json:
            console.print_json(prepared.plan.to_json())
        else:
            console.print(_preflight_table(prepared.findings))
            console.print(plan_renderable(prepared.plan))
            for note in prepared.built.notes:
                console.print(f"- {note}")
    finally:
        prepared.close()
    if not prepared.preflight_ok:
        raise typer.Exit(1)


def _apply_inventory_server(config: Path, site: Site | None = None) -> None:
    """A plan runs no flow, but a prefect-secret: reference is read from the inventory's server."""
    from flows.orchestrator import apply_for_secrets

    apply_for_secrets(site or load_site(config))


def _preflight_table(findings: list[Any]) -> Any:
    from rich.table import Table

    table = Table(title="Preflight (read-only)")
    table.add_column("check")
    table.add_column("result")
    table.add_column("reason", overflow="fold")
    for f in findings:
        table.add_row(f.step.title, "[green]ok[/]" if f.ok else "[red]problem[/]", f.reason)
    return table


# -- running an operation ----------------------------------------------------------------------
class TerminalGate:
    """Answers the order gate of a run in this process: from options, or at a prompt."""

    def __init__(self, order_by: str | None, reference: str | None, acknowledge: bool) -> None:
        self.order_by, self.reference, self.acknowledge = order_by, reference, acknowledge
        self.stop = threading.Event()

    def __call__(self, flow_run_id: UUID, plan_hash: str, brief: str) -> bool:
        threading.Thread(
            target=self._answer, args=(flow_run_id, plan_hash, brief), daemon=True
        ).start()
        return bool(self.order_by)  # answered at once, from the options

    def _answer(self, flow_run_id: UUID, plan_hash: str, brief: str) -> None:
        with _gate().answering_client():  # made while the run pauses
            self._answer_when_open(flow_run_id, plan_hash, brief)

    def _answer_when_open(self, flow_run_id: UUID, plan_hash: str, brief: str) -> None:
        fields = _gate().wait_for_form(flow_run_id, self.stop.is_set)
        if fields is None:
            return
        code_field = fields.get("order_code")
        if code_field and self.order_by and not sys.stdin.isatty():
            errors.print(
                f"Waiting for the order of flow run {flow_run_id}: this site needs the order "
                f"code sent to the customer ({code_field.get('description', '')}). Answer in "
                f"the Prefect UI, or `drp approve {flow_run_id} --by NAME --reference REF "
                "--code CODE --acknowledge-data-loss`."
            )
            return
        code = (
            Prompt.ask("Order code (sent to the customer's order contacts)")
            if (code_field and self.order_by)
            else None
        )
        if self.order_by:
            answer = {
                "ordered_by": self.order_by,
                "reference": self.reference or "",
                "decision": "activate",
                "data_loss_acknowledged": self.acknowledge,
                "plan_hash": plan_hash,
                "channel": VIA_OPTION,
                **({"order_code": code} if code else {}),
            }
            if not self._send(flow_run_id, answer, via="option"):
                errors.print(
                    f"Flow run {flow_run_id} still waits for the order: answer in the Prefect "
                    f"UI, or `drp approve {flow_run_id} --by NAME --reference REF "
                    "--acknowledge-data-loss`; or stop this command (Ctrl-C): nothing was "
                    "changed."
                )
            return
        if not sys.stdin.isatty():
            code = " --code CODE" if code_field else ""
            errors.print(
                f"Waiting for the order of flow run {flow_run_id}: answer in the Prefect UI, "
                f"or `drp approve {flow_run_id} --by NAME --reference REF{code}`."
            )
            return
        from rich.markdown import Markdown

        console.print(Markdown(brief))
        while not self.stop.is_set():
            name = Prompt.ask("Who orders (full name)")
            reference = Prompt.ask("Order reference")
            decision = Prompt.ask("Decision", choices=["activate", "refuse"], default="refuse")
            ack = decision == "activate" and Confirm.ask(
                "Data written after the backups shown will be lost. Acknowledged?"
            )
            typed_code = (
                Prompt.ask("Order code (sent to the customer's order contacts)")
                if code_field and decision == "activate"
                else None
            )
            answer = {
                "ordered_by": name,
                "reference": reference,
                "decision": decision,
                "data_loss_acknowledged": ack,
                "plan_hash": plan_hash,
                "channel": VIA_TERMINAL,
                **({"order_code": typed_code} if typed_code else {}),
            }
            if self._send(flow_run_id, answer, via="terminal"):
                return

    def _send(self, flow_run_id: UUID, answer: dict[str, Any], via: str) -> bool:
        try:
            _gate().answer_gate(flow_run_id, answer)
        except DrpError as err:
            errors.print(f"[red]The order was not taken:[/] {err}")
            return False
        console.print(f"Order sent ({answer['decision']} by {answer['ordered_by']}, {via}).")
        return True


class TerminalProgress:
    """A progress bar per long step, fed by `flows.progress`."""

    def __init__(self) -> None:
        self.bar = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            TextColumn("{task.percentage:>5.1f}%"),
            TimeElapsedColumn(),
            console=console,
            transient=False,
        )
        self.tasks: dict[str, TaskID] = {}

    def __call__(self, step: str, percent: float) -> None:
        if not self.tasks:  # shown from the first progress on: the gate's prompt comes before
            self.bar.start()
        if step not in self.tasks:
            self.tasks[step] = self.bar.add_task(step, total=100)
        self.bar.update(self.tasks[step], completed=percent)

    def __enter__(self) -> TerminalProgress:
        progress.add_listener(self)
        return self

    def __exit__(self, *exc: object) -> None:
        progress.remove_listener(self)
        self.bar.stop()


def _flow(kind: str) -> Callable[..., dict[str, Any]]:
    """The operation's flow, run in this process: its end does not wait for Prefect's
    heartbeat thread (`flows.heartbeat`)."""
    from flows.heartbeat import end_runs_without_waiting

    if kind == "drill":
        from flows.drill import drp_drill as flow_fn
    elif kind == "return":
        from flows.returning import drp_return as flow_fn
    else:
        from flows.activate import drp_activate as flow_fn
    end_runs_without_waiting()
    return flow_fn


def _operate(
    kind: str,
    config: Path,
    operation_id: str | None,
    environments: list[str] | None,
    gate_timeout: int,
    force: bool,
    bwlimit: int | None,
    answerer: TerminalGate,
    *,
    cleanup: bool = False,
) -> None:
    site = _check_before_starting(kind, config, operation_id, environments)
    connect_early(site, kind)  # while Prefect is imported: the flow run takes them over
    try:
        with imports_without_gc():  # Prefect's, mostly
            _use_server(site)
            flow_fn = _flow(kind)
        result, seen = _run_flow(
            flow_fn,
            answerer,
            config=str(config.resolve()),
            operation_id=operation_id,
            environments=environments,
            gate_timeout_seconds=gate_timeout,
            force=force,
            bwlimit_kib=bwlimit,
            **({"cleanup": True} if cleanup else {}),  # a drill's parameter only
        )
    finally:
        close_early()
    _show_report(config, result["operation_id"], site)
    _show_run_link(seen)
    if result.get("outcome") not in ("succeeded", "refused"):
        raise typer.Exit(1)


def _run_flow(
    flow_fn: Callable[..., dict[str, Any]], answerer: TerminalGate, **parameters: Any
) -> tuple[dict[str, Any], _RunSeen]:
    """Run the flow here, its gate answered by `answerer`: its result, and the run seen."""
    _gate().add_gate_listener(answerer)
    seen = _RunSeen()
    try:
        with (
            TerminalProgress(),
            _drp_errors_without_traceback(seen),
            stop_guard.enabled(STOP_SECONDS, _stop_hint(parameters.get("config"))),
        ):
            result = flow_fn(**parameters)
    except DrpError as err:
        _show_run_link(seen)
        raise _fail(err) from None
    finally:
        answerer.stop.set()
        _gate().remove_gate_listener(answerer)
    return result, seen


def _stop_hint(config: str | None) -> str:
    where = f" -c {config}" if config else ""
    return (
        f"`drp status{where}` says what holds the site: resume the operation with "
        "--operation-id, or release it as that line says."
    )


def _use_server(site: Site) -> None:
    """Settle the Prefect server before Prefect is imported (see flows.orchestrator), say which,
    and check that it answers and takes drp's credentials."""
    from flows import orchestrator

    try:
        server = orchestrator.settle(site)
        console.print(escape(server.describe()), style="dim", highlight=False)
        orchestrator.check(server, site)
    except DrpError as err:
        raise _fail(err) from None


class _RunSeen:
    """The flow run this command started, as its log records name it."""

    def __init__(self) -> None:
        self.flow_run_id: str | None = None


def _show_run_link(seen: _RunSeen) -> None:
    """The run's page in the Prefect UI, when the server has one (a temporary API has not)."""
    if not seen.flow_run_id:
        return
    from prefect.utilities.urls import url_for

    url = url_for("flow-run", obj_id=seen.flow_run_id)
    if url:
        console.print(f"In the Prefect UI: {url}", highlight=False, soft_wrap=True)


def _check_before_starting(
    kind: str, config: Path, operation_id: str | None, environments: list[str] | None
) -> Site:
    """What can be told wrong before any flow run is created (as `drp plan` does)."""
    from flows.prepare import check_environments
    from runbooks.operation import check_operation_id

    try:
        site = load_site(config)
        check_environments(site, environments)
        if operation_id:
            check_operation_id(operation_id)
            report = reports_dir(site) / f"{operation_id}.json"
            if report.exists() and load_report(reports_dir(site), operation_id).kind != kind:
                raise DrpError(
                    f"operation {operation_id} is not a {kind} (see {report}): use another "
                    "operation id, or none for a new one"
                )
    except (DrpError, ValueError) as err:
        raise _fail(err) from None
    return site


class _NoDrpTraceback(logging.Filter):
    """Drops, on the terminal only, Prefect's record of a flow ending on a DrpError: the command
    prints drp's message itself, and a traceback adds nothing to it. The run's log on the
    Prefect server keeps the record. Notes the flow run the records come from."""

    def __init__(self, seen: _RunSeen | None = None) -> None:
        super().__init__()
        self.seen = seen

    def filter(self, record: logging.LogRecord) -> bool:
        run_id = getattr(record, "flow_run_id", None)
        if self.seen is not None and self.seen.flow_run_id is None and run_id:
            self.seen.flow_run_id = str(run_id) if run_id != "<unknown>" else None
        error = record.exc_info[1] if record.exc_info else None
        return not isinstance(error, DrpError)


@contextlib.contextmanager
def _drp_errors_without_traceback(seen: _RunSeen | None = None) -> Iterator[None]:
    from prefect.logging.handlers import PrefectConsoleHandler

    quiet = _NoDrpTraceback(seen)
    handlers = [h for h in logging.getLogger().handlers if isinstance(h, PrefectConsoleHandler)]
    for handler in handlers:
        handler.addFilter(quiet)
    try:
        yield
    finally:
        for handler in handlers:
            handler.removeFilter(quiet)


def _check_order_options(order_by: str | None, reference: str | None) -> None:
    """--order-by and --reference checked as the gate will check them, before anything starts:
    a refused answer would leave the run waiting at its gate, holding the site."""
    if order_by is None:
        return
    if not reference:
        raise _fail(ValueError("--order-by needs --reference (the order's reference)"), 2)
    options = {"ordered_by": "--order-by", "reference": "--reference"}
    problems = signature_problems(order_by, reference, options)
    if problems:
        raise _fail(ValueError("; ".join(problems)), 2)


def drill_command(
    config: ConfigOpt = Path("config/site.yaml"),
    operation_id: OperationOpt = None,
    environments: EnvOpt = None,
    order_by: OrderByOpt = None,
    reference: ReferenceOpt = None,
    gate_timeout: TimeoutOpt = 24 * 3600,
    force: ForceOpt = False,
    bwlimit: BwlimitOpt = None,
    cleanup: CleanupOpt = False,
) -> None:
    """Rehearse the activation for real on the DRP server; DNS is never changed.

    Same preflight, order gate and restore steps as `drp activate`; the service is checked
    through the DRP address; ends on the RTO/RPO report. [bold]Writes to the DRP server and
    its databases[/bold] once the order is given. --order-by and --reference answer the gate
    for unattended drills. --cleanup puts the DRP server back as it was afterwards.
    """
    _check_order_options(order_by, reference)
    answerer = TerminalGate(order_by, reference, acknowledge=True)
    _operate(
        "drill",
        config,
        operation_id,
        environments,
        gate_timeout,
        force,
        bwlimit,
        answerer,
        cleanup=cleanup,
    )


def activate_command(
    config: ConfigOpt = Path("config/site.yaml"),
    operation_id: OperationOpt = None,
    environments: EnvOpt = None,
    order_by: OrderByOpt = None,
    reference: ReferenceOpt = None,
    acknowledge_data_loss: Annotated[
        bool,
        typer.Option(
            "--acknowledge-data-loss",
            help="With --order-by: the person who orders acknowledged the data loss.",
        ),
    ] = False,
    gate_timeout: TimeoutOpt = 24 * 3600,
    force: ForceOpt = False,
    bwlimit: BwlimitOpt = None,
) -> None:
    """Activate the DRP: restore on the DRP server and [bold]switch DNS to it[/bold].

    Runs the read-only preflight, then waits for the customer's order (Prefect UI, `drp
    approve`, or a prompt on this terminal), then copies files and configurations, imports the
    databases, checks the service through the DRP address, opens the "DRP finalized" ticket,
    switches DNS and checks again through the name. Run again with --operation-id to resume.
    """
    if order_by and not (reference and acknowledge_data_loss):
        raise _fail(ValueError("--order-by needs --reference and --acknowledge-data-loss"), 2)
    _check_order_options(order_by, reference)
    answerer = TerminalGate(order_by, reference, acknowledge=acknowledge_data_loss)
    _operate("activate", config, operation_id, environments, gate_timeout, force, bwlimit, answerer)


def return_command(
    config: ConfigOpt = Path("config/site.yaml"),
    operation_id: OperationOpt = None,
    environments: EnvOpt = None,
    order_by: OrderByOpt = None,
    reference: ReferenceOpt = None,
    gate_timeout: TimeoutOpt = 24 * 3600,
    force: Annotated[
        bool,
        typer.Option(
            "--force",
            help="Switch a DNS record back even when its current value is neither the DRP "
            "server's nor production's (someone changed it): check who did first.",
        ),
    ] = False,
    bwlimit: BwlimitOpt = None,
) -> None:
    """Return to production: copy back from the DRP server and [bold]switch DNS back[/bold].

    Runs the read-only preflight (both sides reachable, databases answer, room on production,
    the activation being reversed), then waits for the customer's order. Then: the files are
    pre-synced to production while the DRP server still serves; production enters maintenance
    and the DRP server freezes (downtime starts); the last changes and the databases are
    copied and proved equal on both sides; the "return to production" ticket is opened; DNS
    goes back; production's maintenance is lifted and the service checked (downtime ends).
    What production held is kept aside, never deleted. The DRP server stays frozen. Run again
    with --operation-id to resume.
    """
    _check_order_options(order_by, reference)
    answerer = TerminalGate(order_by, reference, acknowledge=True)
    _operate("return", config, operation_id, environments, gate_timeout, force, bwlimit, answerer)


# -- approve -----------------------------------------------------------------------------------
def approve_command(
    flow_run_id: Annotated[str, typer.Argument(help="The paused flow run's id (from the UI).")],
    by: Annotated[str, typer.Option("--by", help="Who orders (full name).", show_default=False)],
    reference: Annotated[
        str, typer.Option("--reference", help="The order's reference.", show_default=False)
    ],
    refuse: Annotated[bool, typer.Option("--refuse", help="Refuse: nothing is changed.")] = False,
    acknowledge_data_loss: Annotated[
        bool,
        typer.Option(
            "--acknowledge-data-loss", help="Acknowledge the data loss shown in the brief."
        ),
    ] = False,
    config: Annotated[
        Path | None,
        typer.Option(
            "--config",
            "-c",
            envvar="DRP_CONFIG",
            help="An inventory whose env_file names the Prefect server (PREFECT_API_URL and its "
            "auth), as for `drp drill`. Default: PREFECT_API_URL from the environment.",
            show_default=False,
        ),
    ] = None,
    code: Annotated[
        str | None,
        typer.Option(
            "--code",
            help="The order code the customer received (sites with orders.codes), e.g. K7Q2-M9XD.",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Answer the order gate of a paused run, through the Prefect API (as the UI does).

    Needs the Prefect server the run uses: PREFECT_API_URL (and PREFECT_API_AUTH_STRING when
    the server asks for one), from the environment or from the env_file of the inventory given
    with -c. Prints the brief first.
    """
    if config is not None:
        try:
            site = load_site(config)
        except DrpError as err:
            raise _fail(err) from None
        _use_server(site)
    from prefect.settings import PREFECT_API_URL

    if not PREFECT_API_URL.value():
        raise _fail(
            DrpError(
                "PREFECT_API_URL is not set: set it to the API of the Prefect server the run "
                "uses (for example http://127.0.0.1:4200/api), or give the inventory whose "
                "env_file names it with -c"
            ),
            2,
        )
    try:
        plan_hash = _gate().paused_plan_hash(flow_run_id)
        brief = _gate().paused_brief(flow_run_id)
        if brief:
            from rich.markdown import Markdown

            console.print(Markdown(brief))
        answer = {
            "ordered_by": by,
            "reference": reference,
            "decision": "refuse" if refuse else "activate",
            "data_loss_acknowledged": acknowledge_data_loss,
            "plan_hash": plan_hash,
            "channel": VIA_APPROVE,
            **({"order_code": code} if code else {}),
        }
        _gate().answer_gate(flow_run_id, answer)
    except (DrpError, ValueError) as err:
        raise _fail(err) from None
    console.print(f"Order sent: {answer['decision']} by {by} (reference {reference}).")


# -- report ------------------------------------------------------------------------------------
def _show_report(config: Path, operation_id: str, site: Site | None = None) -> None:
    site = site or load_site(config)
    report = load_report(reports_dir(site), operation_id)
    console.print(report_renderable(report))
    console.print(f"Report: {reports_dir(site) / (operation_id + '.json')}")


def report_command(
    operation_id: Annotated[str, typer.Argument(help="The operation id.")],
    config: ConfigOpt = Path("config/site.yaml"),
    as_json: Annotated[bool, typer.Option("--json", help="Print the JSON report.")] = False,
) -> None:
    """Show the report of an operation again: timeline, order, RTO and RPO. It is read from
    the operation's record on the DRP host (what every worker sees); when the DRP host cannot
    be reached, from the copy in the reports directory, and the command says so."""
    from runbooks.records import OperationRecords

    try:
        site = load_site(config)
        directory = reports_dir(site)
        with OperationRecords(site, directory) as records:
            found = records.load(operation_id)
            where = records.where(operation_id)
        if found.report is None:
            known = sorted(p.stem for p in directory.glob("*.json")) if directory.exists() else []
            hint = f"; known here: {', '.join(known[-5:])}" if known else ""
            raise DrpError(
                f"no record of operation {operation_id!r} on the DRP host ({where}) nor in "
                f"{directory}{hint}"
            )
    except DrpError as err:
        raise _fail(err) from None
    if found.note:
        errors.print(f"[yellow]note:[/] {escape(found.note)}", highlight=False)
    report = found.report
    if as_json:
        console.print_json(json.dumps(report.data))
    else:
        console.print(report_renderable(report))
        console.print(f"Read from {found.source}", highlight=False)
