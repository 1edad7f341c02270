"""Rounds one after the other over one pool of SSH connections, with alerts and metrics.

`drp watch` keeps one `Watcher` for its whole life (its connections stay open between rounds);
the `drp-watch` flow makes one per run. Starting the activation is the caller's (it needs
Prefect, which `runbooks` never imports): it passes `start_activation`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from types import TracebackType

from runbooks import connect, site_lock
from runbooks.inventory import Site
from runbooks.services import reports_dir, ticket_backends
from runbooks.watch.alerts import AlertBook, AlertEvent, StartActivation
from runbooks.watch.metrics import WatchCollector
from runbooks.watch.records import WatchRound
from runbooks.watch.round import run_round


@dataclass
class RoundResult:
    watch: WatchRound
    events: list[AlertEvent] = field(default_factory=list)
    alerts_open: int = 0
    alarm: dict[str, object] | None = None


class Watcher:
    """Runs rounds for one site; `alerts=False` only looks (no state, no ticket)."""

    def __init__(
        self,
        site: Site,
        *,
        alerts: bool = True,
        start_activation: StartActivation | None = None,
        collector: WatchCollector | None = None,
    ) -> None:
        self.site = site
        self.pool = connect.HostPool(site)
        self.book = AlertBook(site, reports_dir(site), ticket_backends(site)) if alerts else None
        self.start_activation = start_activation
        self.collector = collector

    def _lock_holder(self) -> str | None:
        held = site_lock.read_lock(self.pool["drp"])
        return held.holder() if held else None

    def round(self) -> RoundResult:
        watch = run_round(self.site, self.pool)
        result = RoundResult(watch)
        if self.book is not None:
            result.events = self.book.process(
                watch, lock_holder=self._lock_holder, start_activation=self.start_activation
            )
            result.alerts_open = len(self.book.open_alerts())
            result.alarm = self.book.alarm()
        if self.collector is not None:
            self.collector.update(
                watch, alerts_open=result.alerts_open, alarm=result.alarm is not None
            )
        return result

    def close(self) -> None:
        self.pool.close()

    def __enter__(self) -> Watcher:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
