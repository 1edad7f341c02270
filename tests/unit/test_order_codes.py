"""Order codes: bound to the operation, the plan and an expiry, never stored, and refused with
the reason when missing, wrong or expired (an expired one gets a new one sent)."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest

from runbooks.order_codes import CodeMessage, OrderCodes, normalized, order_code
from runbooks.report import Report

KEY = b"site order secret"
CODE = re.compile(r"Order code: ([A-Z2-7]{4}-[A-Z2-7]{4})")


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 12, 2, 2, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def sent() -> list[CodeMessage]:
    return []


@pytest.fixture
def codes(clock: Clock, sent: list[CodeMessage]) -> OrderCodes:
    report = Report("activate-1", "activate", "lab", started=clock.now)
    saved: list[Report] = []

    def send(message: CodeMessage) -> str:
        sent.append(message)
        return "file tickets.jsonl"

    return OrderCodes(
        key=KEY,
        operation_id="activate-1",
        kind="activate",
        site="lab",
        contacts=("orders@1stkyc.test",),
        valid_minutes=30,
        report=report,
        save=saved.append,
        send=send,
        now=clock,
    )


def the_code(message: CodeMessage) -> str:
    found = CODE.search(message.body)
    assert found, message.body
    return found.group(1)


def test_a_code_is_bound_to_its_operation_plan_and_expiry() -> None:
    code = order_code(KEY, "activate-1", "abc123", "2026-12-02T02:30:00+00:00")
    assert re.fullmatch(r"[A-Z2-7]{4}-[A-Z2-7]{4}", code)
    assert code == order_code(KEY, "activate-1", "abc123", "2026-12-02T02:30:00+00:00")
    others = {
        order_code(KEY, "activate-2", "abc123", "2026-12-02T02:30:00+00:00"),
        order_code(KEY, "activate-1", "abc124", "2026-12-02T02:30:00+00:00"),
        order_code(KEY, "activate-1", "abc123", "2026-12-02T02:31:00+00:00"),
        order_code(b"another secret", "activate-1", "abc123", "2026-12-02T02:30:00+00:00"),
    }
    assert code not in others and len(others) == 4
    assert normalized(" k7q2 - m9xd ") == "K7Q2M9XD"


def test_the_gate_sends_one_code_to_the_contacts_and_takes_only_that_one(
    codes: OrderCodes, sent: list[CodeMessage]
) -> None:
    said = codes.issue("abc123")
    assert said == (
        "an order code was sent to orders@1stkyc.test at 02:00 UTC; it is valid until "
        "2026-12-02 02:30 UTC"
    )
    [message] = sent
    assert message.recipients == ("orders@1stkyc.test",)
    assert message.event == "order-code-20261202t023000"
    code = the_code(message)
    assert codes.issue("abc123") == said and len(sent) == 1  # reopened: no second code
    stored = str(codes.report.data)
    assert code not in stored and normalized(code) not in stored  # never stored

    assert codes.problem("", "abc123") == (
        f"the order code is missing (field 'Order code') ({said})"
    )
    wrong = codes.problem("AAAA-AAAA", "abc123")
    assert wrong is not None and wrong.startswith("the order code is wrong")
    assert "orders@1stkyc.test" in wrong
    assert codes.problem(code, "abc999") is not None  # another plan: not this code
    assert codes.problem(code.lower().replace("-", " "), "abc123") is None
    assert codes.proof("abc123").startswith("order code sent to orders@1stkyc.test at ")


def test_an_expired_code_is_refused_and_a_new_one_sent(
    codes: OrderCodes, clock: Clock, sent: list[CodeMessage]
) -> None:
    codes.issue("abc123")
    first = the_code(sent[0])
    clock.now += timedelta(minutes=31)
    problem = codes.problem(first, "abc123")
    assert problem is not None
    assert problem.startswith(
        "the order code given expired at 2026-12-02 02:30 UTC; a new one was sent (an order "
        "code was sent to orders@1stkyc.test at 02:31 UTC"
    )
    assert len(sent) == 2
    second = the_code(sent[1])
    assert second != first
    assert codes.problem(second, "abc123") is None
    # The old code given again (a replayed answer) still says it expired, sends nothing more.
    again = codes.problem(first, "abc123")
    assert again is not None and again.startswith("the order code given expired")
    assert len(sent) == 2
