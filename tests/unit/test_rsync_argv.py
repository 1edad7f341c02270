"""rsync command lines (exact argv) and the parsing of rsync's progress, stats and item lists."""

from __future__ import annotations

import shlex

import pytest

from providers.rsync import (
    CopyOptions,
    CopyPlan,
    CopyProgress,
    ItemizedChange,
    ProgressParser,
    RemoteEndpoint,
    TransferStats,
    copy_argv,
    exit_meaning,
    home_relative,
    parse_itemized,
    parse_progress,
    parse_stats,
    plan_argv,
    source_spec,
    ssh_argv,
)

KEYED = RemoteEndpoint(
    name="production",
    address="127.0.10.1",
    port=2222,
    user="drplab-production",
    path="srv/app/www",
    key_path="~/.ssh/id_ed25519",
)
AGENT = RemoteEndpoint(
    name="production", address="127.0.10.1", port=2222, user="drplab-production", path="/srv/www"
)

KEYED_SSH = (
    "ssh -p 2222 -o BatchMode=yes -o StrictHostKeyChecking=yes "
    "-o 'UserKnownHostsFile=~/.ssh/known_hosts' -o ConnectTimeout=10 -o IdentityFile=none "
    "-i '~/.ssh/id_ed25519' -o IdentitiesOnly=yes"
)


def test_copy_argv_pulls_from_the_sender_with_strict_host_keys_and_resumable_partials() -> None:
    assert copy_argv(KEYED, "srv/app/www", CopyOptions()) == [
        "rsync",
        "-a",
        "-H",
        "--partial",
        "--partial-dir=.rsync-partial",
        "--protect-args",
        "--timeout=600",
        "-e",
        KEYED_SSH,
        "--no-inc-recursive",
        "--info=progress2,stats2",
        "--no-human-readable",
        "--",
        "drplab-production@127.0.10.1:srv/app/www/",
        "srv/app/www/",
    ]


def test_plan_argv_is_the_same_copy_as_an_itemized_dry_run() -> None:
    assert plan_argv(KEYED, "/data/www/", CopyOptions(io_timeout=None)) == [
        "rsync",
        "-a",
        "-H",
        "--partial",
        "--partial-dir=.rsync-partial",
        "--protect-args",
        "-e",
        KEYED_SSH,
        "--dry-run",
        "--itemize-changes",
        "--out-format=%i %n",
        "--info=stats2",
        "--no-human-readable",
        "--",
        "drplab-production@127.0.10.1:srv/app/www/",
        "/data/www/",
    ]


def test_every_configured_option_appears_and_delete_only_when_asked() -> None:
    options = CopyOptions(
        delete=True,
        excludes=("cache/", "*.tmp", "-weird"),
        includes=("/keep.ini",),
        link_dest="../previous",
        hard_links=False,
        acls=True,
        xattrs=True,
        numeric_ids=True,
        owner=False,
        group=False,
        bwlimit_kib=5000,
        io_timeout=30,
    )
    argv = copy_argv(KEYED, "dst", options)
    assert argv[: argv.index("-e")] == [
        "rsync",
        "-a",
        "--acls",
        "--xattrs",
        "--numeric-ids",
        "--no-owner",
        "--no-group",
        "--partial",
        "--partial-dir=.rsync-partial",
        "--protect-args",
        "--delete",
        "--include=/keep.ini",
        "--exclude=cache/",
        "--exclude=*.tmp",
        "--exclude=-weird",
        "--link-dest=../previous",
        "--bwlimit=5000",
        "--timeout=30",
    ]
    default = copy_argv(KEYED, "dst", CopyOptions()) + plan_argv(KEYED, "dst", CopyOptions())
    assert not [a for a in default if a.startswith("--delete")]


def test_agent_mode_uses_only_the_forwarded_agent() -> None:
    assert ssh_argv(AGENT) == [
        "ssh",
        "-p",
        "2222",
        "-o",
        "BatchMode=yes",
        "-o",
        "StrictHostKeyChecking=yes",
        "-o",
        "UserKnownHostsFile=~/.ssh/known_hosts",
        "-o",
        "ConnectTimeout=10",
        "-o",
        "IdentityFile=none",
    ]


