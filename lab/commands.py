"""Running the lab's set-up commands: argv builders and one runner with readable failures."""

from __future__ import annotations

import subprocess
from collections.abc import Mapping

from lab.errors import LabError


def as_user(user: str, argv: list[str]) -> list[str]:
    """argv run as `user` (uid, gid and groups) through setpriv, which execs: same pid."""
    return ["setpriv", "--reuid", user, "--regid", user, "--init-groups", "--", *argv]


def run(
    argv: list[str],
    *,
    what: str,
    env: Mapping[str, str] | None = None,
    input_text: str | None = None,
    timeout: float = 120.0,
) -> str:
    """Runs argv to completion and returns its stdout; a failure says what we were doing."""
    try:
        done = subprocess.run(
            argv,
            input=input_text,
            capture_output=True,
            text=True,
            env=dict(env) if env is not None else None,
            timeout=timeout,
            check=False,
        )
    except FileNotFoundError as err:
        raise LabError(f"{what}: {argv[0]} is not installed ({err})") from err
    except subprocess.TimeoutExpired as err:
        raise LabError(f"{what}: `{argv[0]}` did not finish within {timeout:.0f} s") from err
    if done.returncode != 0:
        output = (done.stderr.strip() or done.stdout.strip())[-2000:]
        raise LabError(f"{what} failed (exit {done.returncode}): {' '.join(argv)}\n{output}")
    return done.stdout
