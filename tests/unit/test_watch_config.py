"""The inventory's `watch:` section: defaults when absent, one clear line per mistake."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from flows.cli import app
from runbooks.inventory import load_site

REPO = Path(__file__).resolve().parents[2]
LAB_YAML = (REPO / "config" / "lab.yaml").read_text()
WATCH = LAB_YAML[LAB_YAML.index("\nwatch:\n") :]
BASE = LAB_YAML.replace(WATCH, "\n")
runner = CliRunner()


def test_an_inventory_without_watch_is_watched_with_the_defaults(tmp_path: Path) -> None:
    path = tmp_path / "site.yaml"
    path.write_text(BASE)
    watch = load_site(path).watch
    assert watch.disk.warning_free_percent == 15 and watch.disk.critical_free_percent == 5
    assert watch.ping.method == "auto"
    assert watch.alerts.after_failures == 3 and watch.alerts.level == "critical"
    assert watch.disaster.probes == ["ping", "ssh", "url"]
    assert watch.disaster.for_seconds == 600
    assert watch.disaster.deployment == "drp-activate/activate"


def test_the_lab_watches_its_services_and_its_blocklist() -> None:
    watch = load_site(REPO / "config" / "lab.yaml").watch
    assert watch.ping.method == "tcp"
    assert {s.name for s in watch.services} == {"web", "postgresql", "mariadb"}
    assert [z.zone for z in watch.blocklists.zones] == ["dnsbl.drp-lab.test"]


CASES = {
    "warning below critical": (
        "  disk: {warning_free_percent: 3, critical_free_percent: 5}",
        "watch.disk.warning_free_percent",
        "expected at least critical_free_percent (5), got 3",
    ),
    "lag warning above critical": (
        "  replication:\n    - {database: app_users, warning_lag_seconds: 900}",
        "watch.replication[0].warning_lag_seconds",
        "expected at most critical_lag_seconds (600), got 900",
    ),
    "unknown ping method": (
        "  ping: {method: udp}",
        "watch.ping.method",
        "expected one of 'auto', 'icmp', 'tcp', got 'udp'",
    ),
    "misspelt threshold": (
        "  load: {warnin_per_cpu: 2}",
        "watch.load.warnin_per_cpu",
        "unknown field 'warnin_per_cpu' (did you mean 'warning_per_cpu'?); expected one of: "
        "warning_per_cpu, critical_per_cpu",
    ),
    "process given as a path": (
        "  processes:\n    - {name: /usr/sbin/cron}",
        "watch.processes[0].name",
        "expected a process name as `ps -o comm` shows it (e.g. nginx, postgres, sshd), at most "
        "15 characters, got '/usr/sbin/cron'",
    ),
    "replica of a database the inventory does not have": (
        "  replication:\n    - {database: app_orders}",
        "watch.replication[0].database",
        "expected the name of one of the environments' databases (app_shop, app_users), got "
        "'app_orders'",
    ),
    "disaster for ever": (
        "  disaster: {for_seconds: .inf}",
        "watch.disaster.for_seconds",
        "expected a finite number (never .inf or .nan), got inf",
    ),
    "disaster on a probe that says nothing of a loss": (
        "  disaster: {probes: [ping, disk]}",
        "watch.disaster.probes[1]",
        "expected one of 'ping', 'ssh', 'url', got 'disk'",
    ),
    "alert after no failure": (
        "  alerts: {after_failures: 0}",
        "watch.alerts.after_failures",
        "expected a number >= 1, got 0",
    ),
    "blocklist zone not a name": (
        "  blocklists:\n    zones:\n      - {zone: 'not a zone'}",
        "watch.blocklists.zones[0].zone",
        "expected a domain name such as example-kyc.com, got 'not a zone'",
    ),
    "extra URL not http": (
        "  urls:\n    - {url: 'ftp://files.example.net/'}",
        "watch.urls[0].url",
        "expected an http:// or https:// URL such as https://www.example-kyc.com/, got "
        "'ftp://files.example.net/'",
    ),
}


@pytest.mark.parametrize("name", list(CASES))
def test_a_watch_mistake_is_one_line_at_its_file_line_and_field(name: str, tmp_path: Path) -> None:
    added, field, message = CASES[name]
    text = BASE + "watch:\n" + added + "\n"
    path = tmp_path / "site.yaml"
    path.write_text(text)
    last = added.splitlines()[-1]
    line = text[: text.rindex(last)].count("\n") + 1

    result = runner.invoke(app, ["config", "check", str(path)])

    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    assert result.stderr.splitlines() == [
        f"{path}:{line}: {field}: {message}",
        f"{path}: 1 problem(s); nothing else was checked",
    ]


def test_config_check_says_how_the_site_is_watched() -> None:
    result = runner.invoke(app, ["config", "check", str(REPO / "config" / "lab.yaml")])
    assert result.exit_code == 0, result.output
    assert (
        "Watch: every 60 s; alert tickets after 3 failed rounds; disaster alarm when "
        "production's ping, ssh, url are critical for 600 s (starts drp-activate/activate, which "
        "waits at its order gate)"
    ) in " ".join(result.stdout.split())
