"""The order gate inside a flow run, and the ways to answer it from outside.

In the flow: `await_order()` pauses the run (or suspends it when the run comes from a
deployment, so no process is held while the customer decides) with the `Order` form and the
activation brief. From outside: `answer_gate()` resumes a paused run through the Prefect API,
exactly as the UI's Resume dialog does; `drp approve` and the terminal prompt use it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any
from uuid import UUID

from prefect import get_run_logger
from prefect.client.orchestration import get_client
from prefect.context import FlowRunContext
from prefect.exceptions import FlowPauseTimeout
from prefect.flow_runs import pause_flow_run, resume_flow_run, suspend_flow_run

from runbooks.errors import DrpError
from runbooks.gate import Order, OrderRecord, order_form, order_problems

POLL_SECONDS = 2


class GateTimeout(DrpError):
    """Nobody answered the order form before the gate's timeout."""


def _in_deployment() -> bool:
    ctx = FlowRunContext.get()
    return bool(ctx and ctx.flow_run and ctx.flow_run.deployment_id)


def await_order(brief_markdown: str, plan_hash: str, timeout_seconds: int) -> OrderRecord:
    """Wait for a complete answer; return it (decision activate or refuse).

    An incomplete answer is logged with what is missing and the gate opens again. Raises
    `GateTimeout` when nobody answers in time.
    """
    log = get_run_logger()
    suspend = _in_deployment()
    message = ""
    while True:
        form = order_form(message + brief_markdown, plan_hash)
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
                    wait_for_input=form, timeout=timeout_seconds, poll_interval=POLL_SECONDS
                )
        except FlowPauseTimeout as err:
            raise GateTimeout(
                f"no order was given within {timeout_seconds} s; nothing was changed"
            ) from err
        problems = order_problems(order, plan_hash)
        if not problems:
            via = "prefect (UI or API)"
            return OrderRecord.from_order(order, via)
        log.error(
            "The answer cannot be taken as an order: %s. The gate is open again.",
            "; ".join(problems),
        )
        message = "> **The previous answer was not taken:** " + "; ".join(problems) + "\n\n"


# -- answering from outside the run ------------------------------------------------------------
def answer_gate(flow_run_id: UUID | str, answer: dict[str, Any]) -> None:
    """Resume a paused run with the order; the server checks it against the form's schema."""
    problems = order_problems(Order(**_with_defaults(answer)), answer.get("plan_hash", ""))
    if problems:
        raise DrpError("the answer was not sent: " + "; ".join(problems))
    try:
        resume_flow_run(UUID(str(flow_run_id)), run_input=answer)
    except RuntimeError as err:  # Prefect's way of saying the server refused the input
        raise DrpError(f"the Prefect server refused the answer: {err}") from err


def _with_defaults(answer: dict[str, Any]) -> dict[str, Any]:
    return {"ordered_by": "", "reference": "", **answer}


def paused_plan_hash(flow_run_id: UUID | str) -> str:
    """The plan hash the paused run's form was prefilled with (what the approver approves)."""
    from prefect.input.run_input import keyset_from_paused_state

    with get_client(sync_client=True) as client:
        run = client.read_flow_run(UUID(str(flow_run_id)))
        if not run.state or not run.state.is_paused():
            state = run.state.name if run.state else "unknown"
            raise DrpError(f"flow run {flow_run_id} is not waiting for an order (state: {state})")
        keyset = keyset_from_paused_state(run.state)
        value = client.read_flow_run_input(UUID(str(flow_run_id)), keyset["schema"])
    import json

    schema = json.loads(value)
    return str(schema.get("properties", {}).get("plan_hash", {}).get("default", ""))


def wait_until_paused(
    flow_run_id_getter: Callable[[], UUID | None], stop: Callable[[], bool]
) -> UUID | None:
    """Poll until the run is paused for the order; None if `stop()` says give up first."""
    while not stop():
        run_id = flow_run_id_getter()
        if run_id is not None:
            with get_client(sync_client=True) as client:
                state = client.read_flow_run(run_id).state
            if state and state.is_paused():
                return run_id
        time.sleep(0.5)
    return None
