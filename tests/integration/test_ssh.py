"""The SSH provider against the lab's real sshd: strict host keys, commands, secrets, agent."""

from __future__ import annotations

import hashlib
import logging
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from ssh_lab import known_hosts_lines, running_agent, target

from providers.commands import WithTimeout
from providers.ssh import SshError, SshHost, SshTarget

pytestmark = pytest.mark.lab

SECRET = "s3cr3t with spaces, 'quotes' and $dollars\\"


def refusal(host_target: SshTarget) -> str:
    """The message of the SshError raised by the first command on host_target."""
    with SshHost(host_target) as host, pytest.raises(SshError) as caught:
        host.run(["true"])
    return str(caught.value)


@pytest.fixture
def drp(lab) -> Iterator[SshHost]:
    with SshHost(target(lab, "drp")) as host:
        yield host


def test_runs_a_command_on_the_right_host_and_returns_exit_code_and_output(drp: SshHost) -> None:
    result = drp.run(
        ["sh", "-c", 'echo "on $DRP_LAB_HOST as $(id -un)"; echo oops >&2; exit 3'], check=False
    )
    assert result.exit_code == 3
    assert not result.ok
    assert result.stdout == "on drp as drplab-drp\n"
    assert result.stderr == "oops\n"
    assert result.argv[0] == "sh"


def test_arguments_with_spaces_and_quotes_arrive_unchanged(drp: SshHost) -> None:
    words = ["it's", 'say "hi"', "$HOME", "-n", "a;b", ""]
    result = drp.run(["printf", "[%s]\\n", *words])
    assert result.stdout.splitlines() == [f"[{w}]" for w in words]


def test_a_failing_command_raises_with_its_exit_code_and_stderr(drp: SshHost) -> None:
    with pytest.raises(SshError) as caught:
        drp.run(["ls", "/no/such/dir"])
    assert caught.value.exit_code == 2
    message = str(caught.value)
    assert message.startswith("ls /no/such/dir on drp exited with code 2:\n")
    assert "No such file or directory" in message


def test_unknown_host_key_is_refused_with_the_fix(lab, tmp_path: Path) -> None:
    lines = known_hosts_lines(lab)
    known_hosts = tmp_path / "known_hosts"
    known_hosts.write_text(lines["production"] + "\n")  # drp missing
    message = refusal(target(lab, "drp", known_hosts=known_hosts))
    assert message.startswith(
        f"host key of drp (127.0.10.4:2222) is not in {known_hosts}; it offers ssh-ed25519 SHA256:"
    )
    assert f"ssh-keyscan -p 2222 127.0.10.4 >> {known_hosts}" in message
    # Refused, not learnt: the file is as it was.
    assert known_hosts.read_text() == lines["production"] + "\n"


def test_changed_host_key_is_refused_as_a_possible_attack(lab, tmp_path: Path) -> None:
    lines = known_hosts_lines(lab)
    production_key = lines["production"].split(maxsplit=1)[1]
    known_hosts = tmp_path / "known_hosts"
    known_hosts.write_text(f"[127.0.10.4]:2222 {production_key}\n")  # drp with a wrong key
    message = refusal(target(lab, "drp", known_hosts=known_hosts))
    assert message.startswith("the host key of drp (127.0.10.4:2222) changed: it offers")
    assert "replace its line ([127.0.10.4]:2222)" in message
    assert message.endswith("otherwise this may be an attack: stop and investigate")


def test_a_key_the_host_does_not_accept_is_refused(lab, tmp_path: Path) -> None:
    key = tmp_path / "stranger"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    assert refusal(target(lab, "drp", key_path=key)).startswith(
        f"drp (127.0.10.4:2222) refused drplab-drp with key {key}: Authentication failed. "
        "Check that the public key is in ~drplab-drp/.ssh/authorized_keys on the host"
    )


