"""The OVH provider's decisions: which API calls a change takes, error hints, and a client
that reads no credentials but the ones it is given."""

from __future__ import annotations

import os
from pathlib import Path

import ovh
import ovh.config
import ovh.exceptions
import pytest

from providers.dns_base import DnsError, RecordSet
from providers.ovh_dns import (
    OvhCall,
    OvhDns,
    OvhRecord,
    _ExplicitOvhClient,
    ovh_error_hint,
    plan_ovh_calls,
    record_set_of,
)

ZONE = "drp-lab.test"
RECORDS = f"/domain/zone/{ZONE}/record"
PRODUCTION = "127.0.10.1"
DRP = "127.0.10.4"
OTHER = "127.0.10.9"


def _www(*targets: str, ttl: int | None = 60, name: str = "www") -> RecordSet:
    return RecordSet(ZONE, name, "A", tuple(sorted(targets)), ttl if targets else None)


def _rec(record_id: int, target: str, ttl: int = 60, name: str = "www") -> OvhRecord:
    return OvhRecord(record_id, name, "A", target, ttl)


def test_one_address_switch_is_one_put_in_place() -> None:
    calls = plan_ovh_calls([_rec(7, PRODUCTION)], _www(DRP))
    assert calls == [
        OvhCall(
            "PUT",
            f"{RECORDS}/7",
            {"target": DRP, "ttl": 60},
            f"PUT {RECORDS}/7 target {PRODUCTION} -> {DRP}",
        )
    ]


def test_records_already_right_are_left_alone() -> None:
    assert plan_ovh_calls([_rec(7, DRP)], _www(DRP)) == []
    calls = plan_ovh_calls([_rec(7, DRP), _rec(8, PRODUCTION)], _www(DRP, OTHER))
    assert [(c.method, c.path, c.body) for c in calls] == [
        ("PUT", f"{RECORDS}/8", {"target": OTHER, "ttl": 60})
    ]


def test_fewer_targets_put_then_delete_the_rest() -> None:
    calls = plan_ovh_calls([_rec(9, OTHER), _rec(7, PRODUCTION)], _www(DRP))
    assert [(c.method, c.path, c.body) for c in calls] == [
        ("PUT", f"{RECORDS}/7", {"target": DRP, "ttl": 60}),
        ("DELETE", f"{RECORDS}/9", None),
    ]
    assert calls[1].description == f"DELETE {RECORDS}/9 (www A {OTHER})"


def test_more_targets_put_then_post_the_rest() -> None:
    calls = plan_ovh_calls([_rec(7, PRODUCTION)], _www(DRP, OTHER))
    assert [(c.method, c.path, c.body) for c in calls] == [
        ("PUT", f"{RECORDS}/7", {"target": DRP, "ttl": 60}),
        ("POST", RECORDS, {"fieldType": "A", "subDomain": "www", "target": OTHER, "ttl": 60}),
    ]


def test_apex_is_the_empty_subdomain() -> None:
    calls = plan_ovh_calls([], _www(DRP, name=""))
    assert [(c.method, c.body) for c in calls] == [
        ("POST", {"fieldType": "A", "subDomain": "", "target": DRP, "ttl": 60})
    ]
    assert calls[0].description == f"POST {RECORDS} @ A {DRP} ttl 60"


def test_ttl_only_change_puts_the_same_target() -> None:
    calls = plan_ovh_calls([_rec(7, DRP, ttl=3600)], _www(DRP, ttl=60))
    assert [(c.method, c.path, c.body) for c in calls] == [
        ("PUT", f"{RECORDS}/7", {"target": DRP, "ttl": 60})
    ]
    assert calls[0].description == f"PUT {RECORDS}/7 ttl 3600 -> 60 ({DRP})"


def test_no_ttl_wanted_sends_none() -> None:
    [call] = plan_ovh_calls([], _www(DRP, ttl=None))
    assert call.body == {"fieldType": "A", "subDomain": "www", "target": DRP}


def test_deleting_the_set_deletes_every_record() -> None:
    calls = plan_ovh_calls([_rec(7, PRODUCTION), _rec(8, DRP)], _www())
    assert [(c.method, c.path) for c in calls] == [
        ("DELETE", f"{RECORDS}/7"),
        ("DELETE", f"{RECORDS}/8"),
    ]


