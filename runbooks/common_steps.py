"""Steps any runbook uses, in any direction: each takes the roles it works between.

- `HostReachable`: a host answers over SSH, its key checked (read-only);
- `CopyTree`: a tree pulled by a target host from a source host (backup set -> drp,
  drp -> production), optionally making the target equal to the source (deleting what the
  source does not have), always keeping what it replaces or deletes aside first when told where;
- `SetMaintenance`: an environment's maintenance (a flag file, or the inventory's commands) on
  one side, entered or lifted;
- `CheckService`: the environment's URL checks sent to one side's public address, or through DNS;
- `SendTicket`: an information ticket, once per operation and event;
- `SwitchZone` and `WaitPropagation`: a zone's records pointed at one side all together or not
  at all, refusing a current value nobody expects; then every authoritative server asked,
  directly, until all answer.
"""

from __future__ import annotations

import posixpath
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

from providers import aside
from providers.dns_base import DnsError, RecordSet, ZoneChange, relative_name
from providers.dns_check import (
    AuthoritativeServer,
    ask_every_server,
    servers_of_zone,
    wait_for_propagation,
)
from providers.http_check import probe_url
from providers.rsync import (
    CopyOptions,
    CopyProgress,
    RemoteEndpoint,
    copy_tree,
    home_relative,
    plan_copy,
)
from providers.tickets import Ticket
from runbooks import connect
from runbooks.context import OperationContext
from runbooks.errors import DrpError, StepFailed, UnsafePlan
from runbooks.inventory import DnsRecord, Environment, MaintenanceSwitch, Role, UrlCheck
from runbooks.render import human_bytes
from runbooks.report import load_report
from runbooks.services import reports_dir
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
    digest: str | None = None  # the manifest's listing digest of the tree (see runbooks.manifest)
    file_name: str | None = None  # a single-file tree: the file's name (the tree is its directory)


