"""The inventory's `watch:` section: what supervision probes, with which thresholds.

Every field has a default, so an inventory without `watch:` is watched with the defaults below.
Thresholds come in pairs, `warning_*` and `critical_*`: a probe whose value crosses the warning
bound is `warning`, the critical bound `critical`. Where less is worse (free space) the warning
bound is the larger one; where more is worse (load, lag) the smaller one; a pair the wrong way
round is one problem at the warning field.

This module needs nothing of `runbooks.inventory` when it is imported (the inventory imports it);
the few validators they share are looked up when a file is validated.
"""

from __future__ import annotations

from collections.abc import Iterator
from ipaddress import IPv4Address, IPv6Address
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, PlainValidator, model_validator

if TYPE_CHECKING:
    from runbooks.inventory import Site

Role = Literal["production", "backup_even", "backup_odd", "drp"]
ROLES: tuple[Role, ...] = ("production", "backup_even", "backup_odd", "drp")
Port = Annotated[int, Field(ge=1, le=65535)]
Seconds = Annotated[float, Field(gt=0, le=86400, allow_inf_nan=False)]
Percent = Annotated[float, Field(ge=0, le=100, allow_inf_nan=False)]
Positive = Annotated[float, Field(gt=0, allow_inf_nan=False)]
# The probes the disaster rule may name (those whose failure says a host is gone).
DisasterProbe = Literal["ping", "ssh", "url"]
Level = Literal["warning", "critical"]
_SERVING: tuple[Role, ...] = ("production", "drp")
_LOST: tuple[DisasterProbe, ...] = ("ping", "ssh", "url")
# Names of process (what `ps -o comm` shows: at most 15 characters, no '/').
_PROCESS_HELP = "a process name as `ps -o comm` shows it (e.g. nginx, postgres, sshd)"


def _http_url(value: Any) -> str:
    from runbooks.inventory import _http_url as check

    return check(value)


def _process_name(value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"expected {_PROCESS_HELP}")
    text = value.strip()
    if "/" in text or any(c.isspace() for c in text) or len(text) > 15:
        raise ValueError(f"expected {_PROCESS_HELP}, at most 15 characters, got {text!r}")
    return text


def _zone(value: Any) -> str:
    from runbooks.inventory import _domain

    return _domain(value)


HttpUrl = Annotated[str, PlainValidator(_http_url, json_schema_input_type=str)]
ProcessName = Annotated[str, PlainValidator(_process_name, json_schema_input_type=str)]
ZoneName = Annotated[str, PlainValidator(_zone, json_schema_input_type=str)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, hide_input_in_errors=True)


def _raise(problems: list[tuple[tuple[str | int, ...], str]]) -> None:
    from runbooks.inventory import raise_problems

    raise_problems(problems)


def _order(
    model: BaseModel, warning: str, critical: str, *, less_is_worse: bool
) -> list[tuple[tuple[str | int, ...], str]]:
    """The problem, if any, of a warning/critical pair the wrong way round."""
    low, high = getattr(model, warning), getattr(model, critical)
    if low is None or high is None:
        return []
    if less_is_worse and low < high:
        return [((warning,), f"expected at least {critical} ({high:g}), got {low:g}")]
    if not less_is_worse and low > high:
        return [((warning,), f"expected at most {critical} ({high:g}), got {low:g}")]
    return []


class _Pair(_Model):
    """A warning/critical pair; subclasses name their fields and which way is worse."""

    _pairs: ClassVar[tuple[tuple[str, str, bool], ...]] = ()

    @model_validator(mode="after")
    def _ordered(self) -> _Pair:
        problems = []
        for warning, critical, less_is_worse in self._pairs:
            problems += _order(self, warning, critical, less_is_worse=less_is_worse)
        _raise(problems)
        return self


class PingWatch(_Model):
    """Is the host there? ICMP echo where this machine may send it, else a TCP connection."""

    method: Literal["auto", "icmp", "tcp"] = Field(
        default="auto",
        description="'icmp' (echo request), 'tcp' (a connection to tcp_port), or 'auto': ICMP "
        "when this machine allows it, else TCP.",
    )
    tcp_port: Port | None = Field(
        default=None, description="Port the TCP ping connects to; default: the host's SSH port."
    )
    timeout_seconds: Seconds = Field(default=2, description="No answer within this: critical.")
    warning_seconds: Seconds = Field(
        default=0.5, description="An answer slower than this: warning."
    )


class SshWatch(_Model):
    """Does the host take an SSH session and run the gathering script?"""

    warning_seconds: Seconds = Field(
        default=5, description="Connecting and gathering slower than this: warning."
    )


