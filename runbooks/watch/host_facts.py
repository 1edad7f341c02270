"""What a host says about itself, gathered in one SSH command, and what the thresholds make of it.

One shell script per host and round (`gather_argv`) prints every section the system probes
need, each after a `@@drp-watch:NAME` line: the clock, /proc (stat, uptime, loadavg, meminfo),
`df` for space and inodes, `ps`, `ss`, `ip -j`, `quota` and `smartctl` where installed. A tool
that is missing prints `@@missing` in its section, and its probe says "not available" (unknown),
never ok. The CPU is sampled as two readings of /proc/stat around the rest of the script (and a
short sleep), so the script's own work counts in it: a few milliseconds.

`parse_sections` and `evaluate` are pure: unit tests feed them text.
"""

from __future__ import annotations

import ipaddress
import json
import shlex
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from runbooks.watch.records import ProbeRecord, Status
from runbooks.watch_config import Role, Watch

MARK = "@@drp-watch:"
MISSING = "@@missing"
# File systems that are not disks: never "every local file system".
PSEUDO_TYPES = frozenset(
    {
        "autofs", "binfmt_misc", "bpf", "cgroup", "cgroup2", "configfs", "debugfs", "devfs",
        "devpts", "devtmpfs", "efivarfs", "fusectl", "hugetlbfs", "iso9660", "mqueue",
        "nsfs", "overlay", "proc", "pstore", "ramfs", "rpc_pipefs", "securityfs", "squashfs",
        "sysfs", "tmpfs", "tracefs", "udf", "aufs", "nfs", "nfs4", "cifs", "smbfs", "sshfs",
        "9p", "virtiofs",
    }
)  # fmt: skip

_SCRIPT = r"""
m() { printf '\n%s%s\n' "@@drp-watch:" "$1"; }
t() { if command -v timeout >/dev/null 2>&1; then timeout 10 "$@"; else "$@"; fi; }
have() { command -v "$1" >/dev/null 2>&1 || [ -x "/usr/sbin/$1" ] || [ -x "/sbin/$1" ]; }
m clock; date +%s.%N
m stat; head -n 1 /proc/stat
m uptime; cat /proc/uptime
m loadavg; cat /proc/loadavg
m nproc; nproc 2>/dev/null || getconf _NPROCESSORS_ONLN
m meminfo; grep -E '^(MemTotal|MemAvailable|SwapTotal|SwapFree):' /proc/meminfo
m df; t df -P -T -k 2>/dev/null
m home; t df -P -k . 2>/dev/null
m inodes; t df -P -i 2>/dev/null
m ps; if have ps; then ps -e -o comm=; else echo @@missing; fi
m listen; if have ss; then ss -H -l -t -n; else echo @@missing; fi
m addr; if have ip; then ip -j addr; else echo @@missing; fi
m route
if have ip; then ip -j route show default; ip -j -6 route show default; else echo @@missing; fi
m quota
if have quota; then PATH="$PATH:/usr/sbin:/sbin" quota -v -w -p 2>&1; echo "@@rc $?"
else echo @@missing; fi
m smart
if [ "$SMART" = 1 ]; then
  S=$(command -v smartctl 2>/dev/null || { [ -x /usr/sbin/smartctl ] && echo /usr/sbin/smartctl; })
  if [ -z "$S" ]; then echo @@missing; else
    scan=$("$S" --scan 2>&1); echo "@@scan $?"
    printf '%s\n' "$scan" | while read -r d _; do
      case "$d" in /dev/*) out=$(t "$S" -H -j "$d" 2>&1); rc=$?
        printf '@@device %s %s\n' "$d" "$rc"; printf '%s\n' "$out" | tr -d '\n'; echo;; esac
    done
  fi
fi
m stat2; sleep "$SAMPLE"; head -n 1 /proc/stat
m end
"""


def gather_argv(*, cpu_sample_seconds: float, smart: bool) -> list[str]:
    """The command run on each host: the gathering script, with its two settings."""
    script = (
        f"SAMPLE={shlex.quote(f'{cpu_sample_seconds:g}')}; SMART={1 if smart else 0}\n{_SCRIPT}"
    )
    return ["sh", "-c", script]


def parse_sections(text: str) -> dict[str, list[str]]:
    """`@@drp-watch:NAME` sections of the script's output, as lists of non-empty lines."""
    sections: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in text.splitlines():
        if line.startswith(MARK):
            current = sections.setdefault(line[len(MARK) :].strip(), [])
        elif current is not None and line.strip():
            current.append(line.rstrip())
    return sections


