"""Drift between production and the DRP server: what differs, and what changed since last time.

The DRP server must be able to take production's place: the same OS release, the same versions
of the software the sites run on (the database servers', and whatever the inventory's
`drift.versions` lists), the same services listening, the same crontabs and configuration
trees, and disks big enough for production's data. `compare` turns both hosts' facts
(`runbooks.drift_facts`) into drift items, each naming what differs and both values; file
contents are never shown, only names, sizes and digests.

Only changes are reported. The drift seen last is kept on the DRP host
(`~/.drp/drift/last.json`, readable by the SSH user only, written whole or not at all; the one
before it is kept as `previous.json`), and each check says which items are new (not there last
time, or changed), which are unchanged and which are gone. A ticket goes out, through every
backend of the inventory, only when there are new items. What could not be read this time (a
database server that does not answer) is neither new nor gone: its items from last time are
kept, and the check says so.

An item is the same drift from one check to the next while its name and its *basis* stay the
same: both values for versions and the OS (an upgrade on one side is new drift), which side has
it or that both differ for files, crontabs and listeners (a file that keeps changing on
production while it differs is still the same drift), and "too small" for a disk (free space
moves every night).
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from providers.commands import CommandRunner
from providers.ssh import SshError
from providers.tickets import Ticket, TicketBackend, TicketError
from runbooks import connect
from runbooks.context import OperationContext
from runbooks.drift_facts import (
    ABSENT,
    LOOPBACK,
    MISSING,
    UNREADABLE,
    WILDCARDS,
    FileEntry,
    Gathered,
    HostFacts,
    all_trees,
    config_trees,
    gather,
)
from runbooks.errors import ProviderError, StepFailed
from runbooks.inventory import Site
from runbooks.records import MISSING_EXIT, read_argv
from runbooks.render import human_bytes
from runbooks.steps import Applied, Change, Check, ProgressCallback, Step, Write

STATE_DIR = ".drp/drift"  # on the DRP host, relative to the SSH user's home
STATE_FILE = f"{STATE_DIR}/last.json"
PREVIOUS_FILE = f"{STATE_DIR}/previous.json"
TICKET_EVENT_PREFIX = "drift"
SHOWN_PER_LIST = 50  # items listed per section of a summary; the rest are counted
log = logging.getLogger("drp.drift")


def ticket_operation_id(site: Site) -> str:
    """The operation id drift tickets carry (the same whichever run finds the drift)."""
    return f"drift-{site.name}"


# -- the model ---------------------------------------------------------------------------------


class DriftItem(BaseModel):
    """One difference: what, and what production and the DRP server say."""

    model_config = ConfigDict(frozen=True)

    what: str = Field(description="Its name: category, then subject (`listening tcp/8080`).")
    production: str = Field(description="What production has.")
    drp: str = Field(description="What the DRP server has.")
    basis: str = Field(
        default="",
        description="What makes it the same drift from one check to the next (empty: both values).",
    )

    @property
    def signature(self) -> str:
        return self.basis or f"{self.production}\x1f{self.drp}"

    @property
    def line(self) -> str:
        return f"{self.what}: production {self.production}; drp {self.drp}"


class DriftState(BaseModel):
    """The drift seen by the last check, as kept on the DRP host."""

    site: str
    checked_at: datetime
    items: list[DriftItem] = Field(default_factory=list)


@dataclass
class Findings:
    """What one check found, before it is held against the last one."""

    items: list[DriftItem]
    unchecked: dict[str, str]  # subject (an item name or its start) -> why it was not read
    compared: list[str]  # what was compared, for the summary
    ignored: int = 0


class DriftComparison(BaseModel):
    """One check held against the last: new, unchanged and gone items."""

    site: str
    checked_at: datetime
    previous_at: datetime | None = None
    new: list[DriftItem] = Field(default_factory=list)
    unchanged: list[DriftItem] = Field(default_factory=list)
    gone: list[DriftItem] = Field(default_factory=list)
    # Items of the last check whose subject could not be read this time: kept as they were.
    kept: list[DriftItem] = Field(default_factory=list)
    changed_from: dict[str, DriftItem] = Field(default_factory=dict)  # new by change: before
    unchecked: dict[str, str] = Field(default_factory=dict)
    compared: list[str] = Field(default_factory=list)
    ignored: int = 0
    note: str = ""  # about the last state (unreadable, none yet)

    @property
    def items(self) -> list[DriftItem]:
        """The drift there is now (what the next check compares with)."""
        return sorted([*self.new, *self.unchanged, *self.kept], key=lambda i: i.what)

    @property
    def has_drift(self) -> bool:
        return bool(self.items)

    @property
    def state(self) -> DriftState:
        return DriftState(site=self.site, checked_at=self.checked_at, items=self.items)

    @property
    def event(self) -> str:
        """The ticket's event: the same for a check run again from the same last state (a
        retry never sends twice), another one whenever the drift comes back later."""
        seed = "\n".join(
            [
                self.previous_at.isoformat() if self.previous_at else "none",
                *sorted(f"{i.what}\x1f{i.signature}" for i in self.new),
            ]
        )
        return f"{TICKET_EVENT_PREFIX}-{hashlib.sha256(seed.encode()).hexdigest()[:12]}"

    @property
    def counts(self) -> str:
        """`2 new, 3 unchanged, 1 gone` (and kept, when any)."""
        text = f"{len(self.new)} new, {len(self.unchanged)} unchanged, {len(self.gone)} gone"
        if self.kept:
            text += f", {len(self.kept)} not checked (kept)"
        return text

    @property
    def summary(self) -> str:
        if not self.has_drift and not self.gone:
            return "no drift between production and the DRP server"
        if not self.has_drift:
            return f"no drift left between production and the DRP server ({self.counts})"
        return f"drift between production and the DRP server: {self.counts}"


# -- comparing ---------------------------------------------------------------------------------


def _os_shown(os: dict[str, str]) -> str:
    pretty, version = os.get("PRETTY_NAME", ""), os.get("VERSION_ID", "")
    if not pretty:
        return f"{os.get('NAME', 'unknown')} {version}".strip()
    return pretty if not version or version in pretty else f"{pretty} ({version})"


def _unread(prod: HostFacts, drp: HostFacts, subject: str) -> str:
    why = [f"{f.host}: {f.unread[subject]}" for f in (prod, drp) if subject in f.unread]
    return "; ".join(why)


def _os_items(prod: HostFacts, drp: HostFacts, out: Findings) -> Iterator[DriftItem]:
    if why := _unread(prod, drp, "os release"):
        out.unchecked["os release"] = why
        return
    out.compared.append("OS release")
    keys = ("PRETTY_NAME", "VERSION_ID")
    if [prod.os.get(k) for k in keys] != [drp.os.get(k) for k in keys]:
        yield DriftItem(what="os release", production=_os_shown(prod.os), drp=_os_shown(drp.os))


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _version_items(
    prod: HostFacts, drp: HostFacts, names: list[str], out: Findings
) -> Iterator[DriftItem]:
    if names:
        out.compared.append(f"{len(names)} version command(s)")
    for name in names:
        p, d = prod.versions[name], drp.versions[name]
        if (p.exit_code, p.output.strip()) == (d.exit_code, d.output.strip()):
            continue
        shown_p, shown_d = p.shown, d.shown
        if p.exit_code == d.exit_code and p.lines[:1] == d.lines[:1]:
            shown_p += " (the rest of the output differs)"
        yield DriftItem(
            what=f"version {name}",
            production=shown_p,
            drp=shown_d,
            basis=f"{p.exit_code}:{_digest(p.output.strip())}|{d.exit_code}:"
            f"{_digest(d.output.strip())}",
        )


def _database_items(gathered: Gathered, out: Findings) -> Iterator[DriftItem]:
    if gathered.databases:
        out.compared.append(f"{len(gathered.databases)} database server(s)")
    for server in gathered.databases:
        if server.production is None or server.drp is None:
            out.unchecked[server.what] = server.unread
        elif server.production != server.drp:
            yield DriftItem(what=server.what, production=server.production, drp=server.drp)


def _ports(facts: HostFacts, loopback: bool) -> dict[int, list[str]]:
    ports: dict[int, set[str]] = {}
    for address, port in facts.listening:
        if address in WILDCARDS:
            shown = f"*:{port}"
        elif address in facts.addresses or (loopback and address in LOOPBACK):
            shown = f"[{address}]:{port}" if ":" in address else f"{address}:{port}"
        else:
            continue  # another host's address on a shared machine (the lab), or not compared
        ports.setdefault(port, set()).add(shown)
    return {port: sorted(shown) for port, shown in ports.items()}


def _listening_items(
    prod: HostFacts, drp: HostFacts, loopback: bool, out: Findings
) -> Iterator[DriftItem]:
    if why := _unread(prod, drp, "listening"):
        out.unchecked["listening"] = why
        return
    p, d = _ports(prod, loopback), _ports(drp, loopback)
    out.compared.append(f"{len(set(p) | set(d))} listening TCP port(s)")
    for port in sorted(set(p) ^ set(d)):
        only = "production" if port in p else "drp"
        yield DriftItem(
            what=f"listening tcp/{port}",
            production=", ".join(p.get(port, [])) or "nothing listens",
            drp=", ".join(d.get(port, [])) or "nothing listens",
            basis=f"{only} only",
        )


def _basis(p: str | None, d: str | None) -> str:
    if p is None:
        return "drp only"
    if d is None:
        return "production only"
    return "differs"


def _user_crontab(value: str) -> str | None:
    """How the SSH user's crontab is shown (None: there is none)."""
    if value == ABSENT:
        return None
    if value == MISSING:
        return "no crontab command (cron not installed)"
    digest, _, lines = value.partition(" ")
    return f"{lines or '?'} entries, sha256 {digest[:12]}"