class DiskWatch(_Pair):
    """Free space of each mounted file system."""

    _pairs: ClassVar[tuple[tuple[str, str, bool], ...]] = (
        ("warning_free_percent", "critical_free_percent", True),
        ("warning_free_mib", "critical_free_mib", True),
    )
    mounts: list[str] = Field(
        default_factory=list,
        description="Mount points to watch; empty: every local file system, and the one that "
        "holds the SSH user's home.",
    )
    warning_free_percent: Percent = Field(
        default=15, description="Less free space than this: warning."
    )
    critical_free_percent: Percent = Field(
        default=5, description="Less free space than this: critical."
    )
    warning_free_mib: Positive | None = Field(
        default=None, description="Less free space than this many MiB: warning (optional)."
    )
    critical_free_mib: Positive | None = Field(
        default=None, description="Less free space than this many MiB: critical (optional)."
    )


class InodeWatch(_Pair):
    """Free inodes of each watched file system."""

    _pairs: ClassVar[tuple[tuple[str, str, bool], ...]] = (
        ("warning_free_percent", "critical_free_percent", True),
    )
    warning_free_percent: Percent = Field(
        default=15, description="Fewer free inodes than this: warning."
    )
    critical_free_percent: Percent = Field(
        default=5, description="Fewer free inodes than this: critical."
    )


class QuotaWatch(_Pair):
    """The SSH user's disk quota, where quotas are on (the `quota` tool)."""

    _pairs: ClassVar[tuple[tuple[str, str, bool], ...]] = (
        ("warning_used_percent", "critical_used_percent", False),
    )
    warning_used_percent: Percent = Field(
        default=90, description="More of the limit used: warning."
    )
    critical_used_percent: Percent = Field(
        default=100, description="More of the limit used: critical."
    )


class LoadWatch(_Pair):
    """The 5-minute load average, per CPU."""

    _pairs: ClassVar[tuple[tuple[str, str, bool], ...]] = (
        ("warning_per_cpu", "critical_per_cpu", False),
    )
    warning_per_cpu: Positive = Field(default=2, description="Load per CPU above this: warning.")
    critical_per_cpu: Positive = Field(default=4, description="Load per CPU above this: critical.")


class CpuWatch(_Pair):
    """CPU time busy (not idle, not waiting for I/O) over a short sample."""

    _pairs: ClassVar[tuple[tuple[str, str, bool], ...]] = (
        ("warning_busy_percent", "critical_busy_percent", False),
    )
    sample_seconds: float = Field(
        default=0.3, gt=0, le=5, allow_inf_nan=False, description="Length of the sample."
    )
    warning_busy_percent: Percent = Field(default=95, description="Busier than this: warning.")
    critical_busy_percent: Percent | None = Field(
        default=None,
        description="Busier than this: critical (default: never; a busy CPU is no outage).",
    )


class MemoryWatch(_Pair):
    """Memory available to new work (MemAvailable), as a share of the total."""

    _pairs: ClassVar[tuple[tuple[str, str, bool], ...]] = (
        ("warning_available_percent", "critical_available_percent", True),
    )
    warning_available_percent: Percent = Field(default=10, description="Less available: warning.")
    critical_available_percent: Percent = Field(default=5, description="Less available: critical.")


class SwapWatch(_Pair):
    """Swap in use, as a share of the swap space (no swap at all is ok)."""

    _pairs: ClassVar[tuple[tuple[str, str, bool], ...]] = (
        ("warning_used_percent", "critical_used_percent", False),
    )
    warning_used_percent: Percent = Field(default=50, description="More swap used: warning.")
    critical_used_percent: Percent = Field(default=90, description="More swap used: critical.")


class TimeWatch(_Pair):
    """The host's clock against the orchestrator's (beyond the measurement's own uncertainty)."""

    _pairs: ClassVar[tuple[tuple[str, str, bool], ...]] = (
        ("warning_drift_seconds", "critical_drift_seconds", False),
    )
    warning_drift_seconds: Seconds = Field(default=1, description="A larger drift: warning.")
    critical_drift_seconds: Seconds = Field(default=5, description="A larger drift: critical.")


class UptimeWatch(_Model):
    """Uptime, so that a reboot is seen."""

    warning_below_seconds: float = Field(
        default=3600,
        ge=0,
        le=30 * 86400,
        allow_inf_nan=False,
        description="Up for less than this (rebooted recently): warning.",
    )


