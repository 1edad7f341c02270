"""Which address each DNS record is switched to, and what the plan says about it."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import yaml

from runbooks.activation import Operation, SwitchZone, WaitPropagation, activation_steps
from runbooks.backups import EnvironmentChoice, Selection
from runbooks.inventory import load_site

LAB = Path(__file__).resolve().parents[2] / "config" / "lab.yaml"


def _site_with_aaaa(tmp_path: Path):
    data = yaml.safe_load(LAB.read_text())
    for role in ("production", "drp"):
        n = 1 if role == "production" else 4
        data["hosts"][role]["public_ipv6"] = f"2001:db8::{n}"
    data["environments"][0]["dns_records"].append({"zone": "drp-lab.test", "name": "www",
                                                   "type": "AAAA"})  # fmt: skip
    for key in ("env_file", "known_hosts"):
        data[key] = str((LAB.parent / data[key]).resolve())
    for host in data["hosts"].values():
        host["key"] = str((LAB.parent / host["key"]).resolve())
    data["tickets"] = [{"type": "file", "path": str(tmp_path / "tickets.jsonl")}]
    path = tmp_path / "site.yaml"
    path.write_text(yaml.safe_dump(data))
    return load_site(path)


def test_a_records_go_to_the_drp_ipv4_and_aaaa_records_to_its_ipv6(tmp_path: Path) -> None:
    site = _site_with_aaaa(tmp_path)
    now = datetime.now(UTC)
    selection = Selection(now, {"app": EnvironmentChoice("app", now)})  # nothing to restore
    op = Operation(site, "activate-unit-1", "activate", selection)
    steps = activation_steps(op)
    (zone,) = [s for s in steps if isinstance(s, SwitchZone)]
    switches = {(s.name, s.rtype): s.target for s in zone.switches}
    assert switches == {("", "A"): "127.0.10.4", ("www", "A"): "127.0.10.4",
                        ("www", "AAAA"): "2001:db8::4"}  # fmt: skip
    (wait,) = [s for s in steps if isinstance(s, WaitPropagation)]
    assert "127.0.10.4, 2001:db8::4" in wait.title
    # One step switches the whole zone, after the ticket; the wait follows it.
    assert zone.key == "dns-switch-drp-lab.test"
    assert [s.key for s in steps if s.phase >= 60] == [zone.key, wait.key, "verify-app-dns"]
