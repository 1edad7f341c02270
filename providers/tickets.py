"""Information tickets of the disaster-recovery plan: a local file, an email, or a webhook.

A ticket tells people that something happened to an operation ("drp-finalized",
"returned-to-production", "drill-finished"). The same event of the same operation is never sent
twice, and that is decided by looking at the world, never by memory:

- the file backend is its own record: it scans its JSON-lines file for the (operation, event);
- an email or a webhook call cannot be read back, so a local ledger (JSON lines) records each
  send, written only once the server accepted it. The email's Message-ID and the webhook's
  `Idempotency-Key` header are derived from (operation, event), so a receiver can still drop the
  one duplicate that a crash between "accepted" and "recorded" would cause.

Appends are a single `write` of whole lines followed by `fsync`, under an exclusive lock that
also covers the "already sent?" check, so two runs cannot both send, and a crash leaves at worst a
half line, which readers ignore and the next append steps over.

Secrets (SMTP password, webhook header values, a secret webhook URL) are plain strings or objects
with a `reveal()` method; they are revealed only when the request is made and never appear in
`describe()`, logs or exception messages.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import re
import smtplib
import ssl
from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import format_datetime, parseaddr
from pathlib import Path
from typing import Any, ClassVar, Protocol, runtime_checkable
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import httpx

__all__ = [
    "FileTicketBackend",
    "Revealable",
    "SendResult",
    "SentLedger",
    "SentRecord",
    "SmtpTicketBackend",
    "Ticket",
    "TicketBackend",
    "TicketError",
    "WebhookTicketBackend",
    "masked_url",
]

# Both end up in a Message-ID and an HTTP header: keep them to characters that are safe there.
_OPERATION_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]*(?:\.[A-Za-z0-9_-]+)*")
_EVENT = re.compile(r"[a-z0-9][a-z0-9-]*")
# A path segment shown as it is: a lower-case word or a version (`api`, `services`, `v1`).
_PLAIN_SEGMENT = re.compile(r"[a-z][a-z._-]{0,19}|v\d{1,3}")
_MAX_ID_LENGTH = 128
_EXCERPT_LENGTH = 200
_MEDIUM = {"file": "file", "smtp": "email", "webhook": "webhook"}


class TicketError(Exception):
    """A ticket could not be built, sent or recorded; the message says why and what to do."""


@runtime_checkable
class Revealable(Protocol):
    """A secret that gives its value only when asked (the runbooks' `Secret` fits)."""

    def reveal(self) -> str: ...


class _Masked:
    """Wraps a plain-string secret so that `repr` and `str` never show it."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "***"

    __str__ = __repr__


def _secret(value: str | Revealable) -> Revealable:
    return _Masked(value) if isinstance(value, str) else value


def _now() -> datetime:
    return datetime.now(UTC)


def _minute(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%MZ")


def _check_id(kind: str, value: str, pattern: re.Pattern[str], allowed: str) -> None:
    if len(value) > _MAX_ID_LENGTH or not pattern.fullmatch(value):
        raise TicketError(
            f"invalid {kind} {value!r}: use {allowed}, at most {_MAX_ID_LENGTH} characters"
        )


def _check_line(kind: str, value: str) -> None:
    if not value.strip() or "\n" in value or "\r" in value:
        raise TicketError(f"invalid ticket {kind} {value!r}: give one non-empty line of text")


@dataclass(frozen=True)
class Ticket:
    """One information ticket: which operation, which event, and what to tell people."""

    operation_id: str
    event: str  # e.g. "drp-finalized", "returned-to-production", "drill-finished"
    title: str  # one line: email subject, webhook title
    body: str  # plain text or Markdown
    site: str
    time: datetime = field(default_factory=_now)  # when the event happened, stored in UTC
    # Who receives it instead of the backend's usual recipients (an order code goes to the
    # customer's order contacts); empty: the backend's own.
    recipients: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        _check_id(
            "operation id",
            self.operation_id,
            _OPERATION_ID,
            "letters, digits, '-', '_' and single dots, starting with a letter or digit",
        )
        _check_id(
            "ticket event",
            self.event,
            _EVENT,
            "lowercase letters, digits and '-', like 'drp-finalized'",
        )
        _check_line("title", self.title)
        _check_line("site", self.site)
        for recipient in self.recipients:
            _check_line("recipient", recipient)
        if self.time.tzinfo is None:
            raise TicketError(
                f"ticket time {self.time.isoformat()} has no timezone: give an aware datetime"
            )
        object.__setattr__(self, "time", self.time.astimezone(UTC))

    @property
    def key(self) -> str:
        """What identifies the ticket for receivers: `<operation-id>:<event>`."""
        return f"{self.operation_id}:{self.event}"

    def to_data(self) -> dict[str, str]:
        return {
            "operation_id": self.operation_id,
            "event": self.event,
            "title": self.title,
            "body": self.body,
            "site": self.site,
            "time": self.time.isoformat(),
            **({"to": ", ".join(self.recipients)} if self.recipients else {}),
        }


@dataclass(frozen=True)
class SentRecord:
    """Evidence that a ticket went out: found in the world, or just written there."""

    operation_id: str
    event: str
    backend: str  # kind of backend: "file", "smtp", "webhook"
    name: str  # the backend's name in the inventory
    sent_at: datetime | None  # None when the evidence carries no readable time
    detail: str  # "HTTP 200", "Message-ID <...>", "line 3 of /path"

    def _sentence(self, verb: str) -> str:
        medium = _MEDIUM.get(self.backend, self.backend)
        by = medium if self.name == self.backend else f"{medium} {self.name}"
        when = f" at {_minute(self.sent_at)}" if self.sent_at else ""
        subject = f"ticket {self.event} for operation {self.operation_id}"
        return f"{subject} {verb} by {by}{when} ({self.detail})"

    def sentence(self) -> str:
        """'ticket drp-finalized for operation op-123 sent by webhook at ... (HTTP 200)'."""
        return self._sentence("sent")

    def reason(self) -> str:
        """Why a new send is skipped: the same sentence, 'already sent'."""
        return self._sentence("already sent")


@dataclass(frozen=True)
class SendResult:
    """What `send()` did: sent now, or skipped because `record` shows it was sent before."""

    record: SentRecord
    skipped: bool

    @property
    def sentence(self) -> str:
        return self.record.reason() if self.skipped else self.record.sentence()


def _parse_time(value: object) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _fsync_directory(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class _Appender:
    """Appends whole JSON lines to a file whose exclusive lock the caller holds."""

    def __init__(self, path: Path, fd: int) -> None:
        self.path = path
        self._fd = fd

    def append(self, entry: Mapping[str, object]) -> None:
        line = json.dumps(entry, ensure_ascii=False) + "\n"
        data = line.encode("utf-8")
        size = os.fstat(self._fd).st_size
        if size and os.pread(self._fd, 1, size - 1) != b"\n":
            # A crash left a half line: start on a fresh line so ours stays readable.
            data = b"\n" + data
        try:
            written = os.write(self._fd, data)
            if written != len(data):
                raise OSError(f"only {written} of {len(data)} bytes written (disk full?)")
            os.fsync(self._fd)
        except OSError as err:
            raise TicketError(
                f"could not append to {self.path}: {err}; free space or fix permissions, "
                "then run again (a half-written line is ignored)"
            ) from err


class _JsonLines:
    """A JSON-lines file: read without side effects, append under an exclusive lock."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def entries(self) -> Iterator[tuple[int, dict[str, Any]]]:
        """(line number, object) of every readable line; half or foreign lines are skipped."""
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            return
        except OSError as err:
            raise TicketError(f"cannot read {self.path}: {err}") from err
        for number, line in enumerate(raw.split(b"\n"), start=1):
            if not line.strip():
                continue
            try:
                entry = json.loads(line)
            except ValueError:
                continue
            if isinstance(entry, dict):
                yield number, entry

    @contextmanager
    def locked(self) -> Iterator[_Appender]:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            created = not self.path.exists()
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o640)
        except OSError as err:
            raise TicketError(f"cannot open {self.path} for writing: {err}") from err
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            if created:
                _fsync_directory(self.path.parent)
            yield _Appender(self.path, fd)
        finally:
            os.close(fd)  # also releases the lock