@dataclass(frozen=True)
class HostFacts:
    """A host's answers, with what the orchestrator knew when they came."""

    host: str  # its name (production, backup-even, ...)
    role: Role
    address: str  # its SSH address
    sections: dict[str, list[str]]
    sent_at: float  # orchestrator's time.time() when the command was sent
    first_output_at: float  # ... when its first output arrived (the clock line)
    seconds: float = 0.0  # connection and gathering


@dataclass
class _Out:
    host: str
    records: list[ProbeRecord] = field(default_factory=list)

    def add(
        self,
        probe: str,
        status: Status,
        message: str,
        *,
        value: float | None = None,
        unit: str = "",
        threshold: str = "",
        target: str = "",
    ) -> None:
        self.records.append(
            ProbeRecord(self.host, probe, status, message, value, unit, threshold, target)
        )

    def unknown(self, probe: str, message: str, target: str = "") -> None:
        self.add(probe, Status.UNKNOWN, message, target=target)


def _below(value: float, warning: float | None, critical: float | None) -> Status:
    """Less is worse (free space)."""
    if critical is not None and value < critical:
        return Status.CRITICAL
    if warning is not None and value < warning:
        return Status.WARNING
    return Status.OK


def _above(value: float, warning: float | None, critical: float | None) -> Status:
    """More is worse (load, lag)."""
    if critical is not None and value > critical:
        return Status.CRITICAL
    if warning is not None and value > warning:
        return Status.WARNING
    return Status.OK


def _bounds(sign: str, warning: float | None, critical: float | None, unit: str = "") -> str:
    parts = []
    if warning is not None:
        parts.append(f"warning {sign} {warning:g}{unit}")
    if critical is not None:
        parts.append(f"critical {sign} {critical:g}{unit}")
    return ", ".join(parts)


def _floats(line: str) -> list[float]:
    return [float(x) for x in line.split()]


def _human_mib(kib: float) -> str:
    mib = kib / 1024
    return f"{mib / 1024:.1f} GiB" if mib >= 1024 else f"{mib:.0f} MiB"


def _human_age(seconds: float) -> str:
    if seconds < 3600:
        return f"{seconds / 60:.0f} min"
    if seconds < 2 * 86400:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} days"


# -- the probes ----------------------------------------------------------------------------------


def _clock(facts: HostFacts, config: Watch, out: _Out) -> None:
    lines = facts.sections.get("clock", [])
    try:
        remote = float(lines[0].replace("N", "0"))
    except (IndexError, ValueError):
        out.unknown("time", "the host's clock could not be read (date +%s.%N)")
        return
    # The clock line left the host between sending and the first output: its midpoint is the
    # best estimate, half that span the uncertainty (never counted as drift).
    middle = (facts.sent_at + facts.first_output_at) / 2
    uncertainty = max(0.0, (facts.first_output_at - facts.sent_at) / 2)
    if "." not in lines[0] or "N" in lines[0]:
        uncertainty += 1.0  # whole seconds only
    drift = remote - middle
    beyond = max(0.0, abs(drift) - uncertainty)
    t = config.time
    status = _above(beyond, t.warning_drift_seconds, t.critical_drift_seconds)
    way = "ahead of" if drift > 0 else "behind"
    out.add(
        "time",
        status,
        f"clock {abs(drift):.3f} s {way} the orchestrator's (measured to ±{uncertainty:.3f} s)",
        value=round(drift, 4),
        unit="seconds",
        threshold=_bounds(">", t.warning_drift_seconds, t.critical_drift_seconds, " s"),
    )


def _uptime(facts: HostFacts, config: Watch, out: _Out) -> None:
    try:
        seconds = _floats(facts.sections["uptime"][0])[0]
    except (KeyError, IndexError, ValueError):
        out.unknown("uptime", "/proc/uptime could not be read")
        return
    below = config.uptime.warning_below_seconds
    recent = seconds < below
    out.add(
        "uptime",
        Status.WARNING if recent else Status.OK,
        f"rebooted {_human_age(seconds)} ago" if recent else f"up {_human_age(seconds)}",
        value=round(seconds),
        unit="seconds",
        threshold=f"warning < {below:g} s" if below else "",
    )


