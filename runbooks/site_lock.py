"""One operation per site: the site lock, held on the DRP host.

The DRP host is the host that survives the disaster, so every orchestrator (a laptop, a Prefect
worker, a second worker) sees the same lock there. It is one small file,
`~/.drp-lock/lock.json` in the SSH user's home, created whole or not at all: its content is
written to a temporary file first, then hard-linked to `lock.json`. `ln` refuses an existing
target, so of two orchestrators racing for the lock exactly one wins; the other reads the
holder and is refused with one line naming it.

- Activation, drill (with or without cleanup) and return take the lock after their read-only
  preflight and *before* the order gate, so two operations never wait at the gate together.
  This is a write before the order, but only of this file, outside anything the DRP server
  serves.
- The same operation taking it again (a resume, or a deployment run restarting after its gate)
  finds its own lock and goes on.
- It is released when the operation ends succeeded, refused or timed out. A failed operation
  keeps it: its resume goes on, and nothing else starts on a half-done site.
- A lock whose operation never got its order, and whose run has ended without releasing it (a
  run cancelled while it waited at the gate), is released by the next operation, which says so
  and writes why in the ledger: nothing had been done under it. Only the orchestrator can tell
  that a run ended (`stale`); without it such a lock waits for `drp unlock`.
- `drp unlock` releases a lock by its operation id and appends who, when and why to
  `~/.drp-lock/ledger.jsonl` on the DRP host. Every operation that takes the lock is written
  there too: a drill's cleanup reads it, and refuses to undo what a later operation did.
"""

from __future__ import annotations

import getpass
import json
import socket
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

from providers.aside import AsideError, read_file, write_file
from providers.commands import CommandRunner
from runbooks import connect
from runbooks.errors import DrpError, ProviderError
from runbooks.inventory import Site

LOCK_DIR = ".drp-lock"
LOCK_FILE = f"{LOCK_DIR}/lock.json"
LEDGER_FILE = f"{LOCK_DIR}/ledger.jsonl"
HELD_EXIT = 3  # what `take_argv` exits with when the lock is already held (holder on stdout)


STAGE_KIND = "stage"  # staging runs (`runbooks.staging`): they write nothing served


class SiteLocked(DrpError):
    """Another operation holds the site lock."""


def who_am_i() -> str:
    """The orchestrator's user and machine, as `user@host`."""
    try:
        user = getpass.getuser()
    except Exception:  # no user name in this environment (a container without passwd entry)
        user = "unknown"
    return f"{user}@{socket.gethostname()}"


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