class SentLedger:
    """Local record of tickets sent where they cannot be read back (email, webhook).

    One JSON line per accepted send: operation id, event, backend kind and name, target (no
    secret), time, detail (Message-ID, HTTP status). Several backends may share one ledger.
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._lines = _JsonLines(self.path)

    def records(self) -> list[SentRecord]:
        return [self._record(entry) for _, entry in self._lines.entries() if self._valid(entry)]

    def find(self, operation_id: str, event: str, backend: str, name: str) -> SentRecord | None:
        for record in self.records():
            if (record.operation_id, record.event, record.backend, record.name) == (
                operation_id,
                event,
                backend,
                name,
            ):
                return record
        return None

    @staticmethod
    def _valid(entry: dict[str, Any]) -> bool:
        return all(isinstance(entry.get(k), str) for k in ("operation_id", "event", "backend"))

    @staticmethod
    def _record(entry: dict[str, Any]) -> SentRecord:
        return SentRecord(
            operation_id=entry["operation_id"],
            event=entry["event"],
            backend=entry["backend"],
            name=str(entry.get("name", entry["backend"])),
            sent_at=_parse_time(entry.get("sent_at")),
            detail=str(entry.get("detail", "recorded in the ledger")),
        )

    @staticmethod
    def entry(record: SentRecord, target: str, title: str) -> dict[str, str]:
        return {
            "operation_id": record.operation_id,
            "event": record.event,
            "backend": record.backend,
            "name": record.name,
            "target": target,
            "title": title,
            "sent_at": (record.sent_at or _now()).isoformat(),
            "detail": record.detail,
        }


class TicketBackend(ABC):
    """Where tickets go. The base class owns the workflow; subclasses fill in three hooks.

    Contract:
    - `describe(ticket)`: what `send` would do, where, with no secret and no I/O (dry runs).
    - `already_sent(operation_id, event)`: a pure reader; None, or the sentence saying when and
      how that ticket was sent. It looks at the world (the file, the ledger), never at memory.
    - `send(ticket)`: under an exclusive lock, re-checks, then delivers and records; returns a
      `SendResult` that is `skipped` with the earlier record when the ticket was already sent.
      Failures raise `TicketError` and record nothing, so a later run sends again.

    Hooks: `_journal` (the file whose lock serialises sends), `target`, `find_sent`,
    `_deliver`.
    """

    kind: ClassVar[str]  # the inventory's key for this backend
    reads_back: ClassVar[bool]  # True: the destination itself shows what was sent
    receiver_dedup_key: ClassVar[str | None]  # what lets a receiver drop a duplicate

    def __init__(self, name: str) -> None:
        self.name = name
        self.log = logging.getLogger(f"{type(self).__name__}[{name}]")

    def __repr__(self) -> str:
        return f"{type(self).__name__}[{self.name}]"

    @property
    @abstractmethod
    def _journal(self) -> _JsonLines: ...

    @property
    @abstractmethod
    def target(self) -> str:
        """Where tickets go, with no secret in it (a path, a server and recipients, a URL)."""

    @abstractmethod
    def find_sent(self, operation_id: str, event: str) -> SentRecord | None:
        """The evidence that this ticket was sent, if any."""

    @abstractmethod
    def describe(self, ticket: Ticket) -> str: ...

    @abstractmethod
    def _deliver(self, ticket: Ticket, journal: _Appender) -> SentRecord:
        """Send the ticket and record it; raise TicketError (recording nothing) on failure."""

    def already_sent(self, operation_id: str, event: str) -> str | None:
        record = self.find_sent(operation_id, event)
        return record.reason() if record else None

    def send(self, ticket: Ticket) -> SendResult:
        with self._journal.locked() as journal:
            earlier = self.find_sent(ticket.operation_id, ticket.event)
            if earlier is not None:
                self.log.info("skipped: %s", earlier.reason())
                return SendResult(earlier, skipped=True)
            self.log.debug(
                "sending ticket %s for operation %s to %s",
                ticket.event,
                ticket.operation_id,
                self.target,
            )
            record = self._deliver(ticket, journal)
        self.log.info("%s", record.sentence())
        return SendResult(record, skipped=False)


class FileTicketBackend(TicketBackend):
    """Tickets as JSON lines in a local file, which is also the proof of what was sent."""

    kind = "file"
    reads_back = True
    receiver_dedup_key = None

    def __init__(self, name: str, *, path: Path) -> None:
        super().__init__(name)
        self.path = Path(path)
        self._lines = _JsonLines(self.path)

    @property
    def _journal(self) -> _JsonLines:
        return self._lines

    @property
    def target(self) -> str:
        return str(self.path)

    def tickets(self) -> list[Ticket]:
        """Every readable ticket in the file, in order."""
        found = []
        for _, entry in self._lines.entries():
            try:
                found.append(
                    Ticket(
                        operation_id=entry["operation_id"],
                        event=entry["event"],
                        title=entry["title"],
                        body=entry["body"],
                        site=entry["site"],
                        time=datetime.fromisoformat(entry["time"]),
                    )
                )
            except (KeyError, TypeError, ValueError, TicketError):
                continue
        return found

    def find_sent(self, operation_id: str, event: str) -> SentRecord | None:
        for number, entry in self._lines.entries():
            if entry.get("operation_id") == operation_id and entry.get("event") == event:
                return SentRecord(
                    operation_id=operation_id,
                    event=event,
                    backend=self.kind,
                    name=self.name,
                    sent_at=_parse_time(entry.get("sent_at")) or _parse_time(entry.get("time")),
                    detail=f"line {number} of {self.path}",
                )
        return None

    def describe(self, ticket: Ticket) -> str:
        return (
            f"would append ticket {ticket.event} for operation {ticket.operation_id} "
            f"({ticket.title!r}, site {ticket.site}) as one JSON line to {self.path}"
        )

    def _deliver(self, ticket: Ticket, journal: _Appender) -> SentRecord:
        sent_at = _now()
        journal.append({**ticket.to_data(), "sent_at": sent_at.isoformat()})
        return SentRecord(
            ticket.operation_id, ticket.event, self.kind, self.name, sent_at, f"in {self.path}"
        )


class _LedgerBackend(TicketBackend):
    """A backend that cannot read back what it sent, so it keeps a `SentLedger`."""

    reads_back = False

    def __init__(self, name: str, *, ledger: Path) -> None:
        super().__init__(name)
        self.ledger = SentLedger(Path(ledger))
        self._ledger_lines = _JsonLines(self.ledger.path)

    @property
    def _journal(self) -> _JsonLines:
        return self._ledger_lines

    @abstractmethod
    def _transmit(self, ticket: Ticket) -> str:
        """Deliver the ticket; return the detail to record (Message-ID, HTTP status)."""

    def find_sent(self, operation_id: str, event: str) -> SentRecord | None:
        return self.ledger.find(operation_id, event, self.kind, self.name)

    def _deliver(self, ticket: Ticket, journal: _Appender) -> SentRecord:
        detail = self._transmit(ticket)
        record = SentRecord(ticket.operation_id, ticket.event, self.kind, self.name, _now(), detail)
        try:
            journal.append(SentLedger.entry(record, self.target, ticket.title))
        except TicketError as err:
            raise TicketError(
                f"{record.sentence()}, but recording it failed: {err}. A later run sends it "
                f"again; receivers can drop the duplicate by its {self.receiver_dedup_key}"
            ) from err.__cause__
        return record


class SmtpTicketBackend(_LedgerBackend):
    """Tickets as emails through an SMTP server (optional STARTTLS and login)."""

    kind = "smtp"
    receiver_dedup_key = "Message-ID"

    def __init__(
        self,
        name: str,
        *,
        host: str,
        port: int,
        sender: str,
        recipients: Sequence[str],
        ledger: Path,
        starttls: bool = False,
        user: str | None = None,
        password: str | Revealable | None = None,
        timeout: float = 30.0,
        ca_file: Path | None = None,
    ) -> None:
        super().__init__(name, ledger=ledger)
        if not recipients:
            raise TicketError(f"ticket backend {name}: no recipients; list at least one address")
        if (user is None) != (password is None):
            raise TicketError(
                f"ticket backend {name}: give both user and password for an SMTP login, or neither"
            )
        if user is not None and not starttls:
            raise TicketError(
                f"ticket backend {name}: an SMTP login without STARTTLS would send the password "
                "in clear; set starttls to true"
            )
        if timeout <= 0:
            raise TicketError(f"ticket backend {name}: timeout must be positive, got {timeout}")
        self.host = host
        self.port = port
        self.sender = sender
        self.recipients = tuple(recipients)
        self.starttls = starttls
        self.user = user
        self._password = None if password is None else _secret(password)
        self.timeout = timeout
        self.ca_file = ca_file

    @property
    def target(self) -> str:
        return f"smtp://{self.host}:{self.port} to {', '.join(self.recipients)}"

    def message_id(self, operation_id: str, event: str) -> str:
        """Same operation and event, same Message-ID: receivers can drop a duplicate."""
        domain = parseaddr(self.sender)[1].rpartition("@")[2] or "drp.invalid"
        return f"<drp.{operation_id}.{event}@{domain}>"

    def build_message(self, ticket: Ticket) -> EmailMessage:
        message = EmailMessage()
        message["Subject"] = (
            f"[DRP {ticket.site}] {ticket.title} ({ticket.event}, operation {ticket.operation_id})"
        )
        message["From"] = self.sender
        message["To"] = ", ".join(ticket.recipients or self.recipients)
        message["Date"] = format_datetime(ticket.time)
        message["Message-ID"] = self.message_id(ticket.operation_id, ticket.event)
        message["X-DRP-Operation"] = ticket.operation_id
        message["X-DRP-Event"] = ticket.event
        message.set_content(
            f"{ticket.body.rstrip()}\n\n-- \n"
            f"Operation: {ticket.operation_id}\n"
            f"Event: {ticket.event}\n"
            f"Site: {ticket.site}\n"
            f"Time: {ticket.time.isoformat()}\n"
        )
        return message

    def describe(self, ticket: Ticket) -> str:
        security = "with STARTTLS" if self.starttls else "without TLS"
        login = f", login as {self.user}" if self.user else ""
        return (
            f"would email ticket {ticket.event} for operation {ticket.operation_id} "
            f"({ticket.title!r}) from {self.sender} to "
            f"{', '.join(ticket.recipients or self.recipients)} "
            f"via {self.host}:{self.port} {security}{login}, "
            f"Message-ID {self.message_id(ticket.operation_id, ticket.event)}; "
            f"recorded in {self.ledger.path}"
        )

    def _tls_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.ca_file) if self.ca_file else None)

    def _transmit(self, ticket: Ticket) -> str:
        message = self.build_message(ticket)
        where = f"{self.host}:{self.port}"
        about = f"ticket {ticket.event} for operation {ticket.operation_id}"
        try:
            with smtplib.SMTP(self.host, self.port, timeout=self.timeout) as smtp:
                smtp.ehlo()
                if self.starttls:
                    smtp.starttls(context=self._tls_context())
                    smtp.ehlo()
                if self.user is not None and self._password is not None:
                    smtp.login(self.user, self._password.reveal())
                refused = smtp.send_message(message)
        except smtplib.SMTPAuthenticationError as err:
            raise TicketError(
                f"SMTP server {where} refused the login of {self.user!r} "
                f"(code {err.smtp_code}); {about} not sent: check the user and password of "
                f"ticket backend {self.name}"
            ) from err
        except smtplib.SMTPNotSupportedError as err:
            raise TicketError(
                f"SMTP server {where} does not support what ticket backend {self.name} asks "
                f"({err}); {about} not sent: check its starttls and login settings"
            ) from err
        except (smtplib.SMTPException, OSError) as err:
            raise TicketError(
                f"could not email {about} via {where}: {type(err).__name__}: {err}; "
                "nothing was recorded, so a later run sends it again"
            ) from err
        if refused:
            addresses = ", ".join(sorted(refused))
            raise TicketError(
                f"SMTP server {where} refused recipients {addresses} of {about}; fix the "
                f"recipients of ticket backend {self.name} (the others received it, and will "
                "see the same Message-ID again)"
            )
        return f"Message-ID {message['Message-ID']}"


class _MaskedUrls(logging.Filter):
    """httpx logs each request's full URL at INFO ("HTTP Request: POST https://..."): a webhook
    token in the path would land in every log that keeps INFO. Its URLs are logged masked."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(
                masked_url(str(arg)) if isinstance(arg, httpx.URL) else arg for arg in record.args
            )
        return True