def _load(facts: HostFacts, config: Watch, out: _Out) -> int | None:
    try:
        cpus = int(facts.sections["nproc"][0])
        load1, load5, load15 = _floats(" ".join(facts.sections["loadavg"][0].split()[:3]))
    except (KeyError, IndexError, ValueError):
        out.unknown("load", "/proc/loadavg or the CPU count could not be read")
        return None
    per_cpu = load5 / max(cpus, 1)
    cfg = config.load
    out.add(
        "load",
        _above(per_cpu, cfg.warning_per_cpu, cfg.critical_per_cpu),
        f"load {load1:.2f} {load5:.2f} {load15:.2f} on {cpus} CPU(s): {per_cpu:.2f} per CPU "
        "over 5 min",
        value=round(per_cpu, 3),
        unit="per_cpu",
        threshold=_bounds(">", cfg.warning_per_cpu, cfg.critical_per_cpu),
    )
    return cpus


def _cpu_times(line: str) -> tuple[float, float] | None:
    """(busy, total) jiffies from /proc/stat's `cpu` line."""
    parts = line.split()
    if not parts or parts[0] != "cpu":
        return None
    values = [float(x) for x in parts[1:9]]
    idle = values[3] + (values[4] if len(values) > 4 else 0)  # idle + iowait
    total = sum(values)
    return total - idle, total


def _cpu(facts: HostFacts, config: Watch, out: _Out) -> None:
    try:
        first = _cpu_times(facts.sections["stat"][0])
        second = _cpu_times(facts.sections["stat2"][0])
    except (KeyError, IndexError, ValueError):
        first = second = None
    if first is None or second is None or second[1] <= first[1]:
        out.unknown("cpu", "/proc/stat could not be sampled")
        return
    busy = 100 * (second[0] - first[0]) / (second[1] - first[1])
    cfg = config.cpu
    out.add(
        "cpu",
        _above(busy, cfg.warning_busy_percent, cfg.critical_busy_percent),
        f"{busy:.0f}% busy over a {cfg.sample_seconds:g} s sample",
        value=round(busy, 1),
        unit="percent",
        threshold=_bounds(">", cfg.warning_busy_percent, cfg.critical_busy_percent, "%"),
    )


def _memory(facts: HostFacts, config: Watch, out: _Out) -> None:
    info: dict[str, float] = {}
    for line in facts.sections.get("meminfo", []):
        name, _, rest = line.partition(":")
        try:
            info[name] = float(rest.split()[0])
        except (IndexError, ValueError):
            continue
    if "MemTotal" not in info or "MemAvailable" not in info:
        out.unknown("memory", "/proc/meminfo has no MemTotal/MemAvailable")
    else:
        available = 100 * info["MemAvailable"] / max(info["MemTotal"], 1)
        cfg = config.memory
        out.add(
            "memory",
            _below(available, cfg.warning_available_percent, cfg.critical_available_percent),
            f"{available:.0f}% available ({_human_mib(info['MemAvailable'])} of "
            f"{_human_mib(info['MemTotal'])})",
            value=round(available, 1),
            unit="percent",
            threshold=_bounds(
                "<", cfg.warning_available_percent, cfg.critical_available_percent, "%"
            ),
        )
    if "SwapTotal" not in info or "SwapFree" not in info:
        out.unknown("swap", "/proc/meminfo has no SwapTotal/SwapFree")
        return
    cfg_swap = config.swap
    bounds = _bounds(">", cfg_swap.warning_used_percent, cfg_swap.critical_used_percent, "%")
    if info["SwapTotal"] == 0:
        out.add("swap", Status.OK, "no swap space", value=0.0, unit="percent", threshold=bounds)
        return
    used = 100 * (info["SwapTotal"] - info["SwapFree"]) / info["SwapTotal"]
    out.add(
        "swap",
        _above(used, cfg_swap.warning_used_percent, cfg_swap.critical_used_percent),
        f"{used:.0f}% of {_human_mib(info['SwapTotal'])} swap used",
        value=round(used, 1),
        unit="percent",
        threshold=bounds,
    )


@dataclass(frozen=True)
class _Mount:
    device: str
    fstype: str
    size: float  # KiB (or inodes)
    available: float
    mount: str


def _df_rows(lines: list[str], typed: bool) -> list[_Mount]:
    """`df -P [-T]` rows (the header skipped); a mount point may hold spaces."""
    rows = []
    width = 7 if typed else 6
    for line in lines[1:]:
        parts = line.split()
        if len(parts) < width:
            continue
        try:
            if typed:
                device, fstype, size, _, avail = parts[0], parts[1], *parts[2:5]
            else:
                device, fstype, size, _, avail = parts[0], "", *parts[1:4]
            rows.append(
                _Mount(device, fstype, float(size), float(avail), " ".join(parts[width - 1 :]))
            )
        except ValueError:
            continue
    return rows