def test_ssh_command_quotes_paths_with_spaces_for_rsync_and_ssh() -> None:
    source = RemoteEndpoint(
        name="p",
        address="10.0.0.1",
        port=22,
        user="u",
        path="x",
        key_path="/keys/my key",
        known_hosts="/etc/drp/known hosts",
    )
    remote_shell = copy_argv(source, "d", CopyOptions())[
        copy_argv(source, "d", CopyOptions()).index("-e") + 1
    ]
    # rsync splits -e like a shell; ssh wants a path with spaces in double quotes in -o values.
    assert shlex.split(remote_shell) == [
        "ssh",
        "-p",
        "22",
        "-o",
        "BatchMode=yes",
        "-o",
        "StrictHostKeyChecking=yes",
        "-o",
        'UserKnownHostsFile="/etc/drp/known hosts"',
        "-o",
        "ConnectTimeout=10",
        "-o",
        "IdentityFile=none",
        "-i",
        "/keys/my key",
        "-o",
        "IdentitiesOnly=yes",
    ]


@pytest.mark.parametrize(
    ("path", "spec"),
    [
        ("srv/app", "u@10.0.0.1:srv/app/"),
        ("srv/app/", "u@10.0.0.1:srv/app/"),
        ("~/srv/it's here", "u@10.0.0.1:srv/it's here/"),
        ("~", "u@10.0.0.1:./"),
        ("/", "u@10.0.0.1:/"),
        ("-rf", "u@10.0.0.1:-rf/"),
    ],
)
def test_source_is_the_directory_contents_relative_to_home(path: str, spec: str) -> None:
    endpoint = RemoteEndpoint(name="p", address="10.0.0.1", port=22, user="u", path=path)
    assert source_spec(endpoint) == spec


def test_ipv6_sender_is_bracketed() -> None:
    endpoint = RemoteEndpoint(name="p", address="2001:db8::1", port=22, user="u", path="a")
    assert source_spec(endpoint) == "u@[2001:db8::1]:a/"


def test_destination_with_leading_dash_and_quotes_stays_after_the_end_of_options() -> None:
    argv = copy_argv(KEYED, "-x 'quoted' dir", CopyOptions())
    assert argv[-3:] == ["--", "drplab-production@127.0.10.1:srv/app/www/", "-x 'quoted' dir/"]


def test_home_relative_refuses_other_users_homes() -> None:
    assert home_relative("~/a/b") == "a/b"
    with pytest.raises(ValueError, match="~user paths are not supported"):
        home_relative("~root/a")


def test_a_double_quote_in_a_known_hosts_path_is_refused() -> None:
    endpoint = RemoteEndpoint(
        name="p", address="h", port=22, user="u", path="a", known_hosts='/a "b"/kh'
    )
    with pytest.raises(ValueError, match="double quote"):
        ssh_argv(endpoint)


# -- progress ------------------------------------------------------------------------------


def test_progress2_line_with_transfer_counts() -> None:
    line = "     30,000,000  49%   20.56MB/s    0:01:05 (xfr#1, to-chk=2/5)"
    assert parse_progress(line) == CopyProgress(
        bytes=30_000_000,
        percent=49,
        rate=20.56 * 1024 * 1024,
        eta_seconds=65,
        transfers=1,
        to_check=2,
        total_files=5,
    )


def test_progress2_line_before_the_first_file_and_with_unknown_eta() -> None:
    assert parse_progress("          32768   0%    0.00kB/s    0:00:00") == CopyProgress(
        bytes=32768, percent=0, rate=0.0, eta_seconds=0
    )
    unknown = parse_progress("     5  1%    1.00kB/s    ??:??:?? (xfr#0, ir-chk=10/20)")
    assert unknown is not None
    assert unknown.eta_seconds is None
    assert unknown.to_check == 10


def test_other_lines_are_not_progress() -> None:
    assert parse_progress("Number of files: 5 (reg: 3, dir: 2)") is None
    assert parse_progress("rsync error: some files could not be transferred (code 23)") is None
    assert parse_progress("") is None


def test_parser_follows_carriage_returns_across_chunks_and_skips_repeats() -> None:
    events: list[CopyProgress] = []
    parser = ProgressParser(events.append)
    stream = (
        "\r          1000   1%    1.00MB/s    0:00:10  \r"
        "         50000  50%    2.00MB/s    0:00:05 (xfr#1, to-chk=1/3)\r"
        "         50000  50%    2.00MB/s    0:00:05 (xfr#1, to-chk=1/3)\r"
        "        100000 100%    2.00MB/s    0:00:00 (xfr#2, to-chk=0/3)\n\n"
        "Number of files: 3\n"
    )
    for i in range(0, len(stream), 7):  # chunks split lines anywhere
        parser.feed(stream[i : i + 7])
    parser.close()
    assert [(e.bytes, e.percent) for e in events] == [(1000, 1), (50000, 50), (100000, 100)]
    assert parser.last is not None and parser.last.to_check == 0


