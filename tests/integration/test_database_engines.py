"""Every database engine against the lab, through the one `DatabaseEngine` interface.

Each test runs once per engine (PostgreSQL, MariaDB): the dump on production's disk, rsync to
drp, the restore on drp into scratch databases, set aside and put back, all over SSH; counts,
checksums and markers read directly. What only one engine does (PostgreSQL's staging swap,
MySQL's views and routines) is tested in test_postgres.py and test_mysql.py. Every scratch
directory and database is removed at the end.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from db_lab import (
    DB_LABS,
    DbLab,
    Lab,
    RecordingRunner,
    copy_dir_from_production,
    new_tag,
    ssh_host,
)

from providers.database import AsideMissing, NotOwnDatabase
from providers.dbcommon import (
    DatabaseError,
    DbEndpoint,
    DumpResult,
    NonEmptyDatabase,
    RestoreResult,
)
from providers.ssh import SshHost

pytestmark = pytest.mark.lab

TAG = new_tag()
SCRATCH = f"drp-test-{TAG}"
OPERATION = f"drill-test-{TAG}"
ASIDE_DIR = f"{SCRATCH}/aside"


@dataclass
class Setup:
    """One engine's lab, hosts and production dump, for the tests of that engine."""

    db: DbLab
    production: SshHost
    drp: SshHost
    dumped: DumpResult

    @property
    def dump_path(self) -> str:
        return f"{SCRATCH}/{self.db.dump_name}"

    @property
    def prefix(self) -> str:
        return f"{self.db.production_db}_test_{TAG}"

    def target(self, name: str) -> DbEndpoint:
        return self.db.endpoint("drp", f"{self.prefix}_{name}")

    def restore(
        self,
        target: DbEndpoint,
        backup_id: str,
        *,
        runner: SshHost | RecordingRunner | None = None,
        dump_path: str | None = None,
        **options: object,
    ) -> RestoreResult:
        return self.db.engine.restore(
            runner or self.drp,
            dump_path or self.dump_path,
            target,
            self.db.password,
            backup_id=backup_id,
            manifest_digest=f"sha256:manifest-of-{backup_id}",
            operation_id=OPERATION,
            **options,  # type: ignore[arg-type]
        )

    def counts(self, target: DbEndpoint) -> dict[str, int]:
        return self.db.engine.table_counts(target, self.db.password)


@pytest.fixture(scope="module", params=sorted(DB_LABS))
def setup(request: pytest.FixtureRequest, lab: Lab) -> Iterator[Setup]:
    """production's database dumped onto production's disk, then pulled by drp with rsync."""
    db = DB_LABS[request.param](lab)
    with ssh_host(lab, "production") as production, ssh_host(lab, "drp") as drp:
        try:
            dumped = db.engine.dump(
                production, db.production, db.password, f"{SCRATCH}/{db.dump_name}"
            )
            copy_dir_from_production(drp, SCRATCH)
            yield Setup(db, production, drp, dumped)
        finally:
            production.run(["rm", "-rf", "--", SCRATCH])
            drp.run(["rm", "-rf", "--", SCRATCH])
            db.drop_databases(f"{db.production_db}_test_{TAG}")


def test_size_on_disk_is_the_databases_own_and_grows_with_a_restore(setup: Setup) -> None:
    """What the return's disk check counts: a database's size, not the server's."""
    db = setup.db
    seeded = db.engine.size_bytes(db.production, db.password)
    assert seeded > 100_000  # thousands of seeded rows, with their indexes
    empty = setup.target("size")
    setup.restore(empty, "size-check@backup-even")
    restored = db.engine.size_bytes(empty, db.password)
    # (InnoDB's figures of a table just loaded may lag behind: only bounds are asserted)
    assert 0 < restored < 5 * seeded


def test_dump_lands_on_production_with_its_facts_and_row_counts(setup: Setup) -> None:
    db, dumped = setup.db, setup.dumped
    assert dumped.host_name == "production"
    assert dumped.format == db.dump_format
    assert dumped.size_bytes > 1_000
    assert dumped.table_counts == db.engine.table_counts(db.production, db.password)
    assert set(dumped.table_counts or {}) == db.tables
    assert dumped.counts_exact
    listing = setup.production.run(["ls", "-A", "--", SCRATCH]).stdout.split()
    assert listing == [db.dump_name]  # no .partial left behind
    copied = setup.drp.run(["sha256sum", "--", setup.dump_path]).stdout.split()[0]
    assert copied == dumped.sha256


