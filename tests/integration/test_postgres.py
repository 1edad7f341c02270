"""What only PostgreSQL does, against the lab: a restore loads into a staging database and swaps
it in by renames, so a failed load or a connected session leaves the target untouched and the
retry reuses what was loaded. What every engine does is in test_database_engines.py. Every
scratch directory and database is removed at the end."""

from __future__ import annotations

from collections.abc import Iterator

import psycopg
import pytest
from db_lab import Lab, PostgresLab, copy_dir_from_production, new_tag, ssh_host

from providers import postgres as pg
from providers.dbcommon import DatabaseError, DbEndpoint, DumpResult, RestoreResult
from providers.ssh import SshHost

pytestmark = pytest.mark.lab

TAG = new_tag()
SCRATCH = f"drp-test-{TAG}"
DUMP = f"{SCRATCH}/app_users.dump"
OPERATION = f"drill-test-{TAG}"
PREFIX = f"app_users_test_{TAG}"


@pytest.fixture(scope="module")
def db(lab: Lab) -> PostgresLab:
    return PostgresLab(lab)


@pytest.fixture(scope="module")
def drp(lab: Lab, db: PostgresLab) -> Iterator[SshHost]:
    with ssh_host(lab, "production") as production, ssh_host(lab, "drp") as host:
        try:
            yield host
        finally:
            production.run(["rm", "-rf", "--", SCRATCH])
            host.run(["rm", "-rf", "--", SCRATCH])
            db.drop_databases(PREFIX)


@pytest.fixture(scope="module")
def dumped(lab: Lab, db: PostgresLab, drp: SshHost) -> DumpResult:
    """production/app_users dumped onto production's disk, then pulled by drp with rsync."""
    with ssh_host(lab, "production") as production:
        result = pg.dump(production, db.production, db.password, DUMP)
    copy_dir_from_production(drp, SCRATCH)
    return result


def _db(db: PostgresLab, name: str) -> DbEndpoint:
    return db.endpoint("drp", f"{PREFIX}_{name}")


def _restore(
    drp: SshHost, db: PostgresLab, target: DbEndpoint, backup_id: str, **options: object
) -> RestoreResult:
    return pg.restore(
        drp,
        str(options.pop("dump_path", DUMP)),
        target,
        db.password,
        backup_id=backup_id,
        manifest_digest=f"sha256:manifest-of-{backup_id}",
        operation_id=OPERATION,
        **options,  # type: ignore[arg-type]
    )


def test_a_failed_load_leaves_the_target_untouched_and_a_retry_finishes(
    dumped: DumpResult, drp: SshHost, db: PostgresLab
) -> None:
    target = _db(db, "retry")
    _restore(drp, db, target, "b1")
    damaged = f"{SCRATCH}/damaged.dump"
    drp.run(["sh", "-c", 'head -c 20000 -- "$1" > "$2"', "sh", DUMP, damaged])
    with pytest.raises(DatabaseError, match=r"pg_restore of drp:.*damaged.dump into"):
        _restore(drp, db, target, "b2", dump_path=damaged)
    still = pg.read_marker(target, db.password)
    assert still is not None and still.backup_id == "b1"
    assert pg.table_counts(target, db.password) == dumped.table_counts

    done = _restore(drp, db, target, "b2")
    assert done.action == "restored"
    now = pg.read_marker(target, db.password)
    assert now is not None and now.backup_id == "b2"
    leftovers = db.databases(f"{target.dbname}_drp_new")
    assert leftovers == set()  # the staging database of the failed attempt was reused or dropped
    kept = target.with_dbname(f"{target.dbname}_before_drill_test_{TAG}")
    kept_marker = pg.read_marker(kept, db.password)
    assert kept_marker is not None and kept_marker.backup_id == "b1"  # kept as a live database


def test_a_connected_session_blocks_the_swap_and_the_retry_reuses_the_load(
    dumped: DumpResult, drp: SshHost, db: PostgresLab
) -> None:
    target = _db(db, "busy")
    _restore(drp, db, target, "b1")
    session = psycopg.connect(
        host=target.address,
        port=target.port,
        user=target.user,
        password=db.password,
        dbname=target.dbname,
    )
    try:
        with pytest.raises(DatabaseError, match="Stop what is connected to it"):
            _restore(drp, db, target, "b2")
    finally:
        session.close()
    marker = pg.read_marker(target, db.password)
    assert marker is not None and marker.backup_id == "b1"
    retried = _restore(drp, db, target, "b2")
    assert "(loaded by an earlier attempt)" in retried.reason
    assert pg.table_counts(target, db.password) == dumped.table_counts
