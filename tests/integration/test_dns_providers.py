"""One contract for every DNS provider, against a real Knot server.

The OVH provider goes through the lab's OVH API emulator (official `ovh` client, real signature
checks), whose refresh pushes the records into Knot; the RFC 2136 provider updates Knot
directly with TSIG. Either way, what Knot answers really changes, and the propagation check
asks it.

Each module runs a private Knot and emulator (the lab's own code, on 127.0.14.x) so the tests
never race a lab someone is using; every test leaves the zone as it found it (apex and www A
on production). `test_lab_zone_*` use the running lab itself: both providers configured as
the lab is, one switch through the OVH path and back, leaving the lab zone as found.
"""

from __future__ import annotations

import base64
import logging
import os
import secrets
import socket
import time
import traceback
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import dns.message
import dns.query
import dns.rdatatype
import ovh.config
import pytest

from lab import topology
from lab.child_daemon import ChildDaemon
from lab.knot import KnotLayout, knot_daemon_for
from lab.ovh_emulator import ovh_daemon_for
from providers.dns_base import BaseDnsProvider, DnsError, RootNsChange
from providers.dns_check import wait_for_propagation
from providers.ovh_dns import OvhDns
from providers.rfc2136_dns import Rfc2136Dns

if TYPE_CHECKING:
    from conftest import LabHandle

pytestmark = pytest.mark.lab

ZONE = "drp-lab.test"
DNS_ADDRESS = "127.0.14.53"
DNS_PORT = 5354  # not 53: the providers and the check must honour the port they are given
OVH_ADDRESS = "127.0.14.60"
OVH_PORT = 8080
ENDPOINT = "drp-dns-contract"
ENDPOINT_URL = f"http://{OVH_ADDRESS}:{OVH_PORT}/1.0"
PRODUCTION = "127.0.10.1"
DRP = "127.0.10.4"
KEY_NAME = "drp-lab-key"


class Masked:
    """A secret as the configuration hands it over: masked, revealed on demand."""

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "***"


@dataclass(frozen=True)
class Secrets:
    tsig: str
    application_key: str
    application_secret: str
    consumer_key: str

    @property
    def env(self) -> dict[str, str]:
        return {
            "DRP_LAB_TSIG_SECRET": self.tsig,
            "DRP_LAB_OVH_APPLICATION_KEY": self.application_key,
            "DRP_LAB_OVH_APPLICATION_SECRET": self.application_secret,
            "DRP_LAB_OVH_CONSUMER_KEY": self.consumer_key,
        }

    @property
    def values(self) -> list[str]:
        return list(self.env.values())


def new_secrets() -> Secrets:
    return Secrets(
        tsig=base64.b64encode(os.urandom(32)).decode(),
        application_key=secrets.token_hex(8),
        application_secret=secrets.token_hex(16),
        consumer_key=secrets.token_hex(16),
    )


@pytest.fixture(scope="module")
def keys() -> Secrets:
    return new_secrets()


@pytest.fixture(scope="module")
def knot(tmp_path_factory: pytest.TempPathFactory, keys: Secrets) -> Iterator[ChildDaemon]:
    root = tmp_path_factory.mktemp("knot")
    layout = KnotLayout(root / "dns", DNS_ADDRESS, DNS_PORT, ZONE, PRODUCTION)
    daemon = ChildDaemon(knot_daemon_for(layout, keys.tsig), root / "knot.log")
    yield daemon.start()
    daemon.stop()


@pytest.fixture(scope="module")
def ovh_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The private emulator's directory: its log (`ovh.log`) and state (`state/`)."""
    return tmp_path_factory.mktemp("ovh")


@pytest.fixture(scope="module")
def emulator(ovh_root: Path, knot: ChildDaemon, keys: Secrets) -> Iterator[ChildDaemon]:
    root = ovh_root
    description = ovh_daemon_for(
        (OVH_ADDRESS, OVH_PORT), root / "state", ZONE, (DNS_ADDRESS, DNS_PORT), keys.env
    )
    daemon = ChildDaemon(description, root / "ovh.log")
    yield daemon.start()
    daemon.stop()


