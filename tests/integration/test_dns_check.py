"""The propagation check against real Knot servers: it finds the zone's name servers, asks each
one directly, and reports who answers what and when.

Private Knot instances on 127.0.15.x (the lab's own Knot code): `single` serves one zone with
one name server; `first` and `second` serve another zone whose NS records name both of them,
each with its own copy of the data, so one can lag behind the other as a secondary would.
"""

from __future__ import annotations

import base64
import os
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import dns.query
import dns.rcode
import dns.update
import pytest

from lab.child_daemon import ChildDaemon
from lab.knot import KnotLayout, knot_daemon_for, tsig_key
from providers.dns_base import DnsError
from providers.dns_check import (
    AuthoritativeServer,
    PropagationTimeout,
    ask_server,
    find_authoritative_servers,
    wait_for_propagation,
)
from providers.rfc2136_dns import Rfc2136Dns

pytestmark = pytest.mark.lab

PORT = 5355
PRODUCTION = "127.0.10.1"
DRP = "127.0.10.4"
SINGLE_ZONE = "single.drp-check.test"
SINGLE = "127.0.15.53"
PAIR_ZONE = "pair.drp-check.test"
FIRST = "127.0.15.54"
SECOND = "127.0.15.55"
NOTHING = "127.0.15.99"  # no server there


@dataclass(frozen=True)
class Server:
    address: str
    zone: str
    secret: str

    def provider(self) -> Rfc2136Dns:
        return Rfc2136Dns(
            primary=self.address,
            port=PORT,
            key_name="drp-lab-key",
            key_secret=self.secret,
            default_ttl=60,
        )

    def set_www(self, address: str) -> None:
        self.provider().set_records(self.zone, "www", "A", [address])


@pytest.fixture(scope="module")
def secret() -> str:
    return base64.b64encode(os.urandom(32)).decode()


def _start(root: Path, address: str, zone: str, secret: str) -> ChildDaemon:
    layout = KnotLayout(root / address, address, PORT, zone, PRODUCTION)
    daemon = knot_daemon_for(layout, secret, name=f"knot-{address}")
    return ChildDaemon(daemon, root / f"{address}.log")


@pytest.fixture(scope="module")
def single(tmp_path_factory: pytest.TempPathFactory, secret: str) -> Iterator[Server]:
    daemon = _start(tmp_path_factory.mktemp("single"), SINGLE, SINGLE_ZONE, secret).start()
    yield Server(SINGLE, SINGLE_ZONE, secret)
    daemon.stop()


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory, secret: str) -> Iterator[tuple[Server, Server]]:
    root = tmp_path_factory.mktemp("pair")
    daemons = [_start(root, a, PAIR_ZONE, secret).start() for a in (FIRST, SECOND)]
    # Both servers publish both NS names (ns1 -> FIRST, ns2 -> SECOND), as a real zone would.
    for address in (FIRST, SECOND):
        update = dns.update.UpdateMessage(PAIR_ZONE, keyring=tsig_key(secret))
        update.add("@", 60, "NS", f"ns2.{PAIR_ZONE}.")
        update.replace("ns2", 60, "A", SECOND)
        response = dns.query.tcp(update, address, port=PORT, timeout=2)
        assert response.rcode() == dns.rcode.NOERROR
    yield Server(FIRST, PAIR_ZONE, secret), Server(SECOND, PAIR_ZONE, secret)
    for daemon in daemons:
        daemon.stop()


@pytest.fixture
def www_on_production(pair: tuple[Server, Server]) -> Iterator[tuple[Server, Server]]:
    for server in pair:
        server.set_www(PRODUCTION)
    yield pair
    for server in pair:
        server.set_www(PRODUCTION)


def test_finds_the_name_server_through_the_server_itself(single: Server) -> None:
    assert find_authoritative_servers(SINGLE_ZONE, resolver=SINGLE, port=PORT) == (
        AuthoritativeServer(f"ns1.{SINGLE_ZONE}.", SINGLE, PORT),
    )


def test_finds_every_name_server_of_the_zone(pair: tuple[Server, Server]) -> None:
    assert find_authoritative_servers(f"{PAIR_ZONE}.", resolver=FIRST, port=PORT) == (
        AuthoritativeServer(f"ns1.{PAIR_ZONE}.", FIRST, PORT),
        AuthoritativeServer(f"ns2.{PAIR_ZONE}.", SECOND, PORT),
    )


def test_unreachable_resolver_says_to_give_servers(single: Server) -> None:
    with pytest.raises(DnsError) as caught:
        find_authoritative_servers(SINGLE_ZONE, resolver=NOTHING, port=PORT, timeout=0.5)
    assert "give the servers' addresses explicitly (servers=)" in str(caught.value)
    assert f"{NOTHING}:{PORT}" in str(caught.value)


