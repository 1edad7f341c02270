"""A streaming standby of production's PostgreSQL, on the DRP host's address, for the tests of
`drp watch`'s replication probe.

It is not part of `drp lab up` (a standby replays every write of production, which the drills
and benchmarks would pay for): `running()` makes it for the time of a test, from a base backup
of production (`pg_basebackup -R`, with a replication slot so that it never misses WAL), runs it
as the DRP host's user on 127.0.10.4:5433, and removes it, its slot and its files afterwards.
Production's pg_hba.conf gets the replication line new lab clusters have, if it lacks it.
"""

from __future__ import annotations

import contextlib
import shutil
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg

from lab import postgres, topology
from lab.accounts import make_owned_dir
from lab.commands import as_user, run
from lab.daemons import Daemon
from lab.errors import LabError
from lab.supervisor import Supervisor

NAME = "postgres-replica"
PORT = 5433
SLOT = "drp_lab_replica"


def replica_dir(paths: topology.LabPaths) -> Path:
    return paths.data("drp") / "postgresql-replica"


def _production(secrets: dict[str, str]) -> psycopg.Connection:
    return postgres.connect(topology.host("production"), secrets)


def allow_replication(paths: topology.LabPaths, secrets: dict[str, str]) -> None:
    """Production's pg_hba.conf takes replication logins over loopback (reloaded if changed)."""
    hba = postgres.data_dir(paths, "production") / "pg_hba.conf"
    text = hba.read_text()
    if postgres.REPLICATION_HBA not in text:
        hba.write_text(text.rstrip("\n") + "\n" + postgres.REPLICATION_HBA + "\n")
        with _production(secrets) as conn:
            conn.execute("SELECT pg_reload_conf()")
        time.sleep(0.2)  # the postmaster rereads it asynchronously


def _drop_slot(secrets: dict[str, str], wait: float = 10.0) -> None:
    """Drop the standby's slot on production (once its walsender is gone): a slot left behind
    would keep production's WAL for ever."""
    deadline = time.monotonic() + wait
    with _production(secrets) as conn:
        while True:
            row = conn.execute(
                "SELECT active FROM pg_replication_slots WHERE slot_name = %s", (SLOT,)
            ).fetchone()
            if row is None:
                return
            if not row[0]:
                conn.execute("SELECT pg_drop_replication_slot(%s)", (SLOT,))
                return
            if time.monotonic() > deadline:
                raise LabError(f"replication slot {SLOT} on production is still in use")
            time.sleep(0.1)


def base_backup(paths: topology.LabPaths, secrets: dict[str, str]) -> None:
    """A fresh copy of production's cluster, configured to follow it (standby.signal)."""
    drp, production = topology.host("drp"), topology.host("production")
    target = replica_dir(paths)
    shutil.rmtree(target, ignore_errors=True)
    make_owned_dir(target, drp.user, 0o700)
    _drop_slot(secrets)
    argv = [
        str(postgres.PG_BIN / "pg_basebackup"),
        f"--host={production.address}",
        f"--port={topology.PG_PORT}",
        f"--username={topology.DB_USER}",
        f"--pgdata={target}",
        "--write-recovery-conf",
        "--wal-method=stream",
        "--create-slot",
        f"--slot={SLOT}",
        "--checkpoint=fast",
        "--no-sync",
    ]
    env = {"PATH": "/usr/bin:/bin", "PGPASSWORD": secrets[postgres.PASSWORD_NAME]}
    run(as_user(drp.user, argv), what="pg_basebackup of production for the replica", env=env)


def _in_recovery(secrets: dict[str, str]) -> bool:
    try:
        with psycopg.connect(
            host=topology.host("drp").address,
            port=PORT,
            user=topology.DB_USER,
            password=secrets[postgres.PASSWORD_NAME],
            dbname="postgres",
            connect_timeout=1,
        ) as conn:
            row = conn.execute("SELECT pg_is_in_recovery()").fetchone()
        return bool(row and row[0])
    except psycopg.Error:
        return False


def replica_daemon(paths: topology.LabPaths, secrets: dict[str, str]) -> Daemon:
    drp = topology.host("drp")
    sockets = make_owned_dir(paths.data("drp") / "postgresql-replica-socket", drp.user, 0o755)
    argv = postgres.postgres_argv(replica_dir(paths), drp.address, sockets, port=PORT)
    return Daemon(
        name=NAME,
        host=drp.name,
        argv=[*argv, "-c", "hot_standby=on"],
        address=drp.address,
        port=PORT,
        ready=lambda: _in_recovery(secrets),
        run_as=drp.user,
        cwd=paths.data("drp"),
        stop_signal=signal.SIGINT,
    )


@contextlib.contextmanager
def running(paths: topology.LabPaths, secrets: dict[str, str]) -> Iterator[Daemon]:
    """The standby, streaming from production, for the time of the `with` block."""
    supervisor = Supervisor(paths)
    if supervisor.running(NAME) is not None:
        raise LabError(f"{NAME} already runs (another test session?)")
    allow_replication(paths, secrets)
    base_backup(paths, secrets)
    daemon = replica_daemon(paths, secrets)
    try:
        supervisor.start([daemon])
        yield daemon
    finally:
        supervisor.stop([NAME])
        shutil.rmtree(replica_dir(paths), ignore_errors=True)
        _drop_slot(secrets)
