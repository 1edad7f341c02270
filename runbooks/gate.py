"""The order gate, what is decided of an answer: is it an order, and what the report keeps.

The form itself is Prefect's (`flows.gate.Order`, a pause or suspend with typed input whose JSON
schema the UI renders under the brief); this module knows nothing of Prefect. `drp approve`
answers through the same API. An incomplete answer (no name, data loss not acknowledged) is
refused with a clear message and the gate opens again; a refusal or a timeout ends the run with
nothing changed.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal, Protocol

from runbooks.errors import DrpError

DEFAULT_TIMEOUT_SECONDS = 24 * 3600
DEFAULT_VALID_HOURS = 24.0
Decision = Literal["activate", "refuse"]

# How an answer reached the gate, as the answering side declares it (`channel` in the form): the
# UI fills in its prefilled value, an API call that leaves the field out gets API, and drp's own
# commands say which one they are.
VIA_UI = "Prefect UI"
VIA_API = "Prefect API"
VIA_APPROVE = "drp approve"
VIA_TERMINAL = "terminal prompt"
VIA_OPTION = "--order-by option"
CHANNELS = (VIA_UI, VIA_API, VIA_APPROVE, VIA_TERMINAL, VIA_OPTION)


def via_of(channel: str | None) -> str:
    """What the report records as the answer's channel (an unknown value is kept, marked)."""
    if not channel:
        return VIA_API
    return channel if channel in CHANNELS else f"{VIA_API} (declared {channel[:40]!r})"


def option_facts(*, force: bool, cleanup: bool | None = None) -> dict[str, str]:
    """The options that change what an operation does, as plan facts: the hash (what the
    person who orders approves) covers them. `--bwlimit` only changes how fast, not what, and
    is not among them; `--cleanup` exists for drills only (None elsewhere)."""
    facts = {"option --force": "yes" if force else "no"}
    if cleanup is not None:
        facts["option --cleanup"] = "yes" if cleanup else "no"
    return facts


class Answer(Protocol):
    """An answer to the order form, whatever carries it (the Prefect form, a terminal)."""

    ordered_by: str
    reference: str
    decision: str
    data_loss_acknowledged: bool
    plan_hash: str


FORM_FIELDS = {"ordered_by": "field 'Ordered by'", "reference": "field 'Order reference'"}


def signature_problems(
    ordered_by: str, reference: str, fields: dict[str, str] = FORM_FIELDS
) -> list[str]:
    """What is wrong with who orders and the order's reference; empty when both will do.
    `fields` names where each was given (the form's fields, or the command line's options:
    --order-by and --reference are checked before an operation starts)."""
    problems = []
    name = ordered_by.strip()
    if not name:
        problems.append(f"the name of the person who orders is missing ({fields['ordered_by']})")
    elif len(name) < 2:
        problems.append(
            f"the name of the person who orders, {name!r}, is too short "
            f"({fields['ordered_by']}): give their full name"
        )
    if not reference.strip():
        problems.append(f"the order reference is missing ({fields['reference']})")
    return problems


def order_problems(order: Answer, plan_hash: str) -> list[str]:
    """Why an answer cannot be taken as an order; empty when it can."""
    problems = signature_problems(order.ordered_by, order.reference)
    if order.decision == "activate":
        if not order.data_loss_acknowledged:
            problems.append(
                "the data loss is not acknowledged (tick 'Data loss acknowledged' to activate)"
            )
        if order.plan_hash != plan_hash:
            problems.append(
                f"the plan hash {order.plan_hash or '(empty)'} is not the plan shown "
                f"({plan_hash}): "
                "review the brief again and leave the hash as it is"
            )
    return problems


class GateTimeout(DrpError):
    """Nobody answered the order form before the gate's timeout."""


@dataclass(frozen=True)
class OrderRecord:
    """The order as it goes into the report."""

    ordered_by: str
    reference: str
    decision: str
    data_loss_acknowledged: bool
    plan_hash: str
    answered_at: datetime
    via: str  # one of CHANNELS
    code: str = ""  # with order codes: to whom the code went, and that it was checked

    @classmethod
    def from_order(cls, order: Answer, via: str) -> OrderRecord:
        return cls(
            ordered_by=order.ordered_by.strip(),
            reference=order.reference.strip(),
            decision=order.decision,
            data_loss_acknowledged=order.data_loss_acknowledged,
            plan_hash=order.plan_hash,
            answered_at=datetime.now(UTC),
            via=via,
        )

    @property
    def data(self) -> dict[str, Any]:
        return {
            "ordered_by": self.ordered_by,
            "reference": self.reference,
            "decision": self.decision,
            "data_loss_acknowledged": self.data_loss_acknowledged,
            "plan_hash": self.plan_hash,
            "answered_at": self.answered_at.isoformat(),
            "via": self.via,
            **({"code": self.code} if self.code else {}),
        }


# -- the stored order: signed, and valid for a while -------------------------------------------
SIGNED_FIELDS = ("ordered_by", "reference", "decision", "plan_hash", "answered_at")


def order_mac(key: bytes, operation_id: str, order: dict[str, Any]) -> str:
    """HMAC-SHA256 over the operation id and the order's who, reference, decision, plan hash
    and time: an order edited or written into the report by hand does not carry a valid one."""
    fields = [operation_id, *(str(order.get(name, "")) for name in SIGNED_FIELDS)]
    message = "\x1f".join(fields).encode()
    return hmac.new(key, message, hashlib.sha256).hexdigest()


@dataclass(frozen=True)
class OrderPolicy:
    """How long a given order stands, and the site secret that signs it (None: no secret in
    the inventory, so a stored order cannot be proved and is asked for again on resume)."""

    key: bytes | None = None
    valid_hours: float = DEFAULT_VALID_HOURS

    def sign(self, operation_id: str, order: dict[str, Any]) -> dict[str, Any]:
        if self.key is None:
            return dict(order)
        return {**order, "hmac": order_mac(self.key, operation_id, order)}

    def problem(
        self, operation_id: str, order: dict[str, Any], plan_hash: str, now: datetime
    ) -> str | None:
        """Why a stored order cannot be taken to go on now; None when it can."""
        if order.get("decision") != "activate":
            return "the order stored was not to go ahead"
        if order.get("plan_hash") != plan_hash:
            return (
                f"the order stored was for plan {order.get('plan_hash')}, the plan is now "
                f"{plan_hash}"
            )
        if self.key is None:
            return (
                "the inventory names no order secret (orders.secret), so the order stored "
                "cannot be proved"
            )
        given = str(order.get("hmac", ""))
        if not hmac.compare_digest(given, order_mac(self.key, operation_id, order)):
            return (
                "the order stored in the report does not carry a valid signature (written or "
                "changed by hand, or signed with another order secret)"
            )
        try:
            answered = datetime.fromisoformat(str(order.get("answered_at")))
        except ValueError:
            return "the order stored has no valid time"
        if answered.tzinfo is None:
            return "the order stored has no valid time"
        expires = answered + timedelta(hours=self.valid_hours)
        if now >= expires:
            return (
                f"the order given at {answered:%Y-%m-%d %H:%M} UTC expired at "
                f"{expires:%Y-%m-%d %H:%M} UTC (orders.valid_hours: {self.valid_hours:g})"
            )
        return None
