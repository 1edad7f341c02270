"""The latest round as Prometheus metrics: served over HTTP (OpenMetrics or the text format,
as the scraper asks), or written for node_exporter's textfile collector.

Names and labels follow Prometheus' conventions: a `drp_` prefix, base units in the name
(`_seconds`, `_ratio`), one metric per quantity, and labels for what varies (`site`, `host`,
`probe`, `target`):

- `drp_probe_status{site,host,probe,target}`: 0 ok, 1 warning, 2 critical, 3 unknown (the
  plugin codes Nagios made common);
- one value per probe kind, where it has one: `drp_disk_free_ratio`, `drp_inodes_free_ratio`,
  `drp_quota_used_ratio`, `drp_load_per_cpu`, `drp_cpu_busy_ratio`,
  `drp_memory_available_ratio`, `drp_swap_used_ratio`, `drp_time_drift_seconds`,
  `drp_uptime_seconds`, `drp_ping_seconds`, `drp_ssh_seconds`, `drp_url_response_seconds`,
  `drp_database_response_seconds`, `drp_replication_lag_seconds`, `drp_process_count`,
  `drp_service_up`, `drp_interface_up`, `drp_default_route_present`, `drp_smart_healthy`,
  `drp_blocklist_listings`;
- the round itself: `drp_watch_round_duration_seconds`, `drp_watch_round_timestamp_seconds`,
  `drp_watch_host_gather_seconds{host}`, `drp_watch_alerts_open`, `drp_watch_disaster_alarm`.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry, start_http_server, write_to_textfile
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from runbooks.watch.records import WatchRound

# probe -> (metric name, help, factor applied to the record's value)
VALUE_METRICS: dict[str, tuple[str, str, float]] = {
    "disk": ("drp_disk_free_ratio", "Free space of a file system, 0 to 1.", 0.01),
    "inodes": ("drp_inodes_free_ratio", "Free inodes of a file system, 0 to 1.", 0.01),
    "quota": ("drp_quota_used_ratio", "Share of the SSH user's quota in use, 0 to 1.", 0.01),
    "load": ("drp_load_per_cpu", "5-minute load average divided by the CPU count.", 1.0),
    "cpu": ("drp_cpu_busy_ratio", "CPU time busy over a short sample, 0 to 1.", 0.01),
    "memory": ("drp_memory_available_ratio", "MemAvailable over MemTotal, 0 to 1.", 0.01),
    "swap": ("drp_swap_used_ratio", "Swap in use, 0 to 1 (0 without swap).", 0.01),
    "time": ("drp_time_drift_seconds", "Host clock minus the orchestrator's.", 1.0),
    "uptime": ("drp_uptime_seconds", "Seconds since the host booted.", 1.0),
    "ping": ("drp_ping_seconds", "Time to an ICMP echo reply or a TCP connection.", 1.0),
    "ssh": ("drp_ssh_seconds", "Time to connect over SSH and gather.", 1.0),
    "url": ("drp_url_response_seconds", "Time to a URL's answer.", 1.0),
    "database": ("drp_database_response_seconds", "Time to connect and SELECT 1.", 1.0),
    "replication": ("drp_replication_lag_seconds", "Replay lag of a replica.", 1.0),
    "process": ("drp_process_count", "Processes of a watched name running.", 1.0),
    "service": ("drp_service_up", "1 when the service runs and listens, else 0.", 1.0),
    "interface": ("drp_interface_up", "1 when the interface is up with an address.", 1.0),
    "route": ("drp_default_route_present", "1 when a default route exists.", 1.0),
    "smart": ("drp_smart_healthy", "1 when smartctl reports the disk healthy.", 1.0),
    "blocklist": ("drp_blocklist_listings", "DNS blocklists listing the address.", 1.0),
}
LABELS = ["site", "host", "probe", "target"]


class WatchCollector(Collector):
    """Yields the metrics of the latest round given to `update` (nothing before the first)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._round: WatchRound | None = None
        self._alerts_open = 0
        self._alarm = False

    def update(self, watch: WatchRound, *, alerts_open: int = 0, alarm: bool = False) -> None:
        with self._lock:
            self._round, self._alerts_open, self._alarm = watch, alerts_open, alarm

    def collect(self) -> Iterator[Any]:
        with self._lock:
            watch, alerts_open, alarm = self._round, self._alerts_open, self._alarm
        if watch is None:
            return
        status = GaugeMetricFamily(
            "drp_probe_status",
            "Status of a probe: 0 ok, 1 warning, 2 critical, 3 unknown.",
            labels=LABELS,
        )
        values: dict[str, GaugeMetricFamily] = {}
        for record in watch.records:
            labels = [watch.site, record.host, record.probe, record.target]
            status.add_metric(labels, record.status.code)
            if record.value is None or record.probe not in VALUE_METRICS:
                continue
            name, text, factor = VALUE_METRICS[record.probe]
            family = values.get(name)
            if family is None:
                family = values[name] = GaugeMetricFamily(name, text, labels=LABELS)
            family.add_metric(labels, record.value * factor)
        yield status
        yield from values.values()
        yield GaugeMetricFamily(
            "drp_watch_round_duration_seconds",
            "How long the latest round of probes took.",
            value=watch.seconds,
        )
        yield GaugeMetricFamily(
            "drp_watch_round_timestamp_seconds",
            "When the latest round started (Unix time).",
            value=watch.started.timestamp(),
        )
        per_host = GaugeMetricFamily(
            "drp_watch_host_gather_seconds",
            "SSH connection and gathering time per host in the latest round.",
            labels=["site", "host"],
        )
        for host, seconds in watch.host_seconds.items():
            per_host.add_metric([watch.site, host], seconds)
        yield per_host
        yield GaugeMetricFamily(
            "drp_watch_alerts_open", "Alerts open (tickets sent, not recovered).", value=alerts_open
        )
        yield GaugeMetricFamily(
            "drp_watch_disaster_alarm",
            "1 while the disaster alarm is raised for production, else 0.",
            value=1 if alarm else 0,
        )


def registry_with(collector: WatchCollector) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)
    return registry


def serve(registry: CollectorRegistry, address: str, port: int) -> Any:
    """Serve /metrics on address:port in a background thread; returns the server (`.shutdown()`).
    OSError (the port is taken, the address is not ours) goes to the caller."""
    server, _ = start_http_server(port, addr=address, registry=registry)
    return server


def write_textfile(registry: CollectorRegistry, path: Path) -> None:
    """Write the metrics for node_exporter's textfile collector (replaced whole, never half)."""
    write_to_textfile(str(path), registry)