def ovh_provider(keys: Secrets, **wrong: str) -> OvhDns:
    return OvhDns(
        endpoint=ENDPOINT,
        endpoint_url=ENDPOINT_URL,
        application_key=wrong.get("application_key", keys.application_key),
        application_secret=Masked(wrong.get("application_secret", keys.application_secret)),
        consumer_key=Masked(wrong.get("consumer_key", keys.consumer_key)),
        timeout=10,
    )


def rfc2136_provider(keys: Secrets, **wrong: str) -> Rfc2136Dns:
    return Rfc2136Dns(
        primary=DNS_ADDRESS,
        port=DNS_PORT,
        key_name=wrong.get("key_name", KEY_NAME),
        key_secret=Masked(wrong.get("key_secret", keys.tsig)),
        default_ttl=60,
    )


def served(name: str, rtype: str = "A") -> set[str]:
    """What Knot answers right now for name (relative to the zone)."""
    qname = f"{name}.{ZONE}" if name else ZONE
    response = dns.query.udp(
        dns.message.make_query(qname, rtype), DNS_ADDRESS, port=DNS_PORT, timeout=2
    )
    wanted = dns.rdatatype.from_text(rtype)
    return {r.to_text() for rrset in response.answer if rrset.rdtype == wanted for r in rrset}


def restore_production(provider: BaseDnsProvider) -> None:
    for name in ("www", ""):
        provider.set_records(ZONE, name, "A", [PRODUCTION])
    if provider.needs_refresh:
        provider.refresh(ZONE)
    assert served("www") == served("") == {PRODUCTION}


@pytest.fixture(params=["ovh", "rfc2136"])
def provider(
    request: pytest.FixtureRequest, knot: ChildDaemon, keys: Secrets
) -> Iterator[BaseDnsProvider]:
    if request.param == "ovh":
        request.getfixturevalue("emulator")
        made: BaseDnsProvider = ovh_provider(keys)
    else:
        made = rfc2136_provider(keys)
    assert served("www") == {PRODUCTION}, "the zone must start on production"
    yield made
    restore_production(made)


@pytest.fixture
def all_logs(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.DEBUG)
    return caplog


def assert_no_secret(keys: Secrets, *texts: str) -> None:
    for text in texts:
        for value in keys.values:
            assert value not in text


# --- The contract ----------------------------------------------------------------------------


def test_reads_the_www_record(provider: BaseDnsProvider) -> None:
    record = provider.get_records(ZONE, "www", "A")
    assert (record.zone, record.name, record.rtype) == (ZONE, "www", "A")
    assert record.targets == (PRODUCTION,)
    assert record.ttl == 60
    assert provider.get_records(ZONE, "nothing-here", "A").targets == ()


def test_switch_to_drp_reaches_every_authoritative_server(
    provider: BaseDnsProvider, keys: Secrets, all_logs: pytest.LogCaptureFixture
) -> None:
    plan = provider.describe_change(ZONE, "www", "A", [DRP])
    assert plan.changed and not plan.applied
    assert plan.reason == f"change www.{ZONE}. A {PRODUCTION} (ttl 60) -> {DRP}"
    assert plan.operations, "a dry run lists the calls it would make"
    assert served("www") == {PRODUCTION}, "a dry run changes nothing"

    change = provider.set_records(ZONE, "www", "A", [DRP])
    assert change.applied
    assert change.after.targets == (DRP,)
    assert provider.get_records(ZONE, "www", "A").targets == (DRP,)

    if provider.needs_refresh:
        assert change.needs_refresh
        assert change.reason.endswith("done, pending a zone refresh")
        before = wait_for_propagation(
            ZONE, "www", "A", [DRP], resolver=DNS_ADDRESS, port=DNS_PORT, timeout=0
        )
        assert not before.complete
        assert [s.answer for s in before.pending] == [(PRODUCTION,)], "not before the refresh"
        assert "refreshed" in provider.refresh(ZONE)

    report = wait_for_propagation(
        ZONE, "www", "A", [DRP], resolver=DNS_ADDRESS, port=DNS_PORT, timeout=10, interval=0.1
    )
    assert report.complete, report.summary()
    assert [(s.name, s.address, s.answer) for s in report.servers] == [
        (f"ns1.{ZONE}.", DNS_ADDRESS, (DRP,))
    ]
    assert served("www") == {DRP}
    assert_no_secret(keys, all_logs.text, report.summary(), repr(provider), repr(change.data))


