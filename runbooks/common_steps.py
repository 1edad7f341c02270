"""Steps any runbook uses, in any direction: each takes the roles it works between.

- `HostReachable`: a host answers over SSH, its key checked (read-only);
- `CopyTree`: a tree pulled by a target host from a source host (backup set -> drp,
  drp -> production), optionally deleting what the source no longer has, always keeping what it
  replaces or deletes aside first when told where;
- `SetMaintenance`: an environment's maintenance (a flag file, or the inventory's commands) on
  one side, entered or lifted;
- `CheckService`: the environment's URL checks sent to one side's public address, or through DNS;
- `SendTicket`: an information ticket, once per operation and event;
- `SwitchRecord` and `WaitPropagation`: a DNS record pointed at one side, refusing a current value
  nobody expects; then every authoritative server asked until all answer.
"""

from __future__ import annotations

import posixpath
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import dns.exception
import dns.resolver

from providers import aside
from providers.dns_base import DnsError, relative_name
from providers.dns_check import wait_for_propagation
from providers.http_check import probe_url
from providers.rsync import CopyOptions, CopyProgress, RemoteEndpoint, copy_tree, plan_copy
from providers.tickets import Ticket
from runbooks import connect
from runbooks.context import OperationContext
from runbooks.errors import StepFailed, UnsafePlan
from runbooks.inventory import DnsRecord, Environment, MaintenanceSwitch, Role, UrlCheck
from runbooks.render import human_bytes
from runbooks.services import dns_resolver
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

OPERATIONS_DIR = ".drp/operations"  # on a host, relative to the SSH user's home


def operation_dir(operation_id: str) -> str:
    return f"{OPERATIONS_DIR}/{operation_id}"


# -- reachability ------------------------------------------------------------------------------
class HostReachable(ReadOnlyStep):
    phase = 10

    def __init__(self, ctx: OperationContext, role: Role) -> None:
        name = connect.host_name(role)
        super().__init__(f"preflight-ssh-{name}", f"Reach {name} over SSH")
        self.ctx, self.role, self.name = ctx, role, name

    def describe(self) -> list[Change]:
        h = connect.host(self.ctx.site, self.role)
        return [Change("check", f"ssh {h.ssh_target}", "host key checked against known_hosts")]

    def check(self) -> Check:
        result = self.ctx.pool[self.role].run(["sh", "-c", "echo ok"], check=False, timeout=30)
        if result.ok:
            h = connect.host(self.ctx.site, self.role)
            return Check(True, f"{self.name} answers over SSH as {h.ssh_target}")
        return Check(False, f"{self.name}: {result.stderr.strip()[:200]}")


# -- files -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class TreeSource:
    """Where a copy reads from: a host role and a directory there, named for messages."""

    role: Role
    path: str
    label: str  # "backup-even set 2026-11-29T02:00", "drp:srv/app/www"
    files: int | None = None  # when known in advance (a backup manifest)
    bytes: int | None = None