class ProcessWatch(_Model):
    """An internal process that must run."""

    name: ProcessName = Field(description="Its name as `ps -o comm` shows it (e.g. cron).")
    hosts: list[Role] = Field(
        default_factory=lambda: list(ROLES), description="Hosts (roles) it runs on; default: all."
    )
    min_count: int = Field(default=1, ge=1, description="At least this many must run.")


class ServiceWatch(_Model):
    """An application service (nginx, apache, postfix, ...): running and listening."""

    name: Annotated[str, Field(min_length=1, max_length=40, pattern=r"^[a-z0-9][a-z0-9_.-]*$")] = (
        Field(description="Its name in the output (lower-case, e.g. nginx).")
    )
    process: ProcessName | None = Field(
        default=None, description="The process that must run (`ps -o comm`); default: the name."
    )
    port: Port | None = Field(
        default=None,
        description="TCP port it must listen on (on the host's address, or on every address).",
    )
    address: str | None = Field(
        default=None,
        description="Address it must listen on; default: the host's SSH address, or any.",
    )
    hosts: list[Role] = Field(
        default_factory=lambda: list(_SERVING),
        description="Hosts (roles) it runs on; default: production and drp.",
    )


class UrlWatch(_Model):
    """A URL test beyond the environments' url_checks."""

    url: HttpUrl = Field(description="http:// or https:// URL.")
    via: Role | None = Field(
        default=None,
        description="Connect to this host's public address (keeping the URL's Host); default: "
        "resolve the URL's name.",
    )
    expected_status: int = Field(
        default=200, ge=100, le=599, description="Expected HTTP status code."
    )
    expected_text: str | None = Field(
        default=None, description="Text the page must contain (optional)."
    )
    max_seconds: Seconds = Field(default=10, description="Slower than this: warning.")


class DatabaseWatch(_Model):
    """The environments' databases answer (on production and on the DRP server)."""

    enabled: bool = Field(default=True, description="Ask each database server for a trivial query.")
    warning_seconds: Seconds = Field(default=2, description="Slower than this: warning.")


class ReplicationWatch(_Pair):
    """A replica of one of the environments' databases, and its lag."""

    _pairs: ClassVar[tuple[tuple[str, str, bool], ...]] = (
        ("warning_lag_seconds", "critical_lag_seconds", False),
    )
    database: str = Field(description="The database's name, as in environments[].databases.")
    primary: Literal["production", "drp"] = Field(
        default="production", description="Host (role) of the primary: production or drp."
    )
    standby: Role = Field(default="drp", description="Host (role) of the standby.")
    standby_address: str | None = Field(
        default=None,
        description="Address of the standby's server; default: the host's SSH address.",
    )
    standby_port: Port | None = Field(
        default=None, description="Port of the standby's server; default: the database's port."
    )
    warning_lag_seconds: Seconds = Field(default=60, description="Replay lag above this: warning.")
    critical_lag_seconds: Seconds = Field(
        default=600, description="Replay lag above this: critical."
    )


class SmartWatch(_Model):
    """Disk health with smartctl, where it is installed and usable."""

    enabled: bool = Field(default=True, description="Ask smartctl on every host.")


class NetworkWatch(_Model):
    """Interfaces up and addressed, a default route present (`ip -j addr`, `ip -j route`)."""

    interfaces: list[str] = Field(
        default_factory=list,
        description="Interfaces that must be up with an address; default: every interface "
        "that is administratively up (lo aside).",
    )
    default_route: bool = Field(default=True, description="A default route must be present.")


class Blocklist(_Model):
    """A DNS blocklist (DNSBL) zone, and where to ask it."""

    zone: ZoneName = Field(description="The blocklist's zone, e.g. zen.spamhaus.org.")
    nameservers: list[IPv4Address | IPv6Address] = Field(
        default_factory=list,
        description="Servers asked directly; default: this machine's resolver.",
    )
    port: Port = Field(default=53, description="Their DNS port.")


class BlocklistWatch(_Model):
    """The seed's "antispam IP penalty": public addresses looked up in DNS blocklists."""

    zones: list[Blocklist] = Field(
        default_factory=list, description="Blocklists to ask; empty: none (the probe is off)."
    )
    addresses: list[IPv4Address | IPv6Address] = Field(
        default_factory=list,
        description="Addresses looked up besides every host's public_ipv4 (and public_ipv6), "
        "e.g. an outgoing mail relay's.",
    )
    listed: Level = Field(default="critical", description="Status of a listed address.")
    timeout_seconds: Seconds = Field(default=3, description="No answer within this: unknown.")


