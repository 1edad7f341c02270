"""MariaDB dump and restore against the lab: mariadb-dump on production's disk, rsync to drp,
the mariadb client on drp loading scratch databases, all over SSH; counts, checksums and
markers read directly. Every scratch directory and database is removed at the end."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pymysql
import pytest
from db_lab import Lab, RecordingRunner, copy_dir_from_production, endpoint, new_tag, ssh_host

from lab import topology
from providers import mysql as my
from providers.dbcommon import DatabaseError, DbEndpoint, DumpResult, NonEmptyDatabase
from providers.ssh import SshHost

pytestmark = pytest.mark.lab

TAG = new_tag()
SCRATCH = f"drp-test-{TAG}"
DUMP = f"{SCRATCH}/app_shop.sql.gz"
OPERATION = f"drill-test-{TAG}"
PREFIX = f"app_shop_test_{TAG}"
PRODUCTION = endpoint("production", topology.MYSQL_PORT, topology.APP_MYSQL_DB)


@pytest.fixture(scope="module")
def password(lab: Lab) -> str:
    return lab.secrets["DRP_LAB_MYSQL_PASSWORD"]


@pytest.fixture(scope="module")
def production(lab: Lab) -> Iterator[SshHost]:
    with ssh_host(lab, "production") as host:
        yield host
        host.run(["rm", "-rf", "--", SCRATCH])


@pytest.fixture(scope="module")
def drp(lab: Lab, password: str) -> Iterator[SshHost]:
    with ssh_host(lab, "drp") as host:
        yield host
        host.run(["rm", "-rf", "--", SCRATCH])
    for name in _databases(password):
        _execute(_db_named(name), password, f"DROP DATABASE `{name}`", database=False)


def _db(name: str) -> DbEndpoint:
    return _db_named(f"{PREFIX}_{name}")


def _db_named(dbname: str) -> DbEndpoint:
    return endpoint("drp", topology.MYSQL_PORT, dbname)


def _connect(target: DbEndpoint, password: str, *, database: bool = True) -> pymysql.Connection:
    return pymysql.connect(
        host=target.address,
        port=target.port,
        user=target.user,
        password=password,
        database=target.dbname if database else None,
        autocommit=True,
    )


def _execute(target: DbEndpoint, password: str, *statements: str, database: bool = True) -> None:
    with _connect(target, password, database=database) as conn, conn.cursor() as cursor:
        for statement in statements:
            cursor.execute(statement)


def _query(target: DbEndpoint, password: str, query: str) -> list[tuple[object, ...]]:
    with _connect(target, password) as conn, conn.cursor() as cursor:
        cursor.execute(query)
        return list(cursor.fetchall())


def _databases(password: str) -> set[str]:
    with _connect(_db("x"), password, database=False) as conn, conn.cursor() as cursor:
        cursor.execute("SHOW DATABASES")
        return {row[0] for row in cursor.fetchall() if row[0].startswith(PREFIX)}


@pytest.fixture(scope="module")
def dumped(production: SshHost, drp: SshHost, password: str) -> DumpResult:
    """production/app_shop dumped onto production's disk, then pulled by drp with rsync."""
    result = my.dump(production, PRODUCTION, password, DUMP)
    copy_dir_from_production(drp, SCRATCH)
    return result


def _restore(
    drp: SshHost,
    target: DbEndpoint,
    password: str,
    backup_id: str,
    dump_path: str = DUMP,
    **options: object,
) -> my.RestoreResult:
    return my.restore(
        drp,
        dump_path,
        target,
        password,
        backup_id=backup_id,
        manifest_digest=f"sha256:manifest-of-{backup_id}",
        operation_id=OPERATION,
        **options,  # type: ignore[arg-type]
    )


def _exists_on(host: SshHost, path: str) -> bool:
    return host.run(["test", "-f", path], check=False).ok


def test_dump_lands_on_production_compressed_with_its_facts_and_row_counts(
    dumped: DumpResult, production: SshHost, drp: SshHost, password: str
) -> None:
    assert dumped.host_name == "production"
    assert dumped.format == "mysql-sql+gzip"
    assert dumped.table_counts == my.table_counts(PRODUCTION, password)
    assert set(dumped.table_counts or {}) == {"products", "orders", "order_items"}
    assert dumped.counts_exact
    assert production.run(["ls", "-A", "--", SCRATCH]).stdout.split() == ["app_shop.sql.gz"]
    assert production.run(["gzip", "-t", "--", DUMP], check=False).ok
    assert drp.run(["sha256sum", "--", DUMP]).stdout.split()[0] == dumped.sha256


