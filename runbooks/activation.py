"""The steps of the plan's activation method, built from the inventory and the chosen backups.

  preflight (read-only): DRP host and databases reachable, restore targets safe, disk space,
                         backups chosen, DNS credentials
  -- the customer's order --
  copy files and configurations  backup server -> DRP server (rsync on the DRP server)
  import the databases           dump pulled to the DRP server, restored there, counts checked
  verify the service             URL checks sent to the DRP address with the site's Host
  information ticket             "DRP finalized"
  switch DNS                     every record to the DRP address; refresh; all servers agree
  verify again                   URL checks through the name, as the servers now answer it

A drill runs the same steps without the DNS switch (and with a "drill finished" ticket).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import dns.resolver

from providers.database import engine_for
from providers.dbcommon import DbEndpoint, NonEmptyDatabase
from providers.dns_base import BaseDnsProvider, DnsError, relative_name
from providers.dns_check import wait_for_propagation
from providers.http_check import probe_url
from providers.rsync import CopyOptions, CopyProgress, copy_tree, plan_copy
from providers.tickets import Ticket, TicketBackend
from runbooks import connect
from runbooks.backups import ChosenDump, ChosenTree, Selection
from runbooks.errors import StepFailed
from runbooks.inventory import Database, DnsRecord, Environment, Role, Site, Tree, UrlCheck
from runbooks.render import human_bytes
from runbooks.services import dns_provider, dns_resolver, ticket_backends
from runbooks.steps import (
    Applied,
    Change,
    Check,
    Milestone,
    ProgressCallback,
    ReadOnlyStep,
    Step,
    Write,
)

STAGING_DIR = ".drp/staging"  # on the DRP server, relative to the SSH user's home
ASSUMED_COPY_RATE = 100e6  # bytes/s, for the copy-time estimate until drills measure one


# -- the operation's shared context ------------------------------------------------------------
@dataclass
class Operation:
    """What every step of one operation shares: inventory, connections, chosen backups."""

    site: Site
    operation_id: str
    kind: str  # activate | drill
    selection: Selection
    force: bool = False
    bwlimit_kib: int | None = None  # spare a shared link: KiB/s per copy (None: full speed)
    pool: connect.HostPool = field(init=False)
    _dns: BaseDnsProvider | None = field(default=None, init=False)
    _tickets: list[TicketBackend] | None = field(default=None, init=False)

    def __post_init__(self) -> None:
        self.pool = connect.HostPool(self.site)

    @property
    def dns(self) -> BaseDnsProvider:
        if self._dns is None:
            self._dns = dns_provider(self.site)
        return self._dns

    @property
    def tickets(self) -> list[TicketBackend]:
        if self._tickets is None:
            self._tickets = ticket_backends(self.site)
        return self._tickets

    @property
    def drp_ip(self) -> str:
        return str(self.site.hosts.drp.public_ipv4)

    def close(self) -> None:
        self.pool.close()


# -- preflight (read-only) ---------------------------------------------------------------------
class HostReachable(ReadOnlyStep):
    phase = 10

    def __init__(self, op: Operation, role: Role) -> None:
        super().__init__(
            f"preflight-ssh-{connect.host_name(role)}", f"Reach {connect.host_name(role)} over SSH"
        )
        self.op, self.role = op, role

    def describe(self) -> list[Change]:
        h = connect.host(self.op.site, self.role)
        return [Change("check", f"ssh {h.ssh_target}", "host key checked against known_hosts")]

    def check(self) -> Check:
        runner = self.op.pool[self.role]
        result = runner.run(["sh", "-c", "echo ok"], check=False, timeout=30)
        if result.ok:
            h = connect.host(self.op.site, self.role)
            return Check(True, f"{connect.host_name(self.role)} answers over SSH as {h.ssh_target}")
        return Check(False, f"{connect.host_name(self.role)}: {result.stderr.strip()[:200]}")


class RestoreTargetSafe(ReadOnlyStep):
    """The DRP database server answers and the target database may be restored over."""

    phase = 11

    def __init__(self, op: Operation, env: Environment, db: Database, chosen: ChosenDump) -> None:
        super().__init__(f"preflight-db-{env.name}-{db.name}", f"Check database {db.name} on drp")
        self.op, self.db, self.chosen = op, db, chosen

    def describe(self) -> list[Change]:
        return [
            Change(
                "check", f"drp/{self.db.name}", f"{self.db.engine} reachable, safe to restore over"
            )
        ]

    def check(self) -> Check:
        endpoint = connect.db_endpoint(self.op.site, self.db, "drp")
        password = connect.database_password(self.op.site, self.db)
        engine = engine_for(self.db.engine)
        try:
            decision = engine.restore_decision(
                endpoint, password, backup_id(self.chosen), force=self.op.force
            )
        except NonEmptyDatabase as err:
            return Check(False, f"{err}")
        return Check(True, f"drp/{self.db.name} reachable: {decision.reason}")


class DiskSpace(ReadOnlyStep):
    phase = 12

    def __init__(self, op: Operation) -> None:
        super().__init__("preflight-disk", "Check free disk space on drp")
        self.op = op
        # Dumps are staged before they are restored, and a database takes about as much
        # room as its dump again: count dumps twice.
        self.needed = sum(
            sum(t.tree.bytes for t in c.trees) + 2 * sum(d.dump.size for d in c.dumps)
            for c in op.selection.environments.values()
        )

    def describe(self) -> list[Change]:
        return [Change("check", "drp free space", f"at least {human_bytes(self.needed)}")]

    def check(self) -> Check:
        result = self.op.pool["drp"].run(["df", "-Pk", "."], timeout=30)
        lines = result.stdout.strip().splitlines()
        available = int(lines[-1].split()[3]) * 1024
        words = f"{human_bytes(available)} free on drp, {human_bytes(self.needed)} needed"
        return Check(available >= self.needed, words)


class BackupsChosen(ReadOnlyStep):
    phase = 13

    def __init__(self, op: Operation) -> None:
        super().__init__("preflight-backups", "Choose the newest verified backups")
        self.op = op

    def describe(self) -> list[Change]:
        return [
            Change("check", s.label, "verified against its manifest")
            for s in _sets(self.op.selection)
        ]

    def check(self) -> Check:
        selection = self.op.selection
        if not selection.complete:
            why = "; ".join(selection.missing + selection.warnings)
            return Check(False, f"{why}. See `drp backup list`; take one with `drp backup run`")
        chosen = ", ".join(s.label for s in _sets(selection))
        skipped = f" (skipped: {'; '.join(selection.warnings)})" if selection.warnings else ""
        return Check(True, f"verified {chosen}{skipped}")


class DnsCredentials(ReadOnlyStep):
    phase = 14

    def __init__(self, op: Operation) -> None:
        super().__init__("preflight-dns", "Check DNS provider credentials (read-only)")
        self.op = op

    def describe(self) -> list[Change]:
        return [Change("check", f"dns {z}", "read the zone") for z in self.op.site.dns.zones]

    def check(self) -> Check:
        reasons = []
        for zone in self.op.site.dns.zones:
            try:
                reasons.append(self.op.dns.check_credentials(zone))
            except DnsError as err:
                return Check(False, str(err))
        return Check(True, "; ".join(reasons))


# -- after the order ---------------------------------------------------------------------------
class CopyTree(Step):
    """One file or configuration tree, pulled by the DRP server from the chosen backup server."""

    phase = 20
    parallel = True
    stage = "copy"

    def __init__(self, op: Operation, env: Environment, tree: Tree, chosen: ChosenTree) -> None:
        section = chosen.tree.section.value
        super().__init__(
            f"copy-{env.name}-{section}-{chosen.tree.name}",
            f"Copy {section} {tree.path} of {env.name}",
        )
        self.op, self.tree, self.chosen = op, tree, chosen
        record = chosen.tree
        if record.source_is_file:  # the set keeps <path>/<file name>; restore beside it
            self.dest = tree.path.rstrip("/").rsplit("/", 1)[0] if "/" in tree.path else "."
        else:
            self.dest = tree.path
        self.source = connect.remote_endpoint(
            op.site, connect.backup_role(op.site, chosen.set.server), chosen.path, receiver="drp"
        )
        self.options = CopyOptions(excludes=tuple(tree.exclude), bwlimit_kib=op.bwlimit_kib)

    def describe(self) -> list[Change]:
        r = self.chosen.tree
        return [
            Change(
                "copy",
                f"drp:{self.dest}",
                f"from {self.chosen.set.label} ({r.files} files)",
                r.bytes,
            )
        ]

    def writes(self) -> list[Write]:
        return [Write("drp", "files", self.dest, self.chosen.set.environment)]

    def check(self) -> Check:
        plan = plan_copy(self.op.pool["drp"], self.source, self.dest, self.options)
        if plan.up_to_date:
            return Check(True, f"drp:{self.dest} already matches {self.chosen.set.label}")
        return Check(False, f"drp:{self.dest}: {plan.summary()}")

    def apply(self, progress: ProgressCallback | None = None) -> Applied:
        def on_progress(p: CopyProgress) -> None:
            if progress:
                progress(self.key, float(p.percent))

        result = copy_tree(self.op.pool["drp"], self.source, self.dest, self.options, on_progress)
        return Applied(
            f"copied {result.files_transferred} files ({human_bytes(result.bytes_transferred)}) "
            f"from {self.chosen.set.label} in {result.seconds:.1f} s",
            bytes=result.bytes_transferred,
            files=result.files_transferred,
        )


class RestoreDatabase(Step):
    """One database: its dump pulled to the DRP server, restored, checked against the manifest."""

    phase = 30
    parallel = True
    stage = "import"

    def __init__(self, op: Operation, env: Environment, db: Database, chosen: ChosenDump) -> None:
        super().__init__(
            f"restore-{env.name}-{db.name}", f"Import database {db.name} of {env.name}"
        )
        self.op, self.db, self.chosen = op, db, chosen
        self.engine = engine_for(db.engine)
        set_ = chosen.set
        self.staging = f"{STAGING_DIR}/{set_.environment}/{set_.set_id}/databases"
        self.dump_path = f"{self.staging}/{chosen.dump.path.rsplit('/', 1)[-1]}"
        dumps_dir = chosen.path.rsplit("/", 1)[0]
        self.source = connect.remote_endpoint(
            op.site, connect.backup_role(op.site, set_.server), dumps_dir, receiver="drp"
        )

    def _endpoint(self) -> DbEndpoint:
        return connect.db_endpoint(self.op.site, self.db, "drp")

    def writes(self) -> list[Write]:
        env = self.chosen.set.environment
        return [
            Write("drp", "files", self.staging, env),
            Write("drp", "database", self.db.name, env, self.db),
        ]

    def describe(self) -> list[Change]:
        d = self.chosen.dump
        rows = sum(d.tables.values())
        return [
            Change(
                "restore",
                f"drp/{self.db.name}",
                f"{self.db.engine} from {self.chosen.set.label} "
                f"({len(d.tables)} tables, {rows} rows)",
                d.size,
            )
        ]

    def check(self) -> Check:
        decision = self.engine.restore_decision(
            self._endpoint(),
            connect.database_password(self.op.site, self.db),
            backup_id(self.chosen),
            force=self.op.force,
        )
        return Check(decision.action == "skip", decision.reason)

    def apply(self, progress: ProgressCallback | None = None) -> Applied:
        drp = self.op.pool["drp"]
        copied = copy_tree(
            drp, self.source, self.staging, CopyOptions(bwlimit_kib=self.op.bwlimit_kib)
        )
        if progress:
            progress(self.key, 50.0)
        result = self.engine.restore(
            drp,
            self.dump_path,
            self._endpoint(),
            connect.database_password(self.op.site, self.db),
            backup_id=backup_id(self.chosen),
            manifest_digest=manifest_digest(self.chosen),
            operation_id=self.op.operation_id,
            force=self.op.force,
            expected_sha256=self.chosen.dump.sha256,
        )
        kept = f"; previous content kept as {result.kept_as}" if result.kept_as else ""
        return Applied(
            f"{result.reason}{kept}",
            bytes=copied.bytes_transferred,
            files=1,
            details={"kept_as": result.kept_as} if result.kept_as else {},
        )

    def verify(self) -> Check:
        state = self.check()
        if not state.done:
            return state
        counts = self.engine.table_counts(
            self._endpoint(), connect.database_password(self.op.site, self.db)
        )
        expected = self.chosen.dump.tables
        wrong = {t: (counts.get(t), n) for t, n in expected.items() if counts.get(t) != n}
        if wrong:
            listed = ", ".join(
                f"{t}: {got} rows, manifest {want}" for t, (got, want) in wrong.items()
            )
            return Check(False, f"row counts differ from the manifest: {listed}")
        return Check(
            True, f"{len(expected)} tables, {sum(expected.values())} rows as in the manifest"
        )


class CheckService(ReadOnlyStep):
    """The environment's URL checks, sent to one address (the DRP IP) or through DNS."""

    phase = 40

    def __init__(self, op: Operation, env: Environment, *, via_dns: bool = False) -> None:
        how = "through DNS" if via_dns else "through the DRP address"
        super().__init__(
            f"verify-{env.name}-{'dns' if via_dns else 'drp-ip'}", f"Check {env.name} {how}"
        )
        self.op, self.env, self.via_dns = op, env, via_dns
        if via_dns:
            self.phase = 70
        else:  # the first proof that the DRP server serves: the RTO's end
            self.proves = Milestone.SERVICE_VERIFIED

    def describe(self) -> list[Change]:
        where = (
            "resolved at the zone's name servers" if self.via_dns else f"sent to {self.op.drp_ip}"
        )
        return [Change("check", u.url, where) for u in self.env.url_checks]

    def _resolve(self, host: str) -> str | None:
        address, port = dns_resolver(self.op.site)
        resolver = dns.resolver.Resolver(configure=address is None)
        if address is not None:
            resolver.nameservers = [address]
            resolver.port = port
        try:
            return str(resolver.resolve(host, "A", lifetime=5)[0])
        except dns.exception.DNSException:
            return None

    def check(self) -> Check:
        reasons = []
        for check in self.env.url_checks:
            reasons.append(self._probe(check))
        problems = [r for ok, r in reasons if not ok]
        if problems:
            return Check(False, "; ".join(problems))
        return Check(True, "; ".join(r for _, r in reasons) or "no URL checks in the inventory")

    def _probe(self, check: UrlCheck) -> tuple[bool, str]:
        url = str(check.url)
        if self.via_dns:
            host = urlsplit(url).hostname or ""
            address = self._resolve(host)
            if address is None:
                return False, f"{host} does not resolve at the zone's name servers"
        else:
            address = self.op.drp_ip
        probe = probe_url(
            url, address=address, expected_text=check.expected_text, timeout=check.max_seconds + 5
        )
        problems = probe.problems(check.expected_status, check.expected_text, check.max_seconds)
        if problems:
            return False, f"{probe.sentence()}: {', '.join(problems)}"
        return True, probe.sentence()


