"""The local DR lab's fixed layout: which host lives on which loopback address.

Every lab component (daemons, seed data, the OVH emulator, `config/lab.yaml`, tests) agrees on
these values. The lab's state lives under one directory, `/var/lib/drp-lab` unless `DRP_LAB_DIR`
names another: never inside the checkout, which may sit in a home (such as /root) that the lab
hosts' users cannot enter. One lab runs per machine (its addresses are fixed); every checkout on
the machine finds it there. Comments in the lab's modules write that directory `<lab>/`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent

ZONE = "drp-lab.test"
SSH_PORT = 2222
PG_PORT = 5432
MYSQL_PORT = 3306
WEB_PORT = 8080
DNS_ADDRESS = "127.0.10.53"
DNS_PORT = 53
OVH_ADDRESS = "127.0.10.60"
OVH_PORT = 8080
OVH_ENDPOINT_NAME = "drp-lab"
TSIG_KEY_NAME = "drp-lab-key"
TSIG_ALGORITHM = "hmac-sha256"
# A DNS blocklist (DNSBL) zone served by the lab's Knot, so that `drp watch`'s blocklist probe
# has a listed address to find: the mail sink's, as a relay's would be.
BLOCKLIST_ZONE = "dnsbl.drp-lab.test"
BLOCKLISTED = ("127.0.10.25",)
# The lab's mail sink: SMTP tickets and order codes land in <lab>/data/mail (a Maildir).
SMTP_ADDRESS = "127.0.10.25"
SMTP_PORT = 2525
# The lab's Prefect server (API and UI, behind basic auth): the orchestrator drills run through.
PREFECT_ADDRESS = "127.0.10.70"
PREFECT_PORT = 4200
PREFECT_SERVER_URL = f"http://{PREFECT_ADDRESS}:{PREFECT_PORT}"
PREFECT_API_URL = f"{PREFECT_SERVER_URL}/api"
# Links to runs go to the newer UI: it asks for the password, then opens the page linked to (the
# older one, reached without its password, shows "Page not found" instead).
PREFECT_UI_URL = f"{PREFECT_SERVER_URL}/v2"

# Names in the lab's secrets file (`<lab>/lab.env`), referenced from config/lab.yaml as `env:NAME`.
SECRET_NAMES = (
    "DRP_LAB_PG_PASSWORD",
    "DRP_LAB_MYSQL_PASSWORD",
    "DRP_LAB_TSIG_SECRET",
    "DRP_LAB_OVH_APPLICATION_KEY",
    "DRP_LAB_OVH_APPLICATION_SECRET",
    "DRP_LAB_OVH_CONSUMER_KEY",
    "DRP_LAB_ORDER_SECRET",
    # The basic auth of the lab's Prefect server ("user:password"), under the name Prefect's
    # clients read, so that `drp` (through config/lab.yaml's env_file) and workers use it as is.
    "PREFECT_API_AUTH_STRING",
)

# The sample application ("environment") seeded on production.
APP_ENV = "app"
APP_FILES_DIR = "srv/app/www"  # relative to the host root (the SSH user's home)
APP_CONFIG_DIR = "srv/app/config"
APP_MAINTENANCE_FLAG = "srv/app/MAINTENANCE"
APP_PG_DB = "app_users"  # the user database, backed up every 2 hours
APP_MYSQL_DB = "app_shop"
DB_USER = "drp"
BACKUP_AREA = "backups"  # relative to a backup server's host root


@dataclass(frozen=True)
class LabHost:
    name: str  # role-ish name: production, backup-even, backup-odd, drp
    address: str  # its own loopback address (also its "public" IPv4 in DNS)
    datacenter: str
    databases: bool  # runs PostgreSQL + MariaDB
    web: bool  # runs the sample web application

    @property
    def user(self) -> str:
        return f"drplab-{self.name}"


HOSTS: tuple[LabHost, ...] = (
    LabHost("production", "127.0.10.1", "lab-lim1", databases=True, web=True),
    LabHost("backup-even", "127.0.10.2", "lab-rbx1", databases=False, web=False),
    LabHost("backup-odd", "127.0.10.3", "lab-sbg1", databases=False, web=False),
    LabHost("drp", "127.0.10.4", "lab-gra1", databases=True, web=True),
)


def host(name: str) -> LabHost:
    for h in HOSTS:
        if h.name == name:
            return h
    raise KeyError(f"no lab host named {name!r}; known: {', '.join(h.name for h in HOSTS)}")


DEFAULT_LAB_DIR = Path("/var/lib/drp-lab")


def lab_dir() -> Path:
    return Path(os.environ.get("DRP_LAB_DIR") or DEFAULT_LAB_DIR).resolve()


@dataclass(frozen=True)
class LabPaths:
    """Where things live under the lab directory."""

    root: Path

    @property
    def keys(self) -> Path:  # operator key `operator`, `known_hosts`, host keys
        return self.root / "keys"

    @property
    def operator_key(self) -> Path:
        return self.keys / "operator"

    @property
    def known_hosts(self) -> Path:
        return self.keys / "known_hosts"

    @property
    def secrets_env(self) -> Path:
        return self.root / "lab.env"

    @property
    def prefect(self) -> Path:  # the Prefect server's home: its SQLite database, its profile
        return self.root / "prefect"

    @property
    def run(self) -> Path:  # pid files
        return self.root / "run"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    def host_root(self, name: str) -> Path:  # the SSH user's home: what the host "is"
        return self.root / "hosts" / name

    def data(self, name: str) -> Path:  # daemon data directories, outside the host root
        return self.root / "data" / name

    @property
    def code(self) -> Path:  # the web app's code, copied where the hosts' users can read it
        return self.root / "code"

    @property
    def checkout(self) -> Path:  # which checkout brought the lab up (text: its path)
        return self.root / "checkout"


def paths() -> LabPaths:
    return LabPaths(lab_dir())