def test_record_set_takes_the_smallest_ttl_and_sorted_targets() -> None:
    got = record_set_of(ZONE, "www", "A", [_rec(8, DRP, ttl=300), _rec(7, PRODUCTION, ttl=60)])
    assert got == RecordSet(ZONE, "www", "A", (PRODUCTION, DRP), 60)
    assert record_set_of(ZONE, "www", "A", []) == RecordSet(ZONE, "www", "A", (), None)


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (ovh.exceptions.InvalidKey("Invalid application key"), "check the application key"),
        (ovh.exceptions.NotCredential("This credential does not exist"), "check the consumer key"),
        (ovh.exceptions.NotGrantedCall("not granted"), "GET/PUT/POST/DELETE on /domain/zone/"),
        (ovh.exceptions.ResourceNotFoundError("no"), "zone drp-lab.test (or the record)"),
        (ovh.exceptions.HTTPError("Low HTTP request failed error"), "could not reach endpoint"),
    ],
)
def test_error_hints_say_what_to_check(error: Exception, expected: str) -> None:
    assert expected in ovh_error_hint(error, "drp-lab", ZONE)


@pytest.fixture
def hostile_ovh_configuration(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """Everything ovh.Client would pick up by itself: OVH_* variables (OAuth2 ones included)
    and an ovh.conf file that is not even valid."""
    monkeypatch.setenv("OVH_ENDPOINT", "ovh-ca")
    monkeypatch.setenv("OVH_APPLICATION_KEY", "env-app-key")
    monkeypatch.setenv("OVH_APPLICATION_SECRET", "env-app-secret")
    monkeypatch.setenv("OVH_CONSUMER_KEY", "env-consumer-key")
    monkeypatch.setenv("OVH_CLIENT_ID", "env-client-id")
    monkeypatch.setenv("OVH_CLIENT_SECRET", "env-client-secret")
    conf = tmp_path / "ovh.conf"
    conf.write_text("this is not an ini file\n")
    monkeypatch.setattr(ovh.config, "CONFIG_PATH", [str(conf)])
    return conf


def test_official_client_reads_the_environment_and_files_even_with_every_key(
    hostile_ovh_configuration: Path,
) -> None:
    # Why the provider builds its own: the official constructor parses ovh.conf and takes
    # OVH_CLIENT_ID even when application key, secret and consumer key are all given.
    with pytest.raises(Exception, match="File contains no section headers"):
        ovh.Client("ovh-eu", "app-key", "app-secret", "consumer-key")
    hostile_ovh_configuration.write_text("[default]\n")
    with pytest.raises(ovh.exceptions.InvalidConfiguration, match="Can't use both"):
        ovh.Client("ovh-eu", "app-key", "app-secret", "consumer-key")


def test_provider_uses_only_the_keys_it_is_given(hostile_ovh_configuration: Path) -> None:
    provider = OvhDns(
        endpoint="ovh-eu",
        application_key="app-key",
        application_secret="app-secret",
        consumer_key="consumer-key",
    )
    client = provider._api()
    assert (client._endpoint, client._application_key) == ("https://eu.api.ovh.com/1.0", "app-key")
    assert (client._application_secret, client._consumer_key) == ("app-secret", "consumer-key")
    assert client._oauth2 is None
    assert client._session.trust_env is False  # no *_PROXY variables, no ~/.netrc


def test_explicit_client_sets_everything_the_official_one_does(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Guards an ovh upgrade: a new attribute in ovh.Client.__init__ must be set here too.
    assert not any(name.startswith("OVH_") for name in os.environ)
    monkeypatch.setattr(ovh.config, "CONFIG_PATH", [])  # never the operator's ovh.conf
    official = ovh.Client("ovh-eu", "app-key", "app-secret", "consumer-key")
    ours = _ExplicitOvhClient(ovh.client.ENDPOINTS["ovh-eu"], "app-key", "app-secret", "ck", 5.0)
    assert set(vars(ours)) == set(vars(official))


def test_unknown_endpoint_names_the_known_ones() -> None:
    with pytest.raises(DnsError, match=r"unknown OVH endpoint 'nowhere'; known: .*ovh-eu"):
        OvhDns(endpoint="nowhere", application_key="k", application_secret="s", consumer_key="c")


def test_repr_shows_no_key() -> None:
    provider = OvhDns(
        endpoint="ovh-eu",
        application_key="app-key-123",
        application_secret="app-secret-456",
        consumer_key="consumer-key-789",
    )
    shown = repr(provider)
    assert "ovh-eu" in shown
    assert not any(k in shown for k in ("app-key-123", "app-secret-456", "consumer-key-789"))


def test_provider_capabilities() -> None:
    assert OvhDns.needs_refresh is True
    assert OvhDns.kind == "ovh"
    assert "NS" not in OvhDns.supported_types
