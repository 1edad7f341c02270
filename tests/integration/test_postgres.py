"""PostgreSQL dump and restore against the lab: pg_dump on production's disk, rsync to drp,
pg_restore on drp into scratch databases, all over SSH; counts, checksums and markers read
directly. Every scratch directory and database is removed at the end."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import psycopg
import pytest
from db_lab import Lab, RecordingRunner, copy_dir_from_production, endpoint, new_tag, ssh_host
from psycopg import sql

from lab import topology
from providers import postgres as pg
from providers.dbcommon import DatabaseError, DbEndpoint, DumpResult, NonEmptyDatabase
from providers.ssh import SshHost

pytestmark = pytest.mark.lab

TAG = new_tag()
SCRATCH = f"drp-test-{TAG}"
DUMP = f"{SCRATCH}/app_users.dump"
OPERATION = f"drill-test-{TAG}"
PREFIX = f"app_users_test_{TAG}"


@pytest.fixture(scope="module")
def password(lab: Lab) -> str:
    return lab.secrets["DRP_LAB_PG_PASSWORD"]


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
    _drop_scratch_databases(password)


def _admin(password: str, host_name: str = "drp") -> psycopg.Connection:
    target = endpoint(host_name, topology.PG_PORT, "postgres")
    return psycopg.connect(
        host=target.address,
        port=target.port,
        user=target.user,
        password=password,
        dbname="postgres",
        autocommit=True,
    )


def _databases(password: str, prefix: str = PREFIX) -> set[str]:
    with _admin(password) as conn:
        rows = conn.execute(
            "SELECT datname FROM pg_database WHERE starts_with(datname, %s)", (prefix,)
        ).fetchall()
    return {row[0] for row in rows}


def _drop_scratch_databases(password: str) -> None:
    with _admin(password) as conn:
        for name in _databases(password):
            conn.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name)))


def _db(name: str) -> DbEndpoint:
    return endpoint("drp", topology.PG_PORT, f"{PREFIX}_{name}")


def _execute(target: DbEndpoint, password: str, *statements: str) -> None:
    with psycopg.connect(
        host=target.address,
        port=target.port,
        user=target.user,
        password=password,
        dbname=target.dbname,
        autocommit=True,
    ) as conn:
        for statement in statements:
            conn.execute(statement)  # type: ignore[arg-type]  # test constants


def _create_database(target: DbEndpoint, password: str) -> None:
    with _admin(password) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(target.dbname)))


PRODUCTION = endpoint("production", topology.PG_PORT, topology.APP_PG_DB)


@pytest.fixture(scope="module")
def dumped(production: SshHost, drp: SshHost, password: str) -> DumpResult:
    """production/app_users dumped onto production's disk, then pulled by drp with rsync."""
    result = pg.dump(production, PRODUCTION, password, DUMP)
    copy_dir_from_production(drp, SCRATCH)
    return result


def _restore(drp: SshHost, target: DbEndpoint, password: str, backup_id: str, **options: object):
    return pg.restore(
        drp,
        DUMP,
        target,
        password,
        backup_id=backup_id,
        manifest_digest=f"sha256:manifest-of-{backup_id}",
        operation_id=OPERATION,
        **options,  # type: ignore[arg-type]
    )


def test_dump_lands_on_production_with_its_facts_and_row_counts(
    dumped: DumpResult, production: SshHost, drp: SshHost, password: str
) -> None:
    assert dumped.host_name == "production"
    assert dumped.format == "pg-custom"
    assert dumped.size_bytes > 10_000
    assert dumped.table_counts == pg.table_counts(PRODUCTION, password)
    assert set(dumped.table_counts or {}) == {"public.users", "public.sessions", "public.audit"}
    assert dumped.counts_exact
    listing = production.run(["ls", "-A", "--", SCRATCH]).stdout.split()
    assert listing == ["app_users.dump"]  # no .partial left behind
    copied = drp.run(["sha256sum", "--", DUMP]).stdout.split()[0]
    assert copied == dumped.sha256