class SendTicket(Step):
    phase = 50

    def __init__(self, op: Operation, event: str, title: str, body: str) -> None:
        super().__init__(f"ticket-{event}", f"Open the information ticket: {title}")
        self.op, self.event = op, event
        self.ticket = Ticket(op.operation_id, event, title, body, op.site.name)

    def describe(self) -> list[Change]:
        return [Change("send-ticket", b.target, self.ticket.title) for b in self.op.tickets]

    def check(self) -> Check:
        sent = [b.already_sent(self.op.operation_id, self.event) for b in self.op.tickets]
        if all(sent):
            return Check(True, "; ".join(s for s in sent if s))
        missing = [b.target for b, s in zip(self.op.tickets, sent, strict=True) if not s]
        return Check(False, f"ticket {self.event} not sent yet to {', '.join(missing)}")

    def apply(self, progress: ProgressCallback | None = None) -> Applied:
        results = [b.send(self.ticket) for b in self.op.tickets]
        return Applied("; ".join(r.sentence for r in results))


class SwitchRecord(Step):
    phase = 60
    memory = "dns_before"  # the record before the first switch: what a return puts back

    def __init__(self, op: Operation, record: DnsRecord, target: str) -> None:
        name = relative_name(record.zone, record.name if record.name != "@" else "")
        shown = name or "@"
        super().__init__(
            f"dns-{record.zone}-{shown}-{record.type}",
            f"Point {shown}.{record.zone} {record.type} at {target}",
        )
        self.op, self.record, self.name, self.target = op, record, name, target

    def describe(self) -> list[Change]:
        return [
            Change(
                "update-record",
                f"{self.record.zone} {self.name or '@'} {self.record.type}",
                f"-> {self.target}",
            )
        ]

    def current(self) -> tuple[str, ...]:
        return self.op.dns.get_records(self.record.zone, self.name, self.record.type).targets

    def remember(self) -> dict[str, Any]:
        return {
            "zone": self.record.zone,
            "name": self.name or "@",
            "type": self.record.type,
            "targets": list(self.current()),
        }

    def check(self) -> Check:
        now = self.current()
        label = f"{self.name or '@'}.{self.record.zone} {self.record.type}"
        if now == (self.target,):
            return Check(True, f"{label} already points at {self.target} in the provider's zone")
        return Check(False, f"{label} points at {', '.join(now) or 'nothing'}")

    def apply(self, progress: ProgressCallback | None = None) -> Applied:
        change = self.op.dns.set_records(
            self.record.zone, self.name, self.record.type, [self.target]
        )
        return Applied(change.reason, details={"before": change.before.data})