@dataclass
class LockInfo:
    """What the lock file says: which operation holds the site, since when, by whom."""

    operation_id: str
    kind: str
    site: str
    since: str  # ISO time the lock was taken
    started_by: str  # user@machine of the orchestrator that took it
    started_from: str  # that machine
    run: str = ""  # the flow run, when Prefect runs it
    ordered_by: str = ""  # filled in once the order is given
    reference: str = ""
    ordered_at: str = ""
    resumed_at: str = ""  # the last time the same operation took it again

    @classmethod
    def new(cls, operation_id: str, kind: str, site: str, run: str = "") -> LockInfo:
        return cls(operation_id, kind, site, _now(), who_am_i(), socket.gethostname(), run)

    @property
    def data(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_text(cls, text: str, where: str) -> LockInfo:
        try:
            data = json.loads(text)
            return cls(**{k: str(v) for k, v in data.items() if k in cls.__dataclass_fields__})
        except (ValueError, TypeError) as err:
            raise ProviderError(
                f"{where} is not a drp lock file ({err}); look at it, then remove it by hand"
            ) from None

    def holder(self) -> str:
        """The holder in words, on one line."""
        ordered = f", ordered by {self.ordered_by}" if self.ordered_by else ", not ordered yet"
        run = f", {self.run}" if self.run else ""
        return (
            f"operation {self.operation_id} ({self.kind}, since {self.since}, started by "
            f"{self.started_by}{ordered}{run})"
        )


def take_argv(ledger_entry: str, lock_dir: str = LOCK_DIR) -> list[str]:
    """Create `lock.json` from standard input, only if it does not exist (exit HELD_EXIT with
    the holder's lock on stdout if it does), and then append `ledger_entry` (one line) to the
    ledger: the lock stands even if that append fails. Written to a temporary file first, then
    hard-linked: the lock is never seen half-written, and `ln` never replaces a holder's."""
    script = (
        'd=$1; mkdir -p -- "$d" || exit 1; t="$d/.take.$$"; cat > "$t" || exit 1\n'
        'if ln -- "$t" "$d/lock.json" 2>/dev/null; then\n'
        '  rm -f -- "$t"; printf \'%s\\n\' "$2" >> "$d/ledger.jsonl"; exit 0\n'
        "fi\n"
        f'rm -f -- "$t"; cat -- "$d/lock.json" 2>/dev/null; exit {HELD_EXIT}'
    )
    return ["sh", "-c", script, "sh", lock_dir, ledger_entry]


def update_argv(operation_id: str, lock_file: str = LOCK_FILE) -> list[str]:
    """Replace the lock with standard input, whole (a temporary file, then a rename), if it
    still names `operation_id` or is gone; else exit HELD_EXIT with the lock that stands on
    stdout (another operation took the site)."""
    script = (
        'mkdir -p -- "$(dirname -- "$1")" || exit 1; t="$1.tmp.$$"; cat > "$t" || exit 1\n'
        'if [ ! -e "$1" ] || grep -q -F -- "\\"operation_id\\": \\"$2\\"" "$1"; then\n'
        '  mv -f -- "$t" "$1" && exit 0; rm -f -- "$t"; exit 1\n'
        "fi\n"
        f'rm -f -- "$t"; cat -- "$1"; exit {HELD_EXIT}'
    )
    return ["sh", "-c", script, "sh", lock_file, operation_id]


def release_argv(operation_id: str, lock_file: str = LOCK_FILE) -> list[str]:
    """Remove the lock only if it still names `operation_id` (exit 4 if it names another)."""
    script = (
        '[ -e "$1" ] || exit 0\n'
        'grep -q -F -- "\\"operation_id\\": \\"$2\\"" "$1" || exit 4\n'
        'exec rm -f -- "$1"'
    )
    return ["sh", "-c", script, "sh", lock_file, operation_id]


def append_argv(path: str) -> list[str]:
    """Append standard input to `path` (the ledger), creating its directory."""
    script = 'mkdir -p -- "$(dirname -- "$1")" && cat >> "$1"'
    return ["sh", "-c", script, "sh", path]


# -- on the DRP host ---------------------------------------------------------------------------
def read_lock(runner: CommandRunner) -> LockInfo | None:
    """The lock on the host, or None when the site is free."""
    try:
        text = read_file(runner, LOCK_FILE)
    except AsideError as err:
        raise ProviderError(f"cannot read the site lock: {err}") from None
    if text is None:
        return None
    return LockInfo.from_text(text, f"{runner.name}:~/{LOCK_FILE}")


# Why a lock held by an operation that never got its order may go (its run ended), or None.
Stale = Callable[[LockInfo], str | None]


def take(
    runner: CommandRunner,
    wanted: LockInfo,
    unlock_hint: str,
    stale: Stale | None = None,
    said: Callable[[str], None] | None = None,
) -> LockInfo:
    """Take the lock for `wanted.operation_id`, or find it already ours (a resume): returns the
    lock as it stands. A holder that never got its order and whose run has ended (`stale` says
    why) is released first, in the ledger, and `said` is told. Raises SiteLocked, with one line
    naming the holder, otherwise."""
    for _attempt in range(3):
        text = json.dumps(wanted.data, indent=2) + "\n"
        entry = json.dumps(_taken_entry(wanted))
        result = runner.run(take_argv(entry), stdin=text, check=False, timeout=60)
        if result.ok:
            return wanted
        if result.exit_code != HELD_EXIT:
            raise ProviderError(
                f"cannot take the site lock on {runner.name}: "
                f"{result.stderr.strip()[:200] or f'exit {result.exit_code}'}"
            )
        if not result.stdout.strip():  # released between our attempt and our read: again
            continue
        held = LockInfo.from_text(result.stdout, f"{runner.name}:~/{LOCK_FILE}")
        if held.operation_id == wanted.operation_id:
            held.resumed_at = _now()
            _write(runner, held)
            return held
        why = stale(held) if stale is not None and not held.ordered_by else None
        if why:
            _release_stale(runner, held, why, wanted.operation_id)
            if said is not None:
                under = (
                    "a staging run, which changes nothing the DRP server serves"
                    if held.kind == STAGE_KIND
                    else "before any order, so nothing had been done under it"
                )
                said(
                    f"site lock of operation {held.operation_id} released: {why}, {under} "
                    "(written in the lock ledger)"
                )
            continue
        if held.kind == STAGE_KIND:
            raise SiteLocked(
                f"site {wanted.site} is locked by {held.holder()}: nothing was done. It is a "
                "staging run (it writes the stages, nothing the DRP server serves): wait for "
                "it to end, or cancel its run in the Prefect UI, then start again; the lock of "
                "a run that ended is released by the next operation"
            )
        raise SiteLocked(
            f"site {wanted.site} is locked by {held.holder()}: nothing was done. Wait for it to "
            f"end, resume it with --operation-id {held.operation_id}, or release it with "
            f"`{unlock_hint.format(operation_id=held.operation_id)}`"
        )
    raise ProviderError(f"the site lock on {runner.name} changed hands three times; try again")


def _taken_entry(info: LockInfo) -> dict[str, Any]:
    return {
        "event": "taken",
        "operation_id": info.operation_id,
        "kind": info.kind,
        "taken_at": info.since,
        "taken_by": info.started_by,
    }


def taken_since(runner: CommandRunner, operation_id: str) -> list[dict[str, Any]]:
    """The operations that took the site after `operation_id` first took it, as the ledger
    says (oldest first): work done on the DRP server that a drill's cleanup must not undo."""
    entries = [e for e in ledger(runner) if e.get("event") == "taken"]
    firsts = [i for i, e in enumerate(entries) if e.get("operation_id") == operation_id]
    if not firsts:
        return []
    return [e for e in entries[firsts[0] + 1 :] if e.get("operation_id") != operation_id]


def _release_stale(runner: CommandRunner, held: LockInfo, why: str, by_operation: str) -> None:
    entry = {
        "event": "released-unordered",
        "operation_id": held.operation_id,
        "kind": held.kind,
        "held_since": held.since,
        "held_by": held.started_by,
        "released_by": f"operation {by_operation} ({who_am_i()})",
        "released_from": socket.gethostname(),
        "released_at": _now(),
        "reason": why,
    }
    appended = runner.run(
        append_argv(LEDGER_FILE), stdin=json.dumps(entry) + "\n", check=False, timeout=60
    )
    if not appended.ok:
        raise ProviderError(
            f"cannot write the lock ledger on {runner.name}: {appended.stderr.strip()[:200]}; "
            f"the lock of operation {held.operation_id} was left as it is"
        )
    release(runner, held.operation_id)


def _write(runner: CommandRunner, info: LockInfo) -> None:
    try:
        write_file(runner, LOCK_FILE, json.dumps(info.data, indent=2) + "\n")
    except AsideError as err:
        raise ProviderError(f"cannot update the site lock: {err}") from None


def release(runner: CommandRunner, operation_id: str) -> bool:
    """Remove our lock; False if another operation holds it now (left as it is)."""
    result = runner.run(release_argv(operation_id), check=False, timeout=60)
    if result.exit_code == 4:
        return False
    if not result.ok:
        raise ProviderError(
            f"cannot release the site lock on {runner.name}: {result.stderr.strip()[:200]}"
        )
    return True


def unlock(
    runner: CommandRunner, operation_id: str, reason: str, by: str | None = None
) -> dict[str, Any]:
    """Release the lock held by `operation_id` by hand; the release goes into the ledger first.
    Refuses (DrpError) when the site is free or another operation holds the lock."""
    held = read_lock(runner)
    if held is None:
        raise DrpError(f"the site is not locked (no ~/{LOCK_FILE} on {runner.name}): nothing to do")
    if held.operation_id != operation_id:
        raise DrpError(
            f"the lock is held by {held.holder()}, not by operation {operation_id}: nothing was "
            f"released; check `drp status` and give --operation-id {held.operation_id} if that "
            "is the one to release"
        )
    entry = {
        "event": "unlocked",
        "operation_id": held.operation_id,
        "kind": held.kind,
        "held_since": held.since,
        "held_by": held.started_by,
        "released_by": by or who_am_i(),
        "released_from": socket.gethostname(),
        "released_at": _now(),
        "reason": reason,
    }
    appended = runner.run(
        append_argv(LEDGER_FILE), stdin=json.dumps(entry) + "\n", check=False, timeout=60
    )
    if not appended.ok:
        raise ProviderError(
            f"cannot write the lock ledger on {runner.name}: {appended.stderr.strip()[:200]}; "
            "nothing was released"
        )
    if not release(runner, operation_id):
        raise DrpError(f"the lock changed hands meanwhile: nothing was released ({runner.name})")
    return entry


def ledger(runner: CommandRunner) -> list[dict[str, Any]]:
    try:
        text = read_file(runner, LEDGER_FILE) or ""
    except AsideError as err:
        raise ProviderError(f"cannot read the lock ledger: {err}") from None
    return [json.loads(line) for line in text.splitlines() if line.strip()]


# -- what the engine holds ---------------------------------------------------------------------
@contextmanager
def _drp_host(site: Site) -> Iterator[CommandRunner]:
    """A connection to the DRP host for one lock action (the lock outlives any connection:
    an operation may wait a day at its gate)."""
    with connect.HostPool(site) as pool:
        yield pool["drp"]


def unlock_hint(site: Site) -> str:
    config = f" -c {site.source}" if site.source else ""
    return f"drp unlock{config} --operation-id {{operation_id}} --reason TEXT"


@dataclass
class SiteLock:
    """The engine's handle on the site lock of one operation (`runbooks.engine.Lock`)."""

    site: Site
    operation_id: str
    kind: str
    run: str = ""  # e.g. "flow run <id>"
    host: Callable[[Site], Any] = field(default=_drp_host)
    stale: Stale | None = None  # the orchestrator's word on a holder's run (see `take`)
    said: list[str] = field(default_factory=list, init=False)
    held: LockInfo | None = field(default=None, init=False)

    def take(self) -> str:
        wanted = LockInfo.new(self.operation_id, self.kind, self.site.name, self.run)
        with self.host(self.site) as runner:
            self.held = take(runner, wanted, unlock_hint(self.site), self.stale, self.said.append)
        before = "".join(f"{line}; " for line in self.said)
        if self.held.resumed_at:
            return (
                f"{before}site lock already held by this operation since {self.held.since}: "
                "going on"
            )
        return (
            f"{before}site lock taken on the DRP host (~/{LOCK_FILE}) for operation "
            f"{self.operation_id}"
        )

    def ordered(self, order: dict[str, Any]) -> None:
        """Name who ordered in the lock (what another orchestrator is told)."""
        if self.held is None:
            return
        self.held.ordered_by = str(order.get("ordered_by", ""))
        self.held.reference = str(order.get("reference", ""))
        self.held.ordered_at = str(order.get("answered_at", ""))
        text = json.dumps(self.held.data, indent=2) + "\n"
        with self.host(self.site) as runner:
            result = runner.run(update_argv(self.operation_id), stdin=text, check=False, timeout=60)
            where = f"{runner.name}:~/{LOCK_FILE}"
        if result.exit_code == HELD_EXIT:
            current = LockInfo.from_text(result.stdout, where)
            raise SiteLocked(
                f"the site lock was released by hand while operation {self.operation_id} "
                f"waited for its order, and {current.holder()} took it: nothing was done"
            )
        if not result.ok:
            raise ProviderError(
                f"cannot update the site lock {where}: "
                f"{result.stderr.strip()[:200] or f'exit {result.exit_code}'}"
            )

    def release(self) -> str:
        with self.host(self.site) as runner:
            ours = release(runner, self.operation_id)
        self.held = None
        if not ours:
            return "site lock not released: another operation holds it now"
        return "site lock released"