def _crontab_items(prod: HostFacts, drp: HostFacts, out: Findings) -> Iterator[DriftItem]:
    what = "crontab of the SSH user"
    if UNREADABLE in (prod.user_crontab, drp.user_crontab):
        hosts = [f.host for f in (prod, drp) if f.user_crontab == UNREADABLE]
        out.unchecked[what] = f"{', '.join(hosts)}: `crontab -l` failed"
    elif prod.user_crontab != drp.user_crontab:
        p, d = _user_crontab(prod.user_crontab), _user_crontab(drp.user_crontab)
        yield DriftItem(what=what, production=p or "none", drp=d or "none", basis=_basis(p, d))
    paths = sorted(set(prod.system_crontabs) | set(drp.system_crontabs))
    out.compared.append(f"{len(paths) + 1} crontab(s)")
    for path in paths:
        p, d = prod.system_crontabs.get(path), drp.system_crontabs.get(path)
        if UNREADABLE in (p, d):
            out.unchecked[f"crontab {path}"] = "not readable by the SSH user"
        elif p != d:
            yield DriftItem(
                what=f"crontab {path}",
                production=f"sha256 {p[:12]}" if p else "absent",
                drp=f"sha256 {d[:12]}" if d else "absent",
                basis=_basis(p, d),
            )