def test_secret_env_reaches_the_command_but_no_argv_result_or_log(
    drp: SshHost, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    expected = hashlib.sha256(SECRET.encode()).hexdigest()
    result = drp.run(
        ["sh", "-c", 'printf %s "$DB_PASSWORD" | sha256sum; cat'],
        secret_env={"DB_PASSWORD": SECRET},
        stdin="the command's own input\n",
    )
    assert result.stdout == f"{expected}  -\nthe command's own input\n"
    assert SECRET not in repr(result)
    assert "DB_PASSWORD" in caplog.text  # the name is logged, the value never
    assert SECRET not in caplog.text


def test_secret_env_is_not_visible_in_the_hosts_process_list(drp: SshHost) -> None:
    done = threading.Event()

    def wait_with_secret() -> None:
        drp.run(["sh", "-c", "sleep 2"], secret_env={"DB_PASSWORD": SECRET})
        done.set()

    worker = threading.Thread(target=wait_with_secret)
    worker.start()
    try:
        deadline = time.monotonic() + 10
        processes = ""
        while "sleep 2" not in processes and time.monotonic() < deadline:
            processes = drp.run(["ps", "-u", "drplab-drp", "-o", "args="]).stdout
        assert "sleep 2" in processes
        assert SECRET not in processes
    finally:
        worker.join()
    assert done.is_set()


def test_output_is_streamed_while_the_command_runs(drp: SshHost) -> None:
    arrivals: list[tuple[float, str]] = []
    started = time.monotonic()
    result = drp.run(
        ["sh", "-c", "echo one; sleep 1; echo two"],
        on_output=lambda text: arrivals.append((time.monotonic() - started, text)),
    )
    assert result.stdout == "one\ntwo\n"
    assert "".join(text for _, text in arrivals) == "one\ntwo\n"
    assert arrivals[0][1] == "one\n"
    assert arrivals[0][0] < result.seconds - 0.5  # "one" came before the command ended


def test_a_command_over_its_timeout_is_abandoned(drp: SshHost) -> None:
    started = time.monotonic()
    with pytest.raises(SshError, match=r"sleep 30 on drp did not finish within 1 s") as caught:
        drp.run(["sleep", "30"], timeout=1)
    assert time.monotonic() - started < 5
    assert caught.value.timed_out_after == 1


def test_a_command_without_a_timeout_gets_the_hosts_and_long_work_its_own(lab) -> None:
    """The inventory's command timeout applies to every command that sets none; long work runs
    through a view of the runner with a limit of its own."""
    with SshHost(target(lab, "drp", command_timeout=1)) as host:
        with pytest.raises(SshError, match="did not finish within 1 s; the host may hang"):
            host.run(["sleep", "30"])
        assert host.run(["sleep", "2"], timeout=5).ok  # its own timeout wins
        assert WithTimeout(host, 5).run(["sleep", "2"]).ok  # long work: its own limit
        with pytest.raises(SshError, match="within 1 s"):
            WithTimeout(host, 5).run(["sleep", "30"], timeout=1)


def test_commands_share_one_connection(drp: SshHost) -> None:
    first = drp.run(["sh", "-c", "echo $SSH_CONNECTION"]).stdout
    second = drp.run(["sh", "-c", "echo $SSH_CONNECTION"]).stdout
    assert first == second  # same client port: the same TCP connection
    drp.close()
    third = drp.run(["sh", "-c", "echo $SSH_CONNECTION"]).stdout
    assert third != first  # after close, a new connection


def test_more_commands_at_once_than_sshd_allows_sessions_wait_their_turn(drp: SshHost) -> None:
    """sshd refuses a connection's 11th session (MaxSessions 10): 14 parallel steps on one host
    (trees and databases of many environments) must all run, not fail."""
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=14) as pool:
        results = list(pool.map(lambda i: drp.run(["sh", "-c", f"sleep 1; echo {i}"]), range(14)))
    assert [r.stdout.strip() for r in results] == [str(i) for i in range(14)]


@pytest.fixture
def agent(lab, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A real ssh-agent holding the operator key; SSH_AUTH_SOCK points at it."""
    with running_agent(lab.paths.operator_key) as socket_path:
        monkeypatch.setenv("SSH_AUTH_SOCK", socket_path)
        yield socket_path


def test_agent_mode_logs_in_with_the_agents_key(lab, agent: str) -> None:
    with SshHost(target(lab, "drp", key_path=None)) as host:
        assert host.run(["sh", "-c", "echo $DRP_LAB_HOST"]).stdout == "drp\n"


def test_agent_mode_without_an_agent_says_how_to_start_one(
    lab, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("SSH_AUTH_SOCK", raising=False)
    assert refusal(target(lab, "drp", key_path=None)).startswith(
        "no SSH key is configured for drp (127.0.10.4:2222) and no ssh-agent is running"
    )


def test_forward_agent_lets_the_host_use_the_operators_agent(lab, agent: str) -> None:
    operator_fingerprint = subprocess.run(
        ["ssh-keygen", "-lf", str(lab.paths.operator_key)],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.split()[1]
    with SshHost(target(lab, "drp"), forward_agent=True) as host:
        listed = host.run(["ssh-add", "-l"]).stdout
    assert operator_fingerprint in listed
    with SshHost(target(lab, "drp")) as host:
        # Without forwarding the host sees no agent at all (ssh-add exits 2).
        assert host.run(["ssh-add", "-l"], check=False).exit_code == 2


def test_a_lost_connection_is_reported_and_the_next_command_reconnects(drp: SshHost) -> None:
    # Killing the host's sshd session process (the command's nearest sshd ancestor; the
    # command runs under drp's guard) drops the connection.
    find_sshd = (
        "p=$PPID; while :; do case $(ps -o comm= -p $p) in sshd*) break;; esac; "
        "p=$(ps -o ppid= -p $p | tr -d ' '); done; kill -9 $p; sleep 5"
    )
    with pytest.raises(SshError, match=r"^the connection to drp \(127.0.10.4:2222\) was lost"):
        drp.run(["sh", "-c", find_sshd])
    assert drp.run(["echo", "back"]).stdout == "back\n"
