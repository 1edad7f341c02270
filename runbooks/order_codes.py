"""Order codes: who may order, for real.

Prefect OSS has no users, so a name typed in the order form proves nothing. When the gate opens,
drp sends a short one-time code to the customer's order contacts (the inventory's
`orders.codes.contacts`) through the ticket backends; the order is taken only with that code.

A code is an HMAC, keyed by the site's order secret, over the operation id, the plan hash and
the code's expiry: it is good for that operation, that plan and until then, and nobody without
the secret can make one. The code itself is never stored: the report keeps when each code was
sent, to whom, for which plan and until when (`memory.order_codes`), which is enough to check
a code given later, on any orchestrator that has the secret.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from runbooks.report import Report

SECTION = "order_codes"  # the report's memory section
CODE_LETTERS = 8  # base32: 40 bits, typed as XXXX-XXXX


def order_code(key: bytes, operation_id: str, plan_hash: str, expires_at: str) -> str:
    """The code for this operation, plan and expiry, as the person types it: `XXXX-XXXX`."""
    message = "\x1f".join(["order-code", operation_id, plan_hash, expires_at]).encode()
    digest = hmac.new(key, message, hashlib.sha256).digest()
    letters = base64.b32encode(digest[:5]).decode()[:CODE_LETTERS]
    return f"{letters[:4]}-{letters[4:]}"


def normalized(code: str) -> str:
    """What was typed, without spaces or dashes, in capitals (`k7q2 m9xd` is `K7Q2M9XD`)."""
    return "".join(code.split()).replace("-", "").upper()


@dataclass(frozen=True)
class CodeMessage:
    """What is sent to the contacts: the ticket backends deliver it like a ticket."""

    event: str  # unique per code: `order-code-<expiry>`
    title: str
    body: str
    recipients: tuple[str, ...]


# Delivers a code message; returns where it went, in words ("smtp://... to a@b; file ...").
Send = Callable[[CodeMessage], str]


@dataclass
class OrderCodes:
    """The codes of one operation: sends one when the gate opens, checks the one given."""

    key: bytes
    operation_id: str
    kind: str
    site: str
    contacts: tuple[str, ...]
    valid_minutes: float
    report: Report
    save: Callable[[Report], None]
    send: Send
    now: Callable[[], datetime] = lambda: datetime.now(UTC)

    # -- what the report keeps ---------------------------------------------------------------
    def _sent(self, plan_hash: str) -> list[dict[str, Any]]:
        return [c for c in self.report.memory.get(SECTION, []) if c.get("plan_hash") == plan_hash]

    def _current(self, plan_hash: str) -> dict[str, Any] | None:
        """The newest code sent for this plan, if it is still valid."""
        sent = self._sent(plan_hash)
        if sent and datetime.fromisoformat(sent[-1]["expires_at"]) > self.now():
            return sent[-1]
        return None

    def _code(self, plan_hash: str, entry: dict[str, Any]) -> str:
        return order_code(self.key, self.operation_id, plan_hash, entry["expires_at"])

    # -- when the gate opens -----------------------------------------------------------------
    def issue(self, plan_hash: str) -> str:
        """Make sure a valid code for this plan has been sent (send one if not); returns the
        sentence the form and the log show: to whom, when, until when."""
        current = self._current(plan_hash) or self._send_new(plan_hash)
        return self.sentence(current)

    def _send_new(self, plan_hash: str) -> dict[str, Any]:
        now = self.now().replace(microsecond=0)
        expires = now + timedelta(minutes=self.valid_minutes)
        entry = {
            "key": expires.isoformat(),
            "plan_hash": plan_hash,
            "expires_at": expires.isoformat(),
        }
        code = self._code(plan_hash, entry)
        message = CodeMessage(
            event=f"order-code-{expires:%Y%m%dt%H%M%S}",
            title=f"Order code for {self.kind} {self.operation_id}",
            body=(
                f"The order to go ahead with {self.kind} {self.operation_id} on site "
                f"{self.site} (plan {plan_hash}) is asked for.\n\n"
                f"Order code: {code}\n\n"
                f"Give this code in the order form (field 'Order code'), or to the operations "
                f"team for `drp approve --code`. It is good for this operation and this plan "
                f"only, until {expires:%Y-%m-%d %H:%M} UTC.\n\n"
                "If you did not expect it, do not give it to anyone, and call the operations "
                "team."
            ),
            recipients=self.contacts,
        )
        where = self.send(message)
        entry.update(sent_at=now.isoformat(), sent_to=", ".join(self.contacts), via=where)
        self.report.memory.setdefault(SECTION, []).append(entry)
        self.save(self.report)
        return entry

    @staticmethod
    def sentence(entry: dict[str, Any]) -> str:
        sent = datetime.fromisoformat(entry["sent_at"])
        expires = datetime.fromisoformat(entry["expires_at"])
        return (
            f"an order code was sent to {entry['sent_to']} at {sent:%H:%M} UTC; it is valid "
            f"until {expires:%Y-%m-%d %H:%M} UTC"
        )

    # -- the answer --------------------------------------------------------------------------
    def problem(self, given: str, plan_hash: str) -> str | None:
        """Why `given` cannot be taken as the order code for this plan now (None: it can). An
        expired code gets a new one sent, and the reason says so."""
        typed = normalized(given)
        if not typed:
            current = self._current(plan_hash)
            sent = f" ({self.sentence(current)})" if current else ""
            return f"the order code is missing (field 'Order code'){sent}"
        for entry in reversed(self._sent(plan_hash)):
            if hmac.compare_digest(typed, normalized(self._code(plan_hash, entry))):
                expires = datetime.fromisoformat(entry["expires_at"])
                if expires > self.now():
                    return None
                renewed = self._current(plan_hash) or self._send_new(plan_hash)
                return (
                    f"the order code given expired at {expires:%Y-%m-%d %H:%M} UTC; a new one "
                    f"was sent ({self.sentence(renewed)})"
                )
        return (
            "the order code is wrong: give the last code sent to the customer's order contacts "
            f"for this operation and plan ({', '.join(self.contacts)})"
        )

    def proof(self, plan_hash: str) -> str:
        """What the report's order says of the code (never the code)."""
        current = self._current(plan_hash)
        if current is None:
            return "order code checked"
        return f"order code sent to {current['sent_to']} at {current['sent_at']}, checked"