class CopyTree(Step):
    """One tree pulled by the target host from the source host (rsync runs on the target).

    With `aside_root`, every file the copy replaces or deletes on the target is moved under
    `<aside_root>/<stage>-<time of the attempt>/` instead of being lost (a new directory per
    attempt, so a second attempt never overwrites what the first kept). With `verify_content`,
    the copy is proved by comparing file contents on both sides (checksums), not sizes and times.
    """

    parallel = True

    def __init__(
        self,
        ctx: OperationContext,
        key: str,
        title: str,
        source: TreeSource,
        target: Role,
        dest: str,
        *,
        phase: int = 20,
        stage: str = "copy",
        excludes: tuple[str, ...] = (),
        includes: tuple[str, ...] = (),
        delete: bool = False,
        aside_root: str | None = None,
        verify_content: bool = False,
        environment: str = "",
    ) -> None:
        super().__init__(key, title)
        self.ctx, self.source, self.target, self.dest = ctx, source, target, dest
        self.phase, self.stage, self.environment = phase, stage, environment
        self.aside_root, self.verify_content = aside_root, verify_content
        self.endpoint: RemoteEndpoint = connect.remote_endpoint(
            ctx.site, source.role, source.path, receiver=target
        )
        self.options = CopyOptions(
            excludes=excludes, includes=includes, delete=delete, bwlimit_kib=ctx.bwlimit_kib
        )
        self.where = f"{connect.host_name(target)}:{dest}"

    def describe(self) -> list[Change]:
        what = f"from {self.source.label}"
        if self.source.files is not None:
            what += f" ({self.source.files} files)"
        if self.options.delete:
            what += "; files gone from the source are removed"
        if self.aside_root:
            what += f"; what is replaced or removed is kept in {self.aside_root}"
        return [Change("copy", self.where, what, self.source.bytes)]

    def writes(self) -> list[Write]:
        return [Write(self.target, "files", self.dest, self.environment)]

    def _plan(self, options: CopyOptions) -> Any:
        return plan_copy(self.ctx.pool[self.target], self.endpoint, self.dest, options)

    def check(self) -> Check:
        plan = self._plan(self.options)
        if plan.up_to_date:
            return Check(True, f"{self.where} already matches {self.source.label}")
        return Check(False, f"{self.where}: {plan.summary()}")

    def apply(self, progress: ProgressCallback | None = None) -> Applied:
        options = self.options
        kept = ""
        if self.aside_root:
            attempt = f"{self.stage.replace(' ', '-')}-{datetime.now(UTC):%Y%m%dT%H%M%SZ}"
            backup_dir = posixpath.join(self.aside_root, attempt)
            options = replace(options, backup_dir=_from_dest(self.dest, backup_dir))
            kept = (
                f"; what it replaced or removed is in {connect.host_name(self.target)}:{backup_dir}"
            )

        def on_progress(p: CopyProgress) -> None:
            if progress:
                progress(self.key, float(p.percent))

        result = copy_tree(
            self.ctx.pool[self.target], self.endpoint, self.dest, options, on_progress
        )
        return Applied(
            f"copied {result.files_transferred} files ({human_bytes(result.bytes_transferred)}) "
            f"from {self.source.label} in {result.seconds:.1f} s{kept}",
            bytes=result.bytes_transferred,
            files=result.files_transferred,
        )

    def verify(self) -> Check:
        if not self.verify_content:
            return self.check()
        plan = self._plan(replace(self.options, checksum=True))
        if plan.up_to_date:
            return Check(True, f"{self.where} equals {self.source.label}, file by file (checksums)")
        return Check(False, f"{self.where} differs from {self.source.label}: {plan.summary()}")


def _from_dest(dest: str, path: str) -> str:
    """`path` as rsync on the target reads `--backup-dir`: relative to the destination."""
    if path.startswith("/"):
        return path
    depth = len([p for p in aside.normalize_path(dest).split("/") if p])
    return posixpath.join(*([".."] * depth), path)


def aside_root(dest: str, operation_id: str) -> str:
    """Where an operation keeps what it replaced in `dest`: `<dest>.drp-before-<operation>`."""
    return aside.aside_path(dest, operation_id)