def test_restore_on_drp_matches_production_and_is_marked(
    dumped: DumpResult, drp: SshHost, password: str
) -> None:
    target = _db("fresh")
    result = _restore(drp, target, password, "b1", expected_sha256=dumped.sha256)
    assert result.action == "restored"
    assert result.kept_as is None
    assert result.reason.startswith(f"restored backup b1 on drp/{target.dbname} (in ")
    assert my.table_counts(target, password) == dumped.table_counts
    assert my.table_checksums(target, password) == my.table_checksums(PRODUCTION, password)
    marker = my.read_marker(target, password)
    assert marker is not None and marker.complete
    assert (marker.backup_id, marker.manifest_digest, marker.operation_id) == (
        "b1",
        "sha256:manifest-of-b1",
        OPERATION,
    )
    assert result.marker == marker


def test_same_backup_again_is_skipped_with_the_reason(
    dumped: DumpResult, drp: SshHost, password: str
) -> None:
    target = _db("again")
    _restore(drp, target, password, "b1")
    marker = my.read_marker(target, password)
    assert marker is not None and marker.restored_at is not None
    again = _restore(drp, target, password, "b1")
    assert again.action == "skipped"
    assert again.reason == (
        f"backup b1 already restored on drp/{target.dbname} at "
        f"{marker.restored_at.isoformat(timespec='seconds')}, marker present"
    )


def test_foreign_database_is_refused_with_numbers_then_dumped_aside_when_forced(
    dumped: DumpResult, drp: SshHost, password: str
) -> None:
    target = _db("foreign")
    _execute(target, password, f"CREATE DATABASE `{target.dbname}`", database=False)
    _execute(
        target,
        password,
        "CREATE TABLE notes (id INT PRIMARY KEY, body TEXT)",
        "INSERT INTO notes VALUES (1, 'a'), (2, 'b'), (3, 'c'), (4, 'd')",
    )
    with pytest.raises(NonEmptyDatabase) as refused:
        _restore(drp, target, password, "b1")
    assert f"drp/{target.dbname} is not empty (1 table, 4 rows)" in str(refused.value)
    assert "force=True (drp: --force)" in str(refused.value)
    assert my.table_counts(target, password) == {"notes": 4}  # untouched

    forced = _restore(drp, target, password, "b1", force=True)
    assert forced.kept_as == f"{SCRATCH}/{target.dbname}_before_drill_test_{TAG}.sql.gz"
    assert forced.reason.endswith(f"; the previous content is kept in drp:{forced.kept_as}")
    assert my.table_counts(target, password) == dumped.table_counts
    # The kept dump gives the foreign data back.
    back = _db("foreign_back")
    _restore(drp, back, password, "kept", dump_path=forced.kept_as)
    assert my.table_counts(back, password) == {"notes": 4}


def test_another_backup_over_ours_keeps_the_previous_content_in_a_dump(
    dumped: DumpResult, drp: SshHost, password: str
) -> None:
    target = _db("ours")
    _restore(drp, target, password, "b1")
    _execute(target, password, "DELETE FROM order_items WHERE id = 1")  # a change made on drp
    b1_counts = my.table_counts(target, password)

    second = _restore(drp, target, password, "b2")
    assert second.action == "restored"
    assert second.kept_as is not None and _exists_on(drp, second.kept_as)
    now = my.read_marker(target, password)
    assert now is not None and now.backup_id == "b2"
    assert my.table_counts(target, password) == dumped.table_counts

    third = _restore(drp, target, password, "b3")  # same operation again: a new file name
    assert third.kept_as == second.kept_as.replace(".sql.gz", "-2.sql.gz")

    back = _db("ours_back")
    _restore(drp, back, password, "kept", dump_path=second.kept_as)
    assert my.table_counts(back, password) == b1_counts  # the change made on drp is safe


def test_empty_database_is_loaded_in_place_keeping_its_character_set(
    dumped: DumpResult, drp: SshHost, password: str
) -> None:
    target = _db("empty")
    _execute(
        target,
        password,
        f"CREATE DATABASE `{target.dbname}` CHARACTER SET latin1 COLLATE latin1_swedish_ci",
        database=False,
    )
    result = _restore(drp, target, password, "b1")
    assert result.kept_as is None
    assert my.table_counts(target, password) == dumped.table_counts
    charset = _query(
        target,
        password,
        "SELECT DEFAULT_CHARACTER_SET_NAME FROM information_schema.SCHEMATA "
        f"WHERE SCHEMA_NAME = '{target.dbname}'",
    )
    assert charset == [("latin1",)]
    files = drp.run(["ls", "-A", "--", SCRATCH]).stdout.split()
    assert not [f for f in files if f.startswith(target.dbname)]  # nothing to keep aside