# -- stats ---------------------------------------------------------------------------------

STATS = """
Number of files: 7 (reg: 3, dir: 3, link: 1)
Number of created files: 2 (dir: 1, link: 1)
Number of deleted files: 1 (reg: 1)
Number of regular files transferred: 1
Total file size: 60000008 bytes
Total transferred file size: 5 bytes
Literal data: 3 bytes
Matched data: 2 bytes
File list size: 0
File list generation time: 0.001 seconds
File list transfer time: 0.000 seconds
Total bytes sent: 197
Total bytes received: 39

sent 197 bytes  received 39 bytes  472.00 bytes/sec
total size is 60000008  speedup is 254237.32 (DRY RUN)
"""


def test_stats_block_is_read_into_counts() -> None:
    assert parse_stats(STATS) == TransferStats(
        files=7,
        created=2,
        deleted=1,
        files_transferred=1,
        total_size=60_000_008,
        transferred_size=5,
        literal_bytes=3,
        matched_bytes=2,
        bytes_sent=197,
        bytes_received=39,
    )


def test_stats_with_digit_grouping_are_read_too() -> None:
    grouped = "Total file size: 60,000,003 bytes\nLiteral data: 30,000,003 bytes\n"
    stats = parse_stats(grouped)
    assert stats is not None
    assert (stats.total_size, stats.literal_bytes) == (60_000_003, 30_000_003)


def test_output_without_stats_gives_none() -> None:
    assert parse_stats("rsync: connection unexpectedly closed\n") is None


# -- itemized plans ------------------------------------------------------------------------

ITEMIZED = """\
*deleting   old/
*deleting   extra
cd+++++++++ new/
cL+++++++++ lnk
cLc.t...... changed-link
>f+++++++++ new/we\\#012ird
>f.st...... sub/a b
hf+++++++++ hl
.d..t...... ./
>f+++++++++ caf\\#303\\#251.txt

Number of files: 8 (reg: 4, dir: 3, link: 1)
Total file size: 1000 bytes
Total transferred file size: 10 bytes
"""


def test_itemized_lines_become_changes() -> None:
    assert parse_itemized(ITEMIZED) == (
        ItemizedChange("old/", "delete", "dir", flags="*deleting"),
        ItemizedChange("extra", "delete", "file", flags="*deleting"),
        ItemizedChange("new/", "create", "dir", flags="cd+++++++++"),
        ItemizedChange("lnk", "create", "symlink", flags="cL+++++++++"),
        ItemizedChange("changed-link", "update", "symlink", flags="cLc.t......"),
        ItemizedChange("new/we\nird", "create", "file", flags=">f+++++++++"),
        ItemizedChange("sub/a b", "update", "file", flags=">f.st......"),
        ItemizedChange("hl", "create", "file", hard_link=True, flags="hf+++++++++"),
        ItemizedChange("./", "attributes", "dir", flags=".d..t......"),
        ItemizedChange("café.txt", "create", "file", flags=">f+++++++++"),
    )


def test_plan_counts_what_would_change() -> None:
    plan = CopyPlan(
        source="production:srv/app",
        receiver="drp",
        dest_path="srv/app",
        changes=parse_itemized(ITEMIZED),
        stats=parse_stats(ITEMIZED) or TransferStats(),
    )
    assert (plan.files_to_create, plan.dirs_to_create, plan.files_to_update) == (4, 1, 2)
    assert (plan.to_delete, plan.attribute_changes) == (2, 1)
    assert (plan.bytes_to_transfer, plan.total_size) == (10, 1000)
    assert not plan.up_to_date
    assert plan.summary() == (
        "production:srv/app -> drp:srv/app: 4 files to create, 1 directories to create, "
        "2 to update, 2 to delete, 1 with changed attributes; 10 of 1,000 bytes to transfer"
    )


def test_an_empty_plan_says_up_to_date() -> None:
    plan = CopyPlan("production:srv/app", "drp", "srv/app", (), TransferStats(total_size=5))
    assert plan.up_to_date
    assert plan.summary() == "srv/app on drp is up to date with production:srv/app"


def test_exit_codes_have_rsyncs_meaning() -> None:
    assert exit_meaning(23) == "partial transfer due to error"
    assert exit_meaning(24) == "partial transfer due to vanished source files"
    assert exit_meaning(255) == "the SSH connection to the sending host failed"
    assert exit_meaning(99) == "unknown rsync exit code"