def excluded(path: str, patterns: list[str]) -> bool:
    """Whether a tree's exclude patterns (rsync's, as the copy reads them) leave `path` out:
    `name` matches any part of the path, `dir/` a directory, `/x` and `a/b` from the tree's
    top."""
    parts = path.split("/")
    for raw in patterns:
        directory = raw.endswith("/")
        pattern = raw.strip("/")
        if not pattern:
            continue
        if raw.startswith("/") or "/" in pattern:
            depth = len(parts) - 1 if directory else len(parts)
            if any(fnmatch.fnmatchcase("/".join(parts[: i + 1]), pattern) for i in range(depth)):
                return True
        elif any(fnmatch.fnmatchcase(part, pattern) for part in parts[:-1] if directory) or (
            not directory and any(fnmatch.fnmatchcase(part, pattern) for part in parts)
        ):
            return True
    return False


def _config_items(
    site: Site, prod: HostFacts, drp: HostFacts, out: Findings
) -> Iterator[DriftItem]:
    excludes: dict[str, list[str]] = {}
    for env in site.environments:
        for config in env.configs:
            excludes.setdefault(config.path, []).extend(config.exclude)
    files = 0
    for tree in config_trees(site):
        subject = f"config {tree}"
        if why := _unread(prod, drp, subject):
            out.unchecked[subject] = why
            continue
        p, d = prod.configs.get(tree), drp.configs.get(tree)
        if p is None and d is None:
            continue
        if p is None or d is None:
            there = p if p is not None else d
            assert there is not None
            shown = f"present ({len(there)} file(s))"
            yield DriftItem(
                what=subject,
                production=shown if p is not None else "absent",
                drp=shown if d is not None else "absent",
                basis="production only" if p is not None else "drp only",
            )
            continue
        names = sorted(n for n in set(p) | set(d) if not excluded(n, excludes.get(tree, [])))
        files += len(names)
        for name in names:
            pe: FileEntry | None = p.get(name)
            de: FileEntry | None = d.get(name)
            if pe is not None and de is not None and pe.same_as(de):
                continue
            yield DriftItem(
                what=f"{subject}/{name}" if name else subject,
                production=pe.shown if pe else "absent",
                drp=de.shown if de else "absent",
                basis=_basis(pe.shown if pe else None, de.shown if de else None),
            )
    trees = config_trees(site)
    if trees:
        out.compared.append(f"{len(trees)} configuration tree(s) ({files} file(s))")