def watched_mounts(facts: HostFacts, config: Watch) -> list[_Mount]:
    """The configured mounts, else every local file system once, plus the home's."""
    rows = _df_rows(facts.sections.get("df", []), typed=True)
    home = _df_rows(facts.sections.get("home", []), typed=False)
    home_mount = home[0].mount if home else None
    if config.disk.mounts:
        by_mount = {r.mount: r for r in rows}
        return [
            by_mount.get(m, _Mount("", "", 0, 0, m)) for m in config.disk.mounts
        ]  # size 0: not mounted
    chosen: list[_Mount] = []
    devices: set[str] = set()
    for row in rows:
        local = row.fstype not in PSEUDO_TYPES and not row.fstype.startswith("fuse")
        wanted = (local and row.device not in devices) or row.mount == home_mount
        if wanted and row.mount not in {c.mount for c in chosen}:
            chosen.append(row)
            devices.add(row.device)
    return chosen


def _disk(facts: HostFacts, config: Watch, out: _Out) -> list[str]:
    if not facts.sections.get("df"):
        out.unknown("disk", "df gave no answer (a file system that hangs?)")
        return []
    cfg = config.disk
    mounts = watched_mounts(facts, config)
    for m in mounts:
        if m.size == 0:
            out.add("disk", Status.CRITICAL, f"{m.mount} is not mounted", target=m.mount)
            continue
        free = 100 * m.available / m.size
        free_mib = m.available / 1024
        status = _below(free, cfg.warning_free_percent, cfg.critical_free_percent)
        by_size = _below(free_mib, cfg.warning_free_mib, cfg.critical_free_mib)
        status = max(status, by_size, key=lambda s: s.severity)
        bounds = _bounds("<", cfg.warning_free_percent, cfg.critical_free_percent, "%")
        if cfg.warning_free_mib or cfg.critical_free_mib:
            bounds += "; " + _bounds("<", cfg.warning_free_mib, cfg.critical_free_mib, " MiB")
        out.add(
            "disk",
            status,
            f"{free:.1f}% free on {m.mount} ({_human_mib(m.available)} of "
            f"{_human_mib(m.size)}, {m.fstype or 'file system'} {m.device})",
            value=round(free, 2),
            unit="percent",
            threshold=bounds,
            target=m.mount,
        )
    return [m.mount for m in mounts if m.size]


def _inodes(facts: HostFacts, config: Watch, out: _Out, mounts: list[str]) -> None:
    rows = {r.mount: r for r in _df_rows(facts.sections.get("inodes", []), typed=False)}
    cfg = config.inodes
    for mount in mounts:
        row = rows.get(mount)
        if row is None:
            out.unknown("inodes", f"df -i says nothing of {mount}", target=mount)
            continue
        if row.size == 0:
            out.add(
                "inodes",
                Status.OK,
                f"{mount} has no inode limit (its file system allocates them as needed)",
                target=mount,
            )
            continue
        free = 100 * row.available / row.size
        out.add(
            "inodes",
            _below(free, cfg.warning_free_percent, cfg.critical_free_percent),
            f"{free:.1f}% of {row.size:.0f} inodes free on {mount}",
            value=round(free, 2),
            unit="percent",
            threshold=_bounds("<", cfg.warning_free_percent, cfg.critical_free_percent, "%"),
            target=mount,
        )


def _quota(facts: HostFacts, config: Watch, out: _Out) -> None:
    lines = facts.sections.get("quota", [])
    if not lines or lines[0] == MISSING:
        out.unknown("quota", "not available: the quota tool is not installed on the host")
        return
    cfg = config.quota
    bounds = _bounds(">", cfg.warning_used_percent, cfg.critical_used_percent, "%")
    found = False
    for line in lines:
        parts = line.split()
        if len(parts) < 4 or not parts[1].rstrip("*").isdigit():
            continue
        filesystem = parts[0]
        used, soft, hard = (float(parts[i].rstrip("*")) for i in (1, 2, 3))
        limit = hard or soft
        if not limit:
            continue
        found = True
        share = 100 * used / limit
        out.add(
            "quota",
            _above(share, cfg.warning_used_percent, cfg.critical_used_percent),
            f"{share:.0f}% of the quota used on {filesystem} ({_human_mib(used)} of "
            f"{_human_mib(limit)})",
            value=round(share, 1),
            unit="percent",
            threshold=bounds,
            target=filesystem,
        )
    if not found:
        out.add("quota", Status.OK, "no quota limit is set for the SSH user", threshold=bounds)


