"""The DNS steps on the running lab: a zone switches all together or not at all, each record is
read once per step, and verification asks every authoritative server directly.

The lab's zone goes through the OVH emulator (whose refresh writes to Knot), as config/lab.yaml
sets it up; each test leaves the zone on production, as it found it.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import dns.message
import dns.query
import pytest
import yaml

from lab import topology
from providers.dns_base import RecordSet
from providers.dns_check import AuthoritativeServer
from providers.ovh_dns import OvhDns
from runbooks.common_steps import CheckService, RecordSwitch, SwitchZone, switch_zones
from runbooks.context import OperationContext
from runbooks.engine import OperationRun, Runbook
from runbooks.errors import UnsafePlan
from runbooks.inventory import Site, load_site
from runbooks.plan import Plan
from runbooks.report import Report, save_report
from runbooks.services import dns_provider, reports_dir

pytestmark = pytest.mark.lab

LAB = topology.REPO_ROOT / "config" / "lab.yaml"
ZONE = topology.ZONE
PRODUCTION = topology.host("production").address
DRP = topology.host("drp").address
SILENT = "127.0.10.59"  # nothing listens there
BOTH = [("", "A"), ("www", "A")]


def _site(directory: Path, nameservers: list[dict[str, Any]] | None = None) -> Site:
    """The lab's inventory, its name servers replaced when given."""
    data = yaml.safe_load(LAB.read_text())
    if nameservers is not None:
        data["dns"]["nameservers"] = nameservers

    def absolute(value: str) -> str:
        return value if value.startswith(("/", "$")) else str((LAB.parent / value).resolve())

    for key in ("env_file", "known_hosts"):
        data[key] = absolute(data[key])
    for host in data["hosts"].values():
        host["key"] = absolute(host["key"])
    directory.mkdir(parents=True, exist_ok=True)
    data["tickets"] = [{"type": "file", "path": str(directory / "tickets.jsonl")}]
    path = directory / "site.yaml"
    path.write_text(yaml.safe_dump(data))
    return load_site(path)


class CountingOvh(OvhDns):
    """The real OVH provider, counting what a step asks of it."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.reads: list[tuple[str, str]] = []
        self.reads_before_write: list[tuple[str, str]] | None = None
        self.refreshes = 0

    def _read(self, zone: str, name: str, rtype: str) -> RecordSet:
        self.reads.append((name, rtype))
        return super()._read(zone, name, rtype)

    def _write_zone(self, zone: str, changes: Any) -> str:
        self.reads_before_write = list(self.reads)
        return super()._write_zone(zone, changes)

    def refresh(self, zone: str) -> str:
        self.refreshes += 1
        return super().refresh(zone)


def _context(site: Site, name: str) -> tuple[OperationContext, CountingOvh]:
    ctx = OperationContext(site, f"{name}-{time.time_ns()}", "activate")
    made = dns_provider(site)
    assert isinstance(made, OvhDns)
    counting = CountingOvh(
        endpoint=made.endpoint,
        application_key=made._keys[0],
        application_secret=made._keys[1],
        consumer_key=made._keys[2],
    )
    ctx._dns = counting
    return ctx, counting


def _switches(site: Site, target: str) -> list[RecordSwitch]:
    return [RecordSwitch(r, target) for e in site.environments for r in e.dns_records]


def knot() -> dict[str, list[str]]:
    """What the lab's authoritative server answers for the apex and www."""
    found = {}
    for name in ("@", "www"):
        qname = ZONE if name == "@" else f"{name}.{ZONE}"
        query = dns.message.make_query(qname, "A")
        answer = dns.query.tcp(query, topology.DNS_ADDRESS, port=topology.DNS_PORT, timeout=5)
        found[name] = sorted(r.to_text() for rrset in answer.answer for r in rrset)
    return found


def _run(ctx: OperationContext, steps: list[Any], plan: Plan) -> tuple[OperationRun, Report]:
    report = Report(ctx.operation_id, "activate", ctx.site.name, started=datetime.now(UTC))
    run = OperationRun(Runbook("activate", [], steps), plan, report, save=lambda _r: None)
    return run, report


@pytest.fixture
def site(lab: Any, tmp_path: Path) -> Iterator[Site]:
    made = _site(tmp_path / "site")
    provider = dns_provider(made)
    assert knot() == {"@": [PRODUCTION], "www": [PRODUCTION]}, "the lab zone starts on production"
    yield made
    for name in ("", "www"):
        provider.set_records(ZONE, name, "A", [PRODUCTION])
    provider.refresh(ZONE)
    assert knot() == {"@": [PRODUCTION], "www": [PRODUCTION]}


