"""Flow tests share the lab's one DRP host, so they share its site lock: a test that leaves an
operation failed or killed (as the fault tests do) keeps the site locked, as it should. Each test
starts and ends on a free site: a lock left over is released, and the release recorded in the
DRP host's lock ledger as any `drp unlock` is."""

from __future__ import annotations

from collections.abc import Iterator

import pytest


@pytest.fixture(autouse=True)
def _free_site(request: pytest.FixtureRequest) -> Iterator[None]:
    if "lab" not in request.fixturenames:
        yield
        return
    from flow_helpers import LAB_CONFIG

    from runbooks import connect, site_lock
    from runbooks.inventory import load_site

    def release(when: str) -> None:
        site = load_site(LAB_CONFIG)
        with connect.HostPool(site) as pool:
            held = site_lock.read_lock(pool["drp"])
            if held is not None:
                site_lock.unlock(
                    pool["drp"], held.operation_id, f"test {when}: {request.node.name}", by="tests"
                )

    release("set-up")
    yield
    release("teardown")