def test_a_dump_never_replaces_an_existing_file(
    dumped: DumpResult, production: SshHost, password: str
) -> None:
    with pytest.raises(DatabaseError, match="already exists; a dump never replaces a file"):
        pg.dump(production, PRODUCTION, password, DUMP)
    assert production.run(["sha256sum", "--", DUMP]).stdout.split()[0] == dumped.sha256


def test_restore_on_drp_matches_production_and_is_marked(
    dumped: DumpResult, drp: SshHost, password: str
) -> None:
    target = _db("fresh")
    result = _restore(drp, target, password, "b1", expected_sha256=dumped.sha256)
    assert result.action == "restored"
    assert result.kept_as is None
    assert result.reason.startswith(f"restored backup b1 on drp/{target.dbname} (in ")
    assert pg.table_counts(target, password) == dumped.table_counts
    assert pg.table_checksums(target, password) == pg.table_checksums(PRODUCTION, password)
    marker = pg.read_marker(target, password)
    assert marker is not None and marker.complete
    assert (marker.backup_id, marker.manifest_digest, marker.operation_id) == (
        "b1",
        "sha256:manifest-of-b1",
        OPERATION,
    )
    assert result.marker == marker
    # only the target: the staging database was renamed into place
    assert _databases(password, target.dbname) == {target.dbname}


def test_same_backup_again_is_skipped_with_the_reason(
    dumped: DumpResult, drp: SshHost, password: str
) -> None:
    target = _db("again")
    _restore(drp, target, password, "b1")
    marker = pg.read_marker(target, password)
    assert marker is not None and marker.restored_at is not None
    again = _restore(drp, target, password, "b1")
    assert again.action == "skipped"
    assert again.reason == (
        f"backup b1 already restored on drp/{target.dbname} at "
        f"{marker.restored_at.isoformat(timespec='seconds')}, marker present"
    )
    assert pg.read_marker(target, password) == marker


def test_foreign_database_is_refused_with_numbers_then_kept_aside_when_forced(
    dumped: DumpResult, drp: SshHost, password: str
) -> None:
    target = _db("foreign")
    _create_database(target, password)
    _execute(
        target,
        password,
        "CREATE TABLE notes (id int PRIMARY KEY, body text)",
        "INSERT INTO notes VALUES (1, 'a'), (2, 'b'), (3, 'c')",
    )
    with pytest.raises(NonEmptyDatabase) as refused:
        _restore(drp, target, password, "b1")
    assert f"drp/{target.dbname} is not empty (1 table, 3 rows)" in str(refused.value)
    assert "force=True (drp: --force)" in str(refused.value)
    assert pg.table_counts(target, password) == {"public.notes": 3}  # untouched

    forced = _restore(drp, target, password, "b1", force=True)
    assert forced.action == "restored"
    assert forced.kept_as == f"{target.dbname}_before_drill_test_{TAG}"
    assert forced.reason.endswith(f"; the previous database is kept as {forced.kept_as}")
    assert pg.table_counts(target, password) == dumped.table_counts
    kept = target.with_dbname(forced.kept_as)
    assert pg.table_counts(kept, password) == {"public.notes": 3}


def test_another_backup_over_ours_keeps_the_previous_one_aside(
    dumped: DumpResult, drp: SshHost, password: str
) -> None:
    target = _db("ours")
    _restore(drp, target, password, "b1")
    _execute(
        target,
        password,
        "INSERT INTO public.audit (id, user_id, action, at, detail) "
        "SELECT max(id) + 1, 1, 'login', now(), 'written on drp' FROM public.audit",
    )
    b1_counts = pg.table_counts(target, password)

    second = _restore(drp, target, password, "b2")
    assert second.action == "restored"
    assert second.kept_as == f"{target.dbname}_before_drill_test_{TAG}"
    kept = target.with_dbname(second.kept_as)
    assert pg.table_counts(kept, password) == b1_counts  # the row written on drp is safe
    kept_marker = pg.read_marker(kept, password)
    assert kept_marker is not None and kept_marker.backup_id == "b1"
    now = pg.read_marker(target, password)
    assert now is not None and now.backup_id == "b2"
    assert pg.table_counts(target, password) == dumped.table_counts

    third = _restore(drp, target, password, "b3")  # same operation again: a new aside name
    assert third.kept_as == f"{target.dbname}_before_drill_test_{TAG}_2"


