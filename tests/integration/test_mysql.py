"""What only MariaDB does, against the lab: a restore first dumps the previous content to a file
(MySQL cannot rename a database), so a failed load leaves a "started" marker that the retry
finishes; views, triggers, routines and events travel with the dump. What every engine does is
in test_database_engines.py. Every scratch directory and database is removed at the end."""

from __future__ import annotations

from collections.abc import Iterator

import pymysql
import pytest
from db_lab import Lab, MysqlLab, copy_dir_from_production, new_tag, ssh_host

from providers import mysql as my
from providers.dbcommon import DatabaseError, DbEndpoint, DumpResult
from providers.ssh import SshHost

pytestmark = pytest.mark.lab

TAG = new_tag()
SCRATCH = f"drp-test-{TAG}"
DUMP = f"{SCRATCH}/app_shop.sql.gz"
OPERATION = f"drill-test-{TAG}"
PREFIX = f"app_shop_test_{TAG}"


@pytest.fixture(scope="module")
def db(lab: Lab) -> MysqlLab:
    return MysqlLab(lab)


@pytest.fixture(scope="module")
def drp(lab: Lab, db: MysqlLab) -> Iterator[SshHost]:
    with ssh_host(lab, "production") as production, ssh_host(lab, "drp") as host:
        try:
            yield host
        finally:
            production.run(["rm", "-rf", "--", SCRATCH])
            host.run(["rm", "-rf", "--", SCRATCH])
            db.drop_databases(PREFIX)


@pytest.fixture(scope="module")
def dumped(lab: Lab, db: MysqlLab, drp: SshHost) -> DumpResult:
    """production/app_shop dumped onto production's disk, then pulled by drp with rsync."""
    with ssh_host(lab, "production") as production:
        result = my.dump(production, db.production, db.password, DUMP)
    copy_dir_from_production(drp, SCRATCH)
    return result


def _db(db: MysqlLab, name: str) -> DbEndpoint:
    return db.endpoint("drp", f"{PREFIX}_{name}")


def _restore(
    drp: SshHost, db: MysqlLab, target: DbEndpoint, backup_id: str, dump_path: str = DUMP
) -> my.RestoreResult:
    return my.restore(
        drp,
        dump_path,
        target,
        db.password,
        backup_id=backup_id,
        manifest_digest=f"sha256:manifest-of-{backup_id}",
        operation_id=OPERATION,
    )


def _query(db: MysqlLab, target: DbEndpoint, query: str) -> list[tuple[object, ...]]:
    with (
        pymysql.connect(
            host=target.address,
            port=target.port,
            user=target.user,
            password=db.password,
            database=target.dbname,
        ) as conn,
        conn.cursor() as cursor,
    ):
        cursor.execute(query)
        return list(cursor.fetchall())


def test_a_failed_load_keeps_the_old_content_and_a_retry_finishes(
    dumped: DumpResult, drp: SshHost, db: MysqlLab
) -> None:
    target = _db(db, "retry")
    _restore(drp, db, target, "b1")
    damaged = f"{SCRATCH}/damaged.sql.gz"
    drp.run(["sh", "-c", 'head -c 30000 -- "$1" > "$2"', "sh", DUMP, damaged])
    with pytest.raises(DatabaseError, match=r"mariadb loading drp:.*damaged\.sql\.gz into"):
        _restore(drp, db, target, "b2", dump_path=damaged)
    started = my.read_marker(target, db.password)
    assert started is not None and started.backup_id == "b2" and not started.complete
    kept = f"{SCRATCH}/{target.dbname}_before_drill_test_{TAG}.sql.gz"
    # b1's content was dumped before anything was dropped
    assert drp.run(["test", "-f", kept], check=False).ok

    done = _restore(drp, db, target, "b2")
    # The partial load was this operation's own: nothing more to keep, and the retry names
    # the dump that kept what the load replaced.
    assert done.kept_as == kept
    assert "unfinished" not in done.reason
    assert my.table_counts(target, db.password) == dumped.table_counts
    marker = my.read_marker(target, db.password)
    assert marker is not None and marker.complete and marker.backup_id == "b2"


def test_views_triggers_routines_and_events_travel(drp: SshHost, db: MysqlLab) -> None:
    source = _db(db, "objects")
    db.create_database(source)
    db.execute(
        source,
        "CREATE TABLE t (id INT PRIMARY KEY, qty INT)",
        "CREATE TABLE t_log (id INT AUTO_INCREMENT PRIMARY KEY, t_id INT)",
        "CREATE TRIGGER t_logged AFTER INSERT ON t FOR EACH ROW "
        "INSERT INTO t_log (t_id) VALUES (NEW.id)",
        "INSERT INTO t VALUES (1, 5), (2, 7)",
        "CREATE VIEW big AS SELECT id FROM t WHERE qty > 6",
        "CREATE PROCEDURE total_qty() SELECT SUM(qty) FROM t",
        "CREATE EVENT purge_log ON SCHEDULE EVERY 1 DAY DO DELETE FROM t_log WHERE id < 0",
    )
    made = my.dump(drp, source, db.password, f"{SCRATCH}/objects.sql.gz")
    assert made.table_counts == {"t": 2, "t_log": 2}
    target = _db(db, "objects_copy")
    _restore(drp, db, target, "objects", dump_path=made.path)
    assert my.table_counts(target, db.password) == {"t": 2, "t_log": 2}  # no trigger re-fire
    assert _query(db, target, "SELECT id FROM big") == [(2,)]
    assert _query(db, target, "CALL total_qty()") == [(12,)]
    events = _query(
        db,
        target,
        f"SELECT EVENT_NAME FROM information_schema.EVENTS WHERE EVENT_SCHEMA = '{target.dbname}'",
    )
    assert events == [("purge_log",)]
    db.execute(target, "INSERT INTO t VALUES (3, 1)")
    assert _query(db, target, "SELECT COUNT(*) FROM t_log") == [(3,)]  # trigger works


def test_a_drop_behind_an_open_transaction_fails_in_bounded_time_saying_why(
    db: MysqlLab, drp: SshHost, monkeypatch: pytest.MonkeyPatch
) -> None:
    """MySQL waits a year for a metadata lock by default; drp's sessions wait a bounded time
    and say what to do."""
    import threading
    import time

    monkeypatch.setattr(my, "LOCK_TIMEOUT_SECONDS", 2)
    target = _db(db, "locked")
    address = db.endpoint("drp", "mysql")
    holder = pymysql.connect(host=address.address, port=address.port, user=address.user,
                             password=db.password, autocommit=True)  # fmt: skip
    try:
        with holder.cursor() as cursor:
            cursor.execute(f"CREATE DATABASE `{target.dbname}`")
            cursor.execute(f"CREATE TABLE `{target.dbname}`.t (id INT PRIMARY KEY)")
            cursor.execute("BEGIN")
            cursor.execute(f"SELECT * FROM `{target.dbname}`.t")  # holds a metadata lock
        outcome: list[BaseException | None] = []

        def drop() -> None:
            try:
                my.drop_database(target, db.password)
                outcome.append(None)
            except BaseException as err:
                outcome.append(err)

        started = time.monotonic()
        worker = threading.Thread(target=drop, daemon=True)
        worker.start()
        worker.join(timeout=30)
        assert not worker.is_alive(), "the drop still waits behind the open transaction"
        (error,) = outcome
        assert isinstance(error, DatabaseError), error
        assert "waited 2 s for a lock another session holds" in str(error)
        assert time.monotonic() - started < 15
    finally:
        holder.rollback()
        holder.close()
        my.drop_database(target, db.password)