def _processes(facts: HostFacts, config: Watch, out: _Out) -> set[str] | None:
    lines = facts.sections.get("ps", [])
    names = None if not lines or lines[0] == MISSING else {line.strip() for line in lines}
    counts: dict[str, int] = {}
    for line in lines:
        counts[line.strip()] = counts.get(line.strip(), 0) + 1
    for proc in config.processes:
        if facts.role not in proc.hosts:
            continue
        if names is None:
            out.unknown("process", "not available: ps is not installed", target=proc.name)
            continue
        count = counts.get(proc.name, 0)
        out.add(
            "process",
            Status.OK if count >= proc.min_count else Status.CRITICAL,
            f"{count} {proc.name} process(es) running"
            + ("" if count >= proc.min_count else f", at least {proc.min_count} expected"),
            value=count,
            unit="count",
            threshold=f"critical < {proc.min_count}",
            target=proc.name,
        )
    return names


def _listening(lines: list[str]) -> list[tuple[str, int]] | None:
    if not lines or lines[0] == MISSING:
        return None
    found = []
    for line in lines:
        parts = line.split()
        if len(parts) < 4:
            continue
        local = parts[3]
        address, _, port = local.rpartition(":")
        address = address.strip("[]").split("%")[0]
        if port.isdigit():
            found.append((address, int(port)))
    return found


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def _services(facts: HostFacts, config: Watch, out: _Out, running: set[str] | None) -> None:
    sockets = _listening(facts.sections.get("listen", []))
    for service in config.services:
        if facts.role not in service.hosts:
            continue
        process = service.process or service.name
        problems = []
        unknown = []
        if running is None:
            unknown.append("ps is not installed")
        elif process not in running:
            problems.append(f"no {process} process runs")
        where = ""
        if service.port is not None:
            expected = service.address or (facts.address if _is_ip(facts.address) else None)
            where = f"{expected or '*'}:{service.port}"
            if sockets is None:
                unknown.append("ss is not installed")
            elif not any(
                port == service.port
                and (expected is None or address in (expected, "*", "0.0.0.0", "::"))
                for address, port in sockets
            ):
                problems.append(f"nothing listens on {where}")
        if problems:
            status, message = Status.CRITICAL, "; ".join(problems)
        elif unknown:
            status, message = Status.UNKNOWN, "not available: " + "; ".join(unknown)
        else:
            status = Status.OK
            message = f"{process} runs" + (f" and listens on {where}" if where else "")
        out.add(
            "service",
            status,
            f"{service.name}: {message}",
            value=1.0 if status is Status.OK else 0.0 if status is Status.CRITICAL else None,
            unit="bool",
            threshold="running" + (f", listening on {where}" if where else ""),
            target=service.name,
        )


def _json_lines(lines: list[str]) -> list[Any]:
    found: list[Any] = []
    for line in lines:
        try:
            value = json.loads(line)
        except ValueError:
            continue
        found += value if isinstance(value, list) else [value]
    return found


def _network(facts: HostFacts, config: Watch, out: _Out) -> None:
    addr = facts.sections.get("addr", [])
    cfg = config.network
    if not addr or addr[0] == MISSING:
        out.unknown("interface", "not available: ip (iproute2) is not installed")
    else:
        interfaces: dict[str, dict[str, Any]] = {
            str(i.get("ifname")): i for i in _json_lines(addr) if isinstance(i, dict)
        }
        wanted = cfg.interfaces or [
            name
            for name, i in interfaces.items()
            if "UP" in i.get("flags", []) and "LOOPBACK" not in i.get("flags", [])
        ]
        if not wanted:
            out.add("interface", Status.CRITICAL, "no network interface is up (besides lo)")
        for name in wanted:
            interface = interfaces.get(name)
            if interface is None:
                out.add("interface", Status.CRITICAL, f"no interface {name}", target=name)
                continue
            addresses = [
                f"{a.get('local')}/{a.get('prefixlen')}"
                for a in interface.get("addr_info", [])
                if a.get("family") in ("inet", "inet6") and a.get("scope") != "link"
            ]
            state = str(interface.get("operstate", "UNKNOWN"))
            up = "UP" in interface.get("flags", []) and state in ("UP", "UNKNOWN")
            if not up:
                status, message = Status.CRITICAL, f"{name} is down (state {state})"
            elif not addresses:
                status, message = Status.CRITICAL, f"{name} is up but has no address"
            else:
                status, message = Status.OK, f"{name} up, {', '.join(addresses)}"
            out.add(
                "interface",
                status,
                message,
                value=1.0 if status is Status.OK else 0.0,
                unit="bool",
                threshold="up, with an address",
                target=name,
            )
    if not cfg.default_route:
        return
    route = facts.sections.get("route", [])
    if not route or route[0] == MISSING:
        out.unknown("route", "not available: ip (iproute2) is not installed")
        return
    defaults = [r for r in _json_lines(route) if isinstance(r, dict) and r.get("dst") == "default"]
    if not defaults:
        out.add("route", Status.CRITICAL, "no default route", value=0.0, unit="bool")
        return
    shown = ", ".join(
        f"via {r.get('gateway', 'link')} dev {r.get('dev', '?')}" for r in defaults[:3]
    )
    out.add(
        "route", Status.OK, f"default route {shown}", value=1.0, unit="bool", threshold="present"
    )