def test_setting_the_same_targets_again_is_a_noop_that_says_so(
    provider: BaseDnsProvider,
) -> None:
    provider.set_records(ZONE, "www", "A", [DRP])
    if provider.needs_refresh:
        provider.refresh(ZONE)

    again = provider.set_records(ZONE, "www", "A", ["127.0.10.4"])
    assert not again
    assert not again.applied and not again.needs_refresh
    assert again.operations == ()
    assert again.reason == f"www.{ZONE}. A {DRP} (ttl 60) already: nothing to do"
    assert served("www") == {DRP}


def test_set_back_to_production(provider: BaseDnsProvider) -> None:
    provider.set_records(ZONE, "www", "A", [DRP])
    back = provider.set_records(ZONE, "www", "A", [PRODUCTION])
    assert back.applied
    assert back.before.targets == (DRP,)
    assert back.after.targets == (PRODUCTION,)
    if provider.needs_refresh:
        provider.refresh(ZONE)
    report = wait_for_propagation(
        ZONE, "www", "A", [PRODUCTION], servers=[DNS_ADDRESS], port=DNS_PORT, timeout=5
    )
    assert report.complete, report.summary()


@pytest.mark.parametrize("apex", ["", "@", f"{ZONE}."])
def test_apex_record_switches(provider: BaseDnsProvider, apex: str) -> None:
    assert provider.get_records(ZONE, apex, "A").targets == (PRODUCTION,)
    change = provider.set_records(ZONE, apex, "A", [DRP])
    assert change.after.name == ""
    assert change.target == f"{ZONE} @ A"
    if provider.needs_refresh:
        provider.refresh(ZONE)
    assert served("") == {DRP}
    assert served("www") == {PRODUCTION}, "only the apex changed"


@pytest.mark.parametrize("rtype", ["NS", "SOA"])
def test_apex_ns_and_soa_changes_are_refused(provider: BaseDnsProvider, rtype: str) -> None:
    ns_before = served("", "NS")
    with pytest.raises(RootNsChange, match=f"refusing to change the {rtype} records at the apex"):
        provider.set_records(ZONE, "@", rtype, ["ns9.example.net."])
    with pytest.raises(RootNsChange):
        provider.describe_change(ZONE, "", rtype, ["ns9.example.net."])
    assert served("", "NS") == ns_before == {f"ns1.{ZONE}."}


def test_credentials_check_reads_only(provider: BaseDnsProvider) -> None:
    soa_before = served("", "SOA")
    sentence = provider.check_credentials(ZONE)
    assert ZONE in sentence
    assert served("", "SOA") == soa_before, "the preflight changes nothing, not even the serial"


# --- A zone switches all together or not at all ----------------------------------------------


def test_a_zone_switch_plans_every_record_before_after_then_applies_them_together(
    provider: BaseDnsProvider,
) -> None:
    current = provider.read_records(ZONE, [("", "A"), ("www", "A")])
    plan = provider.plan_zone(ZONE, [("@", "A", [DRP]), ("www", "A", [DRP])], current=current)
    assert [(c.before.targets, c.after.targets) for c in plan.changes] == [
        ((PRODUCTION,), (DRP,)),
        ((PRODUCTION,), (DRP,)),
    ]
    assert plan.reason == f"@ A {PRODUCTION} -> {DRP}; www A {PRODUCTION} -> {DRP}"
    assert served("") == served("www") == {PRODUCTION}, "a plan changes nothing"
    if provider.needs_refresh:  # every write, then one refresh
        assert [op.split(" ")[0] for op in plan.operations] == ["PUT", "PUT", "POST"]
        assert plan.operations[-1].startswith(f"POST /domain/zone/{ZONE}/refresh")
    else:  # one UPDATE, its prerequisites the values read
        assert plan.operations[0] == f"UPDATE {ZONE} (one message, applied all or nothing):"
        assert f"  prerequisite www.{ZONE}. A is exactly {PRODUCTION}" in plan.operations

    done = provider.apply_zone(plan)
    assert done.applied and all(c.applied for c in done.changes)
    assert [c.after.targets for c in done.changes] == [(DRP,), (DRP,)]
    # Published at once: the name server answers both, with no refresh left to do.
    assert served("") == served("www") == {DRP}
    again = provider.plan_zone(ZONE, [("", "A", [DRP]), ("www", "A", [DRP])])
    assert not again and again.operations == ()
    assert again.reason == f"@ A {DRP} -> {DRP} (no change); www A {DRP} -> {DRP} (no change)"


