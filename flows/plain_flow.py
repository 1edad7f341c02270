"""Flows whose parameters go to the Prefect API as they are.

Prefect turns a flow run's parameters into JSON with FastAPI's `jsonable_encoder`, and imports
FastAPI for that at the first run of a process: a tenth of a second of `drp drill`'s start, for
parameters that are plain JSON already (strings, numbers, booleans, None, lists of them). A
`plain_flow` sends such parameters unchanged, and leaves any other to Prefect's encoder.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from prefect import Flow


def is_plain(value: Any) -> bool:
    """JSON as it is: what the encoder would give back unchanged."""
    if value is None or isinstance(value, str | int | float | bool):
        return True
    if isinstance(value, list):
        return all(is_plain(item) for item in value)
    if isinstance(value, dict):
        return all(isinstance(key, str) and is_plain(item) for key, item in value.items())
    return False


class PlainParametersFlow(Flow[Any, Any]):
    """A flow whose plain parameters are sent as they are (see the module)."""

    def serialize_parameters(self, parameters: dict[str, Any]) -> dict[str, Any]:
        if all(is_plain(value) for value in parameters.values()):
            return dict(parameters)
        return super().serialize_parameters(parameters)


def plain_flow(**options: Any) -> Callable[[Callable[..., Any]], PlainParametersFlow]:
    """Like `prefect.flow(**options)`, for a `PlainParametersFlow`."""

    def make(fn: Callable[..., Any]) -> PlainParametersFlow:
        return PlainParametersFlow(fn=fn, **options)

    return make
