"""The order gate, what is decided of an answer: is it an order, and what the report keeps.

The form itself is Prefect's (`flows.gate.Order`, a pause or suspend with typed input whose JSON
schema the UI renders under the brief); this module knows nothing of Prefect. `drp approve`
answers through the same API. An incomplete answer (no name, data loss not acknowledged) is
refused with a clear message and the gate opens again; a refusal or a timeout ends the run with
nothing changed.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal, Protocol

from runbooks.errors import DrpError

DEFAULT_TIMEOUT_SECONDS = 24 * 3600
Decision = Literal["activate", "refuse"]


class Answer(Protocol):
    """An answer to the order form, whatever carries it (the Prefect form, a terminal)."""

    ordered_by: str
    reference: str
    decision: str
    data_loss_acknowledged: bool
    plan_hash: str


def order_problems(order: Answer, plan_hash: str) -> list[str]:
    """Why an answer cannot be taken as an order; empty when it can."""
    problems = []
    if len(order.ordered_by.strip()) < 2:
        problems.append("the name of the person who orders is missing (field 'Ordered by')")
    if not order.reference.strip():
        problems.append("the order reference is missing (field 'Order reference')")
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
    via: str  # "prefect-ui/api", "terminal", "drill option"

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
        }
