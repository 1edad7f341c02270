"""What the lab supervisor gets for Knot and the OVH emulator: argv, files, environment."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from lab import topology
from lab.errors import LabError
from lab.knot import knot_daemon, knotd_argv, knotd_binary
from lab.ovh_emulator import SECRET_ENV, ovh_daemon, ovh_emulator_argv
from lab.secrets import GENERATORS


@pytest.fixture
def paths(tmp_path: Path) -> topology.LabPaths:
    return topology.LabPaths(tmp_path / "lab")


@pytest.fixture
def secrets() -> dict[str, str]:
    return {name: GENERATORS[name]() for name in topology.SECRET_NAMES}


def test_knotd_argv() -> None:
    assert knotd_argv(Path("/lab/data/dns/knot.conf"), "/usr/sbin/knotd") == [
        "/usr/sbin/knotd",
        "-c",
        "/lab/data/dns/knot.conf",
    ]


def test_knot_daemon_serves_the_lab_zone_from_the_data_dir(
    paths: topology.LabPaths, secrets: dict[str, str]
) -> None:
    daemon = knot_daemon(paths, secrets)
    dns_dir = paths.data("dns")
    assert daemon.argv == [knotd_binary(), "-c", str(dns_dir / "knot.conf")]
    assert (daemon.name, daemon.address, daemon.port) == (
        "knot",
        topology.DNS_ADDRESS,
        topology.DNS_PORT,
    )
    conf = (dns_dir / "knot.conf").read_text()
    assert f"listen: {topology.DNS_ADDRESS}@{topology.DNS_PORT}" in conf
    assert f'listen: "{dns_dir / "run" / "knot.sock"}"' in conf
    assert f"domain: {topology.ZONE}" in conf
    zone = (dns_dir / "zones" / f"{topology.ZONE}.zone").read_text().split("\n")
    production = topology.host("production").address
    assert f"$ORIGIN {topology.ZONE}." in zone
    assert "$TTL 60" in zone
    assert f"ns1     A       {topology.DNS_ADDRESS}" in zone
    assert f"@       A       {production}" in zone
    assert f"www     A       {production}" in zone
    assert not daemon.env  # the secret is in the 0600 config, not in the environment


def test_existing_zone_file_is_kept(paths: topology.LabPaths, secrets: dict[str, str]) -> None:
    knot_daemon(paths, secrets)
    zone_file = paths.data("dns") / "zones" / f"{topology.ZONE}.zone"
    zone_file.write_text("; as Knot left it after updates\n")
    knot_daemon(paths, secrets)
    assert zone_file.read_text() == "; as Knot left it after updates\n"


@pytest.mark.parametrize(
    ("value", "reason"), [("c2hvcnQ=", "decodes to 5 bytes"), ("not base64!", "not valid base64")]
)
def test_weak_or_garbled_tsig_secret_is_refused(
    paths: topology.LabPaths, secrets: dict[str, str], value: str, reason: str
) -> None:
    with pytest.raises(LabError, match=reason):
        knot_daemon(paths, secrets | {"DRP_LAB_TSIG_SECRET": value})
    assert not (paths.data("dns") / "knot.conf").exists()


def test_ovh_emulator_argv() -> None:
    argv = ovh_emulator_argv(
        ("127.0.10.60", 8080), Path("/lab/data/ovh"), "drp-lab.test", ("127.0.10.53", 53), "py"
    )
    assert argv == [
        "py",
        "-m",
        "lab.ovh_emulator",
        "--listen",
        "127.0.10.60:8080",
        "--state-dir",
        "/lab/data/ovh",
        "--zone",
        "drp-lab.test",
        "--dns-server",
        "127.0.10.53:53",
    ]


def test_ovh_daemon_gets_its_keys_by_environment_only(
    paths: topology.LabPaths, secrets: dict[str, str]
) -> None:
    daemon = ovh_daemon(paths, secrets)
    assert daemon.argv == ovh_emulator_argv(
        (topology.OVH_ADDRESS, topology.OVH_PORT),
        paths.data("ovh"),
        topology.ZONE,
        (topology.DNS_ADDRESS, topology.DNS_PORT),
        sys.executable,
    )
    assert (daemon.name, daemon.address, daemon.port) == (
        "ovh-emulator",
        topology.OVH_ADDRESS,
        topology.OVH_PORT,
    )
    assert daemon.env == {name: secrets[name] for name in SECRET_ENV}
    assert not any(secrets[name] in " ".join(daemon.argv) for name in SECRET_ENV)


def test_ovh_daemon_names_a_missing_secret(
    paths: topology.LabPaths, secrets: dict[str, str]
) -> None:
    del secrets["DRP_LAB_OVH_CONSUMER_KEY"]
    with pytest.raises(LabError, match="DRP_LAB_OVH_CONSUMER_KEY"):
        ovh_daemon(paths, secrets)