class WaitPropagation(Step):
    """Refresh the zone when the provider needs it, then wait until every authoritative server
    answers the new address for every switched record."""

    phase = 65

    def __init__(
        self, op: Operation, zone: str, switches: list[SwitchRecord], timeout: float = 120
    ) -> None:
        targets = ", ".join(sorted({s.target for s in switches}))
        super().__init__(
            f"dns-propagation-{zone}", f"Wait until every name server of {zone} answers {targets}"
        )
        self.op, self.zone, self.switches, self.timeout = op, zone, switches, timeout

    def describe(self) -> list[Change]:
        what = "refresh the zone, then ask" if self.op.site.dns.provider == "ovh" else "ask"
        return [Change("refresh-zone", f"dns {self.zone}", f"{what} every authoritative server")]

    def _reports(self, timeout: float) -> list[Any]:
        address, port = dns_resolver(self.op.site)
        return [
            wait_for_propagation(
                self.zone,
                s.name,
                s.record.type,
                [s.target],
                resolver=address,
                port=port,
                timeout=timeout,
            )
            for s in self.switches
        ]

    def check(self) -> Check:
        reports = self._reports(0)
        if all(r.complete for r in reports):
            return Check(True, "; ".join(r.summary() for r in reports))
        return Check(False, "; ".join(r.summary() for r in reports if not r.complete))

    def apply(self, progress: ProgressCallback | None = None) -> Applied:
        said = self.op.dns.refresh(self.zone)
        reports = self._reports(self.timeout)
        pending = [r.summary() for r in reports if not r.complete]
        if pending:
            raise StepFailed(
                f"after {self.timeout:.0f} s, not every name server answers the DRP server: "
                + "; ".join(pending)
                + ". Run again to keep waiting; check the provider's zone if it persists"
            )
        return Applied(f"{said}; " + "; ".join(r.summary() for r in reports))


