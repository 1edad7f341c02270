"""Server-to-server copies on the lab: rsync runs on drp and pulls from production over SSH.

Every test works in scratch directories named drp-test-<random> under the hosts' homes and
removes them afterwards.
"""

from __future__ import annotations

import secrets
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest
from ssh_lab import known_hosts_lines, running_agent, target

from lab import topology
from providers.rsync import (
    CopyOptions,
    CopyProgress,
    RemoteEndpoint,
    RsyncError,
    copy_tree,
    plan_copy,
)
from providers.ssh import SshHost

pytestmark = pytest.mark.lab

RECEIVER_KEY = "~/.ssh/id_ed25519"  # drp's own key, authorized on production by the lab
MiB = 1024 * 1024

# A tree with what a copy must keep: modes, times, a hard link, a symlink, awkward names.
MAKE_TREE = r"""
set -e
mkdir -p "$1/tree/sub dir" "$1/tree/-dash dir" "$1/tree/private"
cd "$1/tree"
printf 'hello\n' > "it's \"quoted\".txt"
head -c 100000 /dev/urandom > data.bin
ln data.bin "sub dir/data-hardlink.bin"
ln -s "../it's \"quoted\".txt" "sub dir/link"
printf 'x\n' > "-dash dir/-n"
printf 'secret\n' > private/key
chmod 600 private/key
chmod 700 private
chmod 640 data.bin
chmod 750 "sub dir"
touch -h -d '2020-01-02 03:04:05' data.bin "sub dir/link" "it's \"quoted\".txt"
touch -d '2019-05-06 07:08:09' private "sub dir" .
"""
# type, mode, mtime, size, link count, name and symlink target: everything but inode numbers.
# Times to the second: rsync leaves a directory alone when its time already matches to the
# second, so a directory created in the same second as the copy may differ in its fraction.
LIST_TREE = r"""cd -- "$1" && find . -print0 | sort -z | xargs -0 stat -c '%F %a %Y %s %h %N'"""
CHECKSUMS = r"""cd -- "$1" && find . -type f -print0 | sort -z | xargs -0 sha256sum"""


@pytest.fixture(scope="module")
def production(lab) -> Iterator[SshHost]:
    with SshHost(target(lab, "production")) as host:
        yield host


@pytest.fixture(scope="module")
def drp(lab) -> Iterator[SshHost]:
    with SshHost(target(lab, "drp")) as host:
        yield host


@pytest.fixture
def scratch(production: SshHost, drp: SshHost) -> Iterator[str]:
    """A fresh scratch directory name (relative to the homes), removed from both hosts after."""
    name = f"drp-test-{secrets.token_hex(4)}"
    yield name
    for host in (production, drp):
        host.run(["rm", "-rf", "--", name, f"-{name}"])


def from_production(path: str, **changes: object) -> RemoteEndpoint:
    production = topology.host("production")
    values: dict[str, object] = {
        "name": "production",
        "address": production.address,
        "port": topology.SSH_PORT,
        "user": production.user,
        "path": path,
        "key_path": RECEIVER_KEY,
    }
    values.update(changes)
    return RemoteEndpoint(**values)  # type: ignore[arg-type]


def make_tree(production: SshHost, scratch: str) -> str:
    production.run(["sh", "-c", MAKE_TREE, "sh", scratch])
    return f"{scratch}/tree"


def listing(host: SshHost, path: str) -> str:
    return host.run(["sh", "-c", LIST_TREE, "sh", path]).stdout


def checksums(host: SshHost, path: str) -> str:
    return host.run(["sh", "-c", CHECKSUMS, "sh", path]).stdout


def exists(host: SshHost, path: str) -> bool:
    return host.run(["test", "-e", path], check=False).exit_code == 0


def test_plan_lists_what_a_copy_would_do_and_changes_nothing(
    production: SshHost, drp: SshHost, scratch: str
) -> None:
    source = make_tree(production, scratch)
    dest = f"{scratch}/copy"
    plan = plan_copy(drp, from_production(source), dest)
    assert sorted((c.action, c.kind, c.path) for c in plan.changes) == [
        ("create", "dir", "-dash dir/"),
        ("create", "dir", "./"),
        ("create", "dir", "private/"),
        ("create", "dir", "sub dir/"),
        ("create", "file", "-dash dir/-n"),
        ("create", "file", "data.bin"),
        ("create", "file", 'it\'s "quoted".txt'),
        ("create", "file", "private/key"),
        ("create", "file", "sub dir/data-hardlink.bin"),
        ("create", "symlink", "sub dir/link"),
    ]
    assert (plan.files_to_create, plan.dirs_to_create, plan.files_to_update) == (6, 4, 0)
    assert plan.to_delete == 0
    # The hard link is made on the receiver, not sent: 100000 + 6 + 2 + 7 bytes.
    assert plan.bytes_to_transfer == 100_015
    assert not exists(drp, scratch)


