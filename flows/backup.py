"""Prefect flows of the backups: `backup-environment` (daily) and `backup-user-databases` (every
2 hours). They only sequence the plain functions of `runbooks.backup_run`; each step is one task.

Both take the inventory path (`config`, or the `DRP_CONFIG` environment variable of the worker)
and may force the day parity (`parity: even|odd`), which picks the backup server: the even-day
server on even days of the UTC date, the odd-day server on odd days.

Backup tasks are never cached: each run writes a new set, and a re-run after a failure writes
another (the failed one stays without a manifest, listed as incomplete).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

from prefect import Task, flow, get_run_logger
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE

from runbooks.backup_run import (
    BackupContext,
    JobOutcome,
    failures,
    plan_environment_backup,
    plan_user_database_backup,
    run_jobs,
)
from runbooks.connect import site_from
from runbooks.errors import StepFailed
from runbooks.inventory import Site


def as_task(name: str, function: Callable[..., Any], *args: Any) -> Any:
    """Run one step as a Prefect task named after it (never cached, result not persisted)."""
    step = Task(
        function,
        name=name,
        task_run_name=name,
        cache_policy=NO_CACHE,
        persist_result=False,
        retries=0,
    )
    return step(*args)


def _artifact(title: str, outcomes: list[JobOutcome]) -> None:
    lines = [f"# {title}", ""]
    if not outcomes:
        lines.append("Nothing to back up.")
    for outcome in outcomes:
        lines.append(f"- {outcome.summary()}")
        lines += [f"  - {r.summary()}" for r in outcome.retention]
        lines += [f"  - warning: {w}" for w in outcome.warnings]
    create_markdown_artifact("\n".join(lines), key="backup-report", description=title)


def _run(site: Site, jobs: list[Any], title: str) -> list[dict[str, Any]]:
    logger = get_run_logger()
    ctx = BackupContext(site, say=logger.info)
    try:
        outcomes = run_jobs(ctx, jobs, call=as_task)
    finally:
        ctx.close()
    _artifact(title, outcomes)
    failed = failures(outcomes)
    if failed:  # the run ends Failed; the sets written by the other jobs stay complete
        raise StepFailed("; ".join(failed))
    return [o.data for o in outcomes]


@flow(name="backup-environment", log_prints=True)
def backup_environment(
    config: str | None = None,
    environment: str | None = None,
    parity: Literal["even", "odd"] | None = None,
    only: Literal["files", "databases"] | None = None,
) -> list[dict[str, Any]]:
    """Daily backup of files, configs and every database of one environment (all by default),
    to the server of the day; `only` restricts it to the files or the databases."""
    site = site_from(config)
    jobs = plan_environment_backup(
        site, environments=[environment] if environment else None, only=only, parity=parity
    )
    return _run(site, jobs, "Daily backup")


@flow(name="backup-user-databases", log_prints=True)
def backup_user_databases(
    config: str | None = None,
    environment: str | None = None,
    parity: Literal["even", "odd"] | None = None,
    both_servers: bool | None = None,
) -> list[dict[str, Any]]:
    """Backup of the user databases only, to the server of the day, or to both servers when the
    inventory says so (`backups.user_db_to_both_servers`; `both_servers` overrides it)."""
    site = site_from(config)
    jobs = plan_user_database_backup(
        site,
        environments=[environment] if environment else None,
        parity=parity,
        both=both_servers,
    )
    return _run(site, jobs, "User-database backup")
