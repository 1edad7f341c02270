"""Prefect Secret blocks, as a place secrets are kept (`prefect-secret:NAME` references).

The only part of drp outside `flows/` that talks to Prefect; imported when such a reference is
resolved, so that nothing else needs Prefect to read an inventory.
"""

from __future__ import annotations

from typing import Any


def load_secret_block(name: str) -> str:
    """The value of the Secret block `name` (raises whatever Prefect raises)."""
    from prefect.blocks.system import Secret as SecretBlock

    # `_sync=True`: this function is sync even when called under an event loop.
    block: Any = SecretBlock.load(name, _sync=True)  # type: ignore[call-arg]
    return str(block.get())


async def aload_secret_block(name: str) -> str:
    """`load_secret_block` for async code."""
    from prefect.blocks.system import Secret as SecretBlock

    block: Any = await SecretBlock.aload(name)
    return str(block.get())
