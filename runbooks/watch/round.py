"""One round of supervision: every probe on every host of the inventory, side by side.

Per host, one SSH command gathers what the system probes need (`host_facts`), over the pool's
connection (kept open between rounds by `drp watch`, opened per run by the flow). From the
orchestrator, at the same time: ping (ICMP or TCP), the URL tests, the databases, the replicas
and the DNS blocklists. A round takes about as long as its slowest host, not the sum.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from urllib.parse import urlsplit

from providers import db_health, netprobe
from providers.dbcommon import DbEndpoint
from providers.http_check import probe_url
from providers.ssh import SshError
from runbooks import connect
from runbooks.inventory import ROLES, Database, Role, Site
from runbooks.watch.host_facts import HostFacts, evaluate, gather_argv, parse_sections
from runbooks.watch.records import ProbeRecord, Status, WatchRound

MAX_THREADS = 16


@dataclass(frozen=True)
class Job:
    """A probe run from the orchestrator, and whom its record is about if it breaks."""

    host: str
    probe: str
    target: str
    run: Callable[[], ProbeRecord]


def _bounds(warning: float, unit: str) -> str:
    return f"warning > {warning:g}{unit}"


# -- over SSH ------------------------------------------------------------------------------------


def gather(site: Site, pool: connect.HostPool, role: Role) -> tuple[list[ProbeRecord], float]:
    """The `ssh` record and every record of the host's gathered facts; and the time taken."""
    config = site.watch
    name = connect.host_name(role)
    host = site.hosts.by_role()[role]
    argv = gather_argv(cpu_sample_seconds=config.cpu.sample_seconds, smart=config.smart.enabled)
    first: list[float] = []

    def on_output(_: str) -> None:
        if not first:
            first.append(time.time())

    started = time.monotonic()
    sent_at = time.time()
    try:
        result = pool[role].run(argv, timeout=config.timeout_seconds, on_output=on_output)
    except Exception as err:  # SshError, or the SSH library's own on a broken session
        if not isinstance(err, SshError):
            pool[role].close()  # the next round connects again
        text = str(err).splitlines()[0] if str(err) else type(err).__name__
        message = text if isinstance(err, SshError) else f"SSH to {name} failed: {text}"
        record = ProbeRecord(
            name,
            "ssh",
            Status.CRITICAL,
            message,
            None,
            "seconds",
            f"answers; warning > {config.ssh.warning_seconds:g} s",
        )
        return [record], time.monotonic() - started
    seconds = time.monotonic() - started
    warn = config.ssh.warning_seconds
    ssh = ProbeRecord(
        name,
        "ssh",
        Status.WARNING if seconds > warn else Status.OK,
        f"{host.ssh_target} answered; gathering took {seconds:.2f} s",
        round(seconds, 3),
        "seconds",
        f"answers; warning > {warn:g} s",
    )
    facts = HostFacts(
        host=name,
        role=role,
        address=host.address,
        sections=parse_sections(result.stdout),
        sent_at=sent_at,
        first_output_at=first[0] if first else time.time(),
        seconds=seconds,
    )
    return [ssh, *evaluate(facts, config)], seconds


# -- from the orchestrator -----------------------------------------------------------------------


def ping_record(site: Site, role: Role) -> ProbeRecord:
    config = site.watch.ping
    host = site.hosts.by_role()[role]
    result = netprobe.ping(
        host.address,
        method=config.method,
        tcp_port=config.tcp_port or host.port,
        timeout=config.timeout_seconds,
    )
    threshold = (
        f"answers within {config.timeout_seconds:g} s; warning > {config.warning_seconds:g} s"
    )
    how = "ICMP echo" if result.method == "icmp" else f"TCP {result.method.split(':')[1]}"
    note = f" ({result.note})" if result.note else ""
    if result.seconds is None:
        return ProbeRecord(
            connect.host_name(role),
            "ping",
            Status.CRITICAL,
            f"{host.address}: {result.error}{note}",
            None,
            "seconds",
            threshold,
        )
    slow = result.seconds > config.warning_seconds
    return ProbeRecord(
        connect.host_name(role),
        "ping",
        Status.WARNING if slow else Status.OK,
        f"{host.address} answered {how} in {result.seconds * 1000:.1f} ms{note}",
        round(result.seconds, 4),
        "seconds",
        threshold,
    )


def _url_record(
    host: str,
    url: str,
    address: str | None,
    expected_status: int,
    expected_text: str | None,
    max_seconds: float,
    timeout: float,
) -> ProbeRecord:
    probe = probe_url(url, address=address, expected_text=expected_text, timeout=timeout)
    problems = probe.problems(expected_status, expected_text, float("inf"))
    threshold = (
        f"status {expected_status}"
        + (f", contains {expected_text!r}" if expected_text else "")
        + f"; warning > {max_seconds:g} s"
    )
    if problems:
        status = Status.CRITICAL
        message = (
            f"{probe.sentence()}: {'; '.join(problems)}" if not probe.error else probe.sentence()
        )
    elif probe.seconds > max_seconds:
        status = Status.WARNING
        message = f"{probe.sentence()}, more than {max_seconds:g} s"
    else:
        status, message = Status.OK, probe.sentence()
    value = round(probe.seconds, 4) if probe.status is not None else None
    return ProbeRecord(host, "url", status, message, value, "seconds", threshold, url)