def test_rfc2136_a_zone_changed_since_it_was_read_is_not_changed_at_all(
    knot: ChildDaemon, keys: Secrets
) -> None:
    provider = rfc2136_provider(keys)
    try:
        current = provider.read_records(ZONE, [("", "A"), ("www", "A")])
        plan = provider.plan_zone(ZONE, [("", "A", [DRP]), ("www", "A", [DRP])], current=current)
        provider.set_records(ZONE, "www", "A", ["127.0.10.99"])  # someone, meanwhile
        with pytest.raises(DnsError, match=r"zone drp-lab\.test changed since it was read .*"
                           "refused the update and changed nothing"):  # fmt: skip
            provider.apply_zone(plan)
        # The prerequisite on www failed: the apex, in the same UPDATE, was not changed either.
        assert served("") == {PRODUCTION}
        assert served("www") == {"127.0.10.99"}
    finally:
        restore_production(provider)


def _refreshes(ovh_root: Path) -> int:
    log = (ovh_root / "ovh.log").read_text()
    return log.count(f"POST /1.0/domain/zone/{ZONE}/refresh 200")


def test_ovh_a_failed_write_puts_back_the_ones_made_before_any_refresh(
    emulator: ChildDaemon, ovh_root: Path, keys: Secrets
) -> None:
    provider = ovh_provider(keys)
    assert served("") == served("www") == {PRODUCTION}
    faults = ovh_root / "state" / "faults.json"
    faults.write_text('{"method": "PUT", "pass": 1, "fail": 1}')  # the second PUT answers 500
    refreshes = _refreshes(ovh_root)
    try:
        plan = provider.plan_zone(ZONE, [("", "A", [DRP]), ("www", "A", [DRP])])
        with pytest.raises(DnsError) as caught:
            provider.apply_zone(plan)
        message = str(caught.value)
        assert message.startswith(f"OVH PUT /domain/zone/{ZONE}/record/")
        assert "InternalServerError" in message or "APIError" in message, message
        assert message.endswith(
            f"The 1 write(s) already made were put back and nothing was refreshed: zone {ZONE} "
            "is as it was. Run again once OVH answers."
        )
        assert not faults.exists(), "the fault was used"
        # The API holds the zone as it was, and the name server never saw half of the switch.
        assert provider.get_records(ZONE, "", "A").targets == (PRODUCTION,)
        assert provider.get_records(ZONE, "www", "A").targets == (PRODUCTION,)
        assert served("") == served("www") == {PRODUCTION}
        assert _refreshes(ovh_root) == refreshes, "no refresh after a failed write"
        # Once OVH answers again, the same switch goes through whole, with one refresh.
        done = provider.apply_zone(
            provider.plan_zone(ZONE, [("", "A", [DRP]), ("www", "A", [DRP])])
        )
        assert done.applied and served("") == served("www") == {DRP}
        assert _refreshes(ovh_root) == refreshes + 1
    finally:
        faults.unlink(missing_ok=True)
        restore_production(provider)


# --- Bad credentials: a DnsError that says what to check, and never the secret ----------------

WRONG = {
    "application_key": "0123456789abcdef",
    "application_secret": "wrong-application-secret-0001",
    "consumer_key": "wrong-consumer-key-0001",
    "key_name": "not-the-lab-key",
    "key_secret": base64.b64encode(b"wrong tsig secret, 32 bytes long").decode(),
}


