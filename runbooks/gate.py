"""The order gate: the run waits for the customer's order, shown the activation brief.

The gate is a Prefect pause (or suspend, for runs from a deployment) with typed input: the Prefect
UI renders the brief (markdown) above a form built from `Order`'s JSON schema; `drp approve`
answers through the same API. An incomplete answer (no name, data loss not acknowledged) is
refused with a clear message and the gate opens again; a refusal or a timeout ends the run with
nothing changed.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from prefect.input import RunInput
from pydantic import ConfigDict, Field

from runbooks.errors import DrpError

DEFAULT_TIMEOUT_SECONDS = 24 * 3600
Decision = Literal["activate", "refuse"]


class Order(RunInput):
    """The form shown to the person who orders (1stKYC in the plan)."""

    ordered_by: str = Field(
        min_length=2,
        description="Who gives the order: full name, as known to the operations team.",
        title="Ordered by",
    )
    reference: str = Field(
        min_length=1,
        description="Reference of the order: ticket number, e-mail subject or call log entry.",
        title="Order reference",
    )
    decision: Decision = Field(
        default="refuse",
        description="activate: go ahead with the plan shown above. refuse: stop, change nothing.",
        title="Decision",
    )
    data_loss_acknowledged: bool = Field(
        default=False,
        description="I understand that data written after the backups shown above will be lost.",
        title="Data loss acknowledged",
    )
    plan_hash: str = Field(
        default="",
        description="The plan hash shown above; leave it as it is.",
        title="Plan hash",
    )


def order_problems(order: Order, plan_hash: str) -> list[str]:
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
    def from_order(cls, order: Order, via: str) -> OrderRecord:
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


def order_form(
    brief_markdown: str, plan_hash: str, ordered_by: str = "", reference: str = ""
) -> type[Order]:
    """The form for one plan: the brief above it, the hash and the decision prefilled.

    A form opened again after an answer that was not taken shows the name and reference typed
    then (`ordered_by`, `reference`) as defaults; both stay required, and the data-loss
    acknowledgement is asked again. (`RunInput.with_initial_data` would drop the fields'
    descriptions that the UI shows.)
    """
    fields = Order.model_fields
    approved = plan_hash

    def typed(name: str, value: str, min_length: int) -> Any:
        """A required text field prefilled with what was typed (the UI shows the default)."""
        info = fields[name]
        return Field(
            min_length=min_length,
            description=info.description,
            title=info.title,
            json_schema_extra={"default": value} if value.strip() else None,
        )

    name_field = typed("ordered_by", ordered_by, 2)
    reference_field = typed("reference", reference, 1)

    class OrderForm(Order):
        model_config = ConfigDict(**{**Order.model_config, "title": "Order"})

        ordered_by: str = name_field
        reference: str = reference_field
        decision: Decision = Field(
            default="activate",
            description=fields["decision"].description,
            title=fields["decision"].title,
        )
        plan_hash: str = Field(
            default=approved,
            description=fields["plan_hash"].description,
            title=fields["plan_hash"].title,
        )

    OrderForm._description = brief_markdown
    return OrderForm
