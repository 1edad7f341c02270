"""From the emulator's records to the DNS update that makes the Knot zone equal them."""

from __future__ import annotations

import base64

import dns.name
import dns.rdatatype
import dns.tsig
import dns.zone
import pytest

from lab.zone_sync import (
    DnsServer,
    Record,
    parse_target,
    records_from_zone,
    rrsets_of_records,
    rrsets_of_zone,
    sync_update,
)

ZONE = "drp-lab.test"
ORIGIN = dns.name.from_text(ZONE)
SERVER = DnsServer(
    "127.0.11.53", 5300, ZONE, dns.tsig.Key("k", base64.b64encode(b"x" * 32).decode())
)
ZONE_TEXT = """\
@ 60 IN SOA ns1 hostmaster 7 3600 600 86400 60
@ 60 IN NS ns1
@ 60 IN A 127.0.10.1
ns1 60 IN A 127.0.10.53
www 60 IN A 127.0.10.1
old 60 IN A 127.0.10.9
"""


def served_zone() -> dns.zone.Zone:
    return dns.zone.from_text(ZONE_TEXT, origin=ZONE, relativize=False)


def test_imported_records_skip_the_soa_and_use_absolute_targets() -> None:
    records = records_from_zone(served_zone(), first_id=100)
    assert [(r.id, r.sub_domain, r.field_type, r.target, r.ttl) for r in records] == [
        (100, "", "A", "127.0.10.1", 60),
        (101, "", "NS", "ns1.drp-lab.test.", 60),
        (102, "ns1", "A", "127.0.10.53", 60),
        (103, "old", "A", "127.0.10.9", 60),
        (104, "www", "A", "127.0.10.1", 60),
    ]


def test_rrset_takes_the_smallest_ttl_and_zero_means_the_zone_default() -> None:
    rrsets = rrsets_of_records(
        [
            Record(1, "www", "A", "127.0.10.1", 300),
            Record(2, "www", "A", "127.0.10.4", 120),
            Record(3, "api", "A", "127.0.10.4", 0),
        ],
        ORIGIN,
    )
    www = rrsets[(dns.name.from_text("www", ORIGIN), dns.rdatatype.A)]
    assert www.ttl == 120
    assert {r.to_text() for r in www} == {"127.0.10.1", "127.0.10.4"}
    assert rrsets[(dns.name.from_text("api", ORIGIN), dns.rdatatype.A)].ttl == 60


def test_relative_targets_are_in_the_zone_and_txt_needs_no_quotes() -> None:
    assert parse_target("CNAME", "www", ORIGIN).to_text() == "www.drp-lab.test."
    assert parse_target("CNAME", "example.org.", ORIGIN).to_text() == "example.org."
    assert parse_target("TXT", 'say "hi" there', ORIGIN).to_text() == '"say \\"hi\\" there"'


def test_bad_target_is_refused_with_the_type() -> None:
    with pytest.raises(ValueError, match="for a A record"):
        parse_target("A", "drp", ORIGIN)


def test_update_replaces_what_changed_deletes_what_is_gone_and_leaves_soa() -> None:
    records = records_from_zone(served_zone(), first_id=1)
    wanted = [r for r in records if r.sub_domain != "old"]
    wanted = [
        Record(r.id, r.sub_domain, r.field_type, "127.0.10.4", r.ttl)
        if r.sub_domain == "www"
        else r
        for r in wanted
    ] + [Record(99, "new", "A", "127.0.10.4", 60)]

    update, changes = sync_update(
        SERVER, rrsets_of_zone(served_zone()), rrsets_of_records(wanted, ORIGIN)
    )

    assert changes == 3
    text = update.to_text()
    assert "www.drp-lab.test. 60 IN A 127.0.10.4" in text
    assert "new.drp-lab.test. 60 IN A 127.0.10.4" in text
    assert "old.drp-lab.test. ANY A" in text
    assert "SOA" not in text.split(";UPDATE")[1]
    assert "ns1.drp-lab.test. 60 IN A" not in text  # unchanged RRsets are left alone


def test_no_update_when_records_equal_the_zone() -> None:
    records = records_from_zone(served_zone(), first_id=1)
    _, changes = sync_update(
        SERVER, rrsets_of_zone(served_zone()), rrsets_of_records(records, ORIGIN)
    )
    assert changes == 0