def test_a_zone_switch_reads_each_record_once_and_switches_them_together(site: Site) -> None:
    ctx, provider = _context(site, "dns-steps-once")
    steps = switch_zones(ctx, _switches(site, DRP))
    switch, wait = steps
    assert isinstance(switch, SwitchZone)
    plan = Plan.build(ctx.operation_id, "activate", site.name, steps)
    # The plan read each record once, and shows it before -> after.
    assert provider.reads == BOTH
    shown = [(c.target, c.detail) for s in plan.steps for c in s.changes]
    assert shown[:2] == [
        (f"{ZONE} @ A", f"{PRODUCTION} -> {DRP}"),
        (f"{ZONE} www A", f"{PRODUCTION} -> {DRP}"),
    ]

    provider.reads.clear()
    run, report = _run(ctx, steps, plan)
    run.run_steps(steps)
    # Before the change: each record read once (what the report keeps, the check, the
    # switch all use it); after it: read back once. One refresh for the whole zone.
    assert provider.reads_before_write == BOTH
    assert sorted(provider.reads) == sorted(BOTH * 2)
    assert provider.refreshes == 1
    assert knot() == {"@": [DRP], "www": [DRP]}
    outcomes = {r.step: r.outcome.value for r in report.timeline}
    assert outcomes == {switch.key: "applied", wait.key: "skipped"}
    (record,) = [r for r in report.timeline if r.step == switch.key]
    assert record.reason.startswith(f"2 record(s) of {ZONE} changed together: ")
    assert record.details["records"] == [
        {"name": "@", "type": "A", "before": [PRODUCTION], "after": [DRP]},
        {"name": "www", "type": "A", "before": [PRODUCTION], "after": [DRP]},
    ]
    # The report keeps each record as it was, for the return.
    assert report.dns_before == [
        {"key": switch.key, "zone": ZONE, "name": "@", "type": "A", "targets": [PRODUCTION]},
        {"key": switch.key, "zone": ZONE, "name": "www", "type": "A", "targets": [PRODUCTION]},
    ]
    # Resumed after the switch, the plan still shows the values from before it: the order
    # given for it holds.
    save_report(report, reports_dir(site))
    again_ctx, _ = _context(site, "unused")
    again_ctx.operation_id = ctx.operation_id
    again = switch_zones(again_ctx, _switches(site, DRP))
    assert Plan.build(ctx.operation_id, "activate", site.name, again).hash == plan.hash
    assert again[0].check().done


def test_a_value_changed_after_the_plan_stops_the_whole_zone_unless_forced(site: Site) -> None:
    ctx, provider = _context(site, "dns-steps-changed")
    steps = switch_zones(ctx, _switches(site, DRP))
    switch = steps[0]
    plan = Plan.build(ctx.operation_id, "activate", site.name, steps)
    provider.set_records(ZONE, "www", "A", ["127.0.10.99"])  # someone, after the plan
    provider.refresh(ZONE)

    # The plan's hash covers the values it read: a plan made now is another plan.
    later_ctx, _ = _context(site, "dns-steps-later")
    later = switch_zones(later_ctx, _switches(site, DRP))
    later_plan = Plan.build(later_ctx.operation_id, "activate", site.name, later)
    assert f"127.0.10.99 -> {DRP}" in [c.detail for s in later_plan.steps for c in s.changes]
    same_id = Plan.build(ctx.operation_id, "activate", site.name, later)
    assert same_id.hash != plan.hash

    run, report = _run(ctx, steps, plan)
    with pytest.raises(UnsafePlan) as stopped:
        run.run_steps(steps)
    assert str(stopped.value) == (
        f"www.{ZONE} A points at 127.0.10.99, which is neither {PRODUCTION} nor {DRP}: someone "
        "changed it since. Check who did and why; run again with --force to switch it anyway"
    )
    # Nothing of the zone changed: the apex stays on production too.
    assert knot() == {"@": [PRODUCTION], "www": ["127.0.10.99"]}
    assert {r.step: r.outcome.value for r in report.timeline} == {switch.key: "failed"}

    ctx.force = True
    run.run_steps(steps)
    assert knot() == {"@": [DRP], "www": [DRP]}
    (record,) = [r for r in report.timeline if r.step == switch.key]
    assert record.outcome.value == "applied"
    assert "(forced with --force over: www.drp-lab.test A points at 127.0.10.99" in record.reason
    assert record.details["forced"] == [
        f"www.{ZONE} A points at 127.0.10.99, which is neither {PRODUCTION} nor {DRP}"
    ]


def test_verification_asks_every_given_name_server_directly(lab: Any, tmp_path: Path) -> None:
    two = [{"address": topology.DNS_ADDRESS, "port": 53}, {"address": SILENT, "port": 53}]
    site = _site(tmp_path / "two", nameservers=two)
    ctx = OperationContext(site, f"dns-verify-{time.time_ns()}", "activate")
    env = site.environments[0]
    wait = switch_zones(ctx, _switches(site, PRODUCTION))[1]  # the zone is on production
    state = wait.check()
    assert not state.done
    assert f"1 of 2 authoritative server(s) of {ZONE} do not answer" in state.reason
    assert f"{SILENT}: " in state.reason
    # Through DNS, the service check asks both servers as well, not a resolver.
    service = CheckService(ctx, env)
    state = service.check()
    assert not state.done
    assert state.reason.startswith(f"www.{ZONE}. A: {SILENT}: "), state.reason

    # The lab's one server: both agree.
    one = _site(tmp_path / "one")
    ctx = OperationContext(one, f"dns-verify-{time.time_ns()}", "activate")
    assert switch_zones(ctx, _switches(one, PRODUCTION))[1].check().done
    assert CheckService(ctx, one.environments[0]).check().done


def test_without_name_servers_every_ns_of_the_zone_is_asked(lab: Any, tmp_path: Path) -> None:
    site = _site(tmp_path / "none", nameservers=[])
    ctx = OperationContext(site, f"dns-ns-{time.time_ns()}", "activate")
    wait = switch_zones(ctx, _switches(site, PRODUCTION))[1]
    # The NS records as the provider holds them, their addresses from the zone too.
    assert wait.servers() == (AuthoritativeServer(f"ns1.{ZONE}.", topology.DNS_ADDRESS, 53),)
    assert wait.check().done
