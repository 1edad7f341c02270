"""Names, values, plans and guards shared by the DNS providers."""

from __future__ import annotations

import dns.rcode
import pytest

from providers.dns_base import (
    DnsError,
    RecordChange,
    RecordSet,
    RootNsChange,
    guard_record_change,
    normalize_targets,
    plan_record_change,
    relative_name,
    reveal_secret,
    scrub,
)
from providers.rfc2136_dns import rcode_hint

ZONE = "drp-lab.test"
PRODUCTION = "127.0.10.1"
DRP = "127.0.10.4"


class Masked:
    """A masked secret as the config layer hands it over."""

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "***"


@pytest.mark.parametrize(
    ("name", "relative"),
    [
        ("", ""),
        ("@", ""),
        ("www", "www"),
        ("WWW", "www"),
        ("drp-lab.test.", ""),
        ("www.drp-lab.test.", "www"),
        ("a.b.DRP-LAB.test.", "a.b"),
    ],
)
def test_relative_name(name: str, relative: str) -> None:
    assert relative_name("DRP-LAB.test.", name) == relative


def test_absolute_name_outside_the_zone_is_refused() -> None:
    with pytest.raises(DnsError, match=r"'www\.example\.com\.' is not in zone drp-lab\.test"):
        relative_name(ZONE, "www.example.com.")
    with pytest.raises(DnsError, match="not in zone"):
        relative_name(ZONE, "xdrp-lab.test.")


def test_targets_are_a_sorted_set_in_canonical_form() -> None:
    assert normalize_targets("A", [" 127.0.10.4", "127.0.10.1", "127.0.10.4"]) == (
        PRODUCTION,
        DRP,
    )
    assert normalize_targets("AAAA", ["2001:DB8:0::1"]) == ("2001:db8::1",)
    assert normalize_targets("CNAME", ["Web.Example.COM"]) == ("web.example.com.",)


@pytest.mark.parametrize(
    ("rtype", "target", "message"),
    [
        ("A", "drp.example.com", "'drp.example.com' is not an IP address"),
        ("A", "2001:db8::1", "is an IPv6 address, not for an A"),
        ("AAAA", "192.0.2.1", "is an IPv4 address, not for an AAAA"),
    ],
)
def test_targets_that_do_not_fit_the_type_are_refused(
    rtype: str, target: str, message: str
) -> None:
    with pytest.raises(DnsError, match=message):
        normalize_targets(rtype, [target])


def _set(*targets: str, ttl: int | None = 60, name: str = "www") -> RecordSet:
    return RecordSet(ZONE, name, "A", tuple(targets), ttl if targets else None)


def test_plan_already_at_target_says_so() -> None:
    wanted, reason = plan_record_change(_set(DRP), [DRP])
    assert wanted == _set(DRP)
    assert reason == "www.drp-lab.test. A 127.0.10.4 (ttl 60) already: nothing to do"


def test_plan_change_keeps_the_ttl_unless_given() -> None:
    wanted, reason = plan_record_change(_set(PRODUCTION), [DRP])
    assert wanted == _set(DRP, ttl=60)
    assert reason == "change www.drp-lab.test. A 127.0.10.1 (ttl 60) -> 127.0.10.4"

    wanted, reason = plan_record_change(_set(PRODUCTION), [DRP], ttl=30)
    assert wanted.ttl == 30
    assert reason.endswith("-> 127.0.10.4 (ttl 60 -> 30)")

    wanted, reason = plan_record_change(_set(DRP), [DRP], ttl=30)
    assert reason == "change www.drp-lab.test. A 127.0.10.4 (ttl 60) -> 127.0.10.4 (ttl 60 -> 30)"


def test_plan_create_uses_the_default_ttl_and_delete_clears_it() -> None:
    wanted, reason = plan_record_change(_set(), [DRP], default_ttl=300)
    assert wanted == _set(DRP, ttl=300)
    assert reason == "create www.drp-lab.test. A 127.0.10.4 (ttl 300)"

    wanted, reason = plan_record_change(_set(PRODUCTION), [])
    assert wanted == _set()
    assert reason == "delete www.drp-lab.test. A 127.0.10.1 (ttl 60)"


def test_record_change_is_truthy_only_when_something_changes() -> None:
    same = RecordChange(before=_set(DRP), after=_set(DRP), reason="already")
    assert not same
    assert not same.changed
    moved = RecordChange(before=_set(PRODUCTION), after=_set(DRP), reason="change")
    assert moved
    assert moved.target == "drp-lab.test www A"
    assert moved.data["before"]["targets"] == [PRODUCTION]
    assert moved.data["after"]["targets"] == [DRP]
    assert RecordChange(before=_set(DRP), after=_set(DRP, ttl=30), reason="ttl")


@pytest.mark.parametrize("rtype", ["NS", "SOA", "ns"])
def test_apex_ns_and_soa_are_refused_with_a_named_error(rtype: str) -> None:
    with pytest.raises(RootNsChange) as caught:
        guard_record_change(ZONE, "", rtype)
    assert "apex of zone drp-lab.test" in str(caught.value)
    assert "DNS provider's console" in str(caught.value)
    assert caught.value.record == f"@ {rtype.upper()}"


def test_delegation_ns_below_the_apex_is_not_the_root_guard() -> None:
    guard_record_change(ZONE, "sub", "NS")
    guard_record_change(ZONE, "", "A")


def test_secrets_are_revealed_from_strings_and_masked_values() -> None:
    assert reveal_secret("plain") == "plain"
    assert reveal_secret(Masked("hidden-value")) == "hidden-value"


def test_scrub_replaces_every_secret() -> None:
    text = "key abcdef123 and secret s3cr3t-value, again abcdef123"
    assert scrub(text, ["abcdef123", "s3cr3t-value", ""]) == "key *** and secret ***, again ***"


@pytest.mark.parametrize(
    ("rcode", "expected"),
    [
        (dns.rcode.REFUSED, "check that its ACL for zone drp-lab.test allows updates signed with"),
        (dns.rcode.NOTAUTH, "check that it is the zone's primary and that the key name"),
        (dns.rcode.NOTZONE, "not inside zone drp-lab.test"),
        (dns.rcode.SERVFAIL, "see its log"),
    ],
)
def test_update_error_codes_say_what_to_check(rcode: dns.rcode.Rcode, expected: str) -> None:
    assert expected in rcode_hint(rcode, "drp-lab-key", ZONE, "127.0.10.53:53")
