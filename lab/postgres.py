"""PostgreSQL 15 on a lab host: a throwaway cluster run by the host's user on the host's address.

The cluster's superuser is `topology.DB_USER` (set at initdb with the lab password), reachable
with SCRAM from any 127.0.0.0/8 address, as the lab's clients connect from 127.0.0.1.
"""

from __future__ import annotations

import os
import shutil
import signal
from pathlib import Path

import psycopg
from psycopg import sql

from lab import topology
from lab.accounts import ids, make_owned_dir
from lab.commands import as_user, run
from lab.daemons import Daemon

PG_BIN = Path("/usr/lib/postgresql/15/bin")
PASSWORD_NAME = "DRP_LAB_PG_PASSWORD"

# A standby of a lab cluster (lab.replica) streams from it over loopback.
REPLICATION_HBA = "host    replication   all   127.0.0.0/8   scram-sha-256"
PG_HBA = f"""\
# drp lab: password (SCRAM) logins only, from the socket or any loopback address.
local   all   all                 scram-sha-256
host    all   all   127.0.0.0/8   scram-sha-256
{REPLICATION_HBA}
"""


def data_dir(paths: topology.LabPaths, name: str) -> Path:
    return paths.data(name) / "postgresql"


def socket_dir(paths: topology.LabPaths, name: str) -> Path:
    return paths.data(name) / "postgresql-socket"


def initdb_argv(pgdata: Path, pwfile: Path) -> list[str]:
    return [
        str(PG_BIN / "initdb"),
        "--pgdata",
        str(pgdata),
        "--username",
        topology.DB_USER,
        "--pwfile",
        str(pwfile),
        "--auth-local",
        "scram-sha-256",
        "--auth-host",
        "scram-sha-256",
        "--encoding",
        "UTF8",
        "--no-locale",
        "--no-sync",  # a throwaway cluster; initdb's fsyncs cost more than the rest
        "--no-instructions",
    ]


def postgres_argv(
    pgdata: Path, address: str, sockets: Path, port: int = topology.PG_PORT
) -> list[str]:
    return [
        str(PG_BIN / "postgres"),
        "-D",
        str(pgdata),
        "-c",
        f"listen_addresses={address}",
        "-c",
        f"port={port}",
        "-c",
        f"unix_socket_directories={sockets}",
        "-c",
        "shared_buffers=64MB",
        "-c",
        "synchronous_commit=off",
    ]


def initialized_marker(paths: topology.LabPaths, name: str) -> Path:
    """Written once initdb has succeeded and pg_hba.conf is ours."""
    return paths.data(name) / "postgresql.initialized"


def is_initialized(paths: topology.LabPaths, name: str) -> bool:
    return initialized_marker(paths, name).exists()


def init_cluster(paths: topology.LabPaths, host: topology.LabHost, password: str) -> bool:
    """initdb as the host's user (it refuses root) unless done; True when a cluster was made."""
    if is_initialized(paths, host.name):
        return False
    base = make_owned_dir(paths.data(host.name), host.user, 0o755)
    pgdata = data_dir(paths, host.name)
    if pgdata.exists():  # a half-made cluster from an interrupted run
        shutil.rmtree(pgdata)
    make_owned_dir(pgdata, host.user, 0o700)
    pwfile = base / ".pg-password"
    fd = os.open(pwfile, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(password + "\n")
    os.chown(pwfile, *ids(host.user))
    try:
        run(as_user(host.user, initdb_argv(pgdata, pwfile)), what=f"initdb for {host.name}")
    finally:
        pwfile.unlink(missing_ok=True)
    hba = pgdata / "pg_hba.conf"
    hba.write_text(PG_HBA)
    os.chown(hba, *ids(host.user))
    initialized_marker(paths, host.name).write_text("initdb done\n")
    return True


def connect(
    host: topology.LabHost, secrets: dict[str, str], dbname: str = "postgres", timeout: int = 5
) -> psycopg.Connection:
    return psycopg.connect(
        host=host.address,
        port=topology.PG_PORT,
        user=topology.DB_USER,
        password=secrets[PASSWORD_NAME],
        dbname=dbname,
        connect_timeout=timeout,
        autocommit=True,
    )


def answers_sql(host: topology.LabHost, secrets: dict[str, str]) -> bool:
    try:
        with connect(host, secrets, timeout=1) as conn:
            conn.execute("SELECT 1")
        return True
    except psycopg.Error:
        return False


def postgres_daemon(
    paths: topology.LabPaths, host: topology.LabHost, secrets: dict[str, str]
) -> Daemon:
    """The host's postmaster, run by the host's user; stopped with SIGINT (fast shutdown)."""
    sockets = make_owned_dir(socket_dir(paths, host.name), host.user, 0o755)
    return Daemon(
        name=f"postgres-{host.name}",
        host=host.name,
        argv=postgres_argv(data_dir(paths, host.name), host.address, sockets),
        address=host.address,
        port=topology.PG_PORT,
        ready=lambda: answers_sql(host, secrets),
        run_as=host.user,
        cwd=paths.data(host.name),
        stop_signal=signal.SIGINT,
    )


def ensure_database(host: topology.LabHost, secrets: dict[str, str], dbname: str) -> bool:
    """Creates an empty database owned by DB_USER unless it exists; True when created."""
    with connect(host, secrets) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (dbname,)).fetchone()
        if exists:
            return False
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(dbname)))
    return True