def _disk_items(site: Site, prod: HostFacts, drp: HostFacts, out: Findings) -> Iterator[DriftItem]:
    trees = all_trees(site)
    unread = [_unread(prod, drp, f"disk {tree}") for tree in trees]
    if any(unread):
        out.unchecked["disk"] = "; ".join(w for w in unread if w)
        return
    by_mount: dict[str, list[str]] = {}
    for tree in trees:
        by_mount.setdefault(drp.disks[tree].mount, []).append(tree)
    if trees:
        out.compared.append(f"the disks of {len(trees)} tree(s)")
    for mount, held in sorted(by_mount.items()):
        disk = drp.disks[held[0]]
        sources = {prod.disks[t].mount: prod.disks[t] for t in held}
        need = sum(s.used for s in sources.values())
        if disk.total >= need:
            continue
        yield DriftItem(
            what=f"disk {', '.join(held)}",
            production="; ".join(
                f"{m} {human_bytes(s.total)}, {human_bytes(s.used)} used"
                for m, s in sorted(sources.items())
            ),
            drp=f"{mount} {human_bytes(disk.total)} ({human_bytes(disk.free)} free): smaller "
            f"than production's {human_bytes(need)} used",
            basis="too small",
        )


def compare(site: Site, gathered: Gathered) -> Findings:
    """The drift items between both hosts' facts, the inventory's `drift.ignore` applied."""
    prod, drp = gathered.production, gathered.drp
    config = site.drift
    out = Findings(items=[], unchecked={}, compared=[])
    found = [
        *_os_items(prod, drp, out),
        *_version_items(prod, drp, list(config.versions), out),
        *_database_items(gathered, out),
        *_listening_items(prod, drp, config.loopback, out),
        *_crontab_items(prod, drp, out),
        *_config_items(site, prod, drp, out),
        *_disk_items(site, prod, drp, out),
    ]
    for item in found:
        if any(fnmatch.fnmatchcase(item.what, pattern) for pattern in config.ignore):
            out.ignored += 1
        else:
            out.items.append(item)
    return out


def _under(what: str, subjects: dict[str, str]) -> bool:
    return any(what == s or what.startswith((f"{s} ", f"{s}/")) or s == "*" for s in subjects)