def url_jobs(site: Site) -> list[Job]:
    """The environments' url_checks through production's public address (the service as
    production gives it, whatever DNS says), and the inventory's other URL tests."""
    timeout = site.watch.timeout_seconds
    production = str(site.hosts.production.public_ipv4)
    jobs: list[Job] = []
    for env in site.environments:
        for check in env.url_checks:
            jobs.append(
                Job(
                    "production",
                    "url",
                    check.url,
                    partial(
                        _url_record,
                        "production",
                        check.url,
                        production,
                        check.expected_status,
                        check.expected_text,
                        check.max_seconds,
                        min(timeout, max(check.max_seconds * 2, 5)),
                    ),
                )
            )
    for extra in site.watch.urls:
        via = extra.via
        host = connect.host_name(via) if via else (urlsplit(extra.url).hostname or "url")
        address = str(site.hosts.by_role()[via].public_ipv4) if via else None
        jobs.append(
            Job(
                host,
                "url",
                extra.url,
                partial(
                    _url_record,
                    host,
                    extra.url,
                    address,
                    extra.expected_status,
                    extra.expected_text,
                    extra.max_seconds,
                    min(timeout, max(extra.max_seconds * 2, 5)),
                ),
            )
        )
    return jobs


def _database_record(site: Site, role: Role, env_db: Database) -> ProbeRecord:
    config = site.watch.databases
    endpoint = connect.db_endpoint(site, env_db, "production" if role == "production" else "drp")
    target = f"{env_db.engine}/{env_db.name}"
    threshold = f"answers; warning > {config.warning_seconds:g} s"
    try:
        seconds = db_health.answers(
            env_db.engine,
            endpoint,
            connect.database_password(site, env_db),
            timeout=min(site.watch.timeout_seconds, 10),
        )
    except db_health.HealthError as err:
        return ProbeRecord(
            connect.host_name(role), "database", Status.CRITICAL, str(err), None, "seconds",
            threshold, target,
        )  # fmt: skip
    except Exception as err:  # a secret that cannot be resolved, a driver error
        return ProbeRecord(
            connect.host_name(role), "database", Status.UNKNOWN,
            f"{endpoint.label}: not asked: {err}", None, "seconds", threshold, target,
        )  # fmt: skip
    return ProbeRecord(
        connect.host_name(role),
        "database",
        Status.WARNING if seconds > config.warning_seconds else Status.OK,
        f"{env_db.engine} {endpoint.label} at {endpoint.address}:{endpoint.port} answered in "
        f"{seconds * 1000:.0f} ms",
        round(seconds, 4),
        "seconds",
        threshold,
        target,
    )


def database_jobs(site: Site) -> list[Job]:
    if not site.watch.databases.enabled:
        return []
    jobs: list[Job] = []
    for env in site.environments:
        for db in env.databases:
            for role in ("production", "drp"):
                run = partial(_database_record, site, role, db)
                jobs.append(Job(connect.host_name(role), "database", f"{db.engine}/{db.name}", run))
    return jobs


def _replication_record(site: Site, index: int) -> ProbeRecord:
    replica = site.watch.replication[index]
    db = next(d for env in site.environments for d in env.databases if d.name == replica.database)
    standby_host = site.hosts.by_role()[replica.standby]
    endpoint = DbEndpoint(
        host_name=connect.host_name(replica.standby),
        address=replica.standby_address or standby_host.address,
        port=replica.standby_port or db.port,
        user=db.user,
        dbname=db.name,
    )
    threshold = _bounds(replica.warning_lag_seconds, " s") + (
        f", critical > {replica.critical_lag_seconds:g} s"
    )
    name = connect.host_name(replica.standby)
    target = f"{db.engine}/{db.name}"
    try:
        password = connect.database_password(site, db)
        timeout = min(site.watch.timeout_seconds, 10)
        if db.engine == "postgresql":
            state = db_health.postgres_replica(endpoint, password, timeout)
        else:
            state = db_health.mysql_replica(endpoint, password, timeout)
    except db_health.HealthError as err:
        return ProbeRecord(
            name, "replication", Status.CRITICAL, str(err), None, "seconds", threshold, target
        )
    detail = state.detail
    if db.engine == "postgresql":
        # What the primary says of its standbys, when it answers (production may be the loss).
        primary = connect.db_endpoint(
            site, db, "production" if replica.primary == "production" else "drp"
        )
        try:
            senders = db_health.postgres_senders(primary, password, timeout)
            detail += f"; {primary.label} streams to " + (", ".join(senders) or "no standby")
        except db_health.HealthError:
            pass
    if not state.replicating:
        return ProbeRecord(
            name, "replication", Status.CRITICAL, detail, None, "seconds", threshold, target
        )
    if state.lag_seconds is None:
        return ProbeRecord(
            name, "replication", Status.UNKNOWN, detail, None, "seconds", threshold, target
        )
    lag = state.lag_seconds
    status = (
        Status.CRITICAL
        if lag > replica.critical_lag_seconds
        else Status.WARNING
        if lag > replica.warning_lag_seconds
        else Status.OK
    )
    return ProbeRecord(
        name, "replication", status, detail, round(lag, 3), "seconds", threshold, target
    )


