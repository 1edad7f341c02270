"""Flow `drp-watch`: one round of supervision (deployed every minute), with a table artifact.

The round, the alerts and the alarm are plain Python (`runbooks.watch`); this flow adds what
needs Prefect: the table artifact of the run, and starting the activation deployment when the
disaster alarm is raised. That start (`start_activation`) never answers the order gate: the
activation waits there, suspended, for the customer.
"""

from __future__ import annotations

from typing import Any

from prefect import flow, get_run_logger
from prefect.artifacts import create_table_artifact

from runbooks.connect import site_from
from runbooks.errors import DrpError
from runbooks.watch.render import event_lines, table_rows
from runbooks.watch.watcher import Watcher

# States in which a run of the activation deployment still needs nobody to start another:
# waiting to start, running, or waiting at its gate (Paused / Suspended).
_WAITING_OR_RUNNING = ("SCHEDULED", "PENDING", "RUNNING", "PAUSED", "CANCELLING")
ALARM_TAG = "drp-watch-alarm"


def start_activation(deployment: str) -> str:
    """Start a run of the activation deployment (no parameters: as the UI's "Run" does), and
    return a sentence saying which, unless one is already waiting or running."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        DeploymentFilter,
        DeploymentFilterId,
        FlowRunFilter,
        FlowRunFilterState,
        FlowRunFilterStateType,
    )
    from prefect.client.schemas.objects import StateType
    from prefect.deployments import run_deployment
    from prefect.utilities.urls import url_for

    try:
        with get_client(sync_client=True) as client:
            found = client.read_deployment_by_name(deployment)
            pending = client.read_flow_runs(
                deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[found.id])),
                flow_run_filter=FlowRunFilter(
                    state=FlowRunFilterState(
                        type=FlowRunFilterStateType(
                            any_=[StateType(s) for s in _WAITING_OR_RUNNING]
                        )
                    )
                ),
                limit=1,
            )
        if pending:
            run = pending[0]
            state = run.state.name if run.state else "waiting"
            return (
                f"no activation was started: flow run {run.name} ({run.id}) of {deployment} is "
                f"already {state.lower()}"
            )
        run = run_deployment(
            deployment, parameters={}, timeout=0, as_subflow=False, tags=[ALARM_TAG]
        )
    except Exception as err:  # the server does not answer, no such deployment...
        raise DrpError(f"{deployment}: {type(err).__name__}: {err}") from None
    url = url_for("flow-run", obj_id=run.id)
    return (
        f"started {deployment} as flow run {run.name} ({run.id}): it runs its read-only "
        "preflight, then waits at its order gate" + (f" ({url})" if url else "")
    )


@flow(name="drp-watch", log_prints=True)
def drp_watch(config: str | None = None, alerts: bool = True) -> dict[str, Any]:
    """One round of supervision of every host of the inventory: availability, disks, system,
    processes, URL tests, databases, replicas, disk health, network and blocklists. Alert
    tickets on state changes (after `watch.alerts.after_failures` failed rounds, and when they
    clear); when production is lost as `watch.disaster` says, the alarm ticket and the
    activation deployment, which waits at its order gate. `alerts=False` only looks."""
    log = get_run_logger()
    site = site_from(config)
    with Watcher(site, alerts=alerts, start_activation=start_activation) as watcher:
        result = watcher.round()
    watch = result.watch
    log.info("%s", watch.summary())
    for line in event_lines(result.events):
        log.warning("%s", line)
    try:
        create_table_artifact(
            table=table_rows(watch),
            key="drp-watch",
            description=f"drp watch {site.name}: {watch.summary()}",
        )
    except Exception as err:  # the records are in the return value and the logs too
        log.warning("could not publish the table artifact: %s", err)
    return {
        "site": site.name,
        "status": watch.status.value,
        "seconds": watch.seconds,
        "counts": watch.counts(),
        "records": [r.data for r in watch.records],
        "events": [e.data for e in result.events],
        "alerts_open": result.alerts_open,
        "alarm": result.alarm,
    }
