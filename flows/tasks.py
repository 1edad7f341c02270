"""How the engine's steps run under Prefect: each one a task.

A world-changing step is a task whose result (its timeline record) is cached under the operation
id and the step's key, so a resumed run of the same operation is fast; every step still checks
the world itself, so a resume on another machine, without that cache, is just as correct. A
read-only check after the order is a task that is never cached: it says how the world is now.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from prefect import get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE
from prefect.context import TaskRunContext

from flows.progress import ArtifactProgress, emit
from runbooks.engine import Pending, Submit
from runbooks.render import report_markdown
from runbooks.report import Report
from runbooks.steps import Step


def _step_cache_key(context: TaskRunContext, parameters: dict[str, Any]) -> str:
    """Operation, plan and step: the plan hash covers the backup sets chosen, the targets and
    the options, so a cached result never stands for another plan. Even then, the engine runs
    the step's own check before it takes a cached result as done."""
    return f"drp-{parameters['operation_id']}-{parameters['plan_hash']}-{parameters['key']}"


@task(
    name="step",
    task_run_name="{key}",
    cache_key_fn=_step_cache_key,
    cache_expiration=timedelta(days=14),
    persist_result=True,
)
def run_step_task(step: Step, key: str, operation_id: str, plan_hash: str) -> dict[str, Any]:
    """One world-changing step. Steps that run side by side report progress as artifacts."""
    progress = ArtifactProgress(key) if step.parallel else emit
    return step.run(progress=progress).data


@task(name="check", task_run_name="{key}", cache_policy=NO_CACHE)
def run_check_task(step: Step, key: str) -> dict[str, Any]:
    """A read-only check after the order (the service through an address, through DNS)."""
    return step.run().data


def submitter(operation_id: str, plan_hash: str, *, fresh: bool = False) -> Submit:
    """The engine's `submit`: a cached task per step of this operation and plan; with `fresh`,
    the task runs again whatever the cache holds (and its result replaces the cached one)."""
    task_ = run_step_task.with_options(refresh_cache=True) if fresh else run_step_task

    def submit(step: Step) -> Pending:
        return task_.submit(step, step.key, operation_id, plan_hash)

    return submit


def submit_check(step: Step) -> Pending:
    return run_check_task.submit(step, step.key)


def publish_report(report: Report) -> None:
    """The report as a markdown artifact of the run (the JSON file stays the record)."""
    try:
        create_markdown_artifact(
            key=f"report-{report.operation_id}",
            markdown=report_markdown(report),
            description=f"{report.kind} {report.operation_id}: {report.outcome}",
        )
    except Exception as err:  # the JSON report is the record; the artifact is a convenience
        get_run_logger().warning("could not publish the report artifact: %s", err)
