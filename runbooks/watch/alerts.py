"""Alert tickets on state changes only, and the alarm that prepares the order.

Each (host, probe, target) has a small state on disk (`watch-state.json` in the reports
directory): its last status, how many rounds in a row it failed or was ok, the alert open for
it. An alert opens after `alerts.after_failures` failed rounds in a row and closes after
`alerts.after_recoveries` ok rounds in a row, each with one ticket through every backend
(`alert-HOST-PROBE[-TARGET]-N`, then `recovered-...-N`): no ticket while nothing changes, none
for a single bad round, none again for an alert already open. `unknown` (a probe that could not
tell) neither opens nor closes anything. The state survives restarts, and a lost state file
cannot make a ticket go unsent: N is the first number no backend has seen.

The disaster alarm: production's probes named in `watch.disaster.probes` (default ping, SSH and
every URL check) all critical for `disaster.for_seconds` means production is lost as the plan
understands it. The alarm then opens its ticket (`disaster-N`) and starts the activation
deployment, which runs its read-only preflight and waits at the order gate with its brief (the
backups chosen, the data-loss window as of then); drp never goes past the gate. While an
operation holds the site lock (`drp status`), another alarm starts nothing and says so. When
production answers again, `disaster-cleared-N` says so (the activation, if any, still waits for
the customer's decision: refuse it or let it time out).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from providers.tickets import Ticket, TicketBackend, TicketError
from runbooks.errors import DrpError
from runbooks.inventory import Site
from runbooks.watch.records import ProbeRecord, Status, WatchRound

STATE_FILE = "watch-state.json"
LOCK_FILE = "watch-state.lock"
_TITLE_LIMIT = 180
log = logging.getLogger("drp.watch.alerts")

LockHolder = Callable[[], str | None]  # the operation holding the site, in words, or None
StartActivation = Callable[[str], str]  # deployment -> what was started (a sentence)


@dataclass(frozen=True)
class AlertEvent:
    """What a round changed: an alert opened or closed, the alarm raised or cleared."""

    kind: str  # opened, closed, alarm, alarm-cleared
    event: str  # the ticket's event
    title: str
    sent: str  # what the backends said, or why nothing went out

    @property
    def data(self) -> dict[str, str]:
        return {"kind": self.kind, "event": self.event, "title": self.title, "sent": self.sent}


def operation_id(site: Site) -> str:
    """The operation id supervision tickets carry."""
    return f"watch-{site.name}"


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="seconds")


def _since(text: str | None, now: datetime) -> float:
    if not text:
        return 0.0
    return max(0.0, (now - datetime.fromisoformat(text)).total_seconds())


def _minutes(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    return f"{seconds / 60:.0f} min"


def _title(text: str) -> str:
    line = " ".join(text.split())
    return line if len(line) <= _TITLE_LIMIT else line[: _TITLE_LIMIT - 1] + "…"


class AlertBook:
    """The alert state of one site, in `directory` (the reports directory)."""

    def __init__(
        self,
        site: Site,
        directory: Path,
        backends: list[TicketBackend],
        *,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.site = site
        self.config = site.watch
        self.directory = Path(directory)
        self.path = self.directory / STATE_FILE
        self.backends = backends
        self.now = now

    # -- the file ------------------------------------------------------------------------------

    def load(self) -> dict[str, Any]:
        try:
            data = json.loads(self.path.read_text())
        except FileNotFoundError:
            data = {}
        except (OSError, ValueError) as err:
            # Kept aside, not lost: a new state starts (a ticket number is never reused).
            aside = self.path.with_name(f"{STATE_FILE}.unreadable-{int(self.now().timestamp())}")
            with contextlib.suppress(OSError):
                self.path.replace(aside)
            log.warning(
                "%s could not be read (%s); kept as %s, starting afresh", self.path, err, aside
            )
            data = {}
        data.setdefault("site", self.site.name)
        data.setdefault("probes", {})
        data.setdefault("disaster", {"since": None, "alarms": 0, "open": None, "clear_rounds": 0})
        return data

    def _save(self, data: dict[str, Any]) -> None:
        data["updated"] = _iso(self.now())
        tmp = self.path.with_name(f".{STATE_FILE}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
        tmp.replace(self.path)

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        """One round at a time updates the state (a `drp watch` and the deployment may both run)."""
        self.directory.mkdir(parents=True, exist_ok=True)
        with (self.directory / LOCK_FILE).open("a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def open_alerts(self) -> list[dict[str, Any]]:
        """The alerts open now (for metrics and `drp watch`)."""
        data = self.load()
        found = [dict(p["open"], key=k) for k, p in data["probes"].items() if p.get("open")]
        return sorted(found, key=lambda a: a["key"])

    def alarm(self) -> dict[str, Any] | None:
        return self.load()["disaster"].get("open")

    # -- tickets -------------------------------------------------------------------------------

    def _free_number(self, stem: str, after: int) -> int:
        """The first N after `after` for which no backend has `STEM-N` (a lost state file
        must not make a new alert look already sent)."""
        number = after + 1
        op = operation_id(self.site)
        while any(b.already_sent(op, f"{stem}-{number}") for b in self.backends):
            number += 1
        return number

    def _send(self, event: str, title: str, body: str) -> tuple[bool, str]:
        """Through every backend; (all delivered, what they said)."""
        ticket = Ticket(operation_id(self.site), event, _title(title), body, self.site.name)
        said, delivered = [], True
        for backend in self.backends:
            try:
                said.append(backend.send(ticket).sentence)
            except (TicketError, OSError) as err:
                delivered = False
                said.append(f"{backend.name}: not sent: {err}")
        if not self.backends:
            return False, "no ticket backend in the inventory"
        return delivered, "; ".join(said)

    # -- a round -------------------------------------------------------------------------------

    def process(
        self,
        watch: WatchRound,
        *,
        lock_holder: LockHolder | None = None,
        start_activation: StartActivation | None = None,
    ) -> list[AlertEvent]:
        """Update the state with a round; send the tickets its changes call for."""
        with self._locked():
            data = self.load()
            events = self._probes(data, watch)
            events += self._disaster(data, watch, lock_holder, start_activation)
            self._save(data)
        return events

    def _failing(self, status: Status) -> bool:
        if self.config.alerts.level == "warning":
            return status in (Status.WARNING, Status.CRITICAL)
        return status is Status.CRITICAL

    def _probes(self, data: dict[str, Any], watch: WatchRound) -> list[AlertEvent]:
        now = self.now()
        config = self.config.alerts
        events: list[AlertEvent] = []
        seen = set()
        for record in watch.records:
            seen.add(record.key)
            state = data["probes"].setdefault(
                record.key, {"failures": 0, "oks": 0, "alerts": 0, "open": None}
            )
            if state.get("status") != record.status.value:
                state["since"] = _iso(now)
            state.update(
                host=record.host, probe=record.probe, target=record.target,
                status=record.status.value, message=record.message, seen=_iso(now),
            )  # fmt: skip
            if record.status is Status.UNKNOWN:
                pass  # cannot tell: neither a failure nor a recovery
            elif self._failing(record.status):
                state["failures"] += 1
                state["oks"] = 0
                state.setdefault("failing_since", _iso(now))
            else:
                state["oks"] += 1
                state["failures"] = 0
                state.pop("failing_since", None)
            opened = state.get("open")
            if opened is None and state["failures"] >= config.after_failures:
                events.append(self._open(state, record))
            elif opened is not None and state["oks"] >= config.after_recoveries:
                events.append(self._close(state, record))
            elif opened is not None and not opened.get("delivered", True):
                delivered, said = self._send(opened["event"], opened["title"], opened["body"])
                opened["delivered"] = delivered
                events.append(AlertEvent("opened", opened["event"], opened["title"], said))
        for key in list(data["probes"]):
            # A probe no longer reported (a mount gone, the inventory changed) is forgotten
            # unless an alert is open for it: that one waits for its recovery.
            if key not in seen and not data["probes"][key].get("open"):
                del data["probes"][key]
        return events

    def _open(self, state: dict[str, Any], record: ProbeRecord) -> AlertEvent:
        now = self.now()
        stem = f"alert-{record.event_name}"
        number = self._free_number(stem, int(state.get("alerts", 0)))
        state["alerts"] = number
        event = f"{stem}-{number}"
        rounds = state["failures"]
        failing = _since(state.get("failing_since"), now)
        title = f"{record.label}: {record.status.value}: {record.message}"
        body = "\n".join(
            [
                f"{record.label} is {record.status.value} for {rounds} rounds in a row "
                f"({_minutes(failing)}).",
                "",
                f"- host: {record.host}",
                f"- probe: {record.probe}" + (f" ({record.target})" if record.target else ""),
                f"- value: {record.value if record.value is not None else '-'} {record.unit}",
                f"- threshold: {record.threshold or '-'}",
                f"- message: {record.message}",
                "",
                "No other ticket is sent while it stays so; one says when it clears. To look "
                "again: drp watch -c INVENTORY --once.",
            ]
        )
        delivered, said = self._send(event, title, body)
        state["open"] = {
            "n": number, "event": event, "opened_at": _iso(now), "status": record.status.value,
            "title": _title(title), "body": body, "delivered": delivered,
        }  # fmt: skip
        return AlertEvent("opened", event, _title(title), said)

    def _close(self, state: dict[str, Any], record: ProbeRecord) -> AlertEvent:
        now = self.now()
        opened = state["open"]
        event = f"recovered-{opened['event'].removeprefix('alert-')}"
        lasted = _since(opened.get("opened_at"), now)
        title = f"{record.label}: recovered: {record.message}"
        body = (
            f"{record.label} is {record.status.value} again, {state['oks']} rounds in a row: "
            f"{record.message}.\nThe alert {opened['event']} ({opened['title']}) was open for "
            f"{_minutes(lasted)}; it is closed."
        )
        _, said = self._send(event, title, body)
        state["open"] = None
        return AlertEvent("closed", event, _title(title), said)

    # -- the disaster alarm --------------------------------------------------------------------

    def disaster_findings(self, watch: WatchRound) -> tuple[bool, list[ProbeRecord]]:
        """Whether production is lost as `watch.disaster` says, and the records that say so."""
        records: list[ProbeRecord] = []
        for probe in self.config.disaster.probes:
            found = watch.of("production", probe)
            if not found:
                if probe == "url":
                    continue  # no URL check in the inventory: ping and SSH decide
                return False, records
            records += found
        lost = bool(records) and all(r.status is Status.CRITICAL for r in records)
        return lost, records

    def _disaster(
        self,
        data: dict[str, Any],
        watch: WatchRound,
        lock_holder: LockHolder | None,
        start_activation: StartActivation | None,
    ) -> list[AlertEvent]:
        now = self.now()
        state = data["disaster"]
        config = self.config.disaster
        lost, records = self.disaster_findings(watch)
        opened = state.get("open")
        if not lost:
            state["since"] = None
            if opened is None:
                return []
            state["clear_rounds"] = int(state.get("clear_rounds", 0)) + 1
            if state["clear_rounds"] < self.config.alerts.after_recoveries:
                return []
            return [self._clear(state, records)]
        state["clear_rounds"] = 0
        if state.get("since") is None:
            state["since"] = _iso(now)
        held = _since(state["since"], now)
        if opened is not None:
            if not opened.get("delivered", True):
                delivered, said = self._send(opened["event"], opened["title"], opened["body"])
                opened["delivered"] = delivered
                return [AlertEvent("alarm", opened["event"], opened["title"], said)]
            return []
        if held < config.for_seconds:
            return []
        return [self._raise(state, records, held, lock_holder, start_activation)]

    def _activation(
        self, lock_holder: LockHolder | None, start_activation: StartActivation | None
    ) -> str:
        config = self.config.disaster
        if not config.start_activation:
            return (
                "the activation was not started (watch.disaster.start_activation is false): "
                f"start it when the customer asks: prefect deployment run {config.deployment}"
            )
        if lock_holder is not None:
            try:
                holder = lock_holder()
            except (DrpError, OSError) as err:
                holder = None
                log.warning("the site lock could not be read (%s); starting the activation", err)
            if holder:
                return (
                    f"no activation was started: {holder} already holds the site (drp status); "
                    "it waits for its order, or runs"
                )
        if start_activation is None:
            return (
                "the activation could not be started from here (no Prefect server): start it: "
                f"prefect deployment run {config.deployment}"
            )
        try:
            return start_activation(config.deployment)
        except DrpError as err:
            return f"the activation could not be started: {err}"

    def _raise(
        self,
        state: dict[str, Any],
        records: list[ProbeRecord],
        held: float,
        lock_holder: LockHolder | None,
        start_activation: StartActivation | None,
    ) -> AlertEvent:
        now = self.now()
        config = self.config.disaster
        number = self._free_number("disaster", int(state.get("alarms", 0)))
        state["alarms"] = number
        event = f"disaster-{number}"
        activation = self._activation(lock_holder, start_activation)
        probes = ", ".join(config.probes)
        title = f"production of {self.site.name} is lost: {probes} critical for {_minutes(held)}"
        body = "\n".join(
            [
                f"Production of site {self.site.name} fails as the plan declares a disaster: "
                f"{probes} all critical for {_minutes(held)} (since {state['since']}).",
                "",
                *[f"- {r.label}: {r.message}" for r in records],
                "",
                f"Activation: {activation}.",
                "",
                f"The decision is {self.site.customer}'s: the activation does nothing before "
                "the order. Give the order, or refuse it, in the Prefect UI (the run's Resume "
                "form shows the brief: the backups chosen and the data loss) or with drp "
                "approve (RUNBOOK section 4).",
            ]
        )
        delivered, said = self._send(event, title, body)
        state["open"] = {
            "n": number, "event": event, "raised_at": _iso(now), "since": state["since"],
            "activation": activation, "title": _title(title), "body": body,
            "delivered": delivered,
        }  # fmt: skip
        return AlertEvent("alarm", event, _title(title), said)

    def _clear(self, state: dict[str, Any], records: list[ProbeRecord]) -> AlertEvent:
        now = self.now()
        opened = state["open"]
        event = f"disaster-cleared-{opened['n']}"
        answering = [r for r in records if r.status is not Status.CRITICAL]
        title = f"production of {self.site.name} answers again"
        body = "\n".join(
            [
                f"Production of site {self.site.name} no longer fails as a disaster "
                f"(alarm {opened['event']}, raised {opened['raised_at']}, cleared "
                f"{_iso(now)}).",
                "",
                *[f"- {r.label}: {r.status.value}: {r.message}" for r in answering],
                "",
                f"Activation at the alarm: {opened['activation']}.",
                "An activation waiting at its order gate still waits: refuse it in the UI (or "
                "drp approve --refuse) if the customer does not order it; it changes nothing.",
            ]
        )
        _, said = self._send(event, title, body)
        state["open"] = None
        state["clear_rounds"] = 0
        return AlertEvent("alarm-cleared", event, _title(title), said)
