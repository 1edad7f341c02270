"""The unix users of the lab hosts: one unprivileged user per host, home = the host's root.

With `UsePAM no`, sshd refuses a locked account (`!` in /etc/shadow) even for key logins, so the
password field is `*`: no password can match, keys still work.
"""

from __future__ import annotations

import os
import pwd
from pathlib import Path

from lab import topology
from lab.commands import run

SHELL = "/bin/bash"


def useradd_argv(host: topology.LabHost, home: Path) -> list[str]:
    return [
        "useradd",
        "--system",
        "--user-group",
        "--no-create-home",
        "--home-dir",
        str(home),
        "--shell",
        SHELL,
        "--password",
        "*",
        "--comment",
        f"drp lab host {host.name}",
        host.user,
    ]


def usermod_argv(host: topology.LabHost, home: Path) -> list[str]:
    return ["usermod", "--home", str(home), "--shell", SHELL, "--password", "*", host.user]


def _shadow_password(user: str) -> str | None:
    for line in Path("/etc/shadow").read_text().splitlines():
        name, _, rest = line.partition(":")
        if name == user:
            return rest.split(":", 1)[0]
    return None


def ensure_user(host: topology.LabHost, home: Path) -> bool:
    """Creates the host's user, or repairs home/shell/password; True when something changed."""
    try:
        entry = pwd.getpwnam(host.user)
    except KeyError:
        run(useradd_argv(host, home), what=f"creating unix user {host.user}")
        return True
    if entry.pw_dir != str(home) or entry.pw_shell != SHELL or _shadow_password(host.user) != "*":
        run(usermod_argv(host, home), what=f"updating unix user {host.user}")
        return True
    return False


def ids(user: str) -> tuple[int, int]:
    entry = pwd.getpwnam(user)
    return entry.pw_uid, entry.pw_gid


def make_owned_dir(path: Path, user: str, mode: int = 0o750) -> Path:
    """mkdir -p, then give the last component to `user` with `mode` (parents stay as they are)."""
    path.mkdir(parents=True, exist_ok=True)
    uid, gid = ids(user)
    os.chown(path, uid, gid)
    path.chmod(mode)
    return path


def chown_tree(root: Path, user: str) -> None:
    """Hands a whole tree to `user` (seeded files are written by root)."""
    uid, gid = ids(user)
    os.chown(root, uid, gid)
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            os.chown(os.path.join(dirpath, name), uid, gid, follow_symlinks=False)