def held_against(
    site: Site,
    findings: Findings,
    last: DriftState | None,
    *,
    now: datetime | None = None,
    note: str = "",
) -> DriftComparison:
    """The findings against the last state: new (or changed), unchanged, gone, kept."""
    before = {item.what: item for item in (last.items if last else [])}
    current = {item.what for item in findings.items}
    comparison = DriftComparison(
        site=site.name,
        checked_at=now or datetime.now(UTC),
        previous_at=last.checked_at if last else None,
        unchecked=findings.unchecked,
        compared=findings.compared,
        ignored=findings.ignored,
        note=note,
    )
    for item in sorted(findings.items, key=lambda i: i.what):
        was = before.get(item.what)
        if was is None:
            comparison.new.append(item)
        elif was.signature != item.signature:
            comparison.new.append(item)
            comparison.changed_from[item.what] = was
        else:
            comparison.unchanged.append(item)
    for what, item in sorted(before.items()):
        if what in current:
            continue
        if _under(what, findings.unchecked):
            comparison.kept.append(item)
        else:
            comparison.gone.append(item)
    return comparison


# -- the state on the DRP host -------------------------------------------------------------------


def write_state_argv(path: str, previous: str) -> list[str]:
    """Standard input to `path`, whole or not at all, readable by the SSH user only; what
    `path` held before is kept as `previous` first."""
    script = (
        'mkdir -p -- "$(dirname -- "$1")" || exit 1; umask 077; t="$1.tmp.$$"\n'
        'if cat > "$t" && { [ ! -e "$1" ] || cp -p -- "$1" "$2"; } && mv -f -- "$t" "$1"; '
        'then exit 0; fi; rm -f -- "$t"; exit 1'
    )
    return ["sh", "-c", script, "sh", path, previous]


def state_where() -> str:
    return f"{connect.host_name('drp')}:~/{STATE_FILE}"


def read_state(runner: CommandRunner, site: Site) -> tuple[DriftState | None, str]:
    """The last state on the DRP host (None when there is none) and a note for the summary
    when there is something to know about it. Raises ProviderError when it cannot be read."""
    result = runner.run(read_argv(STATE_FILE), check=False, timeout=60)
    if result.exit_code == MISSING_EXIT:
        return None, f"no drift recorded before on {state_where()}: every item is new"
    if not result.ok:
        raise ProviderError(
            f"cannot read {state_where()}: "
            f"{result.stderr.strip()[:200] or f'exit {result.exit_code}'}"
        )
    try:
        state = DriftState.model_validate(json.loads(result.stdout))
    except (ValueError, ValidationError):
        return None, (
            f"{state_where()} is not a drift state (it is kept as ~/{PREVIOUS_FILE} when this "
            "check is recorded): every item is new"
        )
    if state.site != site.name:
        return None, (
            f"{state_where()} is the drift of site {state.site}, not {site.name}: every item is new"
        )
    return state, ""


def write_state(runner: CommandRunner, state: DriftState) -> None:
    text = state.model_dump_json(indent=2) + "\n"
    result = runner.run(
        write_state_argv(STATE_FILE, PREVIOUS_FILE), stdin=text, check=False, timeout=60
    )
    if not result.ok:
        raise ProviderError(
            f"cannot write {state_where()}: "
            f"{result.stderr.strip()[:200] or f'exit {result.exit_code}'}"
        )


# -- rendering -----------------------------------------------------------------------------------