# -- maintenance -------------------------------------------------------------------------------
class SetMaintenance(Step):
    """Enter or lift an environment's maintenance on one side.

    A flag file is its own proof. With commands, drp records on the host that this operation ran
    the enable command (and removes the record when it runs the disable one), so a re-run knows.
    An operation that lifted its maintenance leaves a note there too: a finished operation run
    again never enters maintenance a second time."""

    def __init__(
        self,
        ctx: OperationContext,
        env: Environment,
        role: Role,
        *,
        on: bool,
        phase: int,
        proves: Milestone | None = None,
        purpose: str = "",
    ) -> None:
        name = connect.host_name(role)
        verb = "Enter" if on else "Lift"
        super().__init__(
            f"maintenance-{'on' if on else 'off'}-{env.name}-{name}",
            f"{verb} maintenance of {env.name} on {name}" + (f" ({purpose})" if purpose else ""),
        )
        self.ctx, self.env, self.role, self.on, self.name = ctx, env, role, on, name
        self.phase, self.proves = phase, proves
        switch: MaintenanceSwitch = getattr(
            env.maintenance, "drp" if role == "drp" else "production"
        )
        self.switch = switch
        base = operation_dir(ctx.operation_id)
        self.entered_note = f"{base}/maintenance-{env.name}.entered"
        self.lifted_note = f"{base}/maintenance-{env.name}.lifted"

    def describe(self) -> list[Change]:
        how = f"flag {self.switch.flag}" if self.switch.flag else "the inventory's command"
        action = "enter-maintenance" if self.on else "lift-maintenance"
        return [Change(action, f"{self.name} {self.env.name}", how)]

    def writes(self) -> list[Write]:
        return [Write(self.role, "maintenance", self.switch.flag or "", self.env.name)]

    def _there(self, paths: list[str]) -> dict[str, bool]:
        return aside.probe(self.ctx.pool[self.role], paths)

    def check(self) -> Check:
        flag = self.switch.flag
        paths = [p for p in (flag, self.entered_note, self.lifted_note) if p]
        there = self._there(paths)
        active = there[flag] if flag else there[self.entered_note]
        if self.on and active:
            return Check(True, f"{self.env.name} is in maintenance on {self.name}")
        if self.on and there[self.lifted_note]:
            return Check(
                True,
                f"operation {self.ctx.operation_id} already lifted the maintenance of "
                f"{self.env.name} on {self.name}: not entering it again",
            )
        if not self.on and not active:
            return Check(True, f"{self.env.name} is not in maintenance on {self.name}")
        state = "in maintenance" if active else "serving"
        return Check(False, f"{self.env.name} is {state} on {self.name}")

    def apply(self, progress: ProgressCallback | None = None) -> Applied:
        runner = self.ctx.pool[self.role]
        flag = self.switch.flag
        stamp = datetime.now(UTC).isoformat(timespec="seconds")
        if flag:
            argv = (
                ["sh", "-c", 'mkdir -p -- "$(dirname -- "$1")" && touch -- "$1"', "sh", flag]
                if self.on
                else ["rm", "-f", "--", flag]
            )
            result = runner.run(argv, check=False, timeout=60)
            how = f"flag {flag} {'created' if self.on else 'removed'}"
        else:
            command = self.switch.enable_command if self.on else self.switch.disable_command
            result = runner.run(["sh", "-c", command or "false"], check=False, timeout=300)
            how = "the inventory's command ran"
        if not result.ok:
            raise StepFailed(
                f"{self.title}: exit {result.exit_code}: {result.stderr.strip()[:200]}"
            )
        if self.on:
            aside.write_file(runner, self.entered_note, f"{stamp}\n")
        else:
            aside.write_file(runner, self.lifted_note, f"{stamp}\n")
            runner.run(["rm", "-f", "--", self.entered_note], check=False, timeout=60)
        return Applied(how)

    def verify(self) -> Check:
        flag = self.switch.flag
        if flag:
            present = self._there([flag])[flag]
            ok = present == self.on
            return Check(ok, f"flag {flag} {'present' if present else 'absent'} on {self.name}")
        return Check(True, "the inventory's command exited 0")


