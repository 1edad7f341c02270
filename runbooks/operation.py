"""Operation ids: one per activation, return or drill.

They key caches, tickets, reports and the markers left on hosts.
"""

from __future__ import annotations

import re
import secrets
from datetime import UTC, datetime
from uuid import UUID

KINDS = ("activate", "return", "drill", "backup", "stage")
_PATTERN = re.compile(r"[a-z][a-z0-9-]{2,62}[a-z0-9]")


def new_operation_id(kind: str, now: datetime | None = None) -> str:
    """A readable, sortable, unique id such as `activate-20261129-0215-7f3a`."""
    if kind not in KINDS:
        raise ValueError(f"unknown operation kind {kind!r}; expected one of {', '.join(KINDS)}")
    stamp = (now or datetime.now(UTC)).strftime("%Y%m%d-%H%M")
    return f"{kind}-{stamp}-{secrets.token_hex(2)}"


def check_operation_id(value: str) -> str:
    """The id itself when it is safe to use in file names, cache keys, markers and tickets."""
    # fullmatch: `$` would let a trailing newline through into file names and markers.
    if not isinstance(value, str) or not _PATTERN.fullmatch(value):
        raise ValueError(
            f"operation id {value!r} is not valid: use 4 to 64 lowercase letters, digits and "
            "dashes, starting with a letter (for example activate-20261129-0215-7f3a)"
        )
    return value


def derived_operation_id(kind: str, flow_run_id: UUID, created: datetime) -> str:
    """The operation id of a flow run started without one, such as
    `activate-20261129-0215-7f3a9c01`: its kind, when the run was created (UTC) and the first
    8 hex digits of the run's id. The same flow run always gives the same id."""
    if kind not in KINDS:
        raise ValueError(f"unknown operation kind {kind!r}; expected one of {', '.join(KINDS)}")
    stamp = created.astimezone(UTC).strftime("%Y%m%d-%H%M")
    return check_operation_id(f"{kind}-{stamp}-{flow_run_id.hex[:8]}")