logging.getLogger("httpx").addFilter(_MaskedUrls())


class WebhookTicketBackend(_LedgerBackend):
    """Tickets as a JSON POST to a webhook, with an `Idempotency-Key` header."""

    kind = "webhook"
    receiver_dedup_key = "Idempotency-Key"

    def __init__(
        self,
        name: str,
        *,
        url: str | Revealable,
        ledger: Path,
        headers: Mapping[str, str | Revealable] | None = None,
        timeout: float = 10.0,
    ) -> None:
        super().__init__(name, ledger=ledger)
        if timeout <= 0:
            raise TicketError(f"ticket backend {name}: timeout must be positive, got {timeout}")
        if isinstance(url, str) and urlsplit(url).scheme not in ("http", "https"):
            raise TicketError(
                f"ticket backend {name}: webhook URL must start with http:// or https://"
            )
        self._url = url
        self._headers = {key: _secret(value) for key, value in (headers or {}).items()}
        self.timeout = timeout

    @property
    def target(self) -> str:
        """The URL without credentials, tokens or query values; a secret URL is not shown."""
        if not isinstance(self._url, str):
            return "*** (URL kept secret)"
        return masked_url(self._url)

    @staticmethod
    def payload(ticket: Ticket) -> dict[str, str]:
        return {**ticket.to_data(), "idempotency_key": ticket.key}

    def describe(self, ticket: Ticket) -> str:
        names = ", ".join(self._headers)
        extra = f" and headers {names} (values hidden)" if names else ""
        return (
            f"would POST ticket {ticket.event} for operation {ticket.operation_id} "
            f"({ticket.title!r}) as JSON to {self.target} with Idempotency-Key {ticket.key}"
            f"{extra}, timeout {self.timeout:g}s; recorded in {self.ledger.path}"
        )

    def _transmit(self, ticket: Ticket) -> str:
        about = f"ticket {ticket.event} for operation {ticket.operation_id}"
        url = self._url if isinstance(self._url, str) else self._url.reveal()
        headers = {key: value.reveal() for key, value in self._headers.items()}
        headers["Idempotency-Key"] = ticket.key
        try:
            response = httpx.post(
                url,
                json=self.payload(ticket),
                headers=headers,
                timeout=self.timeout,
                follow_redirects=False,
            )
        except httpx.HTTPError as err:
            # Some errors quote the URL; when it holds a token, neither they nor the chained
            # exception may show it.
            hidden = url != self.target
            cause = str(err).replace(url, self.target)
            raise TicketError(
                f"could not reach webhook {self.target} for {about}: {type(err).__name__}: "
                f"{cause}; nothing was recorded, so a later run sends it again"
            ) from (None if hidden else err)
        if not 200 <= response.status_code < 300:
            excerpt = " ".join(response.text.split())
            if len(excerpt) > _EXCERPT_LENGTH:
                excerpt = excerpt[:_EXCERPT_LENGTH] + "..."
            raise TicketError(
                f"webhook {self.target} answered HTTP {response.status_code} to {about}: "
                f"{excerpt!r}; nothing was recorded, so a later run sends it again"
            )
        return f"HTTP {response.status_code}"


def masked_url(url: str) -> str:
    """A URL as it may be shown: no user or password, every query value `***`, and the path
    from its first segment that is not a plain lower-case word (or `v1`) replaced by `***`.

    Webhooks carry their token in the path (Slack `/services/T000/B000/XXXX`, Teams
    `/webhookb2/<id>@<id>/IncomingWebhook/<token>/...`), so the path is cut where such ids
    start. A URL whose token could pass for a word belongs in a secret reference (env:NAME).
    """
    parts = urlsplit(url)
    netloc = parts.netloc.rpartition("@")[2]  # host[:port] as written, without user:password
    shown: list[str] = []
    for segment in parts.path.split("/"):
        if segment and not _PLAIN_SEGMENT.fullmatch(segment):
            shown.append("***")
            break
        shown.append(segment)
    query = urlencode([(key, "***") for key, _ in parse_qsl(parts.query)], safe="*")
    return urlunsplit((parts.scheme, netloc, "/".join(shown), query, ""))