# -- building the operation ---------------------------------------------------------------------
def backup_id(chosen: ChosenTree | ChosenDump) -> str:
    return f"{chosen.set.set_id}@{chosen.set.server}"


def manifest_digest(chosen: ChosenDump) -> str:
    manifest = chosen.set.manifest
    text = manifest.to_json() if manifest is not None else ""
    return hashlib.sha256(text.encode()).hexdigest()


def _sets(selection: Selection) -> list[Any]:
    seen: dict[str, Any] = {}
    for choice in selection.environments.values():
        for s in choice.sets:
            seen.setdefault(s.label, s)
    return sorted(seen.values(), key=lambda s: s.label)


def preflight_steps(op: Operation, *, dns_check: bool = True) -> list[Step]:
    steps: list[Step] = [HostReachable(op, "drp"), BackupsChosen(op), DiskSpace(op)]
    for env in _environments(op):
        choice = op.selection[env.name]
        for db in env.databases:
            chosen = choice.dump(db.name)
            if chosen is not None:
                steps.append(RestoreTargetSafe(op, env, db, chosen))
    if dns_check:
        steps.append(DnsCredentials(op))
    return steps


def restore_steps(op: Operation) -> list[Step]:
    """Copy, import and check through the DRP address: what activation and drill share."""
    steps: list[Step] = []
    for env in _environments(op):
        choice = op.selection[env.name]
        for section, name, tree in connect.environment_trees(env):
            chosen_tree = choice.tree(section, name)
            if chosen_tree is not None:
                steps.append(CopyTree(op, env, tree, chosen_tree))
        for db in env.databases:
            chosen_dump = choice.dump(db.name)
            if chosen_dump is not None:
                steps.append(RestoreDatabase(op, env, db, chosen_dump))
        steps.append(CheckService(op, env))
    return steps