# smartctl's exit status, bit by bit (smartctl(8), "RETURN VALUES").
_SMART_BITS = (
    (0x08, Status.CRITICAL, "the disk reports it is failing (SMART status FAILED)"),
    (0x10, Status.CRITICAL, "a pre-failure attribute is at or below its threshold"),
    (0x20, Status.WARNING, "an attribute was at or below its threshold in the past"),
    (0x40, Status.WARNING, "the device's error log has errors"),
    (0x80, Status.WARNING, "the self-test log has errors"),
)


def _smart(facts: HostFacts, config: Watch, out: _Out) -> None:
    if not config.smart.enabled:
        return
    lines = facts.sections.get("smart", [])
    if not lines or lines[0] == MISSING:
        out.unknown("smart", "not available: smartctl is not installed on the host")
        return
    devices = 0
    index = 0
    while index < len(lines):
        line = lines[index]
        index += 1
        if not line.startswith("@@device "):
            continue
        _, device, rc_text = line.split(maxsplit=2)
        body = lines[index] if index < len(lines) and not lines[index].startswith("@@") else ""
        devices += 1
        rc = int(rc_text) if rc_text.strip().isdigit() else 2
        if rc & 0x03:
            reason = "cannot open it (smartctl needs root, or a sudo rule)"
            try:
                messages = json.loads(body).get("smartctl", {}).get("messages", [])
                reason = messages[0]["string"] if messages else reason
            except (ValueError, AttributeError, KeyError, IndexError, TypeError):
                pass
            out.unknown("smart", f"not available: {device}: {reason}", target=device)
            continue
        problems = [(status, text) for bit, status, text in _SMART_BITS if rc & bit]
        if rc & 0x04:
            out.unknown("smart", f"{device}: a SMART command failed", target=device)
            continue
        if problems:
            status = max((s for s, _ in problems), key=lambda s: s.severity)
            message = "; ".join(text for _, text in problems)
        else:
            status, message = Status.OK, "SMART overall health: PASSED"
        out.add(
            "smart",
            status,
            f"{device}: {message}",
            value=1.0 if status is Status.OK else 0.0,
            unit="bool",
            threshold="PASSED, no error logged",
            target=device,
        )
    if devices == 0:
        scan = next((line for line in lines if line.startswith("@@scan")), "")
        out.unknown(
            "smart",
            "not available: smartctl found no device it may open"
            + (" (smartctl --scan failed)" if scan and scan != "@@scan 0" else ""),
        )


_SYSTEM: tuple[Callable[[HostFacts, Watch, _Out], Any], ...] = (
    _clock,
    _uptime,
    _load,
    _cpu,
    _memory,
)


def evaluate(facts: HostFacts, config: Watch) -> list[ProbeRecord]:
    """Every record a host's gathered facts give, against the thresholds of `config`."""
    out = _Out(facts.host)
    if "end" not in facts.sections:
        # Cut short (a timeout, a killed script): what came is used, the rest is unknown.
        out.unknown("gather", "the gathering script did not finish; some probes are missing")
    for probe in _SYSTEM:
        probe(facts, config, out)
    mounts = _disk(facts, config, out)
    _inodes(facts, config, out, mounts)
    _quota(facts, config, out)
    running = _processes(facts, config, out)
    _services(facts, config, out, running)
    _network(facts, config, out)
    _smart(facts, config, out)
    return out.records
