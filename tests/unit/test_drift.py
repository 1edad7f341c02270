"""Drift: the facts script run for real on this machine, the comparison, and what changes from
one check to the next (new, unchanged, gone, kept), the ticket's event and the state file."""

from __future__ import annotations

import hashlib
import json
import os
import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from backup_helpers import LocalRunner

from runbooks.drift import (
    PREVIOUS_FILE,
    STATE_FILE,
    DriftItem,
    DriftState,
    Findings,
    compare,
    drift_lines,
    drift_markdown,
    excluded,
    held_against,
    read_state,
    write_state,
)
from runbooks.drift_facts import (
    CommandOutput,
    Disk,
    FileEntry,
    Gathered,
    HostFacts,
    ServerVersion,
    facts_argv,
    parse_facts,
)
from runbooks.inventory import Site, load_site

REPO = Path(__file__).resolve().parents[2]
SECRET = "db_password = s3cret-do-not-show"
T0 = datetime(2026, 12, 1, 2, 0, tzinfo=UTC)
GIB = 1 << 30


@pytest.fixture(scope="module")
def site() -> Site:
    """The lab's inventory: one configuration tree (srv/app/config), one files tree
    (srv/app/www), two database servers, versions `web server` and `rsync`."""
    return load_site(REPO / "config" / "lab.yaml")


# -- the script, run here ----------------------------------------------------------------------


def test_the_script_lists_trees_file_by_file_and_never_prints_a_content(tmp_path: Path) -> None:
    home = tmp_path / "home"
    config = home / "srv" / "app" / "config"
    (config / "sites enabled").mkdir(parents=True)
    (config / "app.ini").write_text(SECRET + "\n")
    (config / "sites enabled" / "a\tb.conf").write_text("server {}\n")
    (config / "current").symlink_to("app.ini")
    (home / "etc-single.conf").write_text("one file\n")
    configs = ["srv/app/config", "etc-single.conf", "srv/app/absent"]
    disks = ["srv/app/config", "srv/app/not/there/yet"]
    versions = ["echo 'v1.2 first'; echo second >&2; exit 3", "true", "sleep 5"]
    argv = facts_argv(configs, disks, versions, command_seconds=1)

    done = LocalRunner("here", home).run(argv, check=False)

    assert SECRET not in done.stdout and "s3cret" not in done.stdout
    facts = parse_facts(
        "production", done.stdout, configs=configs, disks=disks, versions=["a", "b", "c"]
    )
    digest = hashlib.sha256((SECRET + "\n").encode()).hexdigest()
    assert facts.configs["srv/app/config"] == {
        "app.ini": FileEntry("f", len(SECRET) + 1, "", digest),
        "sites enabled/a\tb.conf": FileEntry(
            "f", 10, "", hashlib.sha256(b"server {}\n").hexdigest()
        ),
        "current": FileEntry("l", 7, "app.ini", None),
    }
    assert facts.configs["etc-single.conf"] == {
        "": FileEntry("f", 9, "", hashlib.sha256(b"one file\n").hexdigest())
    }
    assert facts.configs["srv/app/absent"] is None
    assert facts.versions["a"] == CommandOutput(3, "v1.2 first\nsecond")
    assert facts.versions["a"].shown == "v1.2 first … (exit 3)"
    assert facts.versions["b"] == CommandOutput(0, "")
    assert facts.versions["c"].exit_code == 124  # stopped after command_seconds
    # The tree not there yet is measured where it would be made: the nearest directory above.
    assert facts.disks["srv/app/config"] == facts.disks["srv/app/not/there/yet"]
    assert facts.disks["srv/app/config"].total > 0
    assert facts.os["VERSION_ID"]
    assert not facts.unread


# -- the comparison ----------------------------------------------------------------------------


def host(name: str, **changes: object) -> HostFacts:
    """A host as the lab's are when nothing differs; `changes` replace fields."""
    own = "127.0.10.1" if name == "production" else "127.0.10.4"
    facts = HostFacts(
        host=name,
        os={"PRETTY_NAME": "Debian GNU/Linux 12 (bookworm)", "VERSION_ID": "12"},
        addresses={own, "192.0.2.9"},
        listening=[(own, 22), ("0.0.0.0", 2024), ("127.0.0.1", 6379)],
        user_crontab="ab" * 32 + " 2",
        system_crontabs={"/etc/crontab": "cd" * 32},
        versions={
            "web server": CommandOutput(0, "nginx version: nginx/1.22.1"),
            "rsync": CommandOutput(0, "rsync  version 3.2.7"),
        },
        configs={"srv/app/config": {"app.ini": FileEntry("f", 10, "", "ee" * 32)}},
        disks={
            "srv/app/www": Disk("/", 100 * GIB, 30 * GIB, 70 * GIB),
            "srv/app/config": Disk("/", 100 * GIB, 30 * GIB, 70 * GIB),
        },
    )
    for key, value in changes.items():
        setattr(facts, key, value)
    return facts