def test_a_dump_never_replaces_an_existing_file(setup: Setup) -> None:
    db = setup.db
    with pytest.raises(DatabaseError, match="already exists; a dump never replaces a file"):
        db.engine.dump(setup.production, db.production, db.password, setup.dump_path)
    found = setup.production.run(["sha256sum", "--", setup.dump_path]).stdout.split()[0]
    assert found == setup.dumped.sha256


def test_restore_on_drp_matches_production_and_its_marker_reads_back(setup: Setup) -> None:
    db, target = setup.db, setup.target("fresh")
    assert db.engine.restore_decision(target, db.password, "b1").reason == (
        f"drp/{target.dbname} does not exist; restore backup b1"
    )
    result = setup.restore(target, "b1", expected_sha256=setup.dumped.sha256)
    assert result.action == "restored"
    assert result.kept_as is None
    assert result.reason.startswith(f"restored backup b1 on drp/{target.dbname} (in ")
    assert setup.counts(target) == setup.dumped.table_counts
    assert db.engine.table_checksums(target, db.password) == db.engine.table_checksums(
        db.production, db.password
    )
    marker = db.engine.read_marker(target, db.password)
    assert marker is not None and marker.complete
    assert (marker.backup_id, marker.manifest_digest, marker.operation_id) == (
        "b1",
        "sha256:manifest-of-b1",
        OPERATION,
    )
    assert result.marker == marker
    assert db.engine.read_state(target, db.password).marker == marker
    assert db.databases(target.dbname) == {target.dbname}  # nothing else left on the server


def test_same_backup_again_is_skipped_with_the_reason(setup: Setup) -> None:
    db, target = setup.db, setup.target("again")
    setup.restore(target, "b1")
    marker = db.engine.read_marker(target, db.password)
    assert marker is not None and marker.restored_at is not None
    reason = (
        f"backup b1 already restored on drp/{target.dbname} at "
        f"{marker.restored_at.isoformat(timespec='seconds')}, marker present"
    )
    decision = db.engine.restore_decision(target, db.password, "b1")
    assert (decision.action, decision.reason) == ("skip", reason)
    again = setup.restore(target, "b1")
    assert (again.action, again.reason) == ("skipped", reason)
    assert db.engine.read_marker(target, db.password) == marker


def test_foreign_database_is_refused_with_numbers_then_kept_aside_when_forced(
    setup: Setup,
) -> None:
    db, target = setup.db, setup.target("foreign")
    db.create_database(target)
    db.execute(
        target,
        "CREATE TABLE notes (id INT PRIMARY KEY, body TEXT)",
        "INSERT INTO notes VALUES (1, 'a'), (2, 'b'), (3, 'c')",
    )
    with pytest.raises(NonEmptyDatabase) as asked:
        db.engine.restore_decision(target, db.password, "b1")
    with pytest.raises(NonEmptyDatabase) as refused:
        setup.restore(target, "b1")
    assert str(asked.value) == str(refused.value)
    assert f"drp/{target.dbname} is not empty (1 table, 3 rows)" in str(refused.value)
    assert "force=True (drp: --force)" in str(refused.value)
    assert setup.counts(target) == {db.table("notes"): 3}  # untouched

    forced = setup.restore(target, "b1", force=True)
    assert forced.action == "restored"
    assert forced.kept_as is not None and f"before_drill_test_{TAG}" in forced.kept_as
    assert forced.reason.endswith(forced.kept_as)  # "...kept as/in <where>"
    assert setup.counts(target) == setup.dumped.table_counts
    kept = db.kept_counts(setup.drp, forced.kept_as, setup.target("foreign_back"))
    assert kept == {db.table("notes"): 3}


def test_another_backup_over_ours_keeps_the_previous_one_aside(setup: Setup) -> None:
    db, target = setup.db, setup.target("ours")
    setup.restore(target, "b1")
    db.execute(target, db.a_change)  # a change made on drp
    b1_counts = setup.counts(target)
    assert b1_counts != setup.dumped.table_counts

    second = setup.restore(target, "b2")
    assert second.action == "restored" and second.kept_as is not None
    now = db.engine.read_marker(target, db.password)
    assert now is not None and now.backup_id == "b2"
    assert setup.counts(target) == setup.dumped.table_counts

    third = setup.restore(target, "b3")  # same operation again: a new name, nothing replaced
    assert third.kept_as is not None and third.kept_as != second.kept_as

    kept = db.kept_counts(setup.drp, second.kept_as, setup.target("ours_back"))
    assert kept == b1_counts  # the change made on drp is safe