# -- service checks ----------------------------------------------------------------------------
class CheckService(ReadOnlyStep):
    """The environment's URL checks, sent to one side's public address, or through DNS."""

    phase = 40

    def __init__(
        self,
        ctx: OperationContext,
        env: Environment,
        *,
        role: Role | None = None,
        phase: int = 40,
        proves: Milestone | None = None,
    ) -> None:
        self.via_dns = role is None
        name = connect.host_name(role) if role else ""
        how = "through DNS" if role is None else f"through the {_side(role)} address"
        super().__init__(
            f"verify-{env.name}-{'dns' if role is None else f'{name}-ip'}",
            f"Check {env.name} {how}",
        )
        self.ctx, self.env, self.role = ctx, env, role
        self.phase, self.proves = phase, proves

    def describe(self) -> list[Change]:
        where = (
            "resolved at the zone's name servers"
            if self.role is None
            else f"sent to {self.ctx.public_address(self.role)}"
        )
        return [Change("check", u.url, where) for u in self.env.url_checks]

    def _resolve(self, host: str) -> str | None:
        address, port = dns_resolver(self.ctx.site)
        resolver = dns.resolver.Resolver(configure=address is None)
        if address is not None:
            resolver.nameservers = [address]
            resolver.port = port
        try:
            return str(resolver.resolve(host, "A", lifetime=5)[0])
        except dns.exception.DNSException:
            return None

    def check(self) -> Check:
        results = [self._probe(check) for check in self.env.url_checks]
        problems = [r for ok, r in results if not ok]
        if problems:
            return Check(False, "; ".join(problems))
        return Check(True, "; ".join(r for _, r in results) or "no URL checks in the inventory")

    def _probe(self, check: UrlCheck) -> tuple[bool, str]:
        url = str(check.url)
        if self.role is None:
            host = urlsplit(url).hostname or ""
            address = self._resolve(host)
            if address is None:
                return False, f"{host} does not resolve at the zone's name servers"
        else:
            address = self.ctx.public_address(self.role)
        probe = probe_url(
            url, address=address, expected_text=check.expected_text, timeout=check.max_seconds + 5
        )
        problems = probe.problems(check.expected_status, check.expected_text, check.max_seconds)
        if problems:
            return False, f"{probe.sentence()}: {', '.join(problems)}"
        return True, probe.sentence()


def _side(role: Role) -> str:
    return "DRP" if role == "drp" else connect.host_name(role)


# -- tickets -----------------------------------------------------------------------------------
class SendTicket(Step):
    phase = 50

    def __init__(self, ctx: OperationContext, event: str, title: str, body: str) -> None:
        super().__init__(f"ticket-{event}", f"Open the information ticket: {title}")
        self.ctx, self.event = ctx, event
        self.ticket = Ticket(ctx.operation_id, event, title, body, ctx.site.name)

    def describe(self) -> list[Change]:
        return [Change("send-ticket", b.target, self.ticket.title) for b in self.ctx.tickets]

    def writes(self) -> list[Write]:
        return [Write("", "ticket", self.event)]

    def check(self) -> Check:
        sent = [b.already_sent(self.ctx.operation_id, self.event) for b in self.ctx.tickets]
        if all(sent):
            return Check(True, "; ".join(s for s in sent if s))
        missing = [b.target for b, s in zip(self.ctx.tickets, sent, strict=True) if not s]
        return Check(False, f"ticket {self.event} not sent yet to {', '.join(missing)}")

    def apply(self, progress: ProgressCallback | None = None) -> Applied:
        results = [b.send(self.ticket) for b in self.ctx.tickets]
        return Applied("; ".join(r.sentence for r in results))


