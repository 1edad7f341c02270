"""The exceptions drp raises on purpose. Each message says what is wrong and how to fix it.

Library errors are wrapped with context (`raise StepFailed(...) from err`) so that an operator
reads one sentence about the disaster-recovery step, and a developer still has the cause.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path


class DrpError(Exception):
    """Base of every error drp raises on purpose."""


class ConfigError(DrpError):
    """The inventory (or a value derived from it, such as a secret) is wrong or missing.

    Carries where the problem is (`file`, `line`, `field` as a dotted path such as
    `environments[0].databases[1].engine`) and what was `expected`. `str()` gives one line in
    the form `file:line: field: message`. An error that gathers several problems (a whole file's
    validation) keeps them in `problems` and prints one per line.
    """

    def __init__(
        self,
        message: str,
        *,
        file: str | Path | None = None,
        line: int | None = None,
        field: str | None = None,
        expected: str | None = None,
        problems: Sequence[ConfigError] = (),
    ) -> None:
        self.message = message
        self.file = str(file) if file is not None else None
        self.line = line
        self.field = field
        self.expected = expected
        self.problems: tuple[ConfigError, ...] = tuple(problems)
        super().__init__(str(self))

    @property
    def location(self) -> str:
        """`file:line: field` (whatever parts are known), empty if none."""
        parts = []
        if self.file is not None:
            parts.append(self.file if self.line is None else f"{self.file}:{self.line}")
        if self.field:
            parts.append(self.field)
        return ": ".join(parts)

    def __str__(self) -> str:
        if self.problems:
            return "\n".join(str(problem) for problem in self.problems)
        return f"{self.location}: {self.message}" if self.location else self.message


class ProviderError(DrpError):
    """An external system (SSH host, database, DNS, ticket backend) refused or failed."""


class UnsafePlan(DrpError):
    """A plan would do something dangerous; the message gives the numbers and how to force it."""


class StepFailed(DrpError):
    """A runbook step could not reach its target state."""


class VerifyFailed(DrpError):
    """A step ran, but checking the result showed the target state is not there."""
