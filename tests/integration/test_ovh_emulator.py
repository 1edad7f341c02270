"""The OVH API emulator, driven by the official `ovh` client, in front of a real Knot server."""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import dns.message
import dns.query
import ovh
import ovh.config
import pytest
import requests

from lab.child_daemon import ChildDaemon
from lab.knot import KnotLayout, knot_daemon_for
from lab.ovh_emulator import SECRET_ENV, ovh_daemon_for
from lab.secrets import GENERATORS
from providers.ovh_endpoint import register_endpoint

ZONE = "drp-lab.test"
DNS_ADDRESS = "127.0.11.54"
DNS_PORT = 5300
OVH_ADDRESS = "127.0.11.60"
OVH_PORT = 8080
ENDPOINT = "drp-lab-tests"
ENDPOINT_URL = f"http://{OVH_ADDRESS}:{OVH_PORT}/1.0"
PRODUCTION = "127.0.10.1"
DRP = "127.0.10.4"
RECORDS = f"/domain/zone/{ZONE}/record"


@pytest.fixture(autouse=True)
def _no_ovh_configuration(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """ovh.Client reads OVH_* variables and ovh.conf files even when given every parameter
    (it looks up client_id/client_secret). ovh.config fixed its file list at import, from the
    HOME and cwd of that moment: point it at this test's empty HOME and cwd instead."""
    for name in list(os.environ):
        if name.startswith("OVH_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    config_files = [str(Path.home() / ".ovh.conf"), str(tmp_path / "ovh.conf")]
    monkeypatch.setattr(ovh.config, "CONFIG_PATH", config_files)
    assert not any(Path(p).exists() for p in config_files)


def new_lab_secrets() -> dict[str, str]:
    return {name: GENERATORS[name]() for name in SECRET_ENV}


@pytest.fixture(scope="module")
def lab_secrets() -> dict[str, str]:
    return new_lab_secrets()


@pytest.fixture(scope="module")
def knot(
    tmp_path_factory: pytest.TempPathFactory, lab_secrets: dict[str, str]
) -> Iterator[ChildDaemon]:
    root = tmp_path_factory.mktemp("knot")
    knot_layout = KnotLayout(root / "dns", DNS_ADDRESS, DNS_PORT, ZONE, PRODUCTION)
    daemon = knot_daemon_for(knot_layout, lab_secrets["DRP_LAB_TSIG_SECRET"])
    running = ChildDaemon(daemon, root / "knot.log")
    yield running.start()
    running.stop()


@pytest.fixture(scope="module")
def emulator(
    tmp_path_factory: pytest.TempPathFactory, knot: ChildDaemon, lab_secrets: dict[str, str]
) -> Iterator[ChildDaemon]:
    root = tmp_path_factory.mktemp("ovh")
    daemon = ovh_daemon_for(
        (OVH_ADDRESS, OVH_PORT), root / "state", ZONE, (DNS_ADDRESS, DNS_PORT), lab_secrets
    )
    running = ChildDaemon(daemon, root / "ovh.log")
    yield running.start()
    running.stop()


def client(lab_secrets: dict[str, str], **overrides: str) -> ovh.Client:
    register_endpoint(ENDPOINT, ENDPOINT_URL)
    settings = {
        "application_key": lab_secrets["DRP_LAB_OVH_APPLICATION_KEY"],
        "application_secret": lab_secrets["DRP_LAB_OVH_APPLICATION_SECRET"],
        "consumer_key": lab_secrets["DRP_LAB_OVH_CONSUMER_KEY"],
    } | overrides
    return ovh.Client(endpoint=ENDPOINT, timeout=10, **settings)


class TenMinutesLateClient(ovh.Client):
    """A client whose idea of the API's clock is ten minutes behind."""

    @property
    def time_delta(self) -> int:
        return super().time_delta - 600


@pytest.fixture
def api(emulator: ChildDaemon, lab_secrets: dict[str, str]) -> ovh.Client:
    return client(lab_secrets)


def record_ids(api: ovh.Client) -> list[int]:
    return api.get(RECORDS)


def create(api: ovh.Client, sub_domain: str, target: str, field_type: str = "A") -> int:
    record = api.post(RECORDS, fieldType=field_type, subDomain=sub_domain, target=target, ttl=60)
    return record["id"]


def served(name: str) -> set[str]:
    """The A records Knot serves for name in the zone (empty when it has none)."""
    query = dns.message.make_query(f"{name}.{ZONE}", "A")
    response = dns.query.udp(query, DNS_ADDRESS, port=DNS_PORT, timeout=2)
    return {rdata.to_text() for rrset in response.answer for rdata in rrset}


# --- What a correct client can do ---------------------------------------------------------------


def test_auth_time_is_unsigned_and_gives_the_server_clock(emulator: ChildDaemon) -> None:
    reply = requests.get(f"{ENDPOINT_URL}/auth/time", timeout=5)
    assert reply.status_code == 200
    assert abs(reply.json() - time.time()) < 5


def test_zone_and_records_imported_from_knot(api: ovh.Client) -> None:
    zone = api.get(f"/domain/zone/{ZONE}")
    assert zone["name"] == ZONE
    assert zone["nameServers"] == [f"ns1.{ZONE}"]
    [www] = api.get(RECORDS, fieldType="A", subDomain="www")
    assert api.get(f"{RECORDS}/{www}") == {
        "id": www,
        "zone": ZONE,
        "subDomain": "www",
        "fieldType": "A",
        "target": PRODUCTION,
        "ttl": 60,
    }
    [apex] = api.get(RECORDS, fieldType="A", subDomain="")
    assert api.get(f"{RECORDS}/{apex}")["target"] == PRODUCTION
    a_targets = {api.get(f"{RECORDS}/{i}")["target"] for i in api.get(RECORDS, fieldType="A")}
    assert a_targets == {PRODUCTION, DNS_ADDRESS}
    [ns] = api.get(RECORDS, fieldType="NS")
    assert api.get(f"{RECORDS}/{ns}")["target"] == f"ns1.{ZONE}."
    assert api.get(RECORDS, fieldType="A", subDomain="nothing-here") == []


def test_create_update_delete_record(api: ovh.Client) -> None:
    created = api.post(RECORDS, fieldType="A", subDomain="crud", target=PRODUCTION, ttl=120)
    record_id = created["id"]
    assert created == {
        "id": record_id,
        "zone": ZONE,
        "subDomain": "crud",
        "fieldType": "A",
        "target": PRODUCTION,
        "ttl": 120,
    }
    assert api.get(RECORDS, subDomain="crud") == [record_id]
    assert api.put(f"{RECORDS}/{record_id}", target=DRP, ttl=60) is None
    assert api.get(f"{RECORDS}/{record_id}")["target"] == DRP
    assert api.get(f"{RECORDS}/{record_id}")["ttl"] == 60
    assert api.delete(f"{RECORDS}/{record_id}") is None
    with pytest.raises(
        ovh.exceptions.ResourceNotFoundError,
        match=rf"The requested object \(id = {record_id}\) does not exist",
    ):
        api.get(f"{RECORDS}/{record_id}")
    assert record_id not in record_ids(api)


def test_record_changes_reach_knot_only_on_refresh(api: ovh.Client) -> None:
    record_id = create(api, "switch", PRODUCTION)
    assert served("switch") == set()
    assert api.post(f"/domain/zone/{ZONE}/refresh") is None
    assert served("switch") == {PRODUCTION}

    api.put(f"{RECORDS}/{record_id}", target=DRP)
    assert served("switch") == {PRODUCTION}
    api.post(f"/domain/zone/{ZONE}/refresh")
    assert served("switch") == {DRP}

    api.delete(f"{RECORDS}/{record_id}")
    assert served("switch") == {DRP}
    api.post(f"/domain/zone/{ZONE}/refresh")
    assert served("switch") == set()


def test_refresh_leaves_soa_to_knot(api: ovh.Client) -> None:
    def soa() -> tuple[str, str, int]:
        query = dns.message.make_query(ZONE, "SOA")
        rdata = dns.query.udp(query, DNS_ADDRESS, port=DNS_PORT, timeout=2).answer[0][0]
        return rdata.mname.to_text(), rdata.rname.to_text(), rdata.serial

    mname, rname, serial = soa()
    create(api, "soa-check", DRP)
    api.post(f"/domain/zone/{ZONE}/refresh")
    assert soa() == (mname, rname, serial + 1)


def test_bad_parameters_are_refused(api: ovh.Client) -> None:
    before = record_ids(api)
    with pytest.raises(ovh.exceptions.BadParametersError, match="DomainZoneFieldTypeEnum"):
        api.post(RECORDS, fieldType="BOGUS", subDomain="x", target=DRP)
    with pytest.raises(ovh.exceptions.BadParametersError, match="A record"):
        api.post(RECORDS, fieldType="A", subDomain="x", target="not-an-address")
    with pytest.raises(ovh.exceptions.BadParametersError, match="target"):
        api.post(RECORDS, fieldType="A", subDomain="x")
    assert record_ids(api) == before
    [www] = api.get(RECORDS, fieldType="A", subDomain="www")
    with pytest.raises(ovh.exceptions.BadParametersError, match="fieldType"):
        api.put(f"{RECORDS}/{www}", fieldType="AAAA", target="::1")
    assert api.get(f"{RECORDS}/{www}")["fieldType"] == "A"


def test_unknown_path_is_not_found(api: ovh.Client) -> None:
    with pytest.raises(ovh.exceptions.ResourceNotFoundError, match="invalid"):
        api.get("/domain/zone/drp-lab.test/nothing")


def test_unknown_zone_does_not_exist(api: ovh.Client) -> None:
    with pytest.raises(ovh.exceptions.ResourceNotFoundError, match="This service does not exist"):
        api.get("/domain/zone/example.org/record")


# --- What OVH refuses ---------------------------------------------------------------------------


def test_wrong_application_secret_is_an_invalid_signature(
    emulator: ChildDaemon, lab_secrets: dict[str, str], api: ovh.Client
) -> None:
    before = record_ids(api)
    forger = client(lab_secrets, application_secret="not-the-secret")
    with pytest.raises(ovh.exceptions.BadParametersError, match="Invalid signature"):
        forger.post(RECORDS, fieldType="A", subDomain="forged", target=DRP)
    assert record_ids(api) == before


def test_stale_timestamp_is_out_of_time(emulator: ChildDaemon, lab_secrets: dict[str, str]) -> None:
    late = TenMinutesLateClient(
        endpoint=ENDPOINT,
        application_key=lab_secrets["DRP_LAB_OVH_APPLICATION_KEY"],
        application_secret=lab_secrets["DRP_LAB_OVH_APPLICATION_SECRET"],
        consumer_key=lab_secrets["DRP_LAB_OVH_CONSUMER_KEY"],
        timeout=10,
    )
    with pytest.raises(ovh.exceptions.BadParametersError, match="Query out of time"):
        late.get(f"/domain/zone/{ZONE}")


def test_unknown_consumer_key_is_not_a_credential(
    emulator: ChildDaemon, lab_secrets: dict[str, str]
) -> None:
    stranger = client(lab_secrets, consumer_key="unknown-consumer-key")
    with pytest.raises(ovh.exceptions.NotCredential, match="This credential does not exist"):
        stranger.get(f"/domain/zone/{ZONE}")


def test_unknown_application_key_is_invalid(
    emulator: ChildDaemon, lab_secrets: dict[str, str]
) -> None:
    stranger = client(lab_secrets, application_key="unknown-application")
    with pytest.raises(ovh.exceptions.InvalidKey, match="Invalid application key"):
        stranger.get(f"/domain/zone/{ZONE}")


# --- The process --------------------------------------------------------------------------------


def test_state_survives_a_restart(emulator: ChildDaemon, api: ovh.Client) -> None:
    record_id = create(api, "kept", DRP)
    emulator.restart()
    assert api.get(f"{RECORDS}/{record_id}")["target"] == DRP
    assert create(api, "after-restart", DRP) > record_id


def test_log_has_requests_but_no_secret(
    emulator: ChildDaemon, api: ovh.Client, lab_secrets: dict[str, str]
) -> None:
    api.get(RECORDS, fieldType="A")
    log = emulator.log()
    assert f"GET /1.0{RECORDS}?fieldType=A 200" in log
    for value in lab_secrets.values():
        assert value not in log
    assert "$1$" not in log


def test_refuses_to_start_without_its_keys(tmp_path: Path) -> None:
    argv = ovh_daemon_for(
        ("127.0.11.61", OVH_PORT), tmp_path, ZONE, (DNS_ADDRESS, DNS_PORT), new_lab_secrets()
    ).argv
    env = {k: v for k, v in os.environ.items() if not k.startswith("DRP_LAB_")}
    result = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=30)
    assert result.returncode == 2
    assert "DRP_LAB_OVH_APPLICATION_KEY" in result.stderr