def replication_jobs(site: Site) -> list[Job]:
    engines = {db.name: db.engine for env in site.environments for db in env.databases}
    return [
        Job(
            connect.host_name(replica.standby),
            "replication",
            f"{engines.get(replica.database, '?')}/{replica.database}",
            partial(_replication_record, site, index),
        )
        for index, replica in enumerate(site.watch.replication)
    ]


def _blocklist_record(site: Site, host: str, address: str) -> ProbeRecord:
    config = site.watch.blocklists
    listed_status = Status(config.listed)
    answers = [
        netprobe.blocklist_lookup(
            address,
            bl.zone,
            nameservers=[str(a) for a in bl.nameservers],
            port=bl.port,
            timeout=config.timeout_seconds,
        )
        for bl in config.zones
    ]
    listed = [a for a in answers if a.listed]
    failed = [a for a in answers if a.listed is None]
    zones = ", ".join(bl.zone for bl in config.zones)
    threshold = f"not listed in {zones}"
    if listed:
        shown = "; ".join(
            f"{a.zone} ({', '.join(a.codes)}{': ' + a.reason if a.reason else ''})" for a in listed
        )
        return ProbeRecord(
            host, "blocklist", listed_status, f"{address} is listed in {shown}",
            float(len(listed)), "count", threshold, address,
        )  # fmt: skip
    if failed:
        shown = "; ".join(f"{a.zone}: {a.error}" for a in failed)
        return ProbeRecord(
            host, "blocklist", Status.UNKNOWN, f"{address}: {shown}", None, "count", threshold,
            address,
        )  # fmt: skip
    return ProbeRecord(
        host, "blocklist", Status.OK, f"{address} is in none of {len(answers)} list(s)", 0.0,
        "count", threshold, address,
    )  # fmt: skip


def blocklist_jobs(site: Site) -> list[Job]:
    config = site.watch.blocklists
    if not config.zones:
        return []
    targets: list[tuple[str, str]] = []
    for role in ROLES:
        h = site.hosts.by_role()[role]
        targets.append((connect.host_name(role), str(h.public_ipv4)))
        if h.public_ipv6 is not None:
            targets.append((connect.host_name(role), str(h.public_ipv6)))
    targets += [(str(a), str(a)) for a in config.addresses]
    seen: set[tuple[str, str]] = set()
    jobs: list[Job] = []
    for host, address in targets:
        if (host, address) not in seen:
            seen.add((host, address))
            run = partial(_blocklist_record, site, host, address)
            jobs.append(Job(host, "blocklist", address, run))
    return jobs


# -- the round -----------------------------------------------------------------------------------


def _result(job: Job, future: Future[ProbeRecord]) -> ProbeRecord:
    """A probe's record; a probe that broke is `unknown` (never ok), saying how it broke."""
    try:
        return future.result()
    except Exception as err:
        message = f"the probe failed: {type(err).__name__}: {err}"
        return ProbeRecord(job.host, job.probe, Status.UNKNOWN, message, target=job.target)


def run_round(site: Site, pool: connect.HostPool) -> WatchRound:
    """Every probe of the inventory, once. Nothing is written anywhere."""
    started_at = datetime.now(UTC)
    started = time.monotonic()
    watch = WatchRound(site=site.name, started=started_at)
    for role in ROLES:
        pool[role]  # the runners exist before the threads share the pool
    jobs = [Job(connect.host_name(r), "ping", "", partial(ping_record, site, r)) for r in ROLES]
    jobs += url_jobs(site) + database_jobs(site) + replication_jobs(site) + blocklist_jobs(site)
    with ThreadPoolExecutor(max_workers=MAX_THREADS, thread_name_prefix="drp-watch") as executor:
        gathered: dict[Role, Future[tuple[list[ProbeRecord], float]]] = {
            role: executor.submit(gather, site, pool, role) for role in ROLES
        }
        singles = [(job, executor.submit(job.run)) for job in jobs]
        for role, future in gathered.items():
            records, seconds = future.result()
            watch.records += records
            watch.host_seconds[connect.host_name(role)] = round(seconds, 3)
        watch.records += [_result(job, future) for job, future in singles]
    order = {connect.host_name(r): i for i, r in enumerate(ROLES)}
    watch.records.sort(key=lambda r: (order.get(r.host, len(order)), r.host))
    watch.seconds = round(time.monotonic() - started, 3)
    return watch
