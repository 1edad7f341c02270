"""Running commands on a host: the shape every provider relies on, whatever the transport.

Providers that act on a host (rsync, PostgreSQL, MySQL) build argv lists with pure functions
and hand them to a `CommandRunner` (the SSH provider is the real one). Secrets never travel in
argv (visible in `ps`) nor in logs: `secret_env` values are written to the command's standard
input and read into environment variables by a tiny shell prologue on the host.
"""

from __future__ import annotations

import shlex
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class CommandResult:
    argv: tuple[str, ...]
    exit_code: int
    stdout: str
    stderr: str
    seconds: float

    @property
    def ok(self) -> bool:
        return self.exit_code == 0


class CommandRunner(Protocol):
    """Runs argv on one host and returns its exit code and output."""

    name: str  # the host's name in the inventory, for messages

    def run(
        self,
        argv: Sequence[str],
        *,
        secret_env: Mapping[str, str] | None = None,
        stdin: str | None = None,
        timeout: float | None = None,
        check: bool = True,
        on_output: Callable[[str], None] | None = None,
    ) -> CommandResult:
        """Run argv; with check=True a non-zero exit raises the provider's error.

        `on_output` receives stdout chunks as they arrive (progress parsing); `secret_env`
        names environment variables whose values reach the command without appearing in argv,
        in logs or in the returned result.
        """
        ...


class WithTimeout:
    """`runner`, with `seconds` as the timeout of every command that does not set its own.

    A host's runner gives short commands (listings, checks) a short timeout; long work (a copy,
    a restore) runs through this view of it, with a limit of its own."""

    def __init__(self, runner: CommandRunner, seconds: float) -> None:
        self.runner, self.seconds, self.name = runner, seconds, runner.name

    def run(
        self,
        argv: Sequence[str],
        *,
        secret_env: Mapping[str, str] | None = None,
        stdin: str | None = None,
        timeout: float | None = None,
        check: bool = True,
        on_output: Callable[[str], None] | None = None,
    ) -> CommandResult:
        return self.runner.run(
            argv,
            secret_env=secret_env,
            stdin=stdin,
            timeout=self.seconds if timeout is None else timeout,
            check=check,
            on_output=on_output,
        )


def with_secret_env(argv: Sequence[str], names: Sequence[str]) -> list[str]:
    """argv wrapped so that the command reads `names` (one value per line) from stdin first.

    The values themselves are sent on stdin by the runner, in the order of `names`; whatever
    stdin follows them reaches the command unchanged.
    """
    if not names:
        return list(argv)
    for name in names:
        if not name.isidentifier() or not name.isupper():
            raise ValueError(f"not an environment variable name: {name!r}")
    reads = "; ".join(f"IFS= read -r {n}; export {n}" for n in names)
    return ["sh", "-c", f'{reads}; exec "$@"', "sh", *argv]


def path_arg(path: str) -> str:
    """A path on a host as an argument no command can take for an option or an expression:
    absolute as it is, relative as `./path`.

    `--` is not enough everywhere: `find` reads a starting point `-delete` as its action even
    after `--`, and `cd -` goes to the previous directory.
    """
    return path if path.startswith("/") else f"./{path}"


def shell_line(argv: Sequence[str]) -> str:
    """The single shell line SSH sends for argv, every word quoted."""
    return shlex.join(argv)
