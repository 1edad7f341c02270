"""Alert tickets on state changes only, the disaster alarm, and the metrics of a round.

Rounds are built by hand (records as the probes give them) and tickets go to a real file
backend; time is the test's, so that "10 minutes of disaster" takes none.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from prometheus_client.openmetrics.exposition import generate_latest as openmetrics
from prometheus_client.openmetrics.parser import text_string_to_metric_families

from providers.tickets import FileTicketBackend, WebhookTicketBackend
from runbooks.inventory import Site, load_site
from runbooks.watch.alerts import AlertBook
from runbooks.watch.metrics import WatchCollector, registry_with
from runbooks.watch.records import ProbeRecord, Status, WatchRound

REPO = Path(__file__).resolve().parents[2]
T0 = datetime(2026, 12, 1, 3, 0, tzinfo=UTC)


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def site() -> Site:
    return load_site(REPO / "config" / "lab.yaml")  # after 3 failures, clears after 2 oks


def lab_round(
    ssh: Status = Status.OK, ping: Status = Status.OK, url: Status = Status.OK
) -> WatchRound:
    watch = WatchRound("drp-lab", T0, seconds=0.8)
    watch.records = [
        ProbeRecord("production", "ping", ping, "127.0.10.1 answered TCP 2222", 0.001, "seconds"),
        ProbeRecord("production", "ssh", ssh, "answered", 0.4, "seconds"),
        ProbeRecord("production", "url", url, "answered 200", 0.2, "seconds", target="http://www/"),
        ProbeRecord("drp", "disk", Status.OK, "30% free", 30.0, "percent", target="/"),
    ]
    return watch


def book(site: Site, tmp_path: Path, clock: Clock) -> tuple[AlertBook, FileTicketBackend]:
    backend = FileTicketBackend("file-1", path=tmp_path / "tickets.jsonl")
    return AlertBook(site, tmp_path / "reports", [backend], now=clock), backend


def events(backend: FileTicketBackend) -> list[str]:
    return [t.event for t in backend.tickets()]


def test_an_alert_after_three_failed_rounds_none_while_open_one_when_it_clears(
    site: Site, tmp_path: Path
) -> None:
    clock = Clock()
    alerts, backend = book(site, tmp_path, clock)
    down = lab_round(ssh=Status.CRITICAL)

    for _ in range(2):
        assert alerts.process(down) == []
    opened = alerts.process(down)
    assert [e.event for e in opened] == ["alert-production-ssh-1"]
    for _ in range(5):
        assert alerts.process(down) == []  # no repeat while open
    assert alerts.process(lab_round(ssh=Status.UNKNOWN)) == []  # cannot tell: nothing
    assert alerts.process(lab_round()) == []  # one ok round is not a recovery yet
    closed = alerts.process(lab_round())
    assert [e.event for e in closed] == ["recovered-production-ssh-1"]
    assert events(backend) == ["alert-production-ssh-1", "recovered-production-ssh-1"]
    ticket = backend.tickets()[0]
    assert ticket.operation_id == "watch-drp-lab"
    assert ticket.title == "production ssh: critical: answered"
    assert "critical for 3 rounds in a row" in ticket.body

    # A flap (bad, good, bad...) never reaches three in a row: no ticket.
    for status in (Status.CRITICAL, Status.CRITICAL, Status.OK) * 3:
        assert alerts.process(lab_round(ssh=status)) == []
    for _ in range(3):
        alerts.process(down)
    assert events(backend)[-1] == "alert-production-ssh-2"


def test_the_state_survives_a_restart_and_a_lost_state_never_reuses_a_number(
    site: Site, tmp_path: Path
) -> None:
    clock = Clock()
    first, backend = book(site, tmp_path, clock)
    down = lab_round(url=Status.CRITICAL)
    for _ in range(2):
        first.process(down)
    again, _ = book(site, tmp_path, clock)  # a new process: the state is read from disk
    assert next(e.event for e in again.process(down)).startswith("alert-production-url-")
    state = json.loads((tmp_path / "reports" / "watch-state.json").read_text())
    assert [k for k, v in state["probes"].items() if v["open"]] == ["production|url|http://www/"]

    (tmp_path / "reports" / "watch-state.json").unlink()  # lost: opens again, a new number
    lost, _ = book(site, tmp_path, clock)
    for _ in range(3):
        lost.process(down)
    numbers = [e.rsplit("-", 1)[1] for e in events(backend)]
    assert numbers == ["1", "2"]


def test_a_backend_that_fails_is_tried_again_next_round(site: Site, tmp_path: Path) -> None:
    clock = Clock()
    file_backend = FileTicketBackend("file-1", path=tmp_path / "tickets.jsonl")
    webhook = WebhookTicketBackend(
        "webhook-2", url="http://127.0.0.1:9/hook", ledger=tmp_path / "ledger.jsonl", timeout=1
    )
    alerts = AlertBook(site, tmp_path / "reports", [file_backend, webhook], now=clock)
    down = lab_round(ssh=Status.CRITICAL)
    for _ in range(3):
        sent = alerts.process(down)
    assert "webhook-2: not sent" in sent[0].sent
    retried = alerts.process(down)
    assert len(retried) == 1 and "already sent by file" in retried[0].sent
    assert events(file_backend) == ["alert-production-ssh-1"]  # once, whatever the retries


def test_the_disaster_alarm_starts_one_activation_after_the_declared_time(
    site: Site, tmp_path: Path
) -> None:
    clock = Clock()
    alerts, backend = book(site, tmp_path, clock)
    lost = lab_round(Status.CRITICAL, Status.CRITICAL, Status.CRITICAL)
    started: list[str] = []

    def start(deployment: str) -> str:
        started.append(deployment)
        return f"started {deployment} as flow run quiet-fox (1234)"

    def process(round_: WatchRound) -> list[str]:
        found = alerts.process(round_, lock_holder=lambda: None, start_activation=start)
        return [e.event for e in found]

    process(lost)  # since now
    clock.now = T0 + timedelta(seconds=599)
    assert "disaster-1" not in process(lost)
    clock.now = T0 + timedelta(seconds=600)
    # The third failed round: each probe's own alert, and the alarm.
    assert process(lost) == [
        "alert-production-ping-1",
        "alert-production-ssh-1",
        "alert-production-url-http-www-c6f5bc-1",
        "disaster-1",
    ]
    assert started == ["drp-activate/activate"]
    alarm = next(t for t in backend.tickets() if t.event == "disaster-1")
    assert alarm.title == "production of drp-lab is lost: ping, ssh, url critical for 10 min"
    assert "Activation: started drp-activate/activate as flow run quiet-fox (1234)." in alarm.body
    clock.now = T0 + timedelta(seconds=900)
    assert process(lost) == []  # no second alarm, no second activation
    assert started == ["drp-activate/activate"]

    # Production answers again (ping and SSH back; the URL may still fail): cleared.
    back = lab_round(url=Status.CRITICAL)
    assert process(back) == []
    assert process(back) == [
        "recovered-production-ping-1",
        "recovered-production-ssh-1",
        "disaster-cleared-1",
    ]
    assert alerts.alarm() is None


def test_a_second_alarm_while_an_operation_holds_the_site_starts_nothing(
    site: Site, tmp_path: Path
) -> None:
    clock = Clock()
    alerts, backend = book(site, tmp_path, clock)
    lost = lab_round(Status.CRITICAL, Status.CRITICAL, Status.CRITICAL)
    holder = "operation activate-20261201-0300-1a2b3c4d (activate, since ..., not ordered yet)"

    def start(deployment: str) -> str:
        raise AssertionError("started while the site is held")

    alerts.process(lost, lock_holder=lambda: holder, start_activation=start)
    clock.now = T0 + timedelta(minutes=10)
    found = alerts.process(lost, lock_holder=lambda: holder, start_activation=start)
    assert [e.event for e in found] == ["disaster-1"]
    body = next(t for t in backend.tickets() if t.event == "disaster-1").body
    assert f"no activation was started: {holder} already holds the site" in body


def test_a_round_as_openmetrics_parsed_back(site: Site) -> None:
    collector = WatchCollector()
    registry = registry_with(collector)
    watch = lab_round(ssh=Status.CRITICAL)
    collector.update(watch, alerts_open=1, alarm=False)

    families = {f.name: f for f in text_string_to_metric_families(openmetrics(registry).decode())}

    status = {
        (s.labels["host"], s.labels["probe"], s.labels["target"]): s.value
        for s in families["drp_probe_status"].samples
    }
    assert status[("production", "ssh", "")] == 2
    assert status[("drp", "disk", "/")] == 0
    disk = families["drp_disk_free_ratio"].samples[0]
    assert disk.value == pytest.approx(0.30) and disk.labels["site"] == "drp-lab"
    assert families["drp_watch_alerts_open"].samples[0].value == 1
    assert families["drp_watch_round_duration_seconds"].samples[0].value == 0.8
