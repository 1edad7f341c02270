"""The order form: what the Prefect UI renders under the brief (a `RunInput`'s JSON schema).

What is decided of an answer (is it an order, what the report keeps) is `runbooks.gate`'s; this
module only gives the form its fields, titles, descriptions and prefilled values.
"""

from __future__ import annotations

from typing import Any

from prefect.input import RunInput
from pydantic import ConfigDict, Field

from runbooks.gate import VIA_UI, Decision


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
    # Declared by the answering side: the UI sends the value it shows prefilled, drp's commands
    # their own name; an API call that leaves it out is recorded as the API.
    channel: str = Field(
        default="",
        max_length=60,
        description="How this answer is given; leave it as it is.",
        title="Answered through",
        json_schema_extra={"default": VIA_UI},
    )


def order_form(
    brief_markdown: str,
    plan_hash: str,
    ordered_by: str = "",
    reference: str = "",
    code_note: str = "",
) -> type[Order]:
    """The form for one plan: the brief above it, the hash and the decision prefilled.

    A form opened again after an answer that was not taken shows the name and reference typed
    then (`ordered_by`, `reference`) as defaults; both stay required, and the data-loss
    acknowledgement is asked again. With `code_note` (to whom and until when an order code was
    sent) the form has an "Order code" field. (`RunInput.with_initial_data` would drop the fields'
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

    if not code_note:
        OrderForm._description = brief_markdown
        return OrderForm

    class OrderWithCode(OrderForm):
        model_config = ConfigDict(**{**Order.model_config, "title": "Order"})

        # Checked by the flow, not by the form: a missing one is refused with the reason.
        order_code: str = Field(
            default="",
            max_length=40,
            description=f"The one-time code: {code_note}. Without it the order is not taken.",
            title="Order code",
        )

    OrderWithCode._description = brief_markdown
    return OrderWithCode