def _minute(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _table(items: list[DriftItem], changed: dict[str, DriftItem] | None = None) -> list[str]:
    lines = ["| what | production | drp |", "|---|---|---|"]
    for item in items[:SHOWN_PER_LIST]:
        was = (changed or {}).get(item.what)
        suffix = f" (was: {_cell(was.production)} / {_cell(was.drp)})" if was else ""
        lines.append(
            f"| {_cell(item.what)} | {_cell(item.production)} | {_cell(item.drp)}{suffix} |"
        )
    if len(items) > SHOWN_PER_LIST:
        lines.append(f"| … and {len(items) - SHOWN_PER_LIST} more | | |")
    return lines


def drift_markdown(comparison: DriftComparison) -> str:
    """The comparison as Markdown: the Prefect artifact and the ticket's body."""
    c = comparison
    last = f"last check {_minute(c.previous_at)}" if c.previous_at else "no check before"
    lines = [
        f"# Drift between production and the DRP server ({c.site})",
        "",
        f"Checked {_minute(c.checked_at)}, {last}: **{len(c.new)} new**, {len(c.unchanged)} "
        f"unchanged, {len(c.gone)} gone.",
    ]
    if c.note:
        lines += ["", f"_{c.note}._"]
    sections = (
        ("New", c.new, c.changed_from),
        ("Unchanged", c.unchanged, None),
        ("Gone (no longer differs)", c.gone, None),
        ("Not checked this time (kept from the last check)", c.kept, None),
    )
    for title, items, changed in sections:
        if items:
            lines += ["", f"## {title}", "", *_table(items, changed)]
    if c.unchecked:
        lines += ["", "## Could not be read", ""]
        lines += [f"- {_cell(what)}: {_cell(why)}" for what, why in sorted(c.unchecked.items())]
    if not c.has_drift and not c.gone:
        lines += ["", "Nothing differs."]
    compared = ", ".join(c.compared) or "nothing"
    lines += ["", f"Compared: {compared}."]
    if c.ignored:
        lines.append(f"Left out by drift.ignore: {c.ignored} item(s).")
    lines += ["", 'What to do: RUNBOOK.md, "Drift between production and the DRP server".']
    return "\n".join(lines) + "\n"


def drift_lines(comparison: DriftComparison) -> list[str]:
    """The comparison as plain lines for a terminal: one per item, marked NEW, SAME, GONE."""
    c = comparison
    last = f"last check {_minute(c.previous_at)}" if c.previous_at else "no check before"
    lines = [f"Drift of site {c.site}, checked {_minute(c.checked_at)} ({last})."]
    if c.note:
        lines.append(f"Note: {c.note}.")
    marks = (("NEW ", c.new), ("SAME", c.unchanged), ("GONE", c.gone), ("KEPT", c.kept))
    for mark, items in marks:
        for item in items:
            was = c.changed_from.get(item.what) if mark == "NEW " else None
            changed = f" (was: production {was.production}; drp {was.drp})" if was else ""
            lines.append(f"{mark}  {item.line}{changed}")
    for what, why in sorted(c.unchecked.items()):
        lines.append(f"NOT CHECKED  {what}: {why}")
    lines.append(f"Compared: {', '.join(c.compared) or 'nothing'}.")
    if c.ignored:
        lines.append(f"Left out by drift.ignore: {c.ignored} item(s).")
    lines.append(f"{c.summary[0].upper()}{c.summary[1:]}.")
    return lines


# -- one check ---------------------------------------------------------------------------------


@dataclass
class DriftRun:
    """A check's comparison, and what it did about it."""

    comparison: DriftComparison
    recorded: bool  # the state was written on the DRP host
    ticket: str  # what the ticket backends said, or why no ticket went out
    ticket_error: str = ""  # a backend failed: nothing was recorded, the next check sends again

    @property
    def data(self) -> dict[str, Any]:
        c = self.comparison
        return {
            "site": c.site,
            "checked_at": c.checked_at.isoformat(),
            "previous_at": c.previous_at.isoformat() if c.previous_at else None,
            "new": [i.model_dump() for i in c.new],
            "unchanged": [i.model_dump() for i in c.unchanged],
            "gone": [i.model_dump() for i in c.gone],
            "kept": [i.model_dump() for i in c.kept],
            "unchecked": dict(c.unchecked),
            "compared": list(c.compared),
            "ignored": c.ignored,
            "note": c.note,
            "recorded": self.recorded,
            "ticket": self.ticket,
            "ticket_error": self.ticket_error,
        }


def send_ticket(site: Site, backends: list[TicketBackend], comparison: DriftComparison) -> str:
    """The drift ticket through every backend; raises TicketError naming the ones that
    failed (the others have it: a later send skips them)."""
    new = len(comparison.new)
    ticket = Ticket(
        ticket_operation_id(site),
        comparison.event,
        f"Drift between production and the DRP server of {site.name}: {new} new item(s)",
        drift_markdown(comparison),
        site.name,
    )
    if not backends:
        raise TicketError("no ticket backend in the inventory")
    said, failed = [], []
    for backend in backends:
        try:
            said.append(backend.send(ticket).sentence)
        except (TicketError, OSError) as err:
            failed.append(f"{backend.name}: {err}")
    if failed:
        raise TicketError("; ".join([*failed, *said]))
    return "; ".join(said)


def check_drift(
    site: Site,
    pool: connect.HostPool,
    backends: list[TicketBackend],
    *,
    record: bool = True,
    now: datetime | None = None,
) -> DriftRun:
    """Compare both hosts, hold the result against the last state on the DRP host, and (with
    `record`) send the ticket when there is new drift, then record the state. A ticket that
    could not go out leaves the state as it was (`ticket_error`), so the next check finds the
    same items new and sends again. Raises ProviderError when a host cannot be read."""
    findings = compare(site, gather(site, pool))
    runner = pool["drp"]
    try:
        last, note = read_state(runner, site)
    except SshError as err:
        raise ProviderError(f"cannot read {state_where()}: {err}") from err
    comparison = held_against(site, findings, last, now=now, note=note)
    if not record:
        return DriftRun(comparison, False, "not recorded (--no-record): no ticket")
    ticket = "no new drift: no ticket"
    if comparison.new:
        try:
            ticket = send_ticket(site, backends, comparison)
        except TicketError as err:
            return DriftRun(comparison, False, "", f"the drift ticket was not sent: {err}")
    try:
        write_state(runner, comparison.state)
    except SshError as err:
        raise ProviderError(f"cannot write {state_where()}: {err}") from err
    log.info("%s; recorded on %s", comparison.summary, state_where())
    return DriftRun(comparison, True, ticket)


# -- the step ------------------------------------------------------------------------------------


class CheckDrift(Step):
    """Compare the DRP server with production and report what changed since the last check.

    Reads both hosts (read-only), keeps the drift seen on the DRP host (`~/.drp/drift/
    last.json`) and sends a ticket when there are new items. Drift is not a failure: the step
    is applied whatever it finds; it fails when a host cannot be read or the ticket cannot be
    sent (then nothing is recorded, and the next check sends it). `Applied.details` holds
    `drift_markdown` (the summary, for an artifact), `drift` (the items, as data) and
    `drift_new` (how many are new)."""

    def __init__(self, ctx: OperationContext, *, phase: int = 90, record: bool = True) -> None:
        super().__init__("drift-check", "Compare the DRP server with production (drift)")
        self.ctx, self.phase, self.record = ctx, phase, record
        self._run: DriftRun | None = None

    def describe(self) -> list[Change]:
        what = (
            "OS release, versions, database servers, listening services, crontabs, "
            "configuration trees, disks"
        )
        changes = [Change("check", "production and drp", what)]
        if self.record:
            changes.append(Change("record", state_where(), "the drift seen"))
            changes += [
                Change("send-ticket", b.target, "when there is new drift") for b in self.ctx.tickets
            ]
        return changes

    def writes(self) -> list[Write]:
        return [Write("", "ticket", TICKET_EVENT_PREFIX)] if self.record else []

    def check(self) -> Check:
        return Check(False, "the drift is compared at every run")

    def apply(self, progress: ProgressCallback | None = None) -> Applied:
        run = check_drift(self.ctx.site, self.ctx.pool, self.ctx.tickets, record=self.record)
        self._run = run
        if run.ticket_error:
            raise StepFailed(
                f"{self.title}: {run.comparison.summary}, but {run.ticket_error}; nothing was "
                "recorded, the next check sends it again"
            )
        c = run.comparison
        ticket = f"; {run.ticket}" if c.new else ""
        return Applied(
            f"{c.summary}{ticket}",
            details={
                "drift_markdown": drift_markdown(c),
                "drift": run.data,
                "drift_new": len(c.new),
            },
        )

    def verify(self) -> Check:
        run = self._run
        if run is None or not run.recorded:
            return Check(True, "not recorded (only looked)")
        state, _ = read_state(self.ctx.pool["drp"], self.ctx.site)
        if state is None or state.checked_at != run.comparison.checked_at:
            return Check(False, f"{state_where()} does not hold this check")
        return Check(True, f"recorded on {state_where()}")
