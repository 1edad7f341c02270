"""What the gathering script's output becomes: one record per probe, against the thresholds.

The text is what the script prints on a Debian host (sections after `@@drp-watch:NAME` lines);
each test changes one section and looks at the record a user would read.
"""

from __future__ import annotations

import json

import pytest

from runbooks.watch.host_facts import HostFacts, evaluate, gather_argv, parse_sections
from runbooks.watch.records import ProbeRecord, Status, slug
from runbooks.watch_config import Watch

DF = """\
Filesystem     Type     1024-blocks     Used Available Capacity Mounted on
/dev/vda       ext4       264212084 24759184  81631728      24% /
tmpfs          tmpfs       24683652     2104  24681548       1% /dev/shm
/dev/vdb1      xfs         10000000  9600000    400000      96% /srv/data dir
"""
INODES = """\
Filesystem       Inodes  IUsed    IFree IUse% Mounted on
/dev/vda       16777216 441241 16335975    3% /
/dev/vdb1         10000   9900      100   99% /srv/data dir
"""
ADDR = json.dumps(
    [
        {"ifname": "lo", "flags": ["LOOPBACK", "UP"], "operstate": "UNKNOWN", "addr_info": []},
        {
            "ifname": "eth0",
            "flags": ["BROADCAST", "UP", "LOWER_UP"],
            "operstate": "UP",
            "addr_info": [{"family": "inet", "local": "203.0.113.20", "prefixlen": 24}],
        },
        {"ifname": "eth1", "flags": ["BROADCAST"], "operstate": "DOWN", "addr_info": []},
    ]
)
OUTPUT = f"""
@@drp-watch:clock
1700000000.250000000
@@drp-watch:stat
cpu  1000 0 1000 8000 0 0 0 0 0 0
@@drp-watch:uptime
864000.12 1000.00
@@drp-watch:loadavg
0.50 1.00 1.50 2/300 12345
@@drp-watch:nproc
2
@@drp-watch:meminfo
MemTotal:       16000000 kB
MemAvailable:    8000000 kB
SwapTotal:       2000000 kB
SwapFree:        2000000 kB
@@drp-watch:df
{DF}
@@drp-watch:home
Filesystem     1024-blocks     Used Available Capacity Mounted on
/dev/vda         264212084 24759184  81631728      24% /
@@drp-watch:inodes
{INODES}
@@drp-watch:ps
sshd
sshd
nginx
cron
@@drp-watch:listen
LISTEN 0      511     203.0.113.20:443      0.0.0.0:*
LISTEN 0      128          0.0.0.0:22       0.0.0.0:*
@@drp-watch:addr
{ADDR}
@@drp-watch:route
[{{"dst":"default","gateway":"203.0.113.1","dev":"eth0","flags":[]}}]
[]
@@drp-watch:quota
@@missing
@@drp-watch:smart
@@missing
@@drp-watch:stat2
cpu  1100 0 1100 8200 0 0 0 0 0 0
@@drp-watch:end
"""


def facts(
    text: str = OUTPUT, sent_at: float = 1700000000.2, first: float = 1700000000.3
) -> HostFacts:
    return HostFacts(
        host="production",
        role="production",
        address="203.0.113.20",
        sections=parse_sections(text),
        sent_at=sent_at,
        first_output_at=first,
    )


def watch(**fields: object) -> Watch:
    return Watch.model_validate(fields)


def one(records: list[ProbeRecord], probe: str, target: str = "") -> ProbeRecord:
    found = [r for r in records if r.probe == probe and r.target == target]
    assert len(found) == 1, [r.label for r in records]
    return found[0]


def test_a_healthy_host_gives_one_record_per_probe_and_mount() -> None:
    records = evaluate(facts(), watch())

    assert one(records, "disk", "/").status is Status.OK
    assert one(records, "disk", "/").message.startswith("30.9% free on / (77.9 GiB of 252.0 GiB")
    assert "tmpfs" not in {r.target for r in records}  # not a disk
    assert one(records, "load").value == 0.5  # 1.00 over 2 CPUs
    assert one(records, "cpu").value == 50.0  # 200 busy jiffies of 400
    assert one(records, "memory").message.startswith("50% available")
    assert one(records, "swap").status is Status.OK
    assert one(records, "uptime").message == "up 10.0 days"
    assert one(records, "interface", "eth0").message == "eth0 up, 203.0.113.20/24"
    assert "eth1" not in {r.target for r in records}  # administratively down: not watched
    assert one(records, "route").message == "default route via 203.0.113.1 dev eth0"


def test_a_mount_nearly_full_is_critical_and_says_how_much_is_left() -> None:
    record = one(evaluate(facts(), watch()), "disk", "/srv/data dir")
    assert record.status is Status.CRITICAL
    assert record.value == 4.0
    assert record.message == "4.0% free on /srv/data dir (391 MiB of 9.5 GiB, xfs /dev/vdb1)"
    assert record.threshold == "warning < 15%, critical < 5%"
    inodes = one(evaluate(facts(), watch()), "inodes", "/srv/data dir")
    assert inodes.status is Status.CRITICAL and inodes.value == 1.0


def test_free_space_in_mib_is_a_threshold_too() -> None:
    # 79,718 MiB free on /, 30.9%: fine by percent, not by size.
    config = watch(disk={"warning_free_mib": 100000, "critical_free_mib": 70000})
    record = one(evaluate(facts(), config), "disk", "/")
    assert record.status is Status.WARNING
    assert record.threshold.endswith("; warning < 100000 MiB, critical < 70000 MiB")
    config = watch(disk={"critical_free_mib": 79800})
    assert one(evaluate(facts(), config), "disk", "/").status is Status.CRITICAL