def test_copy_keeps_modes_times_links_and_hard_links_even_with_awkward_paths(
    production: SshHost, drp: SshHost, scratch: str
) -> None:
    source = make_tree(production, scratch)
    dest = f"-{scratch}/copy of 'tree'"  # leading dash, space, quotes
    events: list[CopyProgress] = []
    result = copy_tree(drp, from_production(source), dest, on_progress=events.append)

    assert listing(drp, dest) == listing(production, source)
    assert checksums(drp, dest) == checksums(production, source)
    inodes = drp.run(
        ["stat", "-c", "%i", "--", f"{dest}/data.bin", f"{dest}/sub dir/data-hardlink.bin"]
    ).stdout.split()
    assert inodes[0] == inodes[1]
    assert drp.run(["stat", "-c", "%a", "--", f"{dest}/private/key"]).stdout == "600\n"

    assert result.files_transferred == 4  # the hard link is linked, not sent
    assert result.bytes_transferred == 100_015
    assert result.total_size == 200_035  # both names of the hard link, and the symlink's 20
    assert events and events[-1].bytes == 100_015
    assert not result.vanished_files

    again = copy_tree(drp, from_production(source), dest)
    assert (again.files_transferred, again.bytes_transferred) == (0, 0)
    assert plan_copy(drp, from_production(source), dest).up_to_date


def test_changes_are_copied_and_nothing_is_deleted_unless_asked(
    production: SshHost, drp: SshHost, scratch: str
) -> None:
    source = make_tree(production, scratch)
    dest = f"{scratch}/copy"
    copy_tree(drp, from_production(source), dest)
    production.run(
        [
            "sh",
            "-c",
            'cd -- "$1" && echo changed >> data.bin && echo new > new.txt && rm -- "-dash dir/-n"',
            "sh",
            source,
        ]
    )

    plan = plan_copy(drp, from_production(source), dest)
    assert sorted((c.action, c.path) for c in plan.changes if c.kind != "dir") == [
        ("create", "new.txt"),
        ("update", "data.bin"),
        ("update", "sub dir/data-hardlink.bin"),
    ]
    assert plan.to_delete == 0
    copy_tree(drp, from_production(source), dest)
    assert exists(drp, f"{dest}/-dash dir/-n")  # kept: deleting was not asked for
    assert exists(drp, f"{dest}/new.txt")

    deleting = CopyOptions(delete=True)
    plan = plan_copy(drp, from_production(source), dest, deleting)
    assert [(c.action, c.path) for c in plan.changes] == [("delete", "-dash dir/-n")]
    copy_tree(drp, from_production(source), dest, deleting)
    assert listing(drp, dest) == listing(production, source)


def test_excluded_paths_are_neither_copied_nor_deleted(
    production: SshHost, drp: SshHost, scratch: str
) -> None:
    source = make_tree(production, scratch)
    dest = f"{scratch}/copy"
    drp.run(["sh", "-c", 'mkdir -p -- "$1/cache" && echo keep > "$1/cache/x"', "sh", dest])
    options = CopyOptions(delete=True, excludes=("private/", "cache/"))
    plan = plan_copy(drp, from_production(source), dest, options)
    assert not [c for c in plan.changes if c.path.startswith(("private", "cache"))]
    copy_tree(drp, from_production(source), dest, options)
    assert not exists(drp, f"{dest}/private")
    assert drp.run(["cat", f"{dest}/cache/x"]).stdout == "keep\n"


def test_a_killed_copy_resumes_and_sends_only_the_rest(
    production: SshHost, drp: SshHost, scratch: str
) -> None:
    part = 50 * MiB
    production.run(
        [
            "sh",
            "-c",
            'set -e; mkdir -p "$1"; for i in 1 2 3 4; do head -c "$2" /dev/urandom > "$1/part-$i"; '
            "done",
            "sh",
            f"{scratch}/big",
            str(part),
        ]
    )
    source, dest = from_production(f"{scratch}/big"), f"{scratch}/big-copy"
    arrived = threading.Event()
    seen: list[CopyProgress] = []

    def progress(event: CopyProgress) -> None:
        seen.append(event)
        if event.bytes >= 40 * MiB:
            arrived.set()

    slow = CopyOptions(bwlimit_kib=20 * 1024)
    with ThreadPoolExecutor(max_workers=1) as pool:
        first = pool.submit(copy_tree, drp, source, dest, slow, progress)
        assert arrived.wait(timeout=120), "the slow copy never reached 40 MiB"
        # Only drp's rsync: it is the one whose command line names the destination.
        drp.run(["pkill", "-TERM", "-u", topology.host("drp").user, "-f", f"[r]sync .*{dest}"])
        with pytest.raises(RsyncError) as caught:
            first.result(timeout=60)
    assert caught.value.exit_code == 20
    assert "rsync exit code 20 (received SIGUSR1 or SIGINT (interrupted))" in str(caught.value)
    received_before_kill = seen[-1].bytes
    assert received_before_kill < 4 * part
    kept = drp.run(["find", dest, "-path", "*/.rsync-partial/*", "-type", "f"]).stdout
    assert kept, "the interrupted file was not kept for resuming"

    second = copy_tree(drp, source, dest)
    assert second.total_size == 4 * part
    assert second.bytes_transferred < 4 * part - received_before_kill // 2
    assert checksums(drp, dest) == checksums(production, f"{scratch}/big")
    assert not exists(drp, f"{dest}/.rsync-partial")