def gathered(prod: HostFacts | None = None, drp: HostFacts | None = None) -> Gathered:
    versions = [
        ServerVersion("database postgresql (app_users)", "15.10", "15.10"),
        ServerVersion("database mysql (app_shop)", "10.11.6-MariaDB", "10.11.6-MariaDB"),
    ]
    return Gathered(prod or host("production"), drp or host("drp"), versions)


def whats(items: list[DriftItem]) -> list[str]:
    return [i.what for i in items]


def test_two_hosts_alike_have_no_drift_and_the_summary_says_what_was_compared(site: Site) -> None:
    findings = compare(site, gathered())

    assert findings.items == []
    assert findings.unchecked == {}
    assert findings.compared == [
        "OS release",
        "2 version command(s)",
        "2 database server(s)",
        "2 listening TCP port(s)",  # 22 on each own address, 2024 on every address
        "2 crontab(s)",
        "1 configuration tree(s) (1 file(s))",
        "the disks of 2 tree(s)",
    ]


def test_each_kind_of_difference_is_one_item_with_both_values(site: Site) -> None:
    drp = host(
        "drp",
        os={"PRETTY_NAME": "Debian GNU/Linux 11 (bullseye)", "VERSION_ID": "11"},
        versions={
            "web server": CommandOutput(127, "sh: 1: nginx: not found"),
            "rsync": CommandOutput(0, "rsync  version 3.2.7"),
        },
        listening=[("127.0.10.4", 22), ("0.0.0.0", 2024), ("127.0.10.1", 8080)],
        user_crontab="@@absent",
        system_crontabs={"/etc/crontab": "cd" * 32, "/etc/cron.d/php": "12" * 32},
        configs={
            "srv/app/config": {
                "app.ini": FileEntry("f", 11, "", "ff" * 32),
                "local.ini": FileEntry("f", 3, "", "aa" * 32),
            }
        },
        disks={
            "srv/app/www": Disk("/srv", 20 * GIB, 1 * GIB, 19 * GIB),
            "srv/app/config": Disk("/srv", 20 * GIB, 1 * GIB, 19 * GIB),
        },
    )
    prod = host("production", listening=[("127.0.10.1", 22), ("0.0.0.0", 2024)])
    versions = [
        ServerVersion("database postgresql (app_users)", "15.10", "13.16"),
        ServerVersion("database mysql (app_shop)", "10.11.6-MariaDB", "10.11.6-MariaDB"),
    ]

    items = {i.what: i for i in compare(site, Gathered(prod, drp, versions)).items}

    assert {w: (i.production, i.drp) for w, i in items.items()} == {
        "os release": ("Debian GNU/Linux 12 (bookworm)", "Debian GNU/Linux 11 (bullseye)"),
        "version web server": ("nginx version: nginx/1.22.1", "sh: 1: nginx: not found (exit 127)"),
        "database postgresql (app_users)": ("15.10", "13.16"),
        # 127.0.10.1 is production's address, not the DRP's: on a shared machine, not counted.
        # 6379 on production's loopback: the DRP has nothing there either (loopback is on).
        "crontab of the SSH user": ("2 entries, sha256 abababababab", "none"),
        "crontab /etc/cron.d/php": ("absent", "sha256 121212121212"),
        "config srv/app/config/app.ini": (
            "10 bytes, sha256 eeeeeeeeeeee",
            "11 bytes, sha256 ffffffffffff",
        ),
        "config srv/app/config/local.ini": ("absent", "3 bytes, sha256 aaaaaaaaaaaa"),
        "disk srv/app/www, srv/app/config": (
            "/ 107.4 GB, 32.2 GB used",
            "/srv 21.5 GB (20.4 GB free): smaller than production's 32.2 GB used",
        ),
    }
    assert items["crontab of the SSH user"].basis == "production only"
    assert items["config srv/app/config/app.ini"].basis == "differs"
    assert items["disk srv/app/www, srv/app/config"].basis == "too small"


