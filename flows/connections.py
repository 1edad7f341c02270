"""The SSH connections of an operation: one per host, shared by its record, its site lock and
its steps, opened as early as can be.

A flow run opens at once, side by side, the connections its operation reads first: the DRP host
(the record, the lock) and, before an activation or a drill, both backup servers (their
catalogues). When a command runs the flow in its own process (`drp drill`, `drp activate`,
`drp return`), it starts them before it even imports Prefect (`connect_early`): each takes
0.1-0.15 s, mostly waiting for the host, and Prefect's import leaves a second for that; the
flow run then takes them over. Nothing here imports Prefect.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from runbooks.connect import BACKUP_ROLES, HostPool
from runbooks.inventory import Role, Site

# Connections a command of this process started for the operation it is about to run, by
# inventory file, until its flow run takes them over.
_early: dict[Path | None, HostPool] = {}


def first_hosts(kind: str) -> list[Role]:
    """The hosts an operation of `kind` reads first."""
    return ["drp"] if kind == "return" else ["drp", *BACKUP_ROLES]


def _key(site: Site) -> Path | None:
    return site.source.resolve() if site.source is not None else None


def connect_early(site: Site, kind: str) -> None:
    """Start connecting, in the background, to the hosts an operation of `kind` reads first;
    its flow run, if in this process, takes the connections over."""
    close_early()
    pool = HostPool(site)
    pool.connect_soon(first_hosts(kind))
    _early[_key(site)] = pool


def close_early() -> None:
    """Close the connections started early that no flow run took over."""
    while _early:
        _early.popitem()[1].close()


@contextmanager
def operation_connections(site: Site, kind: str) -> Iterator[HostPool]:
    """The connections of one operation, those started early for it in this process if any,
    closed at its end."""
    pool = _early.pop(_key(site), None) or HostPool(site)
    try:
        pool.connect_soon(first_hosts(kind))
        yield pool
    finally:
        pool.close()