class CopyTree(Step):
    """One tree pulled by the target host from the source host (rsync runs on the target).

    With `delete`, the target is made equal to the source: what the source does not have is
    removed (excluded paths are neither copied nor removed), and `check()`/`verify()` compare the
    whole target tree, so an extra file (one added since, a temporary file of a killed copy) is
    a difference. With `aside_root`, every file the copy replaces or deletes on the target is
    moved under `<aside_root>/<stage>-<time of the attempt>/` instead of being lost (a new
    directory per attempt, so a second attempt never overwrites what the first kept). With
    `verify_content`, the copy is proved by comparing file contents on both sides (checksums),
    not sizes and times.

    A half-sent file waits in the operation's own area on the target
    (`~/.drp/operations/<operation>/partial/<step>`), outside the tree: the next run of the
    operation continues it instead of sending it again whole.
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
        link_dest: str | None = None,
    ) -> None:
        super().__init__(key, title)
        # Files equal to those in this older copy (on the target) become hard links to them.
        self.link_dest = link_dest
        self.ctx, self.source, self.target, self.dest = ctx, source, target, dest
        self.phase, self.stage, self.environment = phase, stage, environment
        self.aside_root, self.verify_content = aside_root, verify_content
        self.endpoint: RemoteEndpoint = connect.remote_endpoint(
            ctx.site, source.role, source.path, receiver=target
        )
        self.options = CopyOptions(
            excludes=excludes,
            includes=includes,
            delete=delete,
            bwlimit_kib=ctx.bwlimit_kib,
            io_timeout=round(ctx.site.timeouts.copy_idle_seconds),
        )
        self.where = f"{connect.host_name(target)}:{dest}"
        self._home: str | None = None

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

    def _absolute(self, path: str) -> str:
        """`path` (relative to the SSH user's home, or absolute) as an absolute path there."""
        if self._home is None:
            home = self.ctx.pool[self.target].run(["pwd"], timeout=60).stdout.strip()
            if not home.startswith("/"):
                raise StepFailed(f"{self.where}: cannot tell the SSH user's home ({home!r})")
            self._home = home
        return posixpath.join(self._home, aside.normalize_path(path))

    def _exists(self) -> bool:
        path = home_relative(self.dest) or "."
        path = path if path.startswith("/") else f"./{path}"  # never read as an option
        return self.ctx.pool[self.target].run(["test", "-e", path], check=False).ok

    def partial_dir(self) -> str:
        """Where this copy keeps a half-sent file between runs of its operation."""
        return f"{operation_dir(self.ctx.operation_id)}/partial/{self.key}"

    def _options(self, **changes: Any) -> CopyOptions:
        if self.link_dest is not None:
            changes.setdefault("link_dest", self._absolute(self.link_dest))
        return replace(self.options, partial_dir=self._absolute(self.partial_dir()), **changes)

    def _plan(self, options: CopyOptions) -> Any:
        return plan_copy(self.ctx.pool.copying(self.target), self.endpoint, self.dest, options)

    def check(self) -> Check:
        if not self._exists():  # nothing there yet: no dry run needed to know it
            return Check(False, f"{self.where} does not exist yet: the whole tree is copied")
        plan = self._plan(self._options())
        if plan.up_to_date:
            whole = ", the whole tree" if self.options.delete else ""
            return Check(True, f"{self.where} already matches {self.source.label}{whole}")
        return Check(False, f"{self.where}: {plan.summary()}")

    def apply(self, progress: ProgressCallback | None = None) -> Applied:
        options = self._options()
        kept = ""
        if self.aside_root:
            attempt = f"{self.stage.replace(' ', '-')}-{datetime.now(UTC):%Y%m%dT%H%M%SZ}"
            backup_dir = posixpath.join(self.aside_root, attempt)
            options = replace(options, backup_dir=self._absolute(backup_dir))
            kept = (
                f"; what it replaced or removed is in {connect.host_name(self.target)}:{backup_dir}"
            )

        def on_progress(p: CopyProgress) -> None:
            if progress:
                progress(self.key, float(p.percent))

        result = copy_tree(
            self.ctx.pool.copying(self.target), self.endpoint, self.dest, options, on_progress
        )
        deleted = f", removed {result.stats.deleted}" if result.stats.deleted else ""
        return Applied(
            f"copied {result.files_transferred} files ({human_bytes(result.bytes_transferred)}) "
            f"from {self.source.label} in {result.seconds:.1f} s{deleted}{kept}",
            bytes=result.bytes_transferred,
            files=result.files_transferred,
        )

    def verify(self) -> Check:
        if not self.verify_content:
            return self.check()
        plan = self._plan(self._options(checksum=True))
        if plan.up_to_date:
            return Check(True, f"{self.where} equals {self.source.label}, file by file (checksums)")
        return Check(False, f"{self.where} differs from {self.source.label}: {plan.summary()}")


def aside_root(dest: str, operation_id: str) -> str:
    """Where an operation keeps what it replaced in `dest`: `<dest>.drp-before-<operation>`."""
    return aside.aside_path(dest, operation_id)


# -- maintenance -------------------------------------------------------------------------------
class SetMaintenance(Step):
    """Enter or lift an environment's maintenance on one side.

    A flag file is its own proof. With commands, drp records on the host that this operation ran
    the enable command (and removes the record when it runs the disable one), so a re-run knows.
    An operation that lifts its maintenance leaves a note there too, before it lifts it: a
    finished operation run again, or one resumed after a kill in the middle of the lift, never
    enters maintenance a second time."""

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

    def _flag_time(self) -> datetime | None:
        """When the flag file was made (what dates the milestone it proves), if it can be read."""
        flag = self.switch.flag or ""
        result = self.ctx.pool[self.role].run(
            ["stat", "-c", "%Y", "--", aside.normalize_path(flag)], check=False, timeout=60
        )
        try:
            return datetime.fromtimestamp(int(result.stdout.strip()), UTC)
        except ValueError:
            return None

    def check(self) -> Check:
        flag = self.switch.flag
        paths = [p for p in (flag, self.entered_note, self.lifted_note) if p]
        there = self._there(paths)
        active = there[flag] if flag else there[self.entered_note]
        if self.on and active:
            since = self._flag_time() if flag and self.proves is not None else None
            return Check(True, f"{self.env.name} is in maintenance on {self.name}", since=since)
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
        if not self.on:
            # Noted before it is lifted: a run killed just after lifting it must not find the
            # maintenance lifted and unrecorded, and enter it again when resumed.
            aside.write_file(runner, self.lifted_note, f"{stamp}\n")
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
        self._servers: dict[str, tuple[AuthoritativeServer, ...]] = {}

    def describe(self) -> list[Change]:
        where = (
            "resolved at the zone's name servers"
            if self.role is None
            else f"sent to {self.ctx.public_address(self.role)}"
        )
        return [Change("check", u.url, where) for u in self.env.url_checks]

    def _resolve(self, host: str) -> tuple[str | None, str]:
        """The address every authoritative server of the host's zone answers, asked directly
        (never a resolver and its cache); None with the reason when they do not all agree."""
        zone = zone_of(self.ctx, host)
        if zone is None:
            return None, (
                f"{host} is in none of the site's zones "
                f"({', '.join(map(str, self.ctx.site.dns.zones))}): drp cannot ask its "
                "authoritative servers"
            )
        if zone not in self._servers:
            try:
                self._servers[zone] = authoritative_servers(self.ctx, zone)
            except DnsError as err:
                return None, str(err)
        answer, said = ask_every_server(self._servers[zone], host, "A", timeout=5)
        return (answer[0] if answer else None), said

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
            address, said = self._resolve(host)
            if address is None:
                return False, said
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
@dataclass(frozen=True)
class RecordSwitch:
    """One record of a zone switch: where it goes, and (on return) the values it may hold
    now. Without `expected`, the values it may hold are those the plan showed."""

    record: DnsRecord
    target: str
    expected: tuple[str, ...] | None = None

    @property
    def name(self) -> str:
        return relative_name(self.record.zone, self.record.name if self.record.name != "@" else "")

    @property
    def rtype(self) -> str:
        return self.record.type.upper()

    @property
    def key(self) -> tuple[str, str]:
        return (self.name, self.rtype)

    @property
    def label(self) -> str:
        return f"{self.name or '@'}.{self.record.zone} {self.rtype}"


Values = dict[tuple[str, str], RecordSet]


class SwitchZone(Step):
    """Point every switched record of one zone at one side, all together or not at all.

    The plan shows each record before -> after (its hash covers the values read then). At run
    time each record is read once: a value that is neither the target nor one the plan showed
    (or, with `expected`, one of those) stops the switch unless the operation is forced, and a
    forced switch says so in its result. The provider then writes the whole zone at once: one
    RFC 2136 UPDATE whose prerequisites are the values read, or every OVH write then one
    refresh, put back if a write fails. What the records held before is kept in the report
    (`dns_before`, one entry per record) for the return."""

    phase = 60
    memory = "dns_before"

    def __init__(
        self,
        ctx: OperationContext,
        zone: str,
        switches: list[RecordSwitch],
        *,
        phase: int = 60,
    ) -> None:
        shown = ", ".join(f"{s.name or '@'} {s.rtype}" for s in switches)
        targets = ", ".join(sorted({s.target for s in switches}))
        super().__init__(f"dns-switch-{zone}", f"Switch {shown} of {zone} to {targets}")
        self.ctx, self.zone, self.switches, self.phase = ctx, zone, switches, phase
        self._planned: dict[tuple[str, str], tuple[str, ...]] | None = None
        self._fresh: Values | None = None  # read for remember(), handed to the check after it
        self._now: Values | None = None  # what the check read: the values apply() works from
        self._result: ZoneChange | None = None

    # -- reading -------------------------------------------------------------------------------
    def _read(self) -> Values:
        return self.ctx.dns.read_records(self.zone, [s.key for s in self.switches])

    def _recorded(self) -> dict[tuple[str, str], tuple[str, ...]]:
        """What this operation recorded before its first switch (a resumed run): its plan
        shows the same before values as the first run's, so the order given still holds."""
        try:
            report = load_report(reports_dir(self.ctx.site), self.ctx.operation_id)
        except DrpError:
            return {}
        return {
            (relative_name(self.zone, "" if d["name"] == "@" else d["name"]), d["type"]): tuple(
                d["targets"]
            )
            for d in report.dns_before
            if d.get("key") == self.key
        }

    def planned(self) -> dict[tuple[str, str], tuple[str, ...]]:
        """The values the plan shows as before: read once when the plan is made."""
        if self._planned is None:
            recorded = self._recorded()
            if all(s.key in recorded for s in self.switches):
                self._planned = recorded
            else:
                self._planned = {k: v.targets for k, v in self._read().items()}
        return self._planned

    # -- the plan ------------------------------------------------------------------------------
    def describe(self) -> list[Change]:
        try:
            before = self.planned()
        except DnsError as err:
            return [
                Change("update-record", f"{self.zone} {s.name or '@'} {s.rtype}",
                       f"current value unreadable ({err}) -> {s.target}")
                for s in self.switches
            ]  # fmt: skip
        changes = []
        for s in self.switches:
            was = before.get(s.key, ())
            detail = f"{', '.join(was) or 'absent'} -> {s.target}"
            if was == (s.target,):
                detail += " (already)"
            elif s.expected is not None and self._strange(s, was):
                forced = "forced (--force)" if self.ctx.force else "stops the switch unless --force"
                detail += f" (unexpected: neither {self._allowed_text(s)}; {forced})"
            changes.append(
                Change("update-record", f"{self.zone} {s.name or '@'} {s.rtype}", detail)
            )
        return changes

    def writes(self) -> list[Write]:
        return [Write("", "dns", s.label) for s in self.switches]

    def remember(self) -> dict[str, Any]:
        self._fresh = self._read()
        return {
            "zone": self.zone,
            "records": [
                {
                    "name": s.name or "@",
                    "type": s.rtype,
                    "targets": list(self._fresh[s.key].targets),
                }
                for s in self.switches
            ],
        }

    # -- check, apply, verify ------------------------------------------------------------------
    def _where(self, values: Values) -> Check:
        off = [s for s in self.switches if values[s.key].targets != (s.target,)]
        if not off:
            return Check(
                True,
                f"every switched record of {self.zone} already points at "
                f"{', '.join(sorted({s.target for s in self.switches}))} in the provider's zone",
            )
        return Check(
            False,
            "; ".join(f"{s.label} points at {', '.join(values[s.key].targets) or 'nothing'}"
                      for s in off),
        )  # fmt: skip

    def check(self) -> Check:
        now, self._fresh = self._fresh, None
        self._now = now if now is not None else self._read()
        self._result = None
        return self._where(self._now)

    def _allowed(self, s: RecordSwitch) -> tuple[str, ...]:
        """The values the record may hold before its switch: the expected ones, else the ones
        the plan showed (empty: not known, anything goes)."""
        if s.expected is not None:
            return s.expected
        return self._planned.get(s.key, ()) if self._planned is not None else ()

    def _allowed_text(self, s: RecordSwitch) -> str:
        return " nor ".join(sorted({s.target, *self._allowed(s)}))

    def _strange(self, s: RecordSwitch, values: tuple[str, ...]) -> bool:
        """A value nobody expects: neither the target nor one it may hold before."""
        if values == (s.target,):
            return False
        if s.expected is not None:
            return any(v != s.target and v not in s.expected for v in values)
        if self._planned is None or s.key not in self._planned:
            return False
        return values != self._planned[s.key]

    def unexpected(self, values: Values) -> list[str]:
        """Why the current values stop the switch, one sentence per record (empty: go)."""
        return [
            f"{s.label} points at {', '.join(values[s.key].targets)}, which is neither "
            f"{self._allowed_text(s)}"
            for s in self.switches
            if values[s.key].targets != (s.target,) and self._strange(s, values[s.key].targets)
        ]

    def apply(self, progress: ProgressCallback | None = None) -> Applied:
        now = self._now if self._now is not None else self._read()
        strange = self.unexpected(now)
        if strange and not self.ctx.force:
            raise UnsafePlan(
                "; ".join(strange) + ": someone changed it since. Check who did and why; run "
                "again with --force to switch it anyway"
            )
        dns = self.ctx.dns
        plan = dns.plan_zone(
            self.zone, [(s.name, s.rtype, [s.target]) for s in self.switches], current=now
        )
        self._result = dns.apply_zone(plan)
        forced = f" (forced with --force over: {'; '.join(strange)})" if strange else ""
        details: dict[str, Any] = {
            "records": [
                {
                    "name": c.after.name or "@",
                    "type": c.after.rtype,
                    "before": list(c.before.targets),
                    "after": list(c.after.targets),
                }
                for c in self._result.changes
            ],
            "operations": list(self._result.operations),
        }
        if strange:
            details["forced"] = strange
        return Applied(f"{self._result.reason}{forced}", details=details)

    def verify(self) -> Check:
        """The provider read every changed record back once after writing: that is the proof."""
        if self._result is not None and self._result.applied:
            return self._where(
                {(c.after.name, c.after.rtype): c.after for c in self._result.changes}
            )
        return self.check()


def zone_of(ctx: OperationContext, host: str) -> str | None:
    """The site's zone `host` is in (the longest that fits), None when it is in none."""
    host = host.rstrip(".").lower()
    fits = [
        str(z).rstrip(".").lower()
        for z in ctx.site.dns.zones
        if host == str(z).rstrip(".").lower() or host.endswith("." + str(z).rstrip(".").lower())
    ]
    return max(fits, key=len) if fits else None


def authoritative_servers(ctx: OperationContext, zone: str) -> tuple[AuthoritativeServer, ...]:
    """Who to ask about `zone`: every server in dns.nameservers, else every NS of the zone as
    the provider holds it. Each is asked directly; no resolver and no cache come between."""
    given = ctx.site.dns.nameservers
    if given:
        return tuple(AuthoritativeServer(str(n.address), str(n.address), n.port) for n in given)
    return servers_of_zone(zone, ctx.dns.get_records)


class WaitPropagation(Step):
    """Refresh the zone when the provider needs it, then wait until every authoritative server
    answers the new address for every switched record."""

    phase = 65

    def __init__(
        self,
        ctx: OperationContext,
        switch: SwitchZone,
        timeout: float = 120,
        *,
        phase: int = 65,
    ) -> None:
        zone = switch.zone
        targets = ", ".join(sorted({s.target for s in switch.switches}))
        super().__init__(
            f"dns-propagation-{zone}",
            f"Wait until every authoritative server of {zone} answers {targets}",
        )
        self.ctx, self.zone, self.switches, self.timeout = ctx, zone, switch.switches, timeout
        self.phase = phase
        self._servers: tuple[AuthoritativeServer, ...] | None = None

    def describe(self) -> list[Change]:
        what = "refresh the zone, then ask" if self.ctx.site.dns.provider == "ovh" else "ask"
        given = self.ctx.site.dns.nameservers
        who = ", ".join(f"{n.address}:{n.port}" for n in given) if given else "every NS of the zone"
        return [Change("refresh-zone", f"dns {self.zone}", f"{what} {who}, each directly")]

    def servers(self) -> tuple[AuthoritativeServer, ...]:
        if self._servers is None:
            self._servers = authoritative_servers(self.ctx, self.zone)
        return self._servers

    def _reports(self, timeout: float) -> list[Any]:
        servers = self.servers()
        return [
            wait_for_propagation(
                self.zone, s.name, s.rtype, [s.target], servers=servers, timeout=timeout
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
                f"after {self.timeout:.0f} s, not every authoritative server answers the new "
                "address: "
                + "; ".join(pending)
                + ". Run again to keep waiting; check the provider's zone if it persists"
            )
        return Applied(f"{said}; " + "; ".join(r.summary() for r in reports))


def switch_zones(ctx: OperationContext, switches: list[RecordSwitch]) -> list[Step]:
    """A `SwitchZone` per zone, then its `WaitPropagation`: what a runbook's DNS part is."""
    by_zone: dict[str, list[RecordSwitch]] = {}
    for s in switches:
        by_zone.setdefault(s.record.zone, []).append(s)
    steps: list[Step] = []
    for zone, records in sorted(by_zone.items()):
        switch = SwitchZone(ctx, zone, records)
        steps += [switch, WaitPropagation(ctx, switch)]
    return steps


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
