"""An activation's copies and imports on the lab, step by step (no Prefect needed).

- the copy makes the DRP tree equal to the backup set's, setting aside first what it replaces or
  removes, and its check compares the whole tree: a stray file is not "already matching";
- an import fetches its own dump only, and removes it once the database is verified.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from flow_helpers import LAB_CONFIG, ensure_backups

from flows.prepare import choose_backups
from providers import mysql, postgres
from runbooks import connect
from runbooks.activation import STAGING_DIR, Operation, RestoreDatabase, copy_from_backup
from runbooks.inventory import Site, load_site
from runbooks.steps import Outcome

pytestmark = [pytest.mark.lab]

MiB = 1024 * 1024
WWW = "srv/app/www"


@pytest.fixture(scope="module")
def site(lab) -> Site:
    loaded = load_site(LAB_CONFIG)
    ensure_backups(loaded)
    return loaded


@pytest.fixture
def op(site: Site) -> Iterator[Operation]:
    selection = choose_backups(site, datetime.now(UTC), None)
    operation = Operation(site, f"activate-copies-{secrets.token_hex(3)}", "activate", selection)
    try:
        yield operation
    finally:
        operation.close()


def drp(op: Operation, *argv: str) -> str:
    return op.pool["drp"].run(list(argv)).stdout


def www_step(op: Operation):  # type: ignore[no-untyped-def]
    env = op.site.environments[0]
    for section, name, tree in connect.environment_trees(env):
        chosen = op.selection[env.name].tree(section, name)
        if chosen is not None and tree.path.rstrip("/") == WWW:
            return copy_from_backup(op, env, tree, chosen)
    raise AssertionError(f"no tree {WWW} in the lab inventory")


def test_the_copy_makes_the_tree_equal_and_keeps_what_it_replaces(op: Operation) -> None:
    step = www_step(op)
    step.run()  # equal to the set, whatever earlier tests left there
    assert step.check().done
    assert "the whole tree" in step.check().reason

    # A killed copy's temporary file (2 MiB), a file added since, a file deleted since.
    names = drp(op, "find", WWW, "-maxdepth", "1", "-type", "f", "-printf", "%f\n").split()
    gone = sorted(names)[0]
    stray = f".{gone}.Ab12Cd"
    drp(
        op,
        "sh",
        "-c",
        'head -c 2097152 /dev/urandom > "$1/$2" && echo new > "$1/added.txt" && rm -- "$1/$3"',
        "sh",
        WWW,
        stray,
        gone,
    )
    check = step.check()
    assert not check.done, check.reason
    assert "1 files to create" in check.reason and "2 to delete" in check.reason

    record = step.run()
    assert record.outcome is Outcome.APPLIED
    assert f"{WWW}.drp-before-{op.operation_id}/copy-" in record.reason
    now = drp(op, "find", WWW, "-maxdepth", "1", "-printf", "%f\n").split()
    assert gone in now and stray not in now and "added.txt" not in now
    kept = drp(op, "find", f"{WWW}.drp-before-{op.operation_id}", "-type", "f", "-printf", "%f\n")
    assert sorted(kept.split()) == sorted([stray, "added.txt"])
    assert step.check().done
    drp(op, "rm", "-rf", "--", f"{WWW}.drp-before-{op.operation_id}")


def test_an_import_fetches_its_own_dump_only_and_removes_it_once_verified(op: Operation) -> None:
    env = op.site.environments[0]
    db = next(d for d in env.databases if d.engine == "postgresql")
    chosen = op.selection[env.name].dump(db.name)
    assert chosen is not None
    others = [d for d in op.selection[env.name].dumps if d.dump.database != db.name]
    assert others, "the lab's set has more than one dump"
    step = RestoreDatabase(op, env, db, chosen, "drp")
    drp(op, "rm", "-rf", "--", STAGING_DIR)
    endpoint = connect.db_endpoint(op.site, db, "drp")
    password = connect.database_password(op.site, db)
    if postgres.database_exists(endpoint, password):  # a missing database: nothing kept aside
        postgres.drop_database(endpoint, password)

    record = step.run()
    assert record.outcome is Outcome.APPLIED, record.reason
    assert record.bytes <= chosen.dump.size  # not the other dumps of the set
    assert f"staged dump {chosen.dump.path.rsplit('/', 1)[-1]} removed" in record.reason
    staged = drp(op, "sh", "-c", 'find "$1" -type f 2>/dev/null; true', "sh", STAGING_DIR)
    assert staged == "", staged
    assert postgres.read_marker(endpoint, password).operation_id == op.operation_id
    assert mysql  # the MySQL import takes the same path (RestoreDatabase is engine-neutral)


def test_the_disk_space_check_names_what_it_counts(op: Operation) -> None:
    from runbooks.activation import DiskSpace

    reason = DiskSpace(op, "drp").check().reason
    assert "dumps staged" in reason and "databases restored" in reason and "trees" in reason