def test_empty_database_is_loaded_in_place(dumped: DumpResult, drp: SshHost, password: str) -> None:
    target = _db("empty")
    _create_database(target, password)
    with _admin(password) as conn:
        conn.execute(
            sql.SQL("COMMENT ON DATABASE {} IS 'prepared by the DBA'").format(
                sql.Identifier(target.dbname)
            )
        )
    result = _restore(drp, target, password, "b1")
    assert result.kept_as is None
    assert result.reason.startswith(f"restored backup b1 on drp/{target.dbname}")
    assert pg.table_counts(target, password) == dumped.table_counts
    with _admin(password) as conn:
        row = conn.execute(
            "SELECT shobj_description(oid, 'pg_database') FROM pg_database WHERE datname = %s",
            (target.dbname,),
        ).fetchone()
    assert row == ("prepared by the DBA",)  # the same database, loaded in place
    assert _databases(password, target.dbname) == {target.dbname}


def test_a_failed_load_leaves_the_target_untouched_and_a_retry_finishes(
    dumped: DumpResult, drp: SshHost, password: str
) -> None:
    target = _db("retry")
    _restore(drp, target, password, "b1")
    damaged = f"{SCRATCH}/damaged.dump"
    drp.run(["sh", "-c", 'head -c 20000 -- "$1" > "$2"', "sh", DUMP, damaged])
    with pytest.raises(DatabaseError, match=r"pg_restore of drp:.*damaged.dump into"):
        pg.restore(
            drp,
            damaged,
            target,
            password,
            backup_id="b2",
            manifest_digest="m",
            operation_id=OPERATION,
        )
    still = pg.read_marker(target, password)
    assert still is not None and still.backup_id == "b1"
    assert pg.table_counts(target, password) == dumped.table_counts

    with pytest.raises(DatabaseError, match=r"has sha256 .* but its manifest says"):
        pg.restore(
            drp,
            damaged,
            target,
            password,
            backup_id="b2",
            manifest_digest="m",
            operation_id=OPERATION,
            expected_sha256=dumped.sha256,
        )

    done = _restore(drp, target, password, "b2")
    assert done.action == "restored"
    now = pg.read_marker(target, password)
    assert now is not None and now.backup_id == "b2"
    leftovers = _databases(password, f"{target.dbname}_drp_new")
    assert leftovers == set()  # the staging database of the failed attempt was reused or dropped


def test_a_connected_session_blocks_the_swap_and_the_retry_reuses_the_load(
    dumped: DumpResult, drp: SshHost, password: str
) -> None:
    target = _db("busy")
    _restore(drp, target, password, "b1")
    session = psycopg.connect(
        host=target.address,
        port=target.port,
        user=target.user,
        password=password,
        dbname=target.dbname,
    )
    try:
        with pytest.raises(DatabaseError, match="Stop what is connected to it"):
            _restore(drp, target, password, "b2")
    finally:
        session.close()
    marker = pg.read_marker(target, password)
    assert marker is not None and marker.backup_id == "b1"
    retried = _restore(drp, target, password, "b2")
    assert "(loaded by an earlier attempt)" in retried.reason
    assert pg.table_counts(target, password) == dumped.table_counts


def test_no_password_in_any_argv_log_or_result(
    dumped: DumpResult, drp: SshHost, password: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    recorder = RecordingRunner(drp)
    target = _db("secret")
    own_dump = f"{SCRATCH}/secret-check.dump"
    made = pg.dump(recorder, PRODUCTION, password, own_dump)
    result = pg.restore(
        recorder,
        own_dump,
        target,
        password,
        backup_id="b1",
        manifest_digest="m",
        operation_id=OPERATION,
        expected_sha256=made.sha256,
    )
    assert result.action == "restored"
    assert recorder.results, "commands ran on drp"
    for ran in recorder.results:
        assert not any(password in word for word in ran.argv)
        assert password not in ran.stdout and password not in ran.stderr
    assert password not in caplog.text
    assert password not in made.model_dump_json() + result.model_dump_json()
    assert "PGPASSWORD" in caplog.text  # the runner logged the secret's name, never its value