def test_complete_when_every_server_answers_at_once(single: Server) -> None:
    report = wait_for_propagation(
        SINGLE_ZONE, "www", "A", [PRODUCTION], resolver=SINGLE, port=PORT, timeout=5
    )
    assert report.complete
    [server] = report.servers
    assert (server.address, server.answer, server.matched, server.queries) == (
        SINGLE,
        (PRODUCTION,),
        True,
        1,
    )
    assert server.seconds_to_match is not None and server.seconds_to_match < 1
    assert report.summary().startswith(
        f"all 1 authoritative server(s) of {SINGLE_ZONE} answer www.{SINGLE_ZONE}. A 127.0.10.1"
    )


def test_waits_until_the_lagging_server_catches_up(
    www_on_production: tuple[Server, Server],
) -> None:
    first, second = www_on_production
    first.set_www(DRP)
    catch_up = threading.Timer(1.0, second.set_www, args=(DRP,))
    catch_up.start()
    try:
        report = wait_for_propagation(
            PAIR_ZONE, "www", "A", [DRP], resolver=FIRST, port=PORT, timeout=10, interval=0.2
        )
    finally:
        catch_up.join()
    assert report.complete, report.summary()
    ns1, ns2 = report.servers
    assert (ns1.address, ns1.answer, ns1.queries) == (FIRST, (DRP,), 1)
    assert (ns2.address, ns2.answer) == (SECOND, (DRP,))
    assert ns1.seconds_to_match is not None and ns1.seconds_to_match < 0.5
    assert ns2.seconds_to_match is not None and 0.9 <= ns2.seconds_to_match < 5
    assert ns2.queries > 1, "the lagging server was asked again until it matched"


def test_timeout_reports_which_server_still_answers_what(
    www_on_production: tuple[Server, Server],
) -> None:
    first, _ = www_on_production
    first.set_www(DRP)
    started = time.monotonic()
    report = wait_for_propagation(
        PAIR_ZONE, "www", "A", [DRP], resolver=FIRST, port=PORT, timeout=1.0, interval=0.25
    )
    assert 0.5 <= time.monotonic() - started < 4
    assert not report.complete
    [pending] = report.pending
    assert (pending.name, pending.address, pending.answer) == (
        f"ns2.{PAIR_ZONE}.",
        SECOND,
        (PRODUCTION,),
    )
    assert f"ns2.{PAIR_ZONE} ({SECOND}:{PORT}): 127.0.10.1" in report.summary()

    with pytest.raises(PropagationTimeout) as caught:
        wait_for_propagation(
            PAIR_ZONE,
            "www",
            "A",
            [DRP],
            servers=[SECOND],
            port=PORT,
            timeout=0,
            raise_on_timeout=True,
        )
    assert [s.answer for s in caught.value.report.servers] == [(PRODUCTION,)]
    assert "1 of 1 authoritative server(s)" in str(caught.value)


def test_servers_override_asks_exactly_those(www_on_production: tuple[Server, Server]) -> None:
    first, _ = www_on_production
    first.set_www(DRP)
    report = wait_for_propagation(
        PAIR_ZONE, "www", "A", [DRP], servers=[FIRST], port=PORT, timeout=0
    )
    assert report.complete
    assert [(s.name, s.address) for s in report.servers] == [(FIRST, FIRST)]


def test_a_silent_or_refusing_server_is_reported_not_raised(single: Server) -> None:
    report = wait_for_propagation(
        SINGLE_ZONE,
        "www",
        "A",
        [PRODUCTION],
        servers=[SINGLE, NOTHING],
        port=PORT,
        timeout=0,
        query_timeout=0.5,
    )
    assert not report.complete
    ok, silent = report.servers
    assert ok.matched
    assert (silent.matched, silent.error) == (False, "no answer within 0.5 s")
    assert f"{NOTHING}:{PORT}: no answer within 0.5 s" in report.summary()

    refused = ask_server(AuthoritativeServer(SINGLE, SINGLE, PORT), "www.elsewhere.test.", "A")
    assert refused.error == "answered REFUSED"


def test_a_deleted_record_matches_when_no_server_has_it(single: Server) -> None:
    provider = single.provider()
    provider.set_records(SINGLE_ZONE, "gone", "A", [DRP])
    provider.set_records(SINGLE_ZONE, "gone", "A", [])
    report = wait_for_propagation(
        SINGLE_ZONE, "gone", "A", [], servers=[SINGLE], port=PORT, timeout=0
    )
    assert report.complete
    assert report.servers[0].answer == ()


def test_a_resolver_that_does_not_serve_the_zone_says_so(single: Server) -> None:
    with pytest.raises(DnsError) as caught:
        find_authoritative_servers("elsewhere.test", resolver=SINGLE, port=PORT)
    assert str(caught.value) == (
        f"looking up the name servers of elsewhere.test via {SINGLE}:{PORT} failed: "
        "elsewhere.test. NS answered REFUSED; check the resolver address, or give the servers' "
        "addresses explicitly (servers=)"
    )
