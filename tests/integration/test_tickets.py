"""Tickets against real servers on loopback: an SMTP server (aiosmtpd, with and without
STARTTLS + login) and HTTP webhooks (stdlib), plus the JSON-lines file backend."""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import logging
import re
import socket
import ssl
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from providers.tickets import (
    FileTicketBackend,
    SmtpTicketBackend,
    Ticket,
    TicketError,
    WebhookTicketBackend,
)

SMTP_ADDRESS = "127.0.12.25"
HTTP_ADDRESS = "127.0.12.80"
SENDER = "DRP <drp@drp.example.org>"
RECIPIENTS = ("ops@example.org", "customer@1stkyc.example")
SMTP_USER = "drp-bot"
SMTP_PASSWORD = "smtp-pa55-never-shown"
WEBHOOK_TOKEN = "Bearer hook-t0ken-never-shown"
SENT_AT = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\dZ")


def ticket(event: str = "drp-finalized", operation_id: str = "op-123") -> Ticket:
    return Ticket(
        operation_id=operation_id,
        event=event,
        title="DRP finalized: service runs on the DRP server",
        body="Files and databases restored on **drp**.\nDNS switch follows.",
        site="lab-gra1",
        time=dt.datetime(2026, 11, 29, 10, 2, tzinfo=dt.UTC),
    )


def free_port(address: str) -> int:
    with socket.socket() as probe:
        probe.bind((address, 0))
        return int(probe.getsockname()[1])


def ledger_lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


# -- SMTP server -------------------------------------------------------------------------------


@dataclass
class Mailbox:
    """What the SMTP server received: one (envelope recipients, message) per DATA."""

    messages: list[tuple[list[str], EmailMessage]] = field(default_factory=list)
    logins: list[str] = field(default_factory=list)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        message = BytesParser(policy=policy.default).parsebytes(envelope.content)
        assert isinstance(message, EmailMessage)
        self.messages.append((list(envelope.rcpt_tos), message))
        return "250 OK"

    def authenticate(
        self, server: Any, session: Any, envelope: Any, mechanism: str, data: Any
    ) -> AuthResult:
        ok = (
            isinstance(data, LoginPassword)
            and data.login == SMTP_USER.encode()
            and data.password == SMTP_PASSWORD.encode()
        )
        if ok:
            self.logins.append(SMTP_USER)
        return AuthResult(success=ok, handled=False)


@dataclass
class SmtpServer:
    mailbox: Mailbox
    port: int


@pytest.fixture
def smtp_server() -> Iterator[SmtpServer]:
    mailbox = Mailbox()
    port = free_port(SMTP_ADDRESS)
    controller = Controller(mailbox, hostname=SMTP_ADDRESS, port=port)
    controller.start()
    yield SmtpServer(mailbox, port)
    controller.stop()