def test_files_that_vanish_during_the_copy_are_a_warning(
    production: SshHost, drp: SshHost, scratch: str
) -> None:
    root = f"{scratch}/vanish"
    production.run(
        [
            "sh",
            "-c",
            'set -e; mkdir -p "$1"; head -c 20000000 /dev/urandom > "$1/a-big"; '
            'echo x > "$1/z-small"',
            "sh",
            root,
        ]
    )
    deleted = threading.Event()

    def delete_the_small_file(event: CopyProgress) -> None:
        # rsync lists the whole tree first, then sends a-big slowly; z-small goes meanwhile.
        if not deleted.is_set():
            production.run(["rm", "--", f"{root}/z-small"])
            deleted.set()

    result = copy_tree(
        drp,
        from_production(root),
        f"{scratch}/vanish-copy",
        CopyOptions(bwlimit_kib=5 * 1024),
        delete_the_small_file,
    )
    assert deleted.is_set()
    assert result.vanished_files
    assert "vanished" in result.warnings
    assert checksums(drp, f"{scratch}/vanish-copy") == checksums(production, root)


def test_a_missing_source_fails_with_rsyncs_meaning_and_a_fix(drp: SshHost, scratch: str) -> None:
    with pytest.raises(RsyncError) as caught:
        copy_tree(drp, from_production(f"{scratch}/nothing-here"), f"{scratch}/copy")
    assert caught.value.exit_code == 23
    message = str(caught.value)
    assert message.startswith(
        f"copy of production:{scratch}/nothing-here to drp:{scratch}/copy failed: rsync exit code "
        f"23 (partial transfer due to error). {scratch}/nothing-here does not exist on production"
    )


def test_the_receiver_refuses_a_sender_missing_from_its_known_hosts(
    lab, production: SshHost, drp: SshHost, scratch: str
) -> None:
    source = make_tree(production, scratch)
    drp.run(["mkdir", "-p", scratch])
    drp.run(["sh", "-c", ': > "$1"', "sh", f"{scratch}/empty_known_hosts"])
    with pytest.raises(RsyncError) as caught:
        copy_tree(
            drp,
            from_production(source, known_hosts=f"{scratch}/empty_known_hosts"),
            f"{scratch}/copy",
        )
    assert caught.value.exit_code == 255
    assert (
        "drp does not know the host key of production (127.0.10.1:2222): it is not in "
        f"{scratch}/empty_known_hosts on drp" in str(caught.value)
    )
    assert "ssh-keyscan -p 2222 127.0.10.1" in str(caught.value)
    assert not exists(drp, f"{scratch}/copy/data.bin")


def test_the_receiver_refuses_a_sender_whose_key_changed(
    lab, production: SshHost, drp: SshHost, scratch: str
) -> None:
    source = make_tree(production, scratch)
    wrong_key = known_hosts_lines(lab)["backup-even"].split(maxsplit=1)[1]
    drp.run(["mkdir", "-p", scratch])
    drp.run(
        [
            "sh",
            "-c",
            'printf "%s\\n" "$2" > "$1"',
            "sh",
            f"{scratch}/kh",
            f"[127.0.10.1]:2222 {wrong_key}",
        ]
    )
    with pytest.raises(RsyncError) as caught:
        copy_tree(drp, from_production(source, known_hosts=f"{scratch}/kh"), f"{scratch}/copy")
    message = str(caught.value)
    assert "the host key of production (127.0.10.1:2222) changed" in message
    assert "otherwise this may be an attack: stop" in message
    assert not exists(drp, f"{scratch}/copy/data.bin")


def test_a_key_path_missing_on_the_receiver_fails_with_the_fix(
    production: SshHost, drp: SshHost, scratch: str
) -> None:
    source = make_tree(production, scratch)
    with pytest.raises(RsyncError) as caught:
        copy_tree(drp, from_production(source, key_path="~/.ssh/no-such-key"), f"{scratch}/copy")
    assert "the key ~/.ssh/no-such-key does not exist on drp" in str(caught.value)


@pytest.fixture
def agent(lab, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    with running_agent(lab.paths.operator_key) as socket_path:
        monkeypatch.setenv("SSH_AUTH_SOCK", socket_path)
        yield socket_path


def test_agent_forwarding_mode_copies_with_the_operators_key(
    lab, agent: str, production: SshHost, scratch: str
) -> None:
    source = make_tree(production, scratch)
    agent_source = from_production(source, key_path=None)
    with SshHost(target(lab, "drp"), forward_agent=True) as forwarding:
        result = copy_tree(forwarding, agent_source, f"{scratch}/copy")
        assert result.files_transferred == 4
        assert listing(forwarding, f"{scratch}/copy") == listing(production, source)

    # Without the forwarded agent the same copy is refused: the host's own key is not used.
    with SshHost(target(lab, "drp")) as plain, pytest.raises(RsyncError) as caught:
        copy_tree(plain, agent_source, f"{scratch}/copy-2")
    assert "refused drplab-production@127.0.10.1 (port 2222) with the forwarded agent" in str(
        caught.value
    )
