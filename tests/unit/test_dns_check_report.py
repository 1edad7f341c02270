"""The propagation check's decision: which server answers what, matched or not, and since when."""

from __future__ import annotations

from providers.dns_check import (
    AuthoritativeServer,
    Probe,
    PropagationTimeout,
    build_report,
    evaluate_answer,
)

ZONE = "drp-lab.test"
PRODUCTION = "127.0.10.1"
DRP = "127.0.10.4"
NS1 = AuthoritativeServer("ns1.drp-lab.test.", "127.0.10.53")
NS2 = AuthoritativeServer("ns2.drp-lab.test.", "127.0.10.54", 5353)


def test_a_server_matches_only_the_exact_targets() -> None:
    assert evaluate_answer((DRP,), Probe(NS1, (DRP,)))
    assert not evaluate_answer((DRP,), Probe(NS1, (PRODUCTION,)))
    assert not evaluate_answer((DRP,), Probe(NS1, (PRODUCTION, DRP)))
    assert not evaluate_answer((DRP,), Probe(NS1, (), "no answer within 2 s"))
    assert evaluate_answer((), Probe(NS1, ()))  # a deleted record: no record is the match


def test_report_gives_each_server_its_answer_and_time_to_match() -> None:
    probes = [
        Probe(NS1, (PRODUCTION,), at=0.0),
        Probe(NS2, (PRODUCTION,), at=0.0),
        Probe(NS1, (DRP,), at=1.5),
        Probe(NS2, (PRODUCTION,), at=1.5),
    ]
    report = build_report(ZONE, "www", "A", [DRP], [NS1, NS2], probes, elapsed=1.6)
    assert not report.complete
    ns1, ns2 = report.servers
    assert (ns1.address, ns1.answer, ns1.matched, ns1.seconds_to_match) == (
        "127.0.10.53",
        (DRP,),
        True,
        1.5,
    )
    assert (ns2.answer, ns2.matched, ns2.seconds_to_match, ns2.queries) == (
        (PRODUCTION,),
        False,
        None,
        2,
    )
    assert report.pending == (ns2,)
    assert report.summary() == (
        "after 1.6 s, 1 of 2 authoritative server(s) of drp-lab.test do not answer "
        "www.drp-lab.test. A 127.0.10.4 yet: ns2.drp-lab.test (127.0.10.54:5353): 127.0.10.1"
    )


def test_complete_report_names_the_slowest_server_time() -> None:
    probes = [
        Probe(NS1, (DRP,), at=0.2),
        Probe(NS2, (PRODUCTION,), at=0.2),
        Probe(NS2, (DRP,), at=3.0),
    ]
    report = build_report(ZONE, "www", "A", ["127.0.10.4"], [NS1, NS2], probes, elapsed=3.1)
    assert report.complete
    assert report.summary() == (
        "all 2 authoritative server(s) of drp-lab.test answer www.drp-lab.test. A 127.0.10.4 "
        "(the last after 3.00 s)"
    )
    assert report.data["servers"][1]["seconds_to_match"] == 3.0


def test_a_server_that_matched_stays_matched() -> None:
    probes = [Probe(NS1, (DRP,), at=0.1), Probe(NS1, (), "no answer within 2 s", at=1.0)]
    [ns1] = build_report(ZONE, "", "A", [DRP], [NS1], probes, elapsed=1.0).servers
    assert (ns1.matched, ns1.answer, ns1.error) == (True, (DRP,), None)


def test_errors_and_unasked_servers_are_reported_not_matched() -> None:
    probes = [Probe(NS1, (), "answered REFUSED", at=0.0)]
    report = build_report(ZONE, "", "A", [DRP], [NS1, NS2], probes, elapsed=0.1)
    assert [s.error for s in report.servers] == ["answered REFUSED", "not asked yet"]
    assert "ns1.drp-lab.test (127.0.10.53): answered REFUSED" in report.summary()
    assert "drp-lab.test. A 127.0.10.4" in report.summary()


def test_no_server_is_never_complete() -> None:
    assert not build_report(ZONE, "www", "A", [DRP], [], [], elapsed=0.0).complete


def test_timeout_error_carries_the_report() -> None:
    report = build_report(ZONE, "www", "A", [DRP], [NS1], [Probe(NS1, (PRODUCTION,))], 5.0)
    error = PropagationTimeout(report)
    assert error.report is report
    assert str(error) == report.summary()
    assert error.zone == ZONE
