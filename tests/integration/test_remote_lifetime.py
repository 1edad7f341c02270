"""Nothing drp starts on a host outlives it: commands end with their SSH channel.

drp runs in a child process here and is killed with SIGKILL (no cleanup of its own), as when the
machine that runs it crashes; then the hosts are searched for what it had started. A copy killed
that way continues its half-sent file on the next run: the bytes sent again are measured.
"""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator

import pytest
from ssh_lab import target

from lab import topology
from providers.rsync import CopyOptions, copy_tree
from providers.ssh import SshError, SshHost

pytestmark = pytest.mark.lab

MiB = 1024 * 1024
HERE = os.path.dirname(__file__)
ROOT = os.path.dirname(os.path.dirname(HERE))

# drp's side, in a child process: run one command on drp, or one copy production -> drp.
CHILD = textwrap.dedent(
    """
    import sys
    sys.path[:0] = [{root!r}, {here!r}]
    from lab import topology
    from providers.rsync import CopyOptions, RemoteEndpoint, copy_tree
    from providers.ssh import SshHost
    from ssh_lab import target

    class Lab:
        paths = topology.paths()

    host = SshHost(target(Lab, "drp"))
    what = sys.argv[1]
    if what == "command":
        stdin = sys.argv[3] if len(sys.argv) > 3 else None
        host.run(["sh", "-c", sys.argv[2]], stdin=stdin, secret_env={{"DRP_X": "value"}})
    else:
        production = topology.host("production")
        source = RemoteEndpoint(
            "production", production.address, topology.SSH_PORT, production.user, sys.argv[2],
            key_path="~/.ssh/id_ed25519",
        )
        options = CopyOptions(bwlimit_kib=4096, partial_dir=sys.argv[4])
        copy_tree(host, source, sys.argv[3], options)
    """
).format(root=ROOT, here=HERE)


