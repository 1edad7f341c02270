"""The lab's Prefect server: API and UI on 127.0.10.70:4200, behind basic auth.

The UI asks for a password: the whole auth string (`user:password`, `PREFECT_API_AUTH_STRING`
in `<lab>/lab.env`).

Drills started with `drp` (config/lab.yaml names `<lab>/lab.env` as its env_file, which holds
`PREFECT_API_URL` and `PREFECT_API_AUTH_STRING`) and workers run through it, so their runs, the
order form and the reports are in its UI. Its SQLite database and profile live in
`<lab>/prefect/` (`PREFECT_HOME`): kept by `drp lab reset`, like keys and secrets. The server
is the `prefect` of the environment that runs `drp lab up` (the checkout's .venv).
"""

from __future__ import annotations

import sys
import urllib.error
import urllib.request
from pathlib import Path

from lab import topology
from lab.daemons import Daemon
from lab.errors import LabError

NAME = "prefect-server"
AUTH_NAME = "PREFECT_API_AUTH_STRING"
# A fresh database takes 15-20 s on two busy cores, an existing one 7-9 s: far more than the
# other daemons' 30 s allow for when the machine is loaded.
READY_TIMEOUT_S = 120.0


def prefect_program() -> Path:
    """The `prefect` command installed beside the Python running this code."""
    program = Path(sys.executable).parent / "prefect"
    if not program.is_file():
        raise LabError(
            f"the lab's Prefect server needs the `prefect` command, not found at {program}; "
            "install drp with `bash scripts/setup.sh` (it creates .venv) and run drp from there"
        )
    return program


def database_path(paths: topology.LabPaths) -> Path:
    return paths.prefect / "prefect.db"


def answers_health(timeout: float = 1.0) -> bool:
    """True once the API answers its health check (the one path basic auth leaves open)."""
    try:
        with urllib.request.urlopen(f"{topology.PREFECT_API_URL}/health", timeout=timeout) as r:
            return bool(r.status == 200)
    except (urllib.error.URLError, OSError, ValueError):
        return False


def prefect_daemon(paths: topology.LabPaths, secrets: dict[str, str]) -> Daemon:
    paths.prefect.mkdir(mode=0o700, parents=True, exist_ok=True)
    paths.prefect.chmod(0o700)  # the database holds run inputs, orders and secret blocks
    env = {
        "PREFECT_HOME": str(paths.prefect),
        "PREFECT_SERVER_DATABASE_CONNECTION_URL": f"sqlite+aiosqlite:///{database_path(paths)}",
        "PREFECT_SERVER_API_AUTH_STRING": secrets[AUTH_NAME],
        # The UI calls the API on the address it was loaded from: through an SSH tunnel too.
        "PREFECT_SERVER_UI_API_URL": "/api",
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "DO_NOT_TRACK": "1",
    }
    return Daemon(
        name=NAME,
        host="prefect",
        argv=[
            str(prefect_program()),
            "server",
            "start",
            "--host",
            topology.PREFECT_ADDRESS,
            "--port",
            str(topology.PREFECT_PORT),
        ],
        address=topology.PREFECT_ADDRESS,
        port=topology.PREFECT_PORT,
        ready=answers_health,
        env=env,
        cwd=paths.prefect,
        ready_timeout=READY_TIMEOUT_S,
    )
