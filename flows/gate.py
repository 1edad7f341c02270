"""The order gate inside a flow run, and the ways to answer it from outside.

In the flow: `await_order()` pauses the run (or suspends it when the run comes from a
deployment, so no process is held while the customer decides) with the `Order` form and the
activation brief. From outside: `answer_gate()` resumes a paused run through the Prefect API,
exactly as the UI's Resume dialog does; `drp approve` and the terminal prompt use it.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import replace
from typing import Any
from uuid import UUID

import httpx
from prefect import get_run_logger
from prefect.client.orchestration import get_client
from prefect.client.schemas.objects import State
from prefect.context import FlowRunContext, SyncClientContext
from prefect.exceptions import FlowPauseTimeout
from prefect.flow_runs import pause_flow_run, resume_flow_run, suspend_flow_run
from prefect.input.run_input import Keyset

from flows.order_form import Order, order_form
from runbooks.errors import DrpError
from runbooks.gate import GateTimeout, OrderRecord, order_problems, via_of
from runbooks.order_codes import OrderCodes

POLL_SECONDS = 2
# How often a paused run looks for its answer when a listener answers it at once (drp drill
# --order-by): the order then takes a tenth of a second, not up to POLL_SECONDS.
QUICK_POLL_SECONDS = 0.05
FORM_WAIT_SECONDS = 10.0  # how long a run seen paused may take to save its form

# Called (flow run id, plan hash, brief) just before a run in this process waits for the order:
# the CLI answers from its options or a prompt, through the same API as the UI, once the form
# is saved (`wait_for_form`). A listener returns True when it answers at once (from options),
# so the run looks for the answer more often.
GateListener = Callable[[UUID, str, str], bool | None]
_gate_listeners: list[GateListener] = []


class _SavedForms:
    """The order forms saved by the runs of this process, by flow run, with their fields: the
    answering side in this process learns the moment a form can be answered, and what it asks,
    without asking the API."""

    def __init__(self) -> None:
        self._changed = threading.Condition()
        self._fields: dict[UUID, dict[str, Any]] = {}

    def forget(self, run_id: UUID) -> None:
        with self._changed:
            self._fields.pop(run_id, None)

    def saved(self, run_id: UUID, fields: dict[str, Any]) -> None:
        with self._changed:
            self._fields[run_id] = fields
            self._changed.notify_all()

    def wait(self, run_id: UUID, stop: Callable[[], bool]) -> dict[str, Any] | None:
        with self._changed:
            while not stop():
                if run_id in self._fields:
                    return self._fields[run_id]
                self._changed.wait(0.1)  # `stop` is looked at this often
        return None


_saved_forms = _SavedForms()


def add_gate_listener(listener: GateListener) -> None:
    _gate_listeners.append(listener)


def remove_gate_listener(listener: GateListener) -> None:
    if listener in _gate_listeners:
        _gate_listeners.remove(listener)


def _in_deployment() -> bool:
    ctx = FlowRunContext.get()
    return bool(ctx and ctx.flow_run and ctx.flow_run.deployment_id)


def await_order(
    brief: Callable[[], str],
    plan_hash: str,
    timeout_seconds: int,
    codes: OrderCodes | None = None,
) -> OrderRecord:
    """Wait for a complete answer; return it (decision activate or refuse).

    With `codes`, each time the form opens a valid order code is sent to the customer's order
    contacts (unless one still is), the form asks for it, and an order is taken only with it:
    a missing, wrong or expired one is not taken, and says why, like any incomplete answer.

    `brief()` gives the markdown shown above the form; it is called each time the form opens,
    so the data loss it states is as of then. An incomplete answer is logged with what is
    missing and the gate opens again, its form keeping the name and reference typed. Raises
    `GateTimeout` when nobody answers in time.

    Why an answer was not taken is where the person answering looks: the first line of the
    reopened form, and the message of the Paused/Suspended state the run waits in again (the
    run's Details in the UI, `prefect flow-run inspect`), besides the run's log.

    From a deployment, every answer restarts the run from the top: this loop then replays the
    answers already given (Prefect returns each stored input again) up to the open gate.
    """
    log = get_run_logger()
    suspend = _in_deployment()
    message = ""
    not_taken = ""
    typed: dict[str, str] = {}
    while True:
        code_note = codes.issue(plan_hash) if codes is not None else ""
        if code_note:
            log.info("For the order of plan %s, %s.", plan_hash, code_note)
        header = (
            f"> **Order code:** {code_note}. Type it in the field 'Order code'.\n\n"
            if code_note
            else ""
        )
        text = header + brief()
        ctx = FlowRunContext.get()
        run_id = ctx.flow_run.id if ctx and ctx.flow_run else None
        form = order_form(message + text, plan_hash, code_note=code_note, **typed)
        form = _announced(form, run_id, not_taken)
        at_once = False
        if run_id is not None:
            _saved_forms.forget(run_id)  # the form opening now is not saved yet
            for listener in list(_gate_listeners):
                at_once = bool(listener(run_id, plan_hash, text)) or at_once
        log.info(
            "Waiting for the order (plan %s): answer in the Prefect UI (Resume) or with "
            "`drp approve`; the gate closes in %s s",
            plan_hash,
            timeout_seconds,
        )
        try:
            if suspend:
                order = suspend_flow_run(wait_for_input=form, timeout=timeout_seconds)
            else:
                order = pause_flow_run(
                    wait_for_input=form,
                    timeout=timeout_seconds,
                    poll_interval=QUICK_POLL_SECONDS if at_once else POLL_SECONDS,
                )
        except FlowPauseTimeout as err:
            raise GateTimeout(
                f"no order was given within {timeout_seconds} s; nothing was changed"
            ) from err
        finally:
            if run_id is not None:
                _saved_forms.forget(run_id)
        problems = order_problems(order, plan_hash)
        if codes is not None and order.decision == "activate":
            wrong = codes.problem(str(getattr(order, "order_code", "") or ""), plan_hash)
            problems += [wrong] if wrong else []
        if not problems:
            record = OrderRecord.from_order(order, via_of(getattr(order, "channel", "")))
            if codes is not None and order.decision == "activate":
                record = replace(record, code=codes.proof(plan_hash))
            return record
        log.error(
            "The answer cannot be taken as an order: %s. The gate is open again.",
            "; ".join(problems),
        )
        message = "> **The previous answer was not taken:** " + "; ".join(problems) + "\n\n"
        not_taken = (
            f"The previous answer was not taken: {'; '.join(problems)}. "
            "The order form is open again (Resume)."
        )
        typed = {"ordered_by": order.ordered_by, "reference": order.reference}


def _announced(form: type[Order], run_id: UUID | None, message: str) -> type[Order]:
    """`form`, opening under a Paused/Suspended state whose message is `message` (if any), and
    announced to this process's answering side once saved (`wait_for_form`).

    Prefect's pause and suspend take no message: they propose the state, then save the form
    (`RunInput.save`). The state is stated again with the message in between, when no answer
    can be accepted yet (the server checks an answer against the saved form, and refuses one
    while there is none), so no answer is lost to it.
    """
    fields = form.model_json_schema().get("properties", {})

    class Announced(form):  # type: ignore[valid-type,misc]
        @classmethod
        def save(cls, keyset: Keyset, flow_run_id: UUID | None = None) -> None:
            if message:
                _state_message(keyset, message, flow_run_id)
            super().save(keyset, flow_run_id)
            saved_for = flow_run_id or run_id
            if saved_for is not None:
                _saved_forms.saved(saved_for, fields)

    Announced.__name__ = form.__name__
    Announced.__qualname__ = form.__qualname__
    Announced._description = form._description
    return Announced


def _state_message(keyset: Keyset, message: str, flow_run_id: UUID | None) -> None:
    """The run's waiting state again, the same but for its message (the form not yet saved)."""
    ctx = FlowRunContext.get()
    run_id = flow_run_id or (ctx.flow_run.id if ctx and ctx.flow_run else None)
    if run_id is None:
        return
    try:
        with get_client(sync_client=True) as client:
            state = client.read_flow_run(run_id).state
            if (
                state is None
                or not state.is_paused()
                or state.state_details.run_input_keyset != keyset
            ):
                return
            details = state.state_details.model_copy(update={"transition_id": None})
            again = State(type=state.type, name=state.name, message=message, state_details=details)
            client.set_flow_run_state(run_id, again, force=True)
    except Exception as err:  # the form and the log still say why
        get_run_logger().warning("could not put the reason in the run's state: %s", err)


# -- answering from outside the run ------------------------------------------------------------
def answering_client() -> AbstractContextManager[Any]:
    """A Prefect API client for this thread, made now (30-80 ms, mostly its TLS context): an
    answer sent from this thread (`answer_gate`) then goes through it without that wait."""
    return SyncClientContext.get_or_create()


def answer_gate(flow_run_id: UUID | str, answer: dict[str, Any]) -> None:
    """Resume a paused run with the order; the server checks it against the form's schema."""
    # Not validated here: the checks below say in words what a pydantic error would not.
    order = Order.model_construct(**_with_defaults(answer))
    problems = order_problems(order, answer.get("plan_hash", ""))
    if problems:
        raise DrpError("the answer was not sent: " + "; ".join(problems))
    try:
        resume_flow_run(flow_run_uuid(flow_run_id), run_input=answer)
    except RuntimeError as err:  # Prefect's way of saying the server refused the input
        raise DrpError(f"the Prefect server refused the answer: {err}") from err


def _with_defaults(answer: dict[str, Any]) -> dict[str, Any]:
    return {"ordered_by": "", "reference": "", **answer}


def flow_run_uuid(flow_run_id: UUID | str) -> UUID:
    """The id as a UUID, or a DrpError saying what a flow run id looks like."""
    try:
        return UUID(str(flow_run_id))
    except ValueError:
        raise DrpError(
            f"{flow_run_id!r} is not a flow run id: expected one like "
            "0f8e2b1c-3d4a-4b5c-9d6e-7f8091a2b3c4 (the run's page in the Prefect UI, or the "
            "run's log, shows it)"
        ) from None


def _paused_input(flow_run_id: UUID | str, part: str) -> str | None:
    from prefect.exceptions import ObjectNotFound
    from prefect.input.run_input import keyset_from_paused_state

    run_id = flow_run_uuid(flow_run_id)
    with get_client(sync_client=True) as client:
        try:
            run = client.read_flow_run(run_id)
        except ObjectNotFound:
            raise DrpError(
                f"no flow run {run_id} on the Prefect server at {client.api_url}: check the id, "
                "and that PREFECT_API_URL names the server the run uses"
            ) from None
        except httpx.HTTPError as err:
            raise DrpError(f"cannot reach the Prefect server at {client.api_url}: {err}") from None
        if not run.state or not run.state.is_paused():
            state = run.state.name if run.state else "unknown"
            raise DrpError(f"flow run {run_id} is not waiting for an order (state: {state})")
        keyset = keyset_from_paused_state(run.state)
        # Prefect saves the form (its schema, then its description) just after the run pauses:
        # a run seen paused a moment ago may not have it yet.
        deadline = time.monotonic() + FORM_WAIT_SECONDS
        while True:
            try:
                return client.read_flow_run_input(run_id, keyset[part])
            except httpx.HTTPStatusError as err:
                if err.response.status_code != 404:
                    raise
            if time.monotonic() >= deadline:
                if part == "description":  # optional
                    return None
                raise DrpError(
                    f"flow run {run_id} is paused, but its order form was not saved within "
                    f"{FORM_WAIT_SECONDS:g} s: see the run's log"
                )
            time.sleep(0.1)


def paused_schema(flow_run_id: UUID | str) -> dict[str, Any]:
    """The JSON schema the paused run's form is rendered from (defaults are what it shows)."""
    schema = json.loads(_paused_input(flow_run_id, "schema") or "{}")
    return schema if isinstance(schema, dict) else {}


def paused_plan_hash(flow_run_id: UUID | str) -> str:
    """The plan hash the paused run's form was prefilled with (what the approver approves)."""
    return str(
        paused_schema(flow_run_id).get("properties", {}).get("plan_hash", {}).get("default", "")
    )


def paused_brief(flow_run_id: UUID | str) -> str:
    """The activation brief shown above the paused run's form."""
    value = _paused_input(flow_run_id, "description")
    if value and value.startswith('"'):
        return str(json.loads(value))
    return value or ""


def wait_for_form(flow_run_id: UUID, stop: Callable[[], bool]) -> dict[str, Any] | None:
    """The fields of the order form of a run of this process (their JSON schemas, by name),
    once the form is saved and can be answered; None if `stop()` says give up first."""
    return _saved_forms.wait(flow_run_id, stop)
