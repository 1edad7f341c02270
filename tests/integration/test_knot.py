"""The lab's Knot DNS server, run for real on a private loopback address."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import dns.flags
import dns.message
import dns.query
import dns.rcode
import dns.tsig
import dns.update
import dns.xfr
import dns.zone
import pytest

from lab.child_daemon import ChildDaemon
from lab.knot import KnotLayout, knot_daemon_for, tsig_key, write_knot_files
from lab.secrets import GENERATORS

ADDRESS = "127.0.11.53"
PORT = 5300
ZONE = "drp-lab.test"
WEB = "127.0.10.1"
DRP = "127.0.10.4"


def new_tsig_secret() -> str:
    return GENERATORS["DRP_LAB_TSIG_SECRET"]()


def answer(name: str, rdtype: str, address: str = ADDRESS) -> set[str]:
    """The data the server answers for name/type, as text (empty when there is none)."""
    query = dns.message.make_query(name, rdtype)
    response = dns.query.udp(query, address, port=PORT, timeout=2)
    return {rdata.to_text() for rrset in response.answer for rdata in rrset}


def layout(data_dir: Path, address: str = ADDRESS) -> KnotLayout:
    return KnotLayout(data_dir=data_dir, address=address, port=PORT, zone=ZONE, web_address=WEB)


@pytest.fixture(scope="module")
def secret() -> str:
    return new_tsig_secret()


@pytest.fixture(scope="module")
def knot(tmp_path_factory: pytest.TempPathFactory, secret: str) -> Iterator[ChildDaemon]:
    root = tmp_path_factory.mktemp("knot")
    running = ChildDaemon(knot_daemon_for(layout(root / "dns"), secret), root / "knot.log")
    yield running.start()
    running.stop()


def signed_update(secret: str) -> dns.update.UpdateMessage:
    return dns.update.UpdateMessage(ZONE, keyring=tsig_key(secret))


def test_serves_the_zone_authoritatively(knot: ChildDaemon) -> None:
    query = dns.message.make_query(ZONE, "SOA")
    response = dns.query.udp(query, ADDRESS, port=PORT, timeout=2)
    assert response.rcode() == dns.rcode.NOERROR
    assert response.flags & dns.flags.AA
    soa = response.answer[0]
    assert soa.ttl == 60
    assert soa[0].mname.to_text() == f"ns1.{ZONE}."
    assert answer(ZONE, "NS") == {f"ns1.{ZONE}."}
    assert answer(f"ns1.{ZONE}", "A") == {ADDRESS}
    assert answer(ZONE, "A") == {WEB}
    assert answer(f"www.{ZONE}", "A") == {WEB}


def test_kdig_as_the_docs_use_it_asks_the_server(knot: ChildDaemon) -> None:
    """The docs ask a DNS server by hand with `kdig` (knot-dnsutils, which scripts/setup.sh
    installs; `dig` is not installed on a fresh machine)."""
    done = subprocess.run(
        ["kdig", f"@{ADDRESS}", "-p", str(PORT), f"www.{ZONE}", "A", "+short",
         "+timeout=2", "+retry=0"],
        capture_output=True, text=True, timeout=10, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert set(done.stdout.split()) == answer(f"www.{ZONE}", "A") != set()


def test_ready_check_follows_the_server(tmp_path: Path, secret: str) -> None:
    daemon = knot_daemon_for(layout(tmp_path / "dns", "127.0.11.55"), secret, name="knot-ready")
    assert not daemon.ready()
    running = ChildDaemon(daemon, tmp_path / "knot.log").start()
    try:
        assert daemon.ready()
    finally:
        running.stop()
    assert not daemon.ready()


def test_unsigned_update_is_refused_notauth(knot: ChildDaemon) -> None:
    update = dns.update.UpdateMessage(ZONE)
    update.replace("www", 60, "A", DRP)
    response = dns.query.tcp(update, ADDRESS, port=PORT, timeout=2)
    assert dns.rcode.to_text(response.rcode()) == "NOTAUTH"
    assert answer(f"www.{ZONE}", "A") == {WEB}


def test_update_signed_with_another_secret_is_refused(knot: ChildDaemon) -> None:
    update = signed_update(new_tsig_secret())
    update.replace("www", 60, "A", DRP)
    with pytest.raises(dns.tsig.PeerBadSignature):
        dns.query.tcp(update, ADDRESS, port=PORT, timeout=2)
    assert answer(f"www.{ZONE}", "A") == {WEB}


def test_tsig_signed_update_is_applied(knot: ChildDaemon, secret: str) -> None:
    update = signed_update(secret)
    update.replace("signed-update", 60, "A", DRP)
    response = dns.query.tcp(update, ADDRESS, port=PORT, timeout=2)
    assert response.rcode() == dns.rcode.NOERROR
    assert answer(f"signed-update.{ZONE}", "A") == {DRP}


def test_zone_transfer_needs_the_key(knot: ChildDaemon, secret: str) -> None:
    with pytest.raises(dns.xfr.TransferError, match="NOTAUTH"):
        dns.query.inbound_xfr(ADDRESS, dns.zone.Zone(ZONE), port=PORT, timeout=2)
    zone = dns.zone.Zone(ZONE)
    query = dns.message.make_query(ZONE, "AXFR")
    query.use_tsig(tsig_key(secret))
    dns.query.inbound_xfr(ADDRESS, zone, query=query, port=PORT, timeout=2)
    assert zone.get_rdataset("www", "A")[0].to_text() == WEB


def test_updates_survive_a_restart(tmp_path: Path, secret: str) -> None:
    address = "127.0.11.56"
    running = ChildDaemon(
        knot_daemon_for(layout(tmp_path / "dns", address), secret), tmp_path / "knot.log"
    ).start()
    try:
        update = signed_update(secret)
        update.replace("www", 60, "A", DRP)
        assert dns.query.tcp(update, address, port=PORT, timeout=2).rcode() == dns.rcode.NOERROR
        running.restart()
        assert answer(f"www.{ZONE}", "A", address) == {DRP}
        # Files are rewritten on every lab start, but the zone file Knot keeps up to date stays.
        knot_daemon_for(layout(tmp_path / "dns", address), secret)
        running.restart()
        assert answer(f"www.{ZONE}", "A", address) == {DRP}
    finally:
        running.stop()


def test_config_holds_the_secret_readable_by_root_only(tmp_path: Path, secret: str) -> None:
    knot_layout = layout(tmp_path / "dns")
    write_knot_files(knot_layout, secret)
    assert secret in knot_layout.conf_path.read_text()
    assert knot_layout.conf_path.stat().st_mode & 0o777 == 0o600