@dataclass(frozen=True)
class Certificate:
    cert: Path
    key: Path


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> Certificate:
    """A self-signed certificate for the SMTP server's loopback address."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "drp lab smtp")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(SMTP_ADDRESS))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    folder = tmp_path_factory.mktemp("smtp-tls")
    paths = Certificate(folder / "cert.pem", folder / "key.pem")
    paths.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths.key.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return paths


@pytest.fixture
def tls_smtp_server(certificate: Certificate) -> Iterator[SmtpServer]:
    """An SMTP server that demands STARTTLS, then a login, before taking mail."""
    mailbox = Mailbox()
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(certificate.cert, certificate.key)
    port = free_port(SMTP_ADDRESS)
    controller = Controller(
        mailbox,
        hostname=SMTP_ADDRESS,
        port=port,
        tls_context=context,
        require_starttls=True,
        authenticator=mailbox.authenticate,
        auth_required=True,
        auth_require_tls=True,
    )
    controller.start()
    yield SmtpServer(mailbox, port)
    controller.stop()


def smtp_backend(port: int, ledger: Path, **options: Any) -> SmtpTicketBackend:
    return SmtpTicketBackend(
        "ops-mail",
        host=SMTP_ADDRESS,
        port=port,
        sender=SENDER,
        recipients=RECIPIENTS,
        ledger=ledger,
        timeout=5,
        **options,
    )


# -- HTTP webhook server -----------------------------------------------------------------------


@dataclass
class Hook:
    """A webhook receiver: records every POST, answers with `status` and `reply`."""

    status: int = 200
    reply: str = '{"ok": true}'
    delay: float = 0.0
    received: list[dict[str, Any]] = field(default_factory=list)
    url: str = ""


@pytest.fixture
def hook() -> Iterator[Hook]:
    state = Hook()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            state.received.append(
                {"path": self.path, "headers": dict(self.headers), "json": json.loads(body)}
            )
            if state.delay:
                threading.Event().wait(state.delay)
            reply = state.reply.encode()
            self.send_response(state.status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(reply)))
            self.end_headers()
            self.wfile.write(reply)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer((HTTP_ADDRESS, 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    state.url = f"http://{HTTP_ADDRESS}:{server.server_address[1]}/hooks/drp"
    yield state
    server.shutdown()
    server.server_close()
    thread.join()


def webhook_backend(hook: Hook, ledger: Path, **options: Any) -> WebhookTicketBackend:
    return WebhookTicketBackend(
        "service-desk",
        url=hook.url,
        ledger=ledger,
        headers={"Authorization": WEBHOOK_TOKEN, "X-Team": "ops"},
        timeout=5,
        **options,
    )


# -- SMTP ---------------------------------------------------------------------------------------


def test_email_arrives_with_operation_and_event(smtp_server: SmtpServer, tmp_path: Path) -> None:
    ledger = tmp_path / "reports" / "tickets-sent.jsonl"
    result = smtp_backend(smtp_server.port, ledger).send(ticket())

    assert not result.skipped
    [(rcpt_tos, message)] = smtp_server.mailbox.messages
    assert rcpt_tos == list(RECIPIENTS)
    assert "op-123" in message["Subject"]
    assert "drp-finalized" in message["Subject"]
    assert message["Message-ID"] == "<drp.op-123.drp-finalized@drp.example.org>"
    assert message["X-DRP-Operation"] == "op-123"
    content = message.get_content().replace("\r\n", "\n")
    assert "Files and databases restored on **drp**." in content
    assert "Operation: op-123\nEvent: drp-finalized\nSite: lab-gra1\n" in content
    [entry] = ledger_lines(ledger)
    assert (entry["operation_id"], entry["event"], entry["backend"], entry["name"]) == (
        "op-123",
        "drp-finalized",
        "smtp",
        "ops-mail",
    )
    assert entry["detail"] == "Message-ID <drp.op-123.drp-finalized@drp.example.org>"


def test_second_email_of_the_same_event_is_skipped_with_its_reason(
    smtp_server: SmtpServer, tmp_path: Path
) -> None:
    ledger = tmp_path / "tickets-sent.jsonl"
    smtp_backend(smtp_server.port, ledger).send(ticket())

    again = smtp_backend(smtp_server.port, ledger)  # a new run: nothing kept in memory
    reason = again.already_sent("op-123", "drp-finalized")
    result = again.send(ticket())

    assert result.skipped
    assert result.sentence == reason
    assert reason is not None
    assert reason.startswith("ticket drp-finalized for operation op-123 already sent by email ")
    assert reason.endswith("(Message-ID <drp.op-123.drp-finalized@drp.example.org>)")
    assert len(smtp_server.mailbox.messages) == 1
    assert len(ledger_lines(ledger)) == 1


def test_another_event_of_the_operation_is_emailed(smtp_server: SmtpServer, tmp_path: Path) -> None:
    backend = smtp_backend(smtp_server.port, tmp_path / "sent.jsonl")
    backend.send(ticket("drp-finalized"))
    result = backend.send(ticket("returned-to-production"))

    assert not result.skipped
    ids = [message["Message-ID"] for _, message in smtp_server.mailbox.messages]
    assert ids == [
        "<drp.op-123.drp-finalized@drp.example.org>",
        "<drp.op-123.returned-to-production@drp.example.org>",
    ]


def test_starttls_login_sends_and_the_password_shows_nowhere(
    tls_smtp_server: SmtpServer,
    certificate: Certificate,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    backend = smtp_backend(
        tls_smtp_server.port,
        tmp_path / "sent.jsonl",
        starttls=True,
        user=SMTP_USER,
        password=SMTP_PASSWORD,
        ca_file=certificate.cert,
    )
    described = backend.describe(ticket())
    result = backend.send(ticket())

    assert not result.skipped
    assert tls_smtp_server.mailbox.logins == [SMTP_USER]
    [(_, message)] = tls_smtp_server.mailbox.messages
    assert "drp-finalized" in message["Subject"]
    assert "with STARTTLS, login as drp-bot" in described
    assert "ops-mail" in caplog.text  # the backend did log
    for shown in (described, caplog.text, repr(backend), result.sentence, vars(backend)):
        assert SMTP_PASSWORD not in str(shown)
    assert SMTP_PASSWORD not in (tmp_path / "sent.jsonl").read_text()


def test_refused_login_raises_records_nothing_and_hides_the_password(
    tls_smtp_server: SmtpServer,
    certificate: Certificate,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    ledger = tmp_path / "sent.jsonl"
    wrong = "wrong-pa55-also-secret"
    backend = smtp_backend(
        tls_smtp_server.port,
        ledger,
        starttls=True,
        user=SMTP_USER,
        password=wrong,
        ca_file=certificate.cert,
    )

    with pytest.raises(TicketError, match="refused the login of 'drp-bot'") as caught:
        backend.send(ticket())

    assert wrong not in str(caught.value)
    assert wrong not in str(caught.value.__cause__)
    assert wrong not in caplog.text
    assert tls_smtp_server.mailbox.messages == []
    assert ledger_lines(ledger) == []
    assert backend.already_sent("op-123", "drp-finalized") is None


def test_server_certificate_not_trusted_is_refused(
    tls_smtp_server: SmtpServer, tmp_path: Path
) -> None:
    # No ca_file: the self-signed certificate is not in the system's trust store.
    backend = smtp_backend(
        tls_smtp_server.port,
        tmp_path / "sent.jsonl",
        starttls=True,
        user=SMTP_USER,
        password=SMTP_PASSWORD,
    )

    with pytest.raises(TicketError, match="CERTIFICATE_VERIFY_FAILED"):
        backend.send(ticket())

    assert tls_smtp_server.mailbox.logins == []
    assert tls_smtp_server.mailbox.messages == []


def test_unreachable_smtp_server_raises_and_a_later_run_sends(tmp_path: Path) -> None:
    ledger = tmp_path / "sent.jsonl"
    port = free_port(SMTP_ADDRESS)
    backend = smtp_backend(port, ledger)

    with pytest.raises(TicketError, match=f"via {SMTP_ADDRESS}:{port}: ConnectionRefusedError"):
        backend.send(ticket())
    assert backend.already_sent("op-123", "drp-finalized") is None

    mailbox = Mailbox()
    controller = Controller(mailbox, hostname=SMTP_ADDRESS, port=port)
    controller.start()
    try:
        result = backend.send(ticket())
    finally:
        controller.stop()
    assert not result.skipped
    assert len(mailbox.messages) == 1


# -- Webhook ------------------------------------------------------------------------------------


def test_webhook_receives_the_ticket_as_json(hook: Hook, tmp_path: Path) -> None:
    ledger = tmp_path / "sent.jsonl"
    result = webhook_backend(hook, ledger).send(ticket())

    [request] = hook.received
    assert request["path"] == "/hooks/drp"
    assert request["json"] == {
        "operation_id": "op-123",
        "event": "drp-finalized",
        "title": "DRP finalized: service runs on the DRP server",
        "body": "Files and databases restored on **drp**.\nDNS switch follows.",
        "site": "lab-gra1",
        "time": "2026-11-29T10:02:00+00:00",
        "idempotency_key": "op-123:drp-finalized",
    }
    assert request["headers"]["Idempotency-Key"] == "op-123:drp-finalized"
    assert request["headers"]["Authorization"] == WEBHOOK_TOKEN
    assert request["headers"]["X-Team"] == "ops"
    assert request["headers"]["Content-Type"] == "application/json"
    assert not result.skipped
    assert result.sentence.endswith("(HTTP 200)")
    [entry] = ledger_lines(ledger)
    assert (entry["backend"], entry["name"], entry["detail"]) == (
        "webhook",
        "service-desk",
        "HTTP 200",
    )
    assert WEBHOOK_TOKEN not in json.dumps(entry)


def test_second_webhook_of_the_same_event_is_skipped(hook: Hook, tmp_path: Path) -> None:
    ledger = tmp_path / "sent.jsonl"
    webhook_backend(hook, ledger).send(ticket())

    result = webhook_backend(hook, ledger).send(ticket())

    assert result.skipped
    assert re.fullmatch(
        r"ticket drp-finalized for operation op-123 already sent by webhook service-desk "
        rf"at {SENT_AT.pattern} \(HTTP 200\)",
        result.sentence,
    )
    assert len(hook.received) == 1


def test_another_event_goes_to_the_webhook(hook: Hook, tmp_path: Path) -> None:
    backend = webhook_backend(hook, tmp_path / "sent.jsonl")
    backend.send(ticket("drp-finalized"))
    backend.send(ticket("drill-finished"))

    keys = [request["headers"]["Idempotency-Key"] for request in hook.received]
    assert keys == ["op-123:drp-finalized", "op-123:drill-finished"]


def test_failing_webhook_raises_records_nothing_and_a_retry_sends(
    hook: Hook, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    ledger = tmp_path / "sent.jsonl"
    backend = webhook_backend(hook, ledger)
    hook.status, hook.reply = 500, '{"error": "ticket database is down"}' + " " * 500

    with pytest.raises(TicketError) as caught:
        backend.send(ticket())

    message = str(caught.value)
    assert "answered HTTP 500" in message
    assert "ticket database is down" in message
    assert len(message) < 600  # an excerpt, not the whole page
    assert WEBHOOK_TOKEN not in message
    assert WEBHOOK_TOKEN not in caplog.text
    assert ledger_lines(ledger) == []
    assert backend.already_sent("op-123", "drp-finalized") is None

    hook.status, hook.reply = 200, "{}"
    result = backend.send(ticket())
    assert not result.skipped
    assert [r["headers"]["Idempotency-Key"] for r in hook.received] == [
        "op-123:drp-finalized",
        "op-123:drp-finalized",
    ]
    assert len(ledger_lines(ledger)) == 1


def test_unreachable_webhook_raises(tmp_path: Path) -> None:
    url = f"http://{HTTP_ADDRESS}:{free_port(HTTP_ADDRESS)}/hooks/drp?token=abc123"
    backend = WebhookTicketBackend("service-desk", url=url, ledger=tmp_path / "s.jsonl")

    with pytest.raises(TicketError, match="could not reach webhook") as caught:
        backend.send(ticket())

    assert "abc123" not in str(caught.value)
    assert caught.value.__cause__ is None  # the cause quotes the URL and its token
    assert ledger_lines(tmp_path / "s.jsonl") == []


def test_describe_names_the_target_without_secrets(
    hook: Hook, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    backend = webhook_backend(hook, tmp_path / "sent.jsonl")

    described = backend.describe(ticket())
    backend.send(ticket())

    assert described.startswith("would POST ticket drp-finalized for operation op-123 ")
    assert hook.url in described
    assert "Idempotency-Key op-123:drp-finalized" in described
    assert "headers Authorization, X-Team (values hidden)" in described
    assert "hook-t0ken" not in described
    assert "hook-t0ken" not in caplog.text
    assert "WebhookTicketBackend[service-desk]" in {record.name for record in caplog.records}


def test_concurrent_runs_send_a_ticket_once(hook: Hook, tmp_path: Path) -> None:
    hook.delay = 0.2  # a slow receiver widens the window between check and record
    ledger = tmp_path / "sent.jsonl"
    results = []

    def run() -> None:
        results.append(webhook_backend(hook, ledger).send(ticket()))

    threads = [threading.Thread(target=run) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert len(hook.received) == 1
    assert sorted(result.skipped for result in results) == [False, True, True, True]


def test_email_and_webhook_share_a_ledger_without_blocking_each_other(
    smtp_server: SmtpServer, hook: Hook, tmp_path: Path
) -> None:
    ledger = tmp_path / "sent.jsonl"
    email = smtp_backend(smtp_server.port, ledger)
    webhook = webhook_backend(hook, ledger)

    assert not email.send(ticket()).skipped
    assert not webhook.send(ticket()).skipped
    assert email.send(ticket()).skipped
    assert webhook.send(ticket()).skipped

    assert len(smtp_server.mailbox.messages) == 1
    assert len(hook.received) == 1
    assert [entry["backend"] for entry in ledger_lines(ledger)] == ["smtp", "webhook"]


# -- File ---------------------------------------------------------------------------------------


def test_file_backend_writes_one_json_line_per_event(tmp_path: Path) -> None:
    path = tmp_path / "tickets" / "tickets.jsonl"
    backend = FileTicketBackend("journal", path=path)

    backend.send(ticket("drp-finalized"))
    backend.send(ticket("returned-to-production"))

    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert [(line["operation_id"], line["event"]) for line in lines] == [
        ("op-123", "drp-finalized"),
        ("op-123", "returned-to-production"),
    ]
    assert lines[0]["title"] == "DRP finalized: service runs on the DRP server"
    assert lines[0]["body"] == "Files and databases restored on **drp**.\nDNS switch follows."
    assert lines[0]["site"] == "lab-gra1"
    assert lines[0]["time"] == "2026-11-29T10:02:00+00:00"
    assert [t.event for t in backend.tickets()] == ["drp-finalized", "returned-to-production"]


def test_file_backend_skips_a_duplicate_even_from_a_new_instance(tmp_path: Path) -> None:
    path = tmp_path / "tickets.jsonl"
    FileTicketBackend("journal", path=path).send(ticket("drill-finished"))

    result = FileTicketBackend("journal", path=path).send(ticket("drill-finished"))

    assert result.skipped
    assert re.fullmatch(
        r"ticket drill-finished for operation op-123 already sent by file journal "
        rf"at {SENT_AT.pattern} \(line 1 of {re.escape(str(path))}\)",
        result.sentence,
    )
    assert len(path.read_text().splitlines()) == 1


def test_half_line_left_by_a_crash_does_not_count_as_sent(tmp_path: Path) -> None:
    path = tmp_path / "tickets.jsonl"
    backend = FileTicketBackend("journal", path=path)
    backend.send(ticket("drp-finalized"))
    with path.open("a") as crashed:  # a write cut short: no closing brace, no newline
        crashed.write('{"operation_id": "op-123", "event": "returned-to-production", "ti')

    assert backend.already_sent("op-123", "returned-to-production") is None
    result = backend.send(ticket("returned-to-production"))

    assert not result.skipped
    lines = path.read_text().splitlines()
    assert len(lines) == 3
    assert json.loads(lines[2])["event"] == "returned-to-production"
    assert "line 3 of" in (backend.already_sent("op-123", "returned-to-production") or "")
    assert [t.event for t in backend.tickets()] == ["drp-finalized", "returned-to-production"]


SLACK_TOKEN = "XqL9vT2mB7kR4wZ8nP3sY6dQ"


def test_token_in_a_webhook_path_reaches_the_server_and_is_never_shown(
    hook: Hook, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A Slack-style URL: the token is the path's last part; it is sent, never shown."""
    base = hook.url.removesuffix("/hooks/drp")
    url = f"{base}/services/T0AB12CD3/B0EF45GH6/{SLACK_TOKEN}"
    ledger = tmp_path / "sent.jsonl"
    backend = WebhookTicketBackend("slack", url=url, ledger=ledger, timeout=5)
    caplog.set_level(logging.DEBUG)

    described = backend.describe(ticket())
    result = backend.send(ticket())
    hook.status = 500
    with pytest.raises(TicketError) as caught:
        backend.send(ticket("drill-finished"))

    assert [r["path"] for r in hook.received] == [
        f"/services/T0AB12CD3/B0EF45GH6/{SLACK_TOKEN}"
    ] * 2
    assert backend.target == f"{base}/services/***"
    assert f"to {base}/services/*** with" in described
    shown = [described, result.sentence, str(caught.value), ledger.read_text(), caplog.text]
    assert all(SLACK_TOKEN not in text and "B0EF45GH6" not in text for text in shown), shown
    [entry] = ledger_lines(ledger)
    assert entry["target"] == f"{base}/services/***"