def test_empty_database_is_loaded_in_place_keeping_its_settings(setup: Setup) -> None:
    db, target = setup.db, setup.target("empty")
    db.create_database(target, prepared=True)
    assert db.engine.restore_decision(target, db.password, "b1").reason == (
        f"drp/{target.dbname} is empty; restore backup b1 into it"
    )
    result = setup.restore(target, "b1")
    assert result.kept_as is None  # nothing to keep aside
    assert setup.counts(target) == setup.dumped.table_counts
    assert db.is_prepared(target)  # the same database, loaded in place
    assert db.databases(target.dbname) == {target.dbname}


def test_a_dump_that_is_not_the_manifests_is_refused_before_anything_changes(
    setup: Setup,
) -> None:
    db, target = setup.db, setup.target("sha")
    setup.restore(target, "b1")
    before = db.engine.read_state(target, db.password)
    with pytest.raises(DatabaseError, match=r"has sha256 .* but its manifest says"):
        setup.restore(target, "b2", expected_sha256="0" * 64)
    assert db.engine.read_state(target, db.password) == before


def test_set_aside_then_put_back_gives_back_the_very_content(setup: Setup) -> None:
    db, engine, drp = setup.db, setup.db.engine, setup.drp
    target = setup.target("aside")
    setup.restore(target, "b1")
    db.execute(target, db.a_change)  # content no backup has
    state = engine.read_state(target, db.password)
    counts = setup.counts(target)
    sums = engine.table_checksums(target, db.password)

    aside = engine.aside_for(drp, target, db.password, OPERATION, ASIDE_DIR)
    assert aside.kept == engine.aside_name(target, OPERATION, ASIDE_DIR)
    assert engine.set_aside(drp, target, db.password, aside) is True
    assert not engine.exists(target, db.password)
    assert all(engine.aside_parts(drp, target, db.password, aside).values())
    assert engine.set_aside(drp, target, db.password, aside) is False  # already aside

    # Something restored in its place by this operation is drp's own: put_back drops it.
    setup.restore(target, "b2")
    done = engine.put_back(drp, target, db.password, aside, OPERATION)
    assert target.dbname in done
    assert engine.read_state(target, db.password) == state
    assert setup.counts(target) == counts
    assert engine.table_checksums(target, db.password) == sums
    assert not any(engine.aside_parts(drp, target, db.password, aside).values())

    again = engine.put_back(drp, target, db.password, aside, OPERATION)
    assert again.startswith(f"drp/{target.dbname} already holds its content from before")
    assert setup.counts(target) == counts


def test_put_back_never_drops_what_it_did_not_restore(setup: Setup) -> None:
    db, engine, drp = setup.db, setup.db.engine, setup.drp
    target = setup.target("guard")
    setup.restore(target, "b1")
    aside = engine.aside_for(drp, target, db.password, OPERATION, ASIDE_DIR)
    engine.set_aside(drp, target, db.password, aside)
    db.create_database(target)
    db.execute(target, "CREATE TABLE notes (id INT PRIMARY KEY)", "INSERT INTO notes VALUES (1)")
    with pytest.raises(NotOwnDatabase, match=r"no drp marker.*nothing was deleted"):
        engine.put_back(drp, target, db.password, aside, OPERATION)
    assert setup.counts(target) == {db.table("notes"): 1}
    assert all(engine.aside_parts(drp, target, db.password, aside).values())  # still safe


def test_put_back_without_its_copy_changes_nothing(setup: Setup) -> None:
    db, engine, drp = setup.db, setup.db.engine, setup.drp
    target = setup.target("lost")
    setup.restore(target, "b1")
    aside = engine.aside_for(drp, target, db.password, "drill-other", ASIDE_DIR + "-lost")
    gone = aside.model_copy(update={"kept": f"{aside.kept}x"})  # a copy that is not there
    setup.restore(target, "b2")  # and what stands there is not what was set aside
    with pytest.raises(AsideMissing, match="nothing was deleted"):
        engine.put_back(drp, target, db.password, gone, OPERATION)
    marker = db.engine.read_marker(target, db.password)
    assert marker is not None and marker.backup_id == "b2"


