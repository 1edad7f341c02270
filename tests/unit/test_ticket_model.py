"""Tickets without servers: validation, sentences, the email and webhook shapes, dry runs."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from providers.tickets import (
    FileTicketBackend,
    SentRecord,
    SmtpTicketBackend,
    Ticket,
    TicketError,
    WebhookTicketBackend,
)

WHEN = dt.datetime(2026, 11, 29, 10, 2, 41, tzinfo=dt.UTC)


def ticket(event: str = "drp-finalized", operation_id: str = "op-123") -> Ticket:
    return Ticket(operation_id, event, "DRP finalized", "All restored.", "gra", WHEN)


class MustNotReveal:
    """A secret that fails the test if anyone asks for its value."""

    def reveal(self) -> str:
        raise AssertionError("secret revealed outside a send")

    def __repr__(self) -> str:
        return "***"


def smtp(tmp_path: Path, **options: object) -> SmtpTicketBackend:
    settings: dict[str, object] = {
        "host": "127.0.12.25",
        "port": 2525,
        "sender": "DRP <drp@drp.example.org>",
        "recipients": ["ops@example.org"],
        "ledger": tmp_path / "sent.jsonl",
    }
    settings.update(options)
    return SmtpTicketBackend("ops-mail", **settings)  # type: ignore[arg-type]


def test_skip_reason_reads_as_a_sentence() -> None:
    record = SentRecord("op-123", "drp-finalized", "webhook", "webhook", WHEN, "HTTP 200")

    assert record.reason() == (
        "ticket drp-finalized for operation op-123 already sent by webhook "
        "at 2026-11-29T10:02Z (HTTP 200)"
    )


def test_skip_reason_names_the_backend_and_says_email_for_smtp() -> None:
    record = SentRecord("op-1", "drill-finished", "smtp", "ops-mail", WHEN, "Message-ID <x@y>")

    assert record.reason() == (
        "ticket drill-finished for operation op-1 already sent by email ops-mail "
        "at 2026-11-29T10:02Z (Message-ID <x@y>)"
    )


@pytest.mark.parametrize(
    ("operation_id", "event", "title", "expected"),
    [
        ("op 123", "drp-finalized", "t", "invalid operation id 'op 123': use letters, digits"),
        ("op-1\n", "drp-finalized", "t", "invalid operation id"),
        ("op-1", "DRP_Finalized", "t", "invalid ticket event 'DRP_Finalized': use lowercase"),
        ("op-1", "drp-finalized", "DRP\r\nBcc: x@y", "give one non-empty line of text"),
        ("op-1", "drp-finalized", " ", "invalid ticket title"),
    ],
)
def test_ticket_refuses_values_unsafe_in_headers(
    operation_id: str, event: str, title: str, expected: str
) -> None:
    with pytest.raises(TicketError, match=expected):
        Ticket(operation_id, event, title, "body", "gra", WHEN)


def test_ticket_needs_an_aware_time_and_keeps_it_in_utc() -> None:
    with pytest.raises(TicketError, match="has no timezone"):
        Ticket("op-1", "drp-finalized", "t", "b", "gra", dt.datetime(2026, 11, 29, 12, 0))

    paris = dt.timezone(dt.timedelta(hours=1))
    moved = Ticket(
        "op-1", "drp-finalized", "t", "b", "gra", dt.datetime(2026, 11, 29, 11, tzinfo=paris)
    )
    assert moved.to_data()["time"] == "2026-11-29T10:00:00+00:00"
    assert moved.key == "op-1:drp-finalized"


def test_message_id_depends_only_on_operation_and_event(tmp_path: Path) -> None:
    first, second = smtp(tmp_path), smtp(tmp_path, port=25)

    assert (
        first.build_message(ticket())["Message-ID"] == "<drp.op-123.drp-finalized@drp.example.org>"
    )
    assert (
        second.build_message(ticket())["Message-ID"] == first.build_message(ticket())["Message-ID"]
    )
    assert first.message_id("op-123", "drill-finished") != first.message_id(
        "op-123", "drp-finalized"
    )
    assert first.message_id("op-124", "drp-finalized") != first.message_id(
        "op-123", "drp-finalized"
    )


def test_email_subject_and_headers_name_the_operation_and_event(tmp_path: Path) -> None:
    message = smtp(tmp_path).build_message(ticket())

    assert message["Subject"] == "[DRP gra] DRP finalized (drp-finalized, operation op-123)"
    assert message["To"] == "ops@example.org"
    assert message["Date"] == "Sun, 29 Nov 2026 10:02:41 +0000"
    assert (message["X-DRP-Operation"], message["X-DRP-Event"]) == ("op-123", "drp-finalized")


def test_smtp_login_without_starttls_is_refused(tmp_path: Path) -> None:
    with pytest.raises(TicketError, match="password in clear; set starttls to true"):
        smtp(tmp_path, user="drp-bot", password="pw")
    with pytest.raises(TicketError, match="give both user and password"):
        smtp(tmp_path, starttls=True, password="pw")
    with pytest.raises(TicketError, match="no recipients"):
        smtp(tmp_path, recipients=[])


def test_smtp_describe_shows_the_route_but_never_asks_for_the_password(tmp_path: Path) -> None:
    backend = smtp(tmp_path, starttls=True, user="drp-bot", password=MustNotReveal())

    described = backend.describe(ticket())

    assert described == (
        "would email ticket drp-finalized for operation op-123 ('DRP finalized') from "
        "DRP <drp@drp.example.org> to ops@example.org via 127.0.12.25:2525 with STARTTLS, "
        "login as drp-bot, Message-ID <drp.op-123.drp-finalized@drp.example.org>; "
        f"recorded in {tmp_path / 'sent.jsonl'}"
    )


def test_plain_string_password_is_masked_in_the_backend(tmp_path: Path) -> None:
    backend = smtp(tmp_path, starttls=True, user="drp-bot", password="pa55-plain")

    assert "pa55-plain" not in repr(vars(backend))


def test_webhook_target_hides_credentials_and_query_values(tmp_path: Path) -> None:
    backend = WebhookTicketBackend(
        "desk",
        url="https://bot:pw@desk.example.org:8443/api/hook?token=abc&team=ops",
        ledger=tmp_path / "sent.jsonl",
    )

    assert backend.target == "https://desk.example.org:8443/api/hook?token=***&team=***"


def test_webhook_describe_with_secret_url_and_headers_reveals_nothing(tmp_path: Path) -> None:
    backend = WebhookTicketBackend(
        "desk",
        url=MustNotReveal(),
        ledger=tmp_path / "sent.jsonl",
        headers={"Authorization": MustNotReveal()},
        timeout=7.5,
    )

    assert backend.describe(ticket()) == (
        "would POST ticket drp-finalized for operation op-123 ('DRP finalized') as JSON to "
        "*** (URL kept secret) with Idempotency-Key op-123:drp-finalized and headers "
        f"Authorization (values hidden), timeout 7.5s; recorded in {tmp_path / 'sent.jsonl'}"
    )


def test_webhook_refuses_a_url_that_is_not_http(tmp_path: Path) -> None:
    with pytest.raises(TicketError, match="must start with http:// or https://"):
        WebhookTicketBackend("desk", url="ftp://desk/hook", ledger=tmp_path / "s.jsonl")


def test_webhook_payload_carries_the_ticket_and_its_key() -> None:
    assert WebhookTicketBackend.payload(ticket()) == {
        "operation_id": "op-123",
        "event": "drp-finalized",
        "title": "DRP finalized",
        "body": "All restored.",
        "site": "gra",
        "time": "2026-11-29T10:02:41+00:00",
        "idempotency_key": "op-123:drp-finalized",
    }


def test_readers_and_dry_runs_write_nothing(tmp_path: Path) -> None:
    backends = [
        FileTicketBackend("journal", path=tmp_path / "tickets.jsonl"),
        smtp(tmp_path),
        WebhookTicketBackend("desk", url="http://127.0.12.80/h", ledger=tmp_path / "sent.jsonl"),
    ]

    for backend in backends:
        assert backend.already_sent("op-123", "drp-finalized") is None
        assert backend.describe(ticket()).startswith("would ")

    assert list(tmp_path.iterdir()) == []


def test_capabilities_say_how_duplicates_are_found() -> None:
    assert (FileTicketBackend.reads_back, FileTicketBackend.receiver_dedup_key) == (True, None)
    assert (SmtpTicketBackend.reads_back, SmtpTicketBackend.receiver_dedup_key) == (
        False,
        "Message-ID",
    )
    assert (WebhookTicketBackend.reads_back, WebhookTicketBackend.receiver_dedup_key) == (
        False,
        "Idempotency-Key",
    )
