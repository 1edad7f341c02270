"""Does a database server answer, and how far behind is its replica? Read-only questions.

Each question opens its own short connection (a few seconds of connect timeout), asks one thing
and closes it: a supervision round must not hang on a server that does not answer, nor hold
anything on one that does. Passwords are masked values revealed only at connect time.

Replication:
- PostgreSQL: on the standby, `pg_is_in_recovery()` and the time since the last replayed
  transaction (0 while everything received is replayed: an idle primary is not "lag"); on the
  primary, the standby's row in `pg_stat_replication` (its state and replay_lag).
- MySQL / MariaDB: `SHOW REPLICA STATUS` (`SHOW SLAVE STATUS` on older servers) on the replica:
  both threads running, and Seconds_Behind_Master.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import psycopg
import pymysql
import pymysql.cursors

from providers.dbcommon import DbEndpoint, Password, reveal


class HealthError(Exception):
    """The server did not answer the question; the message says where and why."""


@dataclass(frozen=True)
class ReplicaStatus:
    """Where a replica stands."""

    replicating: bool  # the standby is in recovery / both replica threads run
    lag_seconds: float | None  # None: not known (nothing replayed yet)
    detail: str  # one line for people


def _first_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return text[0] if text else type(err).__name__


def _pg(endpoint: DbEndpoint, password: Password, timeout: float) -> psycopg.Connection:
    try:
        return psycopg.connect(
            host=endpoint.address,
            port=endpoint.port,
            user=endpoint.user,
            password=reveal(password),
            dbname=endpoint.dbname,
            connect_timeout=max(2, round(timeout)),
            application_name="drp-watch",
            autocommit=True,
        )
    except psycopg.Error as err:
        raise HealthError(
            f"PostgreSQL {endpoint.label} at {endpoint.address}:{endpoint.port}: {_first_line(err)}"
        ) from None


def _my(endpoint: DbEndpoint, password: Password, timeout: float) -> Any:
    try:
        return pymysql.connect(
            host=endpoint.address,
            port=endpoint.port,
            user=endpoint.user,
            password=reveal(password),
            database=endpoint.dbname,
            connect_timeout=max(2, round(timeout)),
            read_timeout=max(2, round(timeout)),
            autocommit=True,
            cursorclass=pymysql.cursors.DictCursor,
        )
    except pymysql.Error as err:
        raise HealthError(
            f"MySQL {endpoint.label} at {endpoint.address}:{endpoint.port}: {_first_line(err)}"
        ) from None


def answers(engine: str, endpoint: DbEndpoint, password: Password, timeout: float = 5.0) -> float:
    """Seconds to connect and run `SELECT 1`; HealthError when the server does not answer."""
    started = time.monotonic()
    if engine == "postgresql":
        with _pg(endpoint, password, timeout) as conn:
            try:
                conn.execute("SELECT 1").fetchone()
            except psycopg.Error as err:
                raise HealthError(f"PostgreSQL {endpoint.label}: {_first_line(err)}") from None
    else:
        conn = _my(endpoint, password, timeout)
        try:
            with conn.cursor() as cursor:
                cursor.execute("SELECT 1")
                cursor.fetchall()
        except pymysql.Error as err:
            raise HealthError(f"MySQL {endpoint.label}: {_first_line(err)}") from None
        finally:
            conn.close()
    return time.monotonic() - started


_PG_STANDBY = """
SELECT pg_is_in_recovery(),
       pg_last_wal_receive_lsn() IS NOT DISTINCT FROM pg_last_wal_replay_lsn(),
       EXTRACT(EPOCH FROM now() - pg_last_xact_replay_timestamp())
"""


def postgres_replica(
    standby: DbEndpoint, password: Password, timeout: float = 5.0
) -> ReplicaStatus:
    """The standby's recovery state and replay lag (asked of the standby)."""
    with _pg(standby, password, timeout) as conn:
        try:
            row = conn.execute(_PG_STANDBY).fetchone()
        except psycopg.Error as err:
            raise HealthError(f"PostgreSQL {standby.label}: {_first_line(err)}") from None
    if row is None or not row[0]:
        return ReplicaStatus(False, None, f"{standby.label} is not in recovery: not a standby")
    caught_up, since_replay = bool(row[1]), row[2]
    if caught_up:
        return ReplicaStatus(True, 0.0, f"{standby.label} has replayed all it received")
    if since_replay is None:
        return ReplicaStatus(True, None, f"{standby.label} has replayed nothing yet")
    lag = max(0.0, float(since_replay))
    return ReplicaStatus(True, lag, f"{standby.label} replays {lag:.1f} s behind")


def postgres_senders(primary: DbEndpoint, password: Password, timeout: float = 5.0) -> list[str]:
    """The primary's streaming replicas, as `client (state, replay lag)`."""
    with _pg(primary, password, timeout) as conn:
        try:
            rows = conn.execute(
                "SELECT coalesce(host(client_addr), 'local'), application_name, state, "
                "EXTRACT(EPOCH FROM replay_lag) FROM pg_stat_replication"
            ).fetchall()
        except psycopg.Error as err:
            raise HealthError(f"PostgreSQL {primary.label}: {_first_line(err)}") from None
    return [
        f"{address} {name} ({state}, replay lag {float(lag or 0):.1f} s)"
        for address, name, state, lag in rows
    ]


def mysql_replica(replica: DbEndpoint, password: Password, timeout: float = 5.0) -> ReplicaStatus:
    """The replica's threads and Seconds_Behind_Master (asked of the replica)."""
    conn = _my(replica, password, timeout)
    try:
        with conn.cursor() as cursor:
            try:
                cursor.execute("SHOW REPLICA STATUS")
            except pymysql.err.ProgrammingError:
                cursor.execute("SHOW SLAVE STATUS")
            rows = cursor.fetchall()
    except pymysql.Error as err:
        raise HealthError(f"MySQL {replica.label}: {_first_line(err)}") from None
    finally:
        conn.close()
    if not rows:
        return ReplicaStatus(False, None, f"{replica.label} is not a replica (no replica status)")
    row = rows[0]
    io = row.get("Replica_IO_Running", row.get("Slave_IO_Running"))
    sql_thread = row.get("Replica_SQL_Running", row.get("Slave_SQL_Running"))
    behind = row.get("Seconds_Behind_Source", row.get("Seconds_Behind_Master"))
    running = io == "Yes" and sql_thread == "Yes"
    if not running:
        error = row.get("Last_IO_Error") or row.get("Last_SQL_Error") or "no error given"
        return ReplicaStatus(
            False, None, f"{replica.label}: IO thread {io}, SQL thread {sql_thread}: {error}"
        )
    lag = None if behind is None else float(behind)
    return ReplicaStatus(
        True, lag, f"{replica.label} is {lag if lag is not None else '?'} s behind"
    )
