"""A run without an operation id is named after its flow run; a reopened order form keeps what
was typed. Pure logic: no Prefect server, no lab."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from uuid import UUID

import pytest

from flows.order_form import order_form
from runbooks.operation import check_operation_id, derived_operation_id

RUN = UUID("7f3a9c01-5b2e-4d6f-8a90-1b2c3d4e5f60")
CREATED = datetime(2026, 11, 29, 2, 15, 42, tzinfo=UTC)


def test_derived_id_names_the_kind_the_creation_time_and_the_flow_run() -> None:
    operation_id = derived_operation_id("activate", RUN, CREATED)
    assert operation_id == "activate-20261129-0215-7f3a9c01"
    assert check_operation_id(operation_id) == operation_id


def test_the_same_flow_run_always_gives_the_same_id() -> None:
    # A restart after the gate, another worker, a retry: the same run, the same operation.
    paris = CREATED.astimezone(timezone(timedelta(hours=1)))
    assert derived_operation_id("drill", RUN, CREATED) == derived_operation_id("drill", RUN, paris)
    other = UUID("0461c177-e6f4-4399-8d81-08c4bc7d08c5")
    assert derived_operation_id("drill", other, CREATED) != derived_operation_id(
        "drill", RUN, CREATED
    )


def test_derived_id_refuses_an_unknown_kind() -> None:
    with pytest.raises(ValueError, match="unknown operation kind 'restore'"):
        derived_operation_id("restore", RUN, CREATED)


def test_first_form_has_no_name_or_reference_prefilled() -> None:
    schema = order_form("brief", "abc123").model_json_schema()
    props = schema["properties"]
    assert "default" not in props["ordered_by"] and "default" not in props["reference"]
    assert set(schema["required"]) == {"ordered_by", "reference"}
    assert props["plan_hash"]["default"] == "abc123"


def test_reopened_form_keeps_the_typed_name_and_reference_and_asks_again() -> None:
    form = order_form("brief", "abc123", ordered_by="Jane Doe", reference="1STKYC-42")
    schema = form.model_json_schema()
    props = schema["properties"]
    assert props["ordered_by"]["default"] == "Jane Doe"
    assert props["reference"]["default"] == "1STKYC-42"
    # Still required (the UI prefills them; clearing them is refused), and the data loss
    # must be acknowledged again against the figure stated now.
    assert set(schema["required"]) == {"ordered_by", "reference"}
    assert props["ordered_by"]["minLength"] == 2
    assert props["data_loss_acknowledged"]["default"] is False
    assert props["decision"]["default"] == "activate"
    assert props["plan_hash"]["default"] == "abc123"
    assert props["ordered_by"]["description"].startswith("Who gives the order")