def test_drop_own_drops_only_this_operations_restore(setup: Setup) -> None:
    db, engine = setup.db, setup.db.engine
    foreign = setup.target("notours")
    db.create_database(foreign)
    db.execute(foreign, "CREATE TABLE notes (id INT PRIMARY KEY)")
    with pytest.raises(NotOwnDatabase, match="no drp marker"):
        engine.drop_own(foreign, db.password, OPERATION)
    assert engine.exists(foreign, db.password)

    ours = setup.target("own")
    setup.restore(ours, "b1")
    with pytest.raises(NotOwnDatabase, match=f"marker names {OPERATION}"):
        engine.drop_own(ours, db.password, "drill-someone-else")
    assert engine.exists(ours, db.password)
    assert engine.drop_own(ours, db.password, OPERATION) is True
    assert not engine.exists(ours, db.password)
    assert engine.drop_own(ours, db.password, OPERATION) is False  # nothing left to drop


def test_no_password_in_any_argv_log_or_result(
    setup: Setup, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    db, engine = setup.db, setup.db.engine
    password = db.password
    recorder = RecordingRunner(setup.drp)
    target = setup.target("secret")
    made = engine.dump(recorder, db.production, password, f"{SCRATCH}/secret-{db.dump_name}")
    first = setup.restore(target, "b1", runner=recorder, dump_path=made.path)
    db.execute(target, db.a_change)
    second = setup.restore(target, "b2", runner=recorder, dump_path=made.path)
    assert second.kept_as is not None  # the previous content was kept aside too
    # Another operation (this one already keeps a previous content under its own name).
    other = f"{OPERATION}-aside"
    aside = engine.aside_for(recorder, target, password, other, f"{ASIDE_DIR}-secret")
    engine.set_aside(recorder, target, password, aside)
    back = engine.put_back(recorder, target, password, aside, other)
    assert recorder.results, "commands ran on drp"
    for ran in recorder.results:
        assert not any(password in word for word in ran.argv)
        assert password not in ran.stdout and password not in ran.stderr
    assert password not in caplog.text
    for result in (made, first, second, aside):
        assert password not in result.model_dump_json()
    assert password not in back
    assert db.password_env in caplog.text  # the runner logged the secret's name, never its value


def test_a_staged_restore_is_swapped_in_by_name_keeping_what_held_the_name(setup: Setup) -> None:
    """The warm DRP server: a database restored earlier under another name (as a staging run
    does) takes the live name in seconds; the database that had it is kept, renamed, whole."""
    db, engine = setup.db, setup.db.engine
    live, stage = setup.target("live"), setup.target("live_stage")
    setup.restore(live, "b1")
    db.execute(live, db.a_change)  # written on drp since: must be kept
    before = setup.counts(live)
    engine.restore(
        setup.drp, setup.dump_path, stage, db.password, backup_id="b2",
        manifest_digest="m", operation_id=f"stage-test-{TAG}",
    )  # fmt: skip

    swapped = engine.swap_in(stage, live, db.password, operation_id=OPERATION)
    assert swapped.kept_as is not None and not engine.exists(stage, db.password)
    assert setup.counts(live) == setup.dumped.table_counts
    marker = engine.read_marker(live, db.password)
    assert marker is not None and marker.complete
    assert (marker.backup_id, marker.operation_id) == ("b2", OPERATION)  # the drill's own now
    assert engine.table_counts(live.with_dbname(swapped.kept_as), db.password) == before

    with pytest.raises(DatabaseError, match="no complete staged restore"):
        engine.swap_in(stage, live, db.password, operation_id=OPERATION)  # nothing left to swap
    assert setup.counts(live) == setup.dumped.table_counts


def test_only_a_staging_runs_own_stage_is_dropped(setup: Setup) -> None:
    db, engine = setup.db, setup.db.engine
    foreign = setup.target("foreign_stage")
    db.create_database(foreign)
    db.execute(foreign, "CREATE TABLE notes (id INT PRIMARY KEY)")
    with pytest.raises(NotOwnDatabase, match="no drp marker"):
        engine.drop_stage(foreign, db.password)
    assert engine.exists(foreign, db.password)
    drill = setup.target("drill_restore")
    setup.restore(drill, "b1")  # a drill's restore, not a staging run's
    with pytest.raises(NotOwnDatabase, match=f"marker names {OPERATION}"):
        engine.drop_stage(drill, db.password)
    staged = setup.target("staged")
    engine.restore(
        setup.drp, setup.dump_path, staged, db.password, backup_id="b1",
        manifest_digest="m", operation_id=f"stage-test-{TAG}",
    )  # fmt: skip
    assert engine.drop_stage(staged, db.password) is True
    assert not engine.exists(staged, db.password)