# -- DNS ---------------------------------------------------------------------------------------
class SwitchRecord(Step):
    """Point one record at one side. Before the first switch, the record as it was is kept in
    the report (`dns_before`). With `expected`, a current value that is neither the target nor
    one of the expected ones (someone changed it) is refused unless the operation is forced."""

    phase = 60
    memory = "dns_before"

    def __init__(
        self,
        ctx: OperationContext,
        record: DnsRecord,
        target: str,
        *,
        expected: tuple[str, ...] | None = None,
        phase: int = 60,
    ) -> None:
        name = relative_name(record.zone, record.name if record.name != "@" else "")
        shown = name or "@"
        super().__init__(
            f"dns-{record.zone}-{shown}-{record.type}",
            f"Point {shown}.{record.zone} {record.type} at {target}",
        )
        self.ctx, self.record, self.name, self.target = ctx, record, name, target
        self.expected, self.phase = expected, phase
        self.label = f"{shown}.{record.zone} {record.type}"

    def describe(self) -> list[Change]:
        return [
            Change(
                "update-record",
                f"{self.record.zone} {self.name or '@'} {self.record.type}",
                f"-> {self.target}",
            )
        ]

    def writes(self) -> list[Write]:
        return [Write("", "dns", self.label)]

    def current(self) -> tuple[str, ...]:
        return self.ctx.dns.get_records(self.record.zone, self.name, self.record.type).targets

    def remember(self) -> dict[str, Any]:
        return {
            "zone": self.record.zone,
            "name": self.name or "@",
            "type": self.record.type,
            "targets": list(self.current()),
        }

    def check(self) -> Check:
        now = self.current()
        if now == (self.target,):
            return Check(
                True, f"{self.label} already points at {self.target} in the provider's zone"
            )
        return Check(False, f"{self.label} points at {', '.join(now) or 'nothing'}")

    def unexpected(self) -> str | None:
        """Why the current value stops the switch (None: it may go ahead)."""
        if self.expected is None:
            return None
        now = self.current()
        strange = [v for v in now if v != self.target and v not in self.expected]
        if not strange:
            return None
        return (
            f"{self.label} points at {', '.join(now)}, which is neither "
            f"{' nor '.join(sorted({self.target, *self.expected}))}: someone changed it since. "
            "Check who did and why; run again with --force to switch it anyway"
        )

    def apply(self, progress: ProgressCallback | None = None) -> Applied:
        why = self.unexpected()
        if why and not self.ctx.force:
            raise UnsafePlan(why)
        change = self.ctx.dns.set_records(
            self.record.zone, self.name, self.record.type, [self.target]
        )
        forced = f" (forced over {why.split(', which')[0]})" if why else ""
        return Applied(change.reason + forced, details={"before": change.before.data})


class WaitPropagation(Step):
    """Refresh the zone when the provider needs it, then wait until every authoritative server
    answers the new address for every switched record."""

    phase = 65

    def __init__(
        self,
        ctx: OperationContext,
        zone: str,
        switches: list[SwitchRecord],
        timeout: float = 120,
        *,
        phase: int = 65,
    ) -> None:
        targets = ", ".join(sorted({s.target for s in switches}))
        super().__init__(
            f"dns-propagation-{zone}", f"Wait until every name server of {zone} answers {targets}"
        )
        self.ctx, self.zone, self.switches, self.timeout = ctx, zone, switches, timeout
        self.phase = phase

    def describe(self) -> list[Change]:
        what = "refresh the zone, then ask" if self.ctx.site.dns.provider == "ovh" else "ask"
        return [Change("refresh-zone", f"dns {self.zone}", f"{what} every authoritative server")]

    def _reports(self, timeout: float) -> list[Any]:
        address, port = dns_resolver(self.ctx.site)
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
        said = self.ctx.dns.refresh(self.zone)
        reports = self._reports(self.timeout)
        pending = [r.summary() for r in reports if not r.complete]
        if pending:
            raise StepFailed(
                f"after {self.timeout:.0f} s, not every name server answers the new address: "
                + "; ".join(pending)
                + ". Run again to keep waiting; check the provider's zone if it persists"
            )
        return Applied(f"{said}; " + "; ".join(r.summary() for r in reports))


class DnsCredentials(ReadOnlyStep):
    phase = 14

    def __init__(self, ctx: OperationContext) -> None:
        super().__init__("preflight-dns", "Check DNS provider credentials (read-only)")
        self.ctx = ctx

    def describe(self) -> list[Change]:
        return [Change("check", f"dns {z}", "read the zone") for z in self.ctx.site.dns.zones]

    def check(self) -> Check:
        reasons = []
        for zone in self.ctx.site.dns.zones:
            try:
                reasons.append(self.ctx.dns.check_credentials(zone))
            except DnsError as err:
                return Check(False, str(err))
        return Check(True, "; ".join(reasons))
