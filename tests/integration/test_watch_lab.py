"""`drp watch` on the lab: a round of probes over the real hosts, a disk that fills up, a listed
address, and the metrics as Prometheus scrapes them."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from prometheus_client.openmetrics.parser import text_string_to_metric_families

from lab import topology
from runbooks import connect
from runbooks.inventory import Site, load_site
from runbooks.watch.records import Status
from runbooks.watch.round import run_round

pytestmark = pytest.mark.lab

LAB_CONFIG = topology.REPO_ROOT / "config" / "lab.yaml"
HOSTS = ("production", "backup-even", "backup-odd", "drp")
MAIL_SINK = topology.SMTP_ADDRESS  # listed by the lab's blocklist zone


def inventory(tmp_path: Path, *changes: tuple[str, str]) -> Path:
    """lab.yaml with `changes` (old, new) made, its tickets to a file of the test's own."""
    text = LAB_CONFIG.read_text().replace(
        "path: ${DRP_LAB_DIR:-/var/lib/drp-lab}/tickets.jsonl", f"path: {tmp_path}/tickets.jsonl"
    )
    for old, new in changes:
        assert text.count(old) == 1, old
        text = text.replace(old, new)
    path = tmp_path / "lab.yaml"
    path.write_text(text)
    return path


def drp(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "flows.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        env={**os.environ, "PREFECT_API_URL": ""},
    )


def test_one_round_gives_json_records_for_every_host_and_finds_the_listed_address(
    lab, tmp_path: Path
) -> None:
    # The mail sink's address, as a relay's would be, besides the hosts' public addresses.
    zones = "    zones:\n      - {zone: dnsbl.drp-lab.test"
    config = inventory(tmp_path, (zones, f"    addresses: [{MAIL_SINK}]\n{zones}"))
    started = time.monotonic()
    done = drp("watch", "-c", str(config), "--once", "--json", "--no-alerts")
    seconds = time.monotonic() - started

    assert done.returncode == 2, done.stdout + done.stderr  # the listed address is critical
    records = [json.loads(line) for line in done.stdout.splitlines()]
    by = {(r["host"], r["probe"], r["target"]): r for r in records}
    for record in records:
        assert set(record) >= {"host", "probe", "status", "value", "threshold", "message"}
        assert record["status"] in ("ok", "warning", "critical", "unknown")
    for host in HOSTS:
        for probe in ("ping", "ssh", "time", "uptime", "load", "memory", "swap", "route"):
            assert by[(host, probe, "")]["status"] in ("ok", "warning"), by[(host, probe, "")]
        assert by[(host, "disk", "/")]["status"] == "ok"
        assert by[(host, "smart", "")]["status"] == "unknown"  # not installed: never "ok"
        assert by[(host, "smart", "")]["message"].startswith("not available")
        assert by[(host, "process", "sshd")]["status"] == "ok"
    address = {"production": "127.0.10.1", "drp": "127.0.10.4"}
    for host in ("production", "drp"):
        for service in ("web", "postgresql", "mariadb"):
            assert by[(host, "service", service)]["status"] == "ok", by[(host, "service", service)]
        assert by[(host, "database", "postgresql/app_users")]["status"] == "ok"
        assert by[(host, "blocklist", address[host])]["status"] == "ok"
    assert "listens on 127.0.10.1:8080" in by[("production", "service", "web")]["message"]
    assert by[("production", "url", "http://www.drp-lab.test:8080/")]["status"] in (
        "ok",
        "critical",
    )
    listed = by[(MAIL_SINK, "blocklist", MAIL_SINK)]
    assert listed["status"] == "critical"
    assert listed["message"] == (
        f"{MAIL_SINK} is listed in dnsbl.drp-lab.test (127.0.0.2: listed by the drp lab, to test "
        "the blocklist probe)"
    )
    assert seconds < 20, f"drp watch --once took {seconds:.1f} s"


@pytest.fixture
def big_file(lab) -> Iterator[Path]:
    """Where a large file goes in backup-even's tree (the SSH user's home); removed after."""
    path = lab.paths.host_root("backup-even") / "watch-test-filler.bin"
    yield path
    path.unlink(missing_ok=True)


def _disk(site: Site, pool: connect.HostPool) -> tuple[Status, str]:
    record = next(r for r in run_round(site, pool).of("backup-even", "disk") if r.target == "/")
    return record.status, record.message


