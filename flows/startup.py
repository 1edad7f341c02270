"""The `drp` command's start: its imports, without the cyclic garbage collector.

Importing drp's commands, then Prefect, makes about a million objects and no garbage, and the
collector walks them several times on the way (0.2-0.3 s of a command's start). Within
`imports_without_gc()` it waits; what the block made is then frozen (`gc.freeze`): later
collections, during the command, no longer walk it either.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def imports_without_gc() -> Iterator[None]:
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        gc.freeze()
        if enabled:
            gc.enable()
