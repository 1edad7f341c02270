"""SSH provider pieces that need no SSH server: messages, refusals before connecting, argv."""

from __future__ import annotations

import subprocess
from pathlib import Path

import paramiko
import pytest

from providers.commands import shell_line, with_secret_env
from providers.ssh import (
    SshError,
    SshHost,
    SshTarget,
    changed_host_message,
    keyscan_argv,
    unknown_host_message,
)


def _key(tmp_path: Path, name: str) -> paramiko.PKey:
    path = tmp_path / name
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path)], check=True)
    return paramiko.Ed25519Key.from_private_key_file(str(path))


def _target(tmp_path: Path, **changes: object) -> SshTarget:
    values: dict[str, object] = {
        "name": "drp",
        "address": "127.0.10.4",
        "port": 2222,
        "user": "drplab-drp",
        "key_path": None,
        "known_hosts": tmp_path / "known_hosts",
    }
    values.update(changes)
    return SshTarget(**values)  # type: ignore[arg-type]


def test_unknown_host_message_names_host_file_fingerprint_and_fix(tmp_path: Path) -> None:
    key = _key(tmp_path, "host")
    message = unknown_host_message(_target(tmp_path), key)
    assert message.startswith(
        f"host key of drp (127.0.10.4:2222) is not in {tmp_path / 'known_hosts'}; "
        f"it offers ssh-ed25519 {key.fingerprint}."
    )
    assert f"ssh-keyscan -p 2222 127.0.10.4 >> {tmp_path / 'known_hosts'}" in message
    assert "fingerprint" in message


def test_changed_host_message_shows_both_keys_and_says_stop(tmp_path: Path) -> None:
    offered, expected = _key(tmp_path, "new"), _key(tmp_path, "old")
    message = changed_host_message(_target(tmp_path), offered, expected)
    assert message.startswith("the host key of drp (127.0.10.4:2222) changed")
    assert offered.fingerprint in message and expected.fingerprint in message
    assert "replace its line ([127.0.10.4]:2222)" in message
    assert message.endswith("otherwise this may be an attack: stop and investigate")


def test_known_hosts_name_uses_brackets_only_off_port_22(tmp_path: Path) -> None:
    assert _target(tmp_path).known_hosts_name == "[127.0.10.4]:2222"
    assert _target(tmp_path, port=22).known_hosts_name == "127.0.10.4"
    assert keyscan_argv(_target(tmp_path)) == ["ssh-keyscan", "-p", "2222", "127.0.10.4"]


def test_missing_known_hosts_is_refused_before_connecting(tmp_path: Path) -> None:
    with SshHost(_target(tmp_path)) as host, pytest.raises(SshError) as caught:
        host.run(["true"])
    assert str(caught.value) == (
        f"known_hosts file {tmp_path / 'known_hosts'} for drp does not exist; create it with the "
        f"host's checked key: ssh-keyscan -p 2222 127.0.10.4 >> {tmp_path / 'known_hosts'}"
    )
    assert caught.value.host == "drp"


def test_missing_key_file_is_refused_before_connecting(tmp_path: Path) -> None:
    (tmp_path / "known_hosts").write_text("")
    target = _target(tmp_path, key_path=tmp_path / "nope")
    with SshHost(target) as host, pytest.raises(SshError, match=r"SSH key .*nope for drp does not"):
        host.run(["true"])


def test_unreachable_host_says_where_it_tried(tmp_path: Path) -> None:
    (tmp_path / "known_hosts").write_text("")
    # Nothing listens on this loopback address and port.
    target = _target(tmp_path, address="127.0.13.254", port=2, connect_timeout=2)
    with SshHost(target) as host, pytest.raises(SshError) as caught:
        host.run(["true"])
    assert str(caught.value).startswith("cannot reach drp at 127.0.13.254:2: ")
    assert "Check that the host is up" in str(caught.value)


def test_a_secret_with_a_line_break_is_refused_without_showing_it(tmp_path: Path) -> None:
    with SshHost(_target(tmp_path)) as host, pytest.raises(ValueError) as caught:
        host.run(["true"], secret_env={"PGPASSWORD": "hunter2\nrm -rf /"})
    assert "PGPASSWORD" in str(caught.value)
    assert "hunter2" not in str(caught.value)


def test_secret_env_wrapper_reads_values_from_stdin_not_argv() -> None:
    wrapped = with_secret_env(["psql", "-c", "select 1"], ["PGPASSWORD", "OTHER"])
    assert wrapped == [
        "sh",
        "-c",
        'IFS= read -r PGPASSWORD; export PGPASSWORD; IFS= read -r OTHER; export OTHER; exec "$@"',
        "sh",
        "psql",
        "-c",
        "select 1",
    ]
    assert shell_line(["echo", "it's"]) == "echo 'it'\"'\"'s'"
    with pytest.raises(ValueError, match="not an environment variable name"):
        with_secret_env(["true"], ["lower"])


def test_paths_under_home_are_expanded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    target = _target(tmp_path, known_hosts=Path("~/kh"), key_path=Path("~/.ssh/id"))
    host = SshHost(target)
    assert (host.target.known_hosts, host.target.key_path) == (
        tmp_path / "kh",
        tmp_path / ".ssh/id",
    )
    with pytest.raises(SshError, match=f"known_hosts file {tmp_path / 'kh'} for drp"):
        host.run(["true"])
