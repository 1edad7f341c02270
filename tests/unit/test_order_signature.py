"""The order kept in a report: signed with the site secret, valid for a while, for the plan
with its options; anything else makes a resume ask for the order again, saying why."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from runbooks.engine import OperationRun, Runbook, run_preflight
from runbooks.gate import (
    VIA_API,
    VIA_APPROVE,
    VIA_UI,
    OrderPolicy,
    OrderRecord,
    option_facts,
    order_mac,
    via_of,
)
from runbooks.report import Report
from runbooks.steps import Change, Check, ReadOnlyStep

OP = "activate-20261201-1000-abcd"
KEY = b"site-secret-for-tests"


class Fine(ReadOnlyStep):
    def __init__(self) -> None:
        super().__init__("preflight-fine", "Everything reachable")

    def describe(self) -> list[Change]:
        return [Change("check", "world")]

    def check(self) -> Check:
        return Check(True, "reachable")


def make_run(policy: OrderPolicy, *, force: bool = False) -> OperationRun:
    runbook = Runbook("activate", [Fine()], [], facts=option_facts(force=force), done="done")
    report = Report(OP, "activate", "lab", started=datetime.now(UTC))
    return OperationRun(
        runbook, runbook.plan(OP, "lab"), report, save=lambda _r: None, orders=policy
    )


def given(plan_hash: str, via: str = VIA_UI, at: datetime | None = None) -> OrderRecord:
    return OrderRecord(
        "Jane Customer", "REF-1", "activate", True, plan_hash, at or datetime.now(UTC), via
    )


def first_then_resume(
    policy: OrderPolicy, edit: Any = None, *, force_on_resume: bool = False
) -> tuple[OperationRun, list[str]]:
    """Order an operation, (maybe) edit its stored order, then resume it: what the resume
    asked, and the resumed run."""
    first = make_run(policy)
    first.run(run_preflight(first.runbook.preflight), lambda h: given(h))
    stored = dict(first.report.order or {})
    if edit:
        edit(stored)
    again = make_run(policy, force=force_on_resume)
    again.report.order = stored
    asked: list[str] = []
    again.run(
        run_preflight(again.runbook.preflight), lambda h: asked.append(h) or given(h, VIA_APPROVE)
    )
    return again, asked


def test_a_signed_order_for_this_plan_stands_on_resume() -> None:
    again, asked = first_then_resume(OrderPolicy(KEY))
    assert asked == []
    assert again.report.outcome == "succeeded"
    assert again.report.order is not None and len(again.report.order["hmac"]) == 64


def test_an_order_changed_by_hand_in_the_report_is_asked_for_again_saying_why() -> None:
    again, asked = first_then_resume(
        OrderPolicy(KEY), lambda order: order.update(ordered_by="Mallory")
    )
    assert asked == [again.plan.hash]
    assert "does not carry a valid signature" in again.asked_again
    assert "asked for again" in again.asked_again
    assert again.report.order is not None
    assert (again.report.order["ordered_by"], again.report.order["via"]) == (
        "Jane Customer",
        VIA_APPROVE,
    )


def test_an_order_written_into_the_report_without_signature_is_asked_for_again() -> None:
    again, asked = first_then_resume(OrderPolicy(KEY), lambda order: order.pop("hmac"))
    assert len(asked) == 1
    assert "does not carry a valid signature" in again.asked_again


def test_an_order_signed_with_another_secret_is_asked_for_again() -> None:
    def resign(order: dict[str, Any]) -> None:
        order["hmac"] = order_mac(b"another-secret", OP, order)

    _again, asked = first_then_resume(OrderPolicy(KEY), resign)
    assert len(asked) == 1


def test_an_expired_order_is_asked_for_again() -> None:
    def age(order: dict[str, Any]) -> None:
        order["answered_at"] = (datetime.now(UTC) - timedelta(hours=25)).isoformat()
        order["hmac"] = order_mac(KEY, OP, order)  # signed right: only its age is wrong

    again, asked = first_then_resume(OrderPolicy(KEY, valid_hours=24), age)
    assert len(asked) == 1
    assert "expired at" in again.asked_again
    assert "orders.valid_hours: 24" in again.asked_again


def test_without_an_order_secret_a_stored_order_cannot_be_proved_and_is_asked_again() -> None:
    again, asked = first_then_resume(OrderPolicy(None))
    assert len(asked) == 1
    assert "names no order secret (orders.secret)" in again.asked_again


def test_force_is_part_of_the_plan_so_a_resume_with_force_asks_again() -> None:
    assert make_run(OrderPolicy(KEY)).plan.hash != make_run(OrderPolicy(KEY), force=True).plan.hash
    again, asked = first_then_resume(OrderPolicy(KEY), force_on_resume=True)
    assert len(asked) == 1
    assert "the order stored was for plan" in again.asked_again
    assert dict(again.plan.facts)["option --force"] == "yes"


def test_the_channel_recorded_is_the_one_declared_and_api_when_none_is() -> None:
    assert via_of("") == VIA_API
    assert via_of(VIA_UI) == VIA_UI
    assert via_of("drp approve") == VIA_APPROVE
    assert via_of("my script") == "Prefect API (declared 'my script')"
    assert "option --cleanup" not in option_facts(force=False)
    assert option_facts(force=False, cleanup=True)["option --cleanup"] == "yes"