def test_missing_tools_are_not_available_never_ok() -> None:
    records = evaluate(facts(), watch())
    assert one(records, "smart").status is Status.UNKNOWN
    assert one(records, "smart").message == "not available: smartctl is not installed on the host"
    assert one(records, "quota").status is Status.UNKNOWN
    no_ip = OUTPUT.replace(ADDR, "@@missing")
    assert one(evaluate(facts(no_ip), watch()), "interface").status is Status.UNKNOWN


SMART = """
@@scan 0
@@device /dev/sda {rc}
{{"smartctl": {{"messages": [{{"string": "Smartctl open device: /dev/sda failed: EACCES"}}]}}}}
"""


@pytest.mark.parametrize(
    ("rc", "status", "message"),
    [
        (0, Status.OK, "/dev/sda: SMART overall health: PASSED"),
        (
            2,
            Status.UNKNOWN,
            "not available: /dev/sda: Smartctl open device: /dev/sda failed: EACCES",
        ),
        (8, Status.CRITICAL, "/dev/sda: the disk reports it is failing (SMART status FAILED)"),
        (64, Status.WARNING, "/dev/sda: the device's error log has errors"),
    ],
)
def test_smartctl_exit_bits(rc: int, status: Status, message: str) -> None:
    text = OUTPUT.replace("@@drp-watch:smart\n@@missing", "@@drp-watch:smart" + SMART.format(rc=rc))
    record = one(evaluate(facts(text), watch()), "smart", "/dev/sda")
    assert (record.status, record.message) == (status, message)


def test_clock_drift_beyond_the_measurement_uncertainty() -> None:
    # Sent at .2, first output at .3: the host's .25 is exactly the midpoint.
    record = one(evaluate(facts(), watch()), "time")
    assert record.status is Status.OK and record.value == 0.0
    late = facts(sent_at=1.7e9 + 3.0, first=1.7e9 + 3.2)  # host 2.85 s behind, ±0.1
    record = one(evaluate(late, watch()), "time")
    assert record.status is Status.WARNING
    assert record.message == "clock 2.850 s behind the orchestrator's (measured to ±0.100 s)"
    far = facts(sent_at=1.7e9 + 10.0, first=1.7e9 + 10.2)
    assert one(evaluate(far, watch()), "time").status is Status.CRITICAL


def test_processes_and_services_running_and_listening() -> None:
    config = watch(
        processes=[{"name": "cron"}, {"name": "postfix", "hosts": ["production"]}],
        services=[
            {"name": "nginx", "port": 443},
            {"name": "ssh", "process": "sshd", "port": 22},
            {"name": "mariadb", "process": "mariadbd", "port": 3306},
            {"name": "web", "process": "nginx", "port": 8080, "hosts": ["drp"]},
        ],
    )
    records = evaluate(facts(), config)
    assert one(records, "process", "cron").status is Status.OK
    postfix = one(records, "process", "postfix")
    assert postfix.status is Status.CRITICAL
    assert postfix.message == "0 postfix process(es) running, at least 1 expected"
    assert one(records, "service", "nginx").message == (
        "nginx: nginx runs and listens on 203.0.113.20:443"
    )
    assert one(records, "service", "ssh").status is Status.OK  # 0.0.0.0 is every address
    mariadb = one(records, "service", "mariadb")
    assert mariadb.status is Status.CRITICAL
    assert mariadb.message == (
        "mariadb: no mariadbd process runs; nothing listens on 203.0.113.20:3306"
    )
    assert "web" not in {r.target for r in records}  # on drp only


def test_interfaces_named_in_the_inventory_must_be_up_with_an_address() -> None:
    records = evaluate(facts(), watch(network={"interfaces": ["eth0", "eth1", "bond0"]}))
    assert one(records, "interface", "eth1").message == "eth1 is down (state DOWN)"
    assert one(records, "interface", "bond0").message == "no interface bond0"
    no_route = OUTPUT.replace(
        '[{"dst":"default","gateway":"203.0.113.1","dev":"eth0","flags":[]}]', "[]"
    )
    assert one(evaluate(facts(no_route), watch()), "route").status is Status.CRITICAL


def test_quota_of_the_ssh_user() -> None:
    quota = """Disk quotas for user app (uid 1001):
     Filesystem  blocks   quota   limit   grace   files   quota   limit   grace
      /dev/vdb1  95000*  90000  100000   6days     100       0       0
@@rc 1"""
    text = OUTPUT.replace("@@drp-watch:quota\n@@missing", f"@@drp-watch:quota\n{quota}")
    record = one(evaluate(facts(text), watch()), "quota", "/dev/vdb1")
    assert record.status is Status.WARNING and record.value == 95.0


def test_a_cut_short_gathering_says_so() -> None:
    text = OUTPUT.split("@@drp-watch:ps")[0]
    records = evaluate(facts(text), watch())
    assert one(records, "gather").status is Status.UNKNOWN
    assert one(records, "cpu").status is Status.UNKNOWN  # no second sample


def test_the_script_is_one_argv_with_its_settings() -> None:
    argv = gather_argv(cpu_sample_seconds=0.3, smart=False)
    assert argv[:2] == ["sh", "-c"] and argv[2].startswith("SAMPLE=0.3; SMART=0\n")


def test_event_names_are_unique_and_ticket_safe() -> None:
    assert slug("production") == "production"
    assert slug("/srv") != slug("srv")
    assert slug("/") and "/" not in slug("/srv/data dir")
    record = ProbeRecord("production", "disk", Status.CRITICAL, "full", target="/srv")
    assert record.event_name.startswith("production-disk-srv-")