def test_listeners_on_own_addresses_every_address_and_optionally_loopback(site: Site) -> None:
    prod = host(
        "production",
        listening=[("127.0.10.1", 22), ("0.0.0.0", 2024), ("127.0.10.1", 4567), ("::1", 11211)],
    )
    drp = host("drp", listening=[("127.0.10.4", 22), ("*", 2024), ("127.0.10.1", 4567)])

    items = compare(site, gathered(prod, drp)).items  # the lab's inventory: loopback false

    assert [(i.what, i.production, i.drp, i.basis) for i in items] == [
        ("listening tcp/4567", "127.0.10.1:4567", "nothing listens", "production only")
    ]
    with_loopback = site.model_copy(
        update={"drift": site.drift.model_copy(update={"loopback": True})}
    )
    items = compare(with_loopback, gathered(prod, drp)).items
    assert [(i.what, i.production) for i in items] == [
        ("listening tcp/4567", "127.0.10.1:4567"),
        ("listening tcp/11211", "[::1]:11211"),
    ]


def test_a_version_whose_first_line_is_the_same_says_the_rest_differs(site: Site) -> None:
    prod = host("production")
    prod.versions["rsync"] = CommandOutput(0, "rsync  version 3.2.7\nprotocol version 31")
    items = compare(site, gathered(prod, host("drp"))).items
    assert [(i.what, i.production, i.drp) for i in items] == [
        (
            "version rsync",
            "rsync  version 3.2.7 … (the rest of the output differs)",
            "rsync  version 3.2.7",
        )
    ]


def test_ignore_patterns_and_tree_excludes_leave_items_out(site: Site) -> None:
    drp = host(
        "drp",
        configs={
            "srv/app/config": {
                "app.ini": FileEntry("f", 10, "", "ee" * 32),
                "cache/x.tmp": FileEntry("f", 1, "", "00" * 32),
            }
        },
        listening=[("127.0.10.4", 22), ("0.0.0.0", 2024), ("127.0.10.4", 25)],
    )
    ignoring = site.model_copy(
        update={
            "drift": site.drift.model_copy(
                update={"ignore": ["listening tcp/25", "config */cache/*"]}
            )
        }
    )
    findings = compare(ignoring, gathered(host("production"), drp))
    assert findings.items == []
    assert findings.ignored == 2


@pytest.mark.parametrize(
    ("path", "patterns", "left_out"),
    [
        ("cache/x", ["cache/"], True),
        ("a/cache/x", ["cache/"], True),
        ("cache", ["cache/"], False),  # a file named cache is no directory
        ("x.tmp", ["*.tmp"], True),
        ("a/x.tmp", ["*.tmp"], True),
        ("a/b/c", ["/a/b"], True),
        ("z/a/b", ["/a/b"], False),
        ("app.ini", ["cache/", "*.tmp"], False),
    ],
)
def test_tree_excludes_read_as_rsync_reads_them(
    path: str, patterns: list[str], left_out: bool
) -> None:
    assert excluded(path, patterns) is left_out


# -- from one check to the next ----------------------------------------------------------------


def item(what: str, production: str = "a", drp: str = "b", basis: str = "") -> DriftItem:
    return DriftItem(what=what, production=production, drp=drp, basis=basis)


def findings_of(site: Site, *items: DriftItem, unchecked: dict[str, str] | None = None) -> Findings:
    return Findings(items=list(items), unchecked=unchecked or {}, compared=["OS release"])


def test_new_unchanged_gone_and_changed(site: Site) -> None:
    last = DriftState(
        site=site.name,
        checked_at=T0,
        items=[
            item("os release", "Debian 12", "Debian 11"),
            item("crontab of the SSH user", "2 entries", "none", "production only"),
            item("listening tcp/25", "*:25", "nothing listens", "production only"),
            item("version php", "PHP 8.2.7", "PHP 8.2.7 (exit 1)"),
        ],
    )
    now = held_against(
        site,
        findings_of(
            site,
            item("os release", "Debian 12", "Debian 11"),
            item("crontab of the SSH user", "3 entries", "none", "production only"),
            item("version php", "PHP 8.2.8", "PHP 8.2.7"),
            item("config srv/app/config/app.ini", "10 bytes", "absent", "production only"),
        ),
        last,
        now=T0 + timedelta(days=1),
    )

    assert whats(now.new) == ["config srv/app/config/app.ini", "version php"]
    assert now.changed_from["version php"].production == "PHP 8.2.7"
    assert whats(now.unchanged) == ["crontab of the SSH user", "os release"]
    assert whats(now.gone) == ["listening tcp/25"]
    assert now.has_drift
    assert whats(now.state.items) == [
        "config srv/app/config/app.ini",
        "crontab of the SSH user",
        "os release",
        "version php",
    ]
    lines = drift_lines(now)
    assert (
        "NEW   version php: production PHP 8.2.8; drp PHP 8.2.7 "
        "(was: production PHP 8.2.7; drp PHP 8.2.7 (exit 1))" in lines
    )
    assert "GONE  listening tcp/25: production *:25; drp nothing listens" in lines
    assert lines[-1] == "Drift between production and the DRP server: 2 new, 2 unchanged, 1 gone."