class AlertWatch(_Model):
    """Alert tickets on state changes only."""

    after_failures: int = Field(
        default=3, ge=1, le=1000, description="Consecutive failed rounds before an alert is opened."
    )
    after_recoveries: int = Field(
        default=2,
        ge=1,
        le=1000,
        description="Consecutive ok rounds before an open alert is closed.",
    )
    level: Level = Field(
        default="critical",
        description="What counts as a failure: 'critical', or 'warning' and worse.",
    )


class DisasterWatch(_Model):
    """When production is lost as the plan understands it: the alarm that prepares the order."""

    probes: list[DisasterProbe] = Field(
        default_factory=lambda: list(_LOST),
        min_length=1,
        description="Production's probes that must all be critical (every URL check, for 'url').",
    )
    for_seconds: float = Field(
        default=600,
        gt=0,
        le=7 * 86400,
        allow_inf_nan=False,
        description="For this long (seconds) before the alarm.",
    )
    start_activation: bool = Field(
        default=True,
        description="Start the activation deployment, which stops at its order gate (never "
        "past it).",
    )
    deployment: str = Field(
        default="drp-activate/activate",
        pattern=r"^[\w.-]+/[\w.-]+$",
        description="The activation deployment, FLOW/DEPLOYMENT as `prefect deployment ls` "
        "lists it.",
    )


class Watch(_Model):
    """Supervision of every host: thresholds per probe, alerts, and the disaster alarm."""

    interval_seconds: float = Field(
        default=60,
        ge=5,
        le=3600,
        allow_inf_nan=False,
        description="Between two rounds of `drp watch`.",
    )
    timeout_seconds: Seconds = Field(
        default=30, description="Longest wait for one host's gathering over SSH."
    )
    ping: PingWatch = Field(default_factory=PingWatch, description="Availability: ping.")
    ssh: SshWatch = Field(default_factory=SshWatch, description="Availability: SSH.")
    disk: DiskWatch = Field(default_factory=DiskWatch, description="Free space per mount.")
    inodes: InodeWatch = Field(default_factory=InodeWatch, description="Free inodes per mount.")
    quota: QuotaWatch = Field(default_factory=QuotaWatch, description="The user's disk quota.")
    load: LoadWatch = Field(default_factory=LoadWatch, description="Load average.")
    cpu: CpuWatch = Field(default_factory=CpuWatch, description="CPU busy.")
    memory: MemoryWatch = Field(default_factory=MemoryWatch, description="Available memory.")
    swap: SwapWatch = Field(default_factory=SwapWatch, description="Swap used.")
    time: TimeWatch = Field(default_factory=TimeWatch, description="Clock drift.")
    uptime: UptimeWatch = Field(default_factory=UptimeWatch, description="Reboots.")
    processes: list[ProcessWatch] = Field(
        default_factory=list, description="Internal processes that must run."
    )
    services: list[ServiceWatch] = Field(
        default_factory=list, description="Application services: running and listening."
    )
    urls: list[UrlWatch] = Field(
        default_factory=list, description="URL tests besides the environments' url_checks."
    )
    databases: DatabaseWatch = Field(
        default_factory=DatabaseWatch, description="The databases answer."
    )
    replication: list[ReplicationWatch] = Field(
        default_factory=list, description="Replicas and their lag, where configured."
    )
    smart: SmartWatch = Field(default_factory=SmartWatch, description="Disk health (smartctl).")
    network: NetworkWatch = Field(
        default_factory=NetworkWatch, description="Interfaces and the default route."
    )
    blocklists: BlocklistWatch = Field(
        default_factory=BlocklistWatch, description="Public addresses in DNS blocklists."
    )
    alerts: AlertWatch = Field(default_factory=AlertWatch, description="Alert tickets.")
    disaster: DisasterWatch = Field(
        default_factory=DisasterWatch, description="The alarm that prepares the order."
    )


def watch_problems(site: Site) -> Iterator[tuple[tuple[str | int, ...], str]]:
    """Rules of `watch:` that need the rest of the inventory (the databases it names)."""
    databases = {db.name: db for env in site.environments for db in env.databases}
    for index, replica in enumerate(site.watch.replication):
        if replica.database not in databases:
            known = ", ".join(sorted(databases)) or "none"
            yield (
                ("watch", "replication", index, "database"),
                f"expected the name of one of the environments' databases ({known}), got "
                f"{replica.database!r}",
            )
        if replica.primary == replica.standby:
            yield (
                ("watch", "replication", index, "standby"),
                f"expected a host other than the primary ({replica.primary})",
            )