@pytest.mark.parametrize(
    ("kind", "wrong", "hint"),
    [
        ("ovh", "application_key", "check the application key"),
        ("ovh", "application_secret", "check the application secret"),
        ("ovh", "consumer_key", "check the consumer key"),
        ("rfc2136", "key_secret", "check the key's secret and algorithm"),
        ("rfc2136", "key_name", "does not know key 'not-the-lab-key' or does not allow it"),
    ],
)
def test_bad_credentials_say_what_to_check_without_the_secret(
    request: pytest.FixtureRequest,
    knot: ChildDaemon,
    keys: Secrets,
    all_logs: pytest.LogCaptureFixture,
    kind: str,
    wrong: str,
    hint: str,
) -> None:
    if kind == "ovh":
        request.getfixturevalue("emulator")
        provider: BaseDnsProvider = ovh_provider(keys, **{wrong: WRONG[wrong]})
    else:
        provider = rfc2136_provider(keys, **{wrong: WRONG[wrong]})

    with pytest.raises(DnsError) as preflight:
        provider.check_credentials(ZONE)
    assert hint in str(preflight.value).lower()
    assert preflight.value.zone == ZONE

    # OVH fails on the first (signed) read; RFC 2136 reads with plain queries and fails on
    # the signed UPDATE.
    with pytest.raises(DnsError) as switch:
        provider.set_records(ZONE, "www", "A", [DRP])
    assert hint in str(switch.value).lower()
    assert f"zone {ZONE}, record www A" in str(switch.value)
    assert served("www") == {PRODUCTION}

    tracebacks = ["".join(traceback.format_exception(e.value)) for e in (preflight, switch)]
    texts = [str(preflight.value), str(switch.value), all_logs.text, repr(provider), *tracebacks]
    assert_no_secret(keys, *texts)
    if wrong not in ("application_key", "key_name"):  # identifiers may be named, secrets not
        assert not any(WRONG[wrong] in text for text in texts)


# --- Provider specifics ------------------------------------------------------------------------


def test_ovh_switch_is_one_put_in_place_then_a_refresh(
    emulator: ChildDaemon, keys: Secrets
) -> None:
    provider = ovh_provider(keys)
    try:
        plan = provider.describe_change(ZONE, "www", "A", [DRP])
        [put, refresh] = plan.operations
        assert put.startswith(f"PUT /domain/zone/{ZONE}/record/")
        assert put.endswith(f"target {PRODUCTION} -> {DRP}")
        assert refresh == f"POST /domain/zone/{ZONE}/refresh"
        record_id = put.split()[1].rsplit("/", 1)[1]
        provider.set_records(ZONE, "www", "A", [DRP])
        client = provider._api()
        assert client.get(f"/domain/zone/{ZONE}/record", fieldType="A", subDomain="www") == [
            int(record_id)
        ], "the record keeps its id"
    finally:
        restore_production(provider)


def test_ovh_several_targets_then_back_to_one(emulator: ChildDaemon, keys: Secrets) -> None:
    provider = ovh_provider(keys)
    try:
        both = provider.set_records(ZONE, "www", "A", [DRP, PRODUCTION])
        assert [op.split()[0] for op in both.operations] == ["POST", "POST"]  # add + refresh
        provider.refresh(ZONE)
        assert served("www") == {PRODUCTION, DRP}
        one = provider.set_records(ZONE, "www", "A", [DRP])
        assert [op.split()[0] for op in one.operations] == ["DELETE", "POST"]
        provider.refresh(ZONE)
        assert served("www") == {DRP}
    finally:
        restore_production(provider)