def _ticket(op: Operation, event: str, title: str, what: str) -> SendTicket:
    envs = ", ".join(e.name for e in _environments(op))
    body = (
        f"{op.site.name}: {envs} restored on the DRP server ({op.drp_ip}) and checked there. "
        f"{what} Operation {op.operation_id}."
    )
    return SendTicket(op, event, f"{title} for {envs}", body)


def drp_target(op: Operation, record: DnsRecord) -> str:
    """The DRP server's address for a record: its IPv4 for A, its IPv6 for AAAA."""
    drp = op.site.hosts.drp
    if record.type == "AAAA":
        if drp.public_ipv6 is None:  # the inventory check refuses this; never switch to nothing
            raise StepFailed(f"{record.fqdn} is AAAA but the DRP host has no public_ipv6")
        return str(drp.public_ipv6)
    return str(drp.public_ipv4)


def activation_steps(op: Operation) -> list[Step]:
    steps = restore_steps(op)
    steps.append(
        _ticket(op, "drp-finalized", "DRP finalized", "The DRP is finalized; DNS now switches.")
    )
    by_zone: dict[str, list[SwitchRecord]] = {}
    for env in _environments(op):
        for record in env.dns_records:
            switch = SwitchRecord(op, record, drp_target(op, record))
            steps.append(switch)
            by_zone.setdefault(record.zone, []).append(switch)
    for zone, switches in sorted(by_zone.items()):
        steps.append(WaitPropagation(op, zone, switches))
    for env in _environments(op):
        if env.url_checks:
            steps.append(CheckService(op, env, via_dns=True))
    return steps


