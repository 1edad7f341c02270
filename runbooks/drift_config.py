"""The inventory's `drift:` section: what `drp drift` compares between production and the DRP
server beyond what it always compares, and which differences are expected.

Every field has a default: an inventory without `drift:` is checked for the built-ins (OS
release, the database servers' versions, listening services, crontabs, configuration trees and
disk sizes). `versions` adds commands whose output must be the same on both hosts
(`web server: "nginx -v"`); `ignore` leaves out differences that are known and wanted.

Like `runbooks.watch_config`, this module needs nothing of `runbooks.inventory` when imported
(the inventory imports it).
"""

from __future__ import annotations

import re
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, PlainValidator

# The first word of every drift item: what `ignore` patterns start with.
CATEGORIES: tuple[str, ...] = (
    "os",
    "version",
    "database",
    "listening",
    "crontab",
    "config",
    "disk",
)
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9 _.+-]{0,39}")
_MAX_COMMAND = 500
_IGNORE_HELP = (
    "a pattern of the items to leave out, starting with one of "
    + ", ".join(CATEGORIES)
    + " or '*' (e.g. 'listening tcp/25', 'config srv/app/config/cache/*')"
)


def _version_name(value: Any) -> str:
    what = "a name such as 'web server' or php (letters, digits, spaces, '_.+-', at most 40)"
    if not isinstance(value, str) or not _NAME.fullmatch(value.strip()):
        shown = repr(value) if isinstance(value, str | int | float) else "a value"
        raise ValueError(f"expected {what}, got {shown}")
    return value.strip()


def _command(value: Any) -> str:
    what = "a shell command run on both hosts, such as 'nginx -v'"
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"expected {what}, got {_kind(value)}")
    text = value.strip()
    if "\n" in text or "\r" in text or "\0" in text:
        raise ValueError("expected a shell command on one line, got a line break or a NUL byte")
    if len(text) > _MAX_COMMAND:
        raise ValueError(f"expected {what}, at most {_MAX_COMMAND} characters, got {len(text)}")
    return text


def _ignore(value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"expected {_IGNORE_HELP}, got {_kind(value)}")
    text = " ".join(value.split())
    first = text.split(" ", 1)[0]
    if not (text.startswith(("*", "?", "[")) or first in CATEGORIES):
        raise ValueError(f"expected {_IGNORE_HELP}, got {text!r}")
    return text


def _kind(value: Any) -> str:
    if value is None or (isinstance(value, str) and not value.strip()):
        return "an empty value"
    names = {dict: "a mapping", list: "a list", bool: "a boolean"}
    return names.get(type(value), "text" if isinstance(value, str) else "a number")


VersionName = Annotated[str, PlainValidator(_version_name, json_schema_input_type=str)]
Command = Annotated[str, PlainValidator(_command, json_schema_input_type=str)]
IgnorePattern = Annotated[str, PlainValidator(_ignore, json_schema_input_type=str)]


class Drift(BaseModel):
    """Drift between production and the DRP server (`drp drift`, and each staging run)."""

    model_config = ConfigDict(extra="forbid", frozen=True, hide_input_in_errors=True)

    versions: dict[VersionName, Command] = Field(
        default_factory=dict,
        description="Versions to compare besides the OS release and the database servers': a "
        "name and a read-only shell command run over SSH on production and on the DRP server "
        "(e.g. `web server: nginx -v`, `php: php -v`); their output (stdout and stderr) and exit "
        "code must be the same on both.",
    )
    ignore: list[IgnorePattern] = Field(
        default_factory=list,
        description="Differences that are expected: shell-style patterns matched against each "
        "item's name as `drp drift` prints it (e.g. 'listening tcp/25', 'config "
        "srv/app/config/local.ini', 'crontab /etc/cron.d/*').",
    )
    loopback: bool = Field(
        default=True,
        description="Compare services listening on the loopback address only (127.0.0.1, ::1) "
        "too; false where the hosts share one loopback (the lab). Services on the host's own "
        "addresses and on every address are always compared.",
    )
    command_seconds: float = Field(
        default=30,
        gt=0,
        le=3600,
        allow_inf_nan=False,
        description="Longest run of each `versions` command on a host (it is stopped after).",
    )
