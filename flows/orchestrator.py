"""Which Prefect server `drp` runs its flows on, settled before Prefect is imported.

Prefect reads its settings once, when it is first imported; so the command line settles the
server first, from the inventory it was given (`-c` or `DRP_CONFIG`):

1. `PREFECT_API_URL` in the environment wins (set and empty: no server, a temporary local API);
2. else the `PREFECT_*` lines of the inventory's `env_file` apply, each one the environment
   does not set (`PREFECT_API_URL`, `PREFECT_API_AUTH_STRING`, `PREFECT_UI_URL`...): the lab's
   `lab.env` names the lab's Prefect server and its basic auth. They also fill in what the
   environment lacks when it names the same server, and are left out when it names another;
3. else Prefect's own profile (`prefect config set PREFECT_API_URL=...`);
4. else a temporary local API, started for the run and gone with it (15-20 s to start; no UI).

Before a run, `check()` asks the server once (its version, with the credentials drp will use),
so that a server that does not answer, or refuses drp's auth string, is one line saying what to
do, not a retry loop ending in a traceback. Auth strings are never printed.
"""

from __future__ import annotations

import base64
import os
from collections.abc import MutableMapping
from dataclasses import dataclass
from pathlib import Path

from runbooks.errors import DrpError
from runbooks.inventory import Site
from runbooks.secrets import read_env_file

PREFIX = "PREFECT_"
URL = "PREFECT_API_URL"
AUTH = "PREFECT_API_AUTH_STRING"
CHECK_TIMEOUT_S = 10.0


@dataclass(frozen=True)
class Server:
    """The Prefect API a run goes to, and where that choice came from."""

    api_url: str  # "" for a temporary local API
    source: str  # for the user: "PREFECT_API_URL in the environment", "FILE (...)", ...
    env_file: Path | None  # the inventory's env_file when its lines applied
    authenticated: bool  # an auth string is set (never shown)

    def describe(self) -> str:
        if not self.api_url:
            return (
                "Prefect: no server configured (PREFECT_API_URL unset), so a temporary local "
                "API starts for this run (15-20 s) and nothing is kept in a UI"
            )
        auth = ", basic auth" if self.authenticated else ""
        return f"Prefect server {self.api_url} (from {self.source}{auth})"


def _env_file_settings(site: Site) -> tuple[Path | None, dict[str, str]]:
    path = site.env_file
    if path is None or not path.is_file():
        return None, {}
    values = read_env_file(path)
    return path, {key: value for key, value in values.items() if key.startswith(PREFIX)}


def _same_server(a: str, b: str) -> bool:
    return a.rstrip("/") == b.rstrip("/")


def apply_inventory(site: Site, environ: MutableMapping[str, str] | None = None) -> Path | None:
    """Set the env_file's PREFECT_* lines that the environment lacks (see the module's order).

    Returns the env_file when its lines applied. Call before Prefect is imported: a process
    that has already imported it keeps the settings it read then."""
    environ = os.environ if environ is None else environ
    path, values = _env_file_settings(site)
    if not values:
        return None
    given = environ.get(URL)
    if given is not None and not _same_server(given, values.get(URL, "")):
        return None  # the environment names another server, or none
    for key, value in values.items():
        environ.setdefault(key, value)
    return path


def apply_for_secrets(site: Site) -> None:
    """For commands that run no flow: the env_file's Prefect lines apply only when a
    prefect-secret: reference is to be read from the server they name."""
    if any(ref.scheme == "prefect-secret" for _, ref in site.secret_refs()):
        apply_inventory(site)


def settle(site: Site) -> Server:
    """Apply the inventory's Prefect lines, then say which server Prefect will use."""
    given_before = URL in os.environ
    from_file = apply_inventory(site)
    from prefect.settings import get_current_settings

    settings = get_current_settings()
    url = settings.api.url or ""
    if given_before:
        source = f"{URL} in the environment"
    elif from_file is not None and URL in os.environ:
        source = f"{from_file}, the inventory's env_file"
    else:
        source = "the Prefect profile"
    return Server(
        api_url=url,
        source=source,
        env_file=from_file,
        authenticated=settings.api.auth_string is not None,
    )


def check(server: Server, site: Site) -> None:
    """One request to the server with drp's credentials; a DrpError saying what to do if the
    server does not answer or refuses them."""
    if not server.api_url:
        return
    import httpx
    from prefect.settings import get_current_settings

    settings = get_current_settings().api
    headers = {}
    if settings.auth_string is not None:  # as Prefect's client sends it
        token = base64.b64encode(settings.auth_string.get_secret_value().encode()).decode()
        headers["Authorization"] = f"Basic {token}"
    elif settings.key is not None:
        headers["Authorization"] = f"Bearer {settings.key.get_secret_value()}"
    where = f"{server.api_url} (from {server.source})"
    # A plain-HTTP server has no certificate to check: no TLS context is made for it (loading
    # the CA bundle takes 30-80 ms of a command's start); an https:// one is verified.
    tls = not server.api_url.lower().startswith("http://")
    try:
        reply = httpx.get(
            server.api_url.rstrip("/") + "/admin/version",
            headers=headers,
            timeout=CHECK_TIMEOUT_S,
            verify=tls,
        )
    except httpx.HTTPError as err:
        raise DrpError(
            f"the Prefect server {where} does not answer ({type(err).__name__}: {err}): start it "
            "(the lab's: `drp lab up`), or run without a server with PREFECT_API_URL= (empty); "
            "nothing was done"
        ) from None
    if reply.status_code == 401:
        file = site.env_file or "the inventory's env_file"
        said = "does not match the server's" if settings.auth_string else "is not set"
        raise DrpError(
            f"the Prefect server {where} refused drp's credentials (HTTP 401): "
            f"{AUTH} {said}; set it to the server's auth string (user:password) in the "
            f"environment or in {file}; nothing was done"
        )