def start_drp(*argv: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-c", CHILD, *argv],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )


def kill_drp(process: subprocess.Popen[bytes]) -> None:
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    assert process.stderr is not None
    process.stderr.close()


def running(host: SshHost, pattern: str) -> list[str]:
    """The host user's processes whose command line matches (zombies have none)."""
    user = topology.host(host.name).user
    found = host.run(["pgrep", "-a", "-u", user, "-f", pattern], check=False).stdout
    return [line for line in found.splitlines() if "pgrep" not in line]


def wait_until(condition, timeout: float, what: str) -> float:  # type: ignore[no-untyped-def]
    started = time.monotonic()
    while not condition():
        assert time.monotonic() - started < timeout, f"{what} after {timeout} s"
        time.sleep(0.05)
    return time.monotonic() - started


@pytest.fixture(scope="module")
def drp(lab) -> Iterator[SshHost]:
    with SshHost(target(lab, "drp")) as host:
        yield host


@pytest.fixture(scope="module")
def production(lab) -> Iterator[SshHost]:
    with SshHost(target(lab, "production")) as host:
        yield host


@pytest.mark.parametrize("stdin", [None, "some input\n"], ids=["no-input", "with-input"])
def test_a_remote_command_dies_with_drp(drp: SshHost, stdin: str | None) -> None:
    tag = f"drp-orphan-{secrets.token_hex(4)}"
    child = start_drp("command", f"sleep 300; : {tag}", *([stdin] if stdin else []))
    wait_until(lambda: running(drp, f"[s]leep 300; : {tag}"), 30, "the command never started")
    kill_drp(child)
    took = wait_until(lambda: not running(drp, tag), 5, f"still running on drp: {tag}")
    assert took < 2


def test_a_command_over_its_timeout_is_ended_on_the_host(drp: SshHost) -> None:
    tag = f"drp-timeout-{secrets.token_hex(4)}"
    with pytest.raises(SshError, match="did not finish within 1 s"):
        drp.run(["sh", "-c", f"sleep 30; : {tag}"], timeout=1)
    wait_until(lambda: not running(drp, tag), 3, f"still running on drp: {tag}")


def test_input_and_exit_codes_pass_through_the_guard(drp: SshHost) -> None:
    data = "line one\n" + "x" * 300_000  # more than a pipe holds
    result = drp.run(["sh", "-c", 'read first; echo "$first"; wc -c'], stdin=data)
    assert result.stdout == f"line one\n{300_000}\n"
    secret = drp.run(["sh", "-c", 'echo "$DRP_S"; cat'], secret_env={"DRP_S": "a b"}, stdin="z")
    assert secret.stdout == "a b\nz"
    assert drp.run(["sh", "-c", "exit 7"], check=False).exit_code == 7
    assert drp.run(["sh", "-c", "kill -TERM $$"], check=False).exit_code == -1
    assert drp.run(["cat"]).stdout == ""  # no input: end of file at once, not a hang


def test_a_copy_killed_with_drp_stops_and_resends_under_one_percent(
    drp: SshHost, production: SshHost
) -> None:
    scratch = f"drp-test-{secrets.token_hex(4)}"
    big = 24 * MiB
    try:
        production.run(
            [
                "sh",
                "-c",
                'set -e; mkdir -p "$1/small"; head -c "$2" /dev/urandom > "$1/big.bin"; '
                'for i in $(seq 1 40); do head -c 65536 /dev/urandom > "$1/small/f$i"; done',
                "sh",
                f"{scratch}/src",
                str(big),
            ]
        )
        total = big + 40 * 65536
        dest = f"{scratch}/dest"
        home = drp.run(["pwd"]).stdout.strip()
        partial = f"{home}/{scratch}/operation/partial/copy"
        child = start_drp("copy", f"{scratch}/src", dest, partial)

        def big_half_sent() -> bool:
            out = drp.run(
                ["sh", "-c", 'find "$1" -maxdepth 1 -name ".big.bin.*" -size +8M', "sh", dest],
                check=False,
            )
            return bool(out.stdout.strip())

        wait_until(big_half_sent, 60, "the big file never got half way")
        assert child.poll() is None, child.stderr.read().decode()[-2000:] if child.stderr else ""
        kill_drp(child)
        wait_until(lambda: not running(drp, f"[r]sync .*{dest}"), 5, "rsync outlived drp")

        # What arrived before the kill: whole files, and the big one's first part kept apart.
        kept = drp.run(["sh", "-c", 'du -sb -- "$1"/* | cut -f1', "sh", partial]).stdout.split()
        assert kept, "the half-sent file was not kept for the next run"
        arrived = drp.run(
            ["sh", "-c", 'find "$1" -type f -printf "%s\\n"', "sh", dest]
        ).stdout.split()
        assert not drp.run(["find", dest, "-name", ".big.bin.*"]).stdout, "a temporary file left"
        present = sum(int(n) for n in kept) + sum(int(n) for n in arrived)

        resumed = copy_tree(
            drp, from_production(f"{scratch}/src"), dest, CopyOptions(partial_dir=partial)
        )
        resent = resumed.bytes_transferred - (total - present)
        assert resent < total / 100, f"{resent} bytes sent again of {total}"
        sums = 'cd -- "$1" && find . -type f | LC_ALL=C sort | xargs sha256sum'
        assert (
            drp.run(["sh", "-c", sums, "sh", dest]).stdout
            == production.run(["sh", "-c", sums, "sh", f"{scratch}/src"]).stdout
        )
    finally:
        for host in (production, drp):
            host.run(["rm", "-rf", "--", scratch])


def from_production(path: str):  # type: ignore[no-untyped-def]
    from providers.rsync import RemoteEndpoint

    production = topology.host("production")
    return RemoteEndpoint(
        "production",
        production.address,
        topology.SSH_PORT,
        production.user,
        path,
        key_path="~/.ssh/id_ed25519",
    )