def test_a_failed_load_keeps_the_old_content_and_a_retry_finishes(
    dumped: DumpResult, drp: SshHost, password: str
) -> None:
    target = _db("retry")
    _restore(drp, target, password, "b1")
    damaged = f"{SCRATCH}/damaged.sql.gz"
    drp.run(["sh", "-c", 'head -c 30000 -- "$1" > "$2"', "sh", DUMP, damaged])
    with pytest.raises(DatabaseError, match=r"mariadb loading drp:.*damaged\.sql\.gz into"):
        _restore(drp, target, password, "b2", dump_path=damaged)
    started = my.read_marker(target, password)
    assert started is not None and started.backup_id == "b2" and not started.complete
    kept = f"{SCRATCH}/{target.dbname}_before_drill_test_{TAG}.sql.gz"
    assert _exists_on(drp, kept)  # b1's content was dumped before anything was dropped

    with pytest.raises(DatabaseError, match=r"has sha256 .* but its manifest says"):
        _restore(drp, target, password, "b2", dump_path=damaged, expected_sha256=dumped.sha256)

    done = _restore(drp, target, password, "b2")
    assert done.kept_as is None  # the partial load was this backup's own: nothing to keep
    assert "unfinished" not in done.reason
    assert my.table_counts(target, password) == dumped.table_counts
    marker = my.read_marker(target, password)
    assert marker is not None and marker.complete and marker.backup_id == "b2"


def test_views_triggers_routines_and_events_travel(drp: SshHost, password: str) -> None:
    source = _db("objects")
    _execute(source, password, f"CREATE DATABASE `{source.dbname}`", database=False)
    _execute(
        source,
        password,
        "CREATE TABLE t (id INT PRIMARY KEY, qty INT)",
        "CREATE TABLE t_log (id INT AUTO_INCREMENT PRIMARY KEY, t_id INT)",
        "CREATE TRIGGER t_logged AFTER INSERT ON t FOR EACH ROW "
        "INSERT INTO t_log (t_id) VALUES (NEW.id)",
        "INSERT INTO t VALUES (1, 5), (2, 7)",
        "CREATE VIEW big AS SELECT id FROM t WHERE qty > 6",
        "CREATE PROCEDURE total_qty() SELECT SUM(qty) FROM t",
        "CREATE EVENT purge_log ON SCHEDULE EVERY 1 DAY DO DELETE FROM t_log WHERE id < 0",
    )
    made = my.dump(drp, source, password, f"{SCRATCH}/objects.sql.gz")
    assert made.table_counts == {"t": 2, "t_log": 2}
    target = _db("objects_copy")
    _restore(drp, target, password, "objects", dump_path=made.path)
    assert my.table_counts(target, password) == {"t": 2, "t_log": 2}  # no trigger re-fire
    assert _query(target, password, "SELECT id FROM big") == [(2,)]
    assert _query(target, password, "CALL total_qty()") == [(12,)]
    events = _query(
        target,
        password,
        f"SELECT EVENT_NAME FROM information_schema.EVENTS WHERE EVENT_SCHEMA = '{target.dbname}'",
    )
    assert events == [("purge_log",)]
    _execute(target, password, "INSERT INTO t VALUES (3, 1)")
    assert _query(target, password, "SELECT COUNT(*) FROM t_log") == [(3,)]  # trigger works


def test_no_password_in_any_argv_log_or_result(
    dumped: DumpResult, drp: SshHost, password: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    recorder = RecordingRunner(drp)
    target = _db("secret")
    made = my.dump(recorder, PRODUCTION, password, f"{SCRATCH}/secret-check.sql.gz")
    first = _restore(recorder, target, password, "b1", dump_path=made.path)  # type: ignore[arg-type]
    second = _restore(recorder, target, password, "b2", dump_path=made.path)  # type: ignore[arg-type]
    assert second.kept_as is not None  # the safety dump ran too
    assert recorder.results
    for ran in recorder.results:
        assert not any(password in word for word in ran.argv)
        assert password not in ran.stdout and password not in ran.stderr
    assert password not in caplog.text
    for result in (made, first, second):
        assert password not in result.model_dump_json()
    assert "MYSQL_PWD" in caplog.text  # the runner logged the secret's name, never its value
