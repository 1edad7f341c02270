"""The lab's secrets: generated once, kept in `<lab>/lab.env` (mode 0600), reused afterwards.

`config/lab.yaml` refers to them as `env:NAME`; tests and the lab itself read them with
`load_secrets`. Values are never printed. The file also names the lab's Prefect server
(`PREFECT_API_URL`, `PREFECT_UI_URL`: settings, rewritten whenever they differ) next to its
basic auth (`PREFECT_API_AUTH_STRING`): `drp` finds them there through config/lab.yaml's
`env_file`.
"""

from __future__ import annotations

import base64
import os
import secrets
import string
from collections.abc import Callable
from pathlib import Path

from lab import topology
from lab.errors import LabError

_ALNUM = string.ascii_letters + string.digits


def _alnum(length: int) -> Callable[[], str]:
    return lambda: "".join(secrets.choice(_ALNUM) for _ in range(length))


# How each secret is made; the OVH lengths are those of real OVH credentials.
GENERATORS: dict[str, Callable[[], str]] = {
    "DRP_LAB_PG_PASSWORD": _alnum(32),
    "DRP_LAB_MYSQL_PASSWORD": _alnum(32),
    "DRP_LAB_TSIG_SECRET": lambda: base64.b64encode(secrets.token_bytes(32)).decode(),
    "DRP_LAB_OVH_APPLICATION_KEY": _alnum(16),
    "DRP_LAB_OVH_APPLICATION_SECRET": _alnum(32),
    "DRP_LAB_OVH_CONSUMER_KEY": _alnum(32),
    "DRP_LAB_ORDER_SECRET": _alnum(48),  # signs the orders stored in reports
    # Basic auth of the lab's Prefect server: "user:password", typed whole in the UI's login.
    "PREFECT_API_AUTH_STRING": lambda: "drp-lab:" + _alnum(32)(),
}

# Not secrets: settings the file states so that `set -a; . lab.env` is a whole client set-up.
SETTINGS: dict[str, str] = {
    "PREFECT_API_URL": topology.PREFECT_API_URL,
    "PREFECT_UI_URL": topology.PREFECT_UI_URL,  # where the links to runs point
}


def parse_env(text: str) -> dict[str, str]:
    """KEY=value lines; blank lines and # comments are skipped."""
    values: dict[str, str] = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, value = line.split("=", 1)
        values[key.strip()] = value.strip()
    return values


def render_env(values: dict[str, str]) -> str:
    header = (
        "# drp lab secrets, generated on first `drp lab up`. Keep private (mode 0600).\n"
        "# The PREFECT_* lines name the lab's Prefect server and its basic auth: drp reads\n"
        "# them here (config/lab.yaml's env_file); a worker: set -a; . THIS_FILE; set +a\n"
    )
    return header + "".join(f"{key}={value}\n" for key, value in values.items())


def load_secrets(paths: topology.LabPaths) -> dict[str, str]:
    """The lab's secrets by name; fails when the lab was never brought up."""
    try:
        values = parse_env(paths.secrets_env.read_text())
    except FileNotFoundError as err:
        raise LabError(
            f"no lab secrets at {paths.secrets_env}; run `drp lab up` (as root) to create them"
        ) from err
    missing = [name for name in topology.SECRET_NAMES if name not in values]
    if missing:
        raise LabError(
            f"{paths.secrets_env} lacks {', '.join(missing)}; run `drp lab up` to add them"
        )
    return values


def ensure_secrets(paths: topology.LabPaths) -> dict[str, str]:
    """Loads the secrets file, generating any secret it lacks (all of them on first use)."""
    path: Path = paths.secrets_env
    existing = parse_env(path.read_text()) if path.exists() else {}
    missing = [name for name in topology.SECRET_NAMES if name not in existing]
    stale = {name: value for name, value in SETTINGS.items() if existing.get(name) != value}
    if missing or stale or not path.exists():
        values = {**existing, **stale, **{name: GENERATORS[name]() for name in missing}}
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(render_env(values))
        tmp.replace(path)
    path.chmod(0o600)
    return load_secrets(paths)