def drill_steps(op: Operation) -> list[Step]:
    steps = restore_steps(op)
    steps.append(
        _ticket(op, "drill-finished", "DRP drill finished", "A drill: DNS was not changed.")
    )
    return steps


def _environments(op: Operation) -> list[Environment]:
    return [e for e in op.site.environments if e.name in op.selection.environments]


def plan_facts(op: Operation) -> dict[str, str]:
    """The brief's facts that the plan hash covers: stable while the world does not change."""
    selection = op.selection
    facts = {
        "customer": op.site.customer,
        "drp server": f"{op.drp_ip} ({op.site.hosts.drp.datacenter})",
        "data to copy": human_bytes(selection.copy_bytes),
        "estimated copy time": _estimate(selection.copy_bytes),
    }
    for name, choice in sorted(selection.environments.items()):
        oldest = choice.oldest_capture
        facts[f"{name}: backups"] = ", ".join(s.label for s in choice.sets) or "none"
        facts[f"{name}: data captured at"] = oldest.isoformat(timespec="minutes") if oldest else "-"
    return facts


def _estimate(size: int) -> str:
    seconds = size / ASSUMED_COPY_RATE
    if seconds < 60:
        return f"under a minute (at {human_bytes(int(ASSUMED_COPY_RATE))}/s)"
    return f"about {seconds / 60:.0f} min (at {human_bytes(int(ASSUMED_COPY_RATE))}/s)"