def test_what_could_not_be_read_is_kept_neither_gone_nor_new(site: Site) -> None:
    last = DriftState(
        site=site.name,
        checked_at=T0,
        items=[
            item("database postgresql (app_users)", "15.10", "13.16"),
            item("config srv/app/config/app.ini", "10 bytes", "absent", "production only"),
        ],
    )
    unread = {
        "database postgresql (app_users)": "drp: cannot connect",
        "config srv/app/config": "x",
    }
    now = held_against(site, findings_of(site, unchecked=unread), last, now=T0 + timedelta(1))

    assert now.new == [] and now.gone == []
    assert whats(now.kept) == ["config srv/app/config/app.ini", "database postgresql (app_users)"]
    assert whats(now.state.items) == whats(now.kept)  # recorded again for the next check
    assert "NOT CHECKED  database postgresql (app_users): drp: cannot connect" in drift_lines(now)


def test_the_ticket_event_is_the_same_for_a_retry_and_new_when_drift_comes_back(site: Site) -> None:
    x = item("listening tcp/4567", "127.0.10.1:4567", "nothing listens", "production only")
    first = held_against(site, findings_of(site, x), None, now=T0)
    retry = held_against(site, findings_of(site, x), None, now=T0 + timedelta(minutes=5))
    assert first.event == retry.event  # nothing recorded in between: backends skip it
    assert first.event.startswith("drift-") and len(first.event) == len("drift-") + 12

    recorded = first.state
    again = held_against(site, findings_of(site, x), recorded, now=T0 + timedelta(days=1))
    assert again.new == [] and whats(again.unchanged) == [x.what]

    gone = held_against(site, findings_of(site), again.state, now=T0 + timedelta(days=2))
    assert whats(gone.gone) == [x.what] and not gone.has_drift
    back = held_against(site, findings_of(site, x), gone.state, now=T0 + timedelta(days=3))
    assert whats(back.new) == [x.what]
    assert back.event != first.event


def test_the_markdown_has_a_table_per_list_and_escapes_cells(site: Site) -> None:
    x = item("version php", "PHP 8.2 | cli", "none", "")
    now = held_against(site, findings_of(site, x), None, now=T0, note="no drift recorded before")
    text = drift_markdown(now)
    assert text.startswith(f"# Drift between production and the DRP server ({site.name})\n")
    assert "**1 new**, 0 unchanged, 0 gone" in text
    assert "## New\n\n| what | production | drp |\n|---|---|---|\n" in text
    assert "| version php | PHP 8.2 \\| cli | none |" in text
    assert "Compared: OS release." in text


# -- the state on the DRP host -----------------------------------------------------------------


def test_the_state_is_written_whole_private_and_the_one_before_kept(
    site: Site, tmp_path: Path
) -> None:
    runner = LocalRunner("drp", tmp_path)
    assert read_state(runner, site)[0] is None

    first = DriftState(site=site.name, checked_at=T0, items=[item("os release")])
    write_state(runner, first)
    second = DriftState(site=site.name, checked_at=T0 + timedelta(days=1), items=[])
    write_state(runner, second)

    assert read_state(runner, site) == (second, "")
    path, previous = tmp_path / STATE_FILE, tmp_path / PREVIOUS_FILE
    assert DriftState.model_validate_json(previous.read_text()) == first
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(previous.stat().st_mode) == 0o600
    assert sorted(os.listdir(path.parent)) == ["last.json", "previous.json"]  # no temporary file

    path.write_text("{not json")
    state, note = read_state(runner, site)
    assert state is None and "is not a drift state" in note
    other = json.dumps({"site": "another-site", "checked_at": T0.isoformat(), "items": []})
    path.write_text(other)
    state, note = read_state(runner, site)
    assert state is None and "is the drift of site another-site" in note