def test_ovh_ignores_ovh_environment_proxies_and_config_files(
    emulator: ChildDaemon, keys: Secrets, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    for name in ("APPLICATION_KEY", "APPLICATION_SECRET", "CONSUMER_KEY", "CLIENT_ID"):
        monkeypatch.setenv(f"OVH_{name}", "from-the-environment")
    monkeypatch.setenv("OVH_ENDPOINT", "ovh-eu")
    # A proxy that does not exist: a client that honoured it could not reach the emulator.
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.14.1:9")
    monkeypatch.setenv("http_proxy", "http://127.0.14.1:9")
    conf = tmp_path / "ovh.conf"
    conf.write_text("[drp-dns-contract]\napplication_secret=from-a-file\n")
    monkeypatch.setattr(ovh.config, "CONFIG_PATH", [str(conf)])
    monkeypatch.chdir(tmp_path)

    sentence = ovh_provider(keys).check_credentials(ZONE)
    assert sentence == (f"OVH endpoint {ENDPOINT}: zone {ZONE} readable (name servers: ns1.{ZONE})")


def test_ovh_unreachable_endpoint_says_so(keys: Secrets) -> None:
    provider = OvhDns(
        endpoint="drp-dns-nowhere",
        endpoint_url="http://127.0.14.61:9/1.0",
        application_key=keys.application_key,
        application_secret=keys.application_secret,
        consumer_key=keys.consumer_key,
        timeout=2,
    )
    with pytest.raises(DnsError) as caught:
        provider.get_records(ZONE, "www", "A")
    assert str(caught.value) == (
        f"OVH GET /domain/zone/{ZONE}/record?fieldType=A&subDomain=www failed (zone {ZONE}, "
        "record www A, endpoint drp-dns-nowhere): HTTPError: [Errno 111] Connection refused. "
        "Could not reach endpoint drp-dns-nowhere; check its URL and the network."
    )
    assert caught.value.call == f"GET /domain/zone/{ZONE}/record?fieldType=A&subDomain=www"


def test_rfc2136_primary_down_says_what_to_check(keys: Secrets) -> None:
    provider = Rfc2136Dns(
        primary="127.0.14.99", port=DNS_PORT, key_name=KEY_NAME, key_secret=keys.tsig, timeout=1
    )
    with pytest.raises(DnsError, match="check the primary's address and port"):
        provider.get_records(ZONE, "www", "A")
    with pytest.raises(DnsError, match="check the primary's address and port"):
        provider.check_credentials(ZONE)


def test_rfc2136_zone_not_served_says_so(knot: ChildDaemon, keys: Secrets) -> None:
    provider = rfc2136_provider(keys)
    with pytest.raises(DnsError, match=f"check that {DNS_ADDRESS}:{DNS_PORT} is the primary"):
        provider.get_records("other.test", "www", "A")
    with pytest.raises(DnsError, match=r"is the primary of other\.test"):
        provider.check_credentials("other.test")


def test_rfc2136_create_and_delete_a_record(knot: ChildDaemon, keys: Secrets) -> None:
    provider = rfc2136_provider(keys)
    created = provider.set_records(ZONE, "drp-check", "A", [DRP])
    assert created.reason == f"Create drp-check.{ZONE}. A {DRP} (ttl 60): done"
    assert served("drp-check") == {DRP}
    deleted = provider.set_records(ZONE, "drp-check", "A", [])
    assert deleted.after.targets == ()
    assert served("drp-check") == set()


# --- The running lab ---------------------------------------------------------------------------


def lab_providers(lab: LabHandle) -> tuple[OvhDns, Rfc2136Dns]:
    """Both providers on the lab, configured as config/lab.yaml does: the `drp-lab` endpoint,
    the lab's Knot as the RFC 2136 primary, keys from the lab's secrets file."""
    ovh_dns = OvhDns(
        endpoint=topology.OVH_ENDPOINT_NAME,
        endpoint_url=f"http://{topology.OVH_ADDRESS}:{topology.OVH_PORT}/1.0",
        application_key=lab.secrets["DRP_LAB_OVH_APPLICATION_KEY"],
        application_secret=Masked(lab.secrets["DRP_LAB_OVH_APPLICATION_SECRET"]),
        consumer_key=Masked(lab.secrets["DRP_LAB_OVH_CONSUMER_KEY"]),
        timeout=10,
    )
    rfc2136_dns = Rfc2136Dns(
        primary=topology.DNS_ADDRESS,
        port=topology.DNS_PORT,
        key_name=topology.TSIG_KEY_NAME,
        key_secret=Masked(lab.secrets["DRP_LAB_TSIG_SECRET"]),
        key_algorithm=topology.TSIG_ALGORITHM,
    )
    return ovh_dns, rfc2136_dns


def test_lab_zone_is_read_alike_by_both_providers_and_its_name_server(lab: LabHandle) -> None:
    ovh_dns, rfc2136_dns = lab_providers(lab)
    assert topology.ZONE in ovh_dns.check_credentials(topology.ZONE)
    assert topology.ZONE in rfc2136_dns.check_credentials(topology.ZONE)
    for name in ("www", ""):
        at_knot = rfc2136_dns.get_records(topology.ZONE, name, "A")
        assert at_knot.targets, f"the lab zone has an A record for {name or '@'}"
        assert ovh_dns.get_records(topology.ZONE, name, "A").targets == at_knot.targets
        # The lab's NS, ns1.drp-lab.test., resolves to the lab's Knot through Knot itself.
        report = wait_for_propagation(
            topology.ZONE, name, "A", at_knot.targets, resolver=topology.DNS_ADDRESS, timeout=0
        )
        assert report.complete, report.summary()
        assert [(s.name, s.address) for s in report.servers] == [
            (f"ns1.{topology.ZONE}.", topology.DNS_ADDRESS)
        ]


def test_lab_zone_switch_through_ovh_and_back(lab: LabHandle) -> None:
    """The lab's real path: OVH API (emulator) -> refresh -> Knot; left as it was found."""
    ovh_dns, _ = lab_providers(lab)
    found = ovh_dns.get_records(topology.ZONE, "www", "A")
    target = PRODUCTION if found.targets == (DRP,) else DRP
    try:
        change = ovh_dns.set_records(topology.ZONE, "www", "A", [target])
        assert change.applied and change.needs_refresh
        ovh_dns.refresh(topology.ZONE)
        report = wait_for_propagation(
            topology.ZONE, "www", "A", [target], resolver=topology.DNS_ADDRESS, timeout=10
        )
        assert report.complete, report.summary()
    finally:
        ovh_dns.set_records(topology.ZONE, "www", "A", found.targets, ttl=found.ttl)
        ovh_dns.refresh(topology.ZONE)
    back = wait_for_propagation(
        topology.ZONE, "www", "A", found.targets, resolver=topology.DNS_ADDRESS, timeout=10
    )
    assert back.complete, back.summary()


def test_rfc2136_key_outside_the_update_acl_says_to_check_the_acl(
    tmp_path: Path, keys: Secrets
) -> None:
    # A server that knows a second key but grants updates only to the lab key.
    other = base64.b64encode(os.urandom(32)).decode()
    layout = KnotLayout(tmp_path / "dns", "127.0.14.70", DNS_PORT, "acl.drp-check.test", DRP)
    description = knot_daemon_for(layout, keys.tsig)
    conf = layout.conf_path.read_text()
    extra_key = f"  - id: read-only-key\n    algorithm: hmac-sha256\n    secret: {other}\n"
    layout.conf_path.write_text(conf.replace("key:\n", "key:\n" + extra_key, 1))
    daemon = ChildDaemon(description, tmp_path / "knot.log").start()
    try:
        provider = Rfc2136Dns(
            primary="127.0.14.70", port=DNS_PORT, key_name="read-only-key", key_secret=other
        )
        with pytest.raises(DnsError) as caught:
            provider.set_records("acl.drp-check.test", "www", "A", [PRODUCTION])
        assert "check the key name and the server's update ACL for the zone" in str(caught.value)
        assert other not in str(caught.value)
        assert provider.get_records("acl.drp-check.test", "www", "A").targets == (DRP,)
    finally:
        daemon.stop()


def test_rfc2136_silent_primary_times_out_with_a_hint(keys: Secrets) -> None:
    # A primary that accepts connections and never answers (hung, or firewalled mid-way).
    with socket.socket() as hung:
        hung.bind(("127.0.14.98", DNS_PORT))
        hung.listen()
        provider = Rfc2136Dns(
            primary="127.0.14.98",
            port=DNS_PORT,
            key_name=KEY_NAME,
            key_secret=keys.tsig,
            timeout=0.5,
        )
        started = time.monotonic()
        with pytest.raises(DnsError) as caught:
            provider.set_records(ZONE, "www", "A", [DRP])
        assert time.monotonic() - started < 3
    assert str(caught.value) == (
        "query www A to 127.0.14.98:5354 failed (zone drp-lab.test, record www A): no answer "
        "within 0.5 s; check the primary's address and port, and that it is running"
    )