def test_free_space_goes_critical_when_a_large_file_fills_the_host_up_to_the_threshold(
    lab, tmp_path: Path, big_file: Path
) -> None:
    free_mib = shutil.disk_usage(big_file.parent).free / 2**20
    if free_mib < 6 * 1024:
        pytest.skip(f"only {free_mib:.0f} MiB free: the test needs 6 GiB of room")
    # The threshold sits 1 GiB below what is free now; a 2 GiB file crosses it.
    threshold = int(free_mib - 1024)
    config = inventory(
        tmp_path, ("\nwatch:\n", f"\nwatch:\n  disk: {{critical_free_mib: {threshold}}}\n")
    )
    site = load_site(config)
    with connect.HostPool(site) as pool:
        before = _disk(site, pool)
        with big_file.open("wb") as handle:
            os.posix_fallocate(handle.fileno(), 0, 2 * 2**30)
        full = _disk(site, pool)
        big_file.unlink()
        after = _disk(site, pool)

    assert before[0] is Status.OK, before
    assert full[0] is Status.CRITICAL, full
    assert " free on / (" in full[1]
    assert after[0] is Status.OK, after


def _free_port(address: str) -> int:
    with socket.socket() as probe:
        probe.bind((address, 0))
        return int(probe.getsockname()[1])


def test_the_metrics_endpoint_is_scraped_and_parsed_as_openmetrics(lab, tmp_path: Path) -> None:
    address = "127.0.16.2"
    port = _free_port(address)
    textfile = tmp_path / "drp.prom"
    argv = [
        sys.executable,
        "-m",
        "flows.cli",
        "watch",
        "-c",
        str(LAB_CONFIG),
        "--no-alerts",
        "--json",
        "--serve",
        f"{address}:{port}",
        "--textfile",
        str(textfile),
        "--interval",
        "30",
    ]
    process = subprocess.Popen(
        argv,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PREFECT_API_URL": ""},
    )
    try:
        deadline = time.monotonic() + 60
        body = ""
        while time.monotonic() < deadline:
            assert process.poll() is None, process.communicate()
            try:
                reply = httpx.get(
                    f"http://{address}:{port}/metrics",
                    headers={"Accept": "application/openmetrics-text; version=1.0.0"},
                    timeout=5,
                )
            except httpx.HTTPError:
                time.sleep(0.3)
                continue
            if "drp_probe_status" in reply.text:
                assert reply.headers["content-type"].startswith("application/openmetrics-text")
                body = reply.text
            # The textfile is written once the round is reported, a moment after it is served.
            if body and textfile.exists():
                break
            time.sleep(0.3)
        assert body, "no round was served within 60 s"
        assert textfile.exists(), f"{textfile} was not written within 60 s of a round"
    finally:
        process.terminate()
        process.communicate(timeout=20)

    families = {f.name: f for f in text_string_to_metric_families(body)}
    status = families["drp_probe_status"]
    hosts = {s.labels["host"] for s in status.samples}
    assert hosts >= set(HOSTS)
    assert {s.labels["site"] for s in status.samples} == {"drp-lab"}
    ssh = {s.labels["host"]: s.value for s in status.samples if s.labels["probe"] == "ssh"}
    assert ssh == dict.fromkeys(HOSTS, 0)
    free = [s for s in families["drp_disk_free_ratio"].samples if s.labels["host"] == "drp"]
    assert free and 0 < free[0].value < 1
    assert families["drp_watch_round_duration_seconds"].samples[0].value > 0
    # The same metrics in node_exporter's textfile format.
    assert "drp_probe_status{" in textfile.read_text()


def test_a_postgresql_replica_on_the_drp_host_shows_its_lag(lab, tmp_path: Path) -> None:
    from lab import replica

    config = inventory(
        tmp_path,
        (
            "\nwatch:\n",
            "\nwatch:\n  replication:\n"
            f"    - {{database: app_users, standby: drp, standby_port: {replica.PORT}}}\n",
        ),
    )
    site = load_site(config)
    with lab.exclusive(), connect.HostPool(site) as pool:
        with replica.running(lab.paths, lab.secrets):
            following = run_round(site, pool).of("drp", "replication")
        gone = run_round(site, pool).of("drp", "replication")

    [record] = following
    assert record.target == "postgresql/app_users"
    assert record.status is Status.OK, record.message
    assert record.value is not None and record.value < 60  # seconds behind production
    assert "; production/app_users streams to 127.0.0.1 walreceiver (streaming" in record.message
    [stopped] = gone
    assert stopped.status is Status.CRITICAL
    assert f"127.0.10.4:{replica.PORT}" in stopped.message
