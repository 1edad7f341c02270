"""SSH keys of the lab: host keys, the operator key, each host user's key, known_hosts files.

Keys live under `<lab>/keys/` (root only) and survive `drp lab reset`; each host's `~/.ssh` is
rebuilt from them on every `up`. Every lab host trusts the operator key and the keys of the
other lab hosts' users, so rsync started on one host can pull from another with host keys
checked against `~/.ssh/known_hosts` (StrictHostKeyChecking=yes).
"""

from __future__ import annotations

import os
from pathlib import Path

from lab import topology
from lab.accounts import ids, make_owned_dir
from lab.commands import run

KEY_TYPE = "ed25519"


def keygen_argv(path: Path, comment: str) -> list[str]:
    return ["ssh-keygen", "-q", "-t", KEY_TYPE, "-N", "", "-C", comment, "-f", str(path)]


def host_key(paths: topology.LabPaths, name: str) -> Path:
    return paths.keys / "hosts" / name / f"ssh_host_{KEY_TYPE}_key"


def user_key(paths: topology.LabPaths, name: str) -> Path:
    return paths.keys / "users" / name / f"id_{KEY_TYPE}"


def ensure_key(path: Path, comment: str) -> bool:
    """Generates an ed25519 key pair at path unless both halves exist; True when generated."""
    if path.exists() and path.with_suffix(".pub").exists():
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    path.parent.chmod(0o700)
    path.unlink(missing_ok=True)
    path.with_suffix(".pub").unlink(missing_ok=True)
    run(keygen_argv(path, comment), what=f"generating SSH key {path}")
    return True


def public_key(path: Path) -> str:
    """`ssh-ed25519 AAAA...` without the comment."""
    key_type, blob = path.with_suffix(".pub").read_text().split()[:2]
    return f"{key_type} {blob}"


def known_hosts_line(address: str, port: int, key: str) -> str:
    host = address if port == 22 else f"[{address}]:{port}"
    return f"{host} {key}\n"


def render_known_hosts(paths: topology.LabPaths) -> str:
    return "".join(
        known_hosts_line(h.address, topology.SSH_PORT, public_key(host_key(paths, h.name)))
        for h in topology.HOSTS
    )


def render_authorized_keys(paths: topology.LabPaths, host: topology.LabHost) -> str:
    lines = [f"{public_key(paths.operator_key)} drp-lab-operator\n"]
    lines += [
        f"{public_key(user_key(paths, other.name))} {other.user}\n"
        for other in topology.HOSTS
        if other.name != host.name
    ]
    return "".join(lines)


def ensure_all_keys(paths: topology.LabPaths) -> list[str]:
    """Every key the lab needs, plus the operator's known_hosts; returns what was generated."""
    paths.keys.mkdir(parents=True, exist_ok=True)
    paths.keys.chmod(0o700)
    made = []
    if ensure_key(paths.operator_key, "drp-lab-operator"):
        made.append("operator key")
    for h in topology.HOSTS:
        if ensure_key(host_key(paths, h.name), f"drp-lab host key {h.name}"):
            made.append(f"host key {h.name}")
        if ensure_key(user_key(paths, h.name), h.user):
            made.append(f"user key {h.user}")
    _write(paths.known_hosts, render_known_hosts(paths), 0o644)
    return made


def _write(path: Path, text: str, mode: int, owner: str | None = None) -> None:
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
    tmp.chmod(mode)
    if owner is not None:
        os.chown(tmp, *ids(owner))
    tmp.replace(path)


def install_user_ssh(paths: topology.LabPaths, host: topology.LabHost) -> None:
    """The host user's ~/.ssh: authorized_keys, its own key pair, and the lab's known_hosts."""
    ssh_dir = make_owned_dir(paths.host_root(host.name) / ".ssh", host.user, 0o700)
    key = user_key(paths, host.name)
    _write(ssh_dir / "authorized_keys", render_authorized_keys(paths, host), 0o600, host.user)
    _write(ssh_dir / f"id_{KEY_TYPE}", key.read_text(), 0o600, host.user)
    _write(ssh_dir / f"id_{KEY_TYPE}.pub", key.with_suffix(".pub").read_text(), 0o644, host.user)
    _write(ssh_dir / "known_hosts", render_known_hosts(paths), 0o644, host.user)
