"""Command lines and decisions of the PostgreSQL and MySQL providers, as exact values.

The shell-level tests run the built argv with the real /bin/sh, so quoting is proven, not
assumed.
"""

from __future__ import annotations

import hashlib
import subprocess
from datetime import UTC, datetime
from pathlib import Path

import pytest

from providers import mysql, postgres
from providers.commands import shell_line, with_secret_env
from providers.database import engine_for, mysql_aside_files
from providers.dbcommon import (
    DatabaseError,
    DatabaseState,
    DbEndpoint,
    Marker,
    NonEmptyDatabase,
    decide_restore,
    file_facts_argv,
    parse_file_facts,
    reveal,
    scratch_name,
    stdin_from_file_argv,
)

PG = DbEndpoint("drp", "127.0.10.4", 5432, "drp", "app_users")
MY = DbEndpoint("drp", "127.0.10.4", 3306, "drp", "app_shop")
ODD_PATH = "/home/drplab-drp/drp dumps/it's here; rm -rf ~/app_users.dump"


def _marker(backup_id: str, *, complete: bool = True) -> Marker:
    return Marker(
        backup_id=backup_id,
        manifest_digest="sha256:abc",
        operation_id="drill-20261129-0215-7f3a",
        started_at=datetime(2026, 11, 29, 2, 15, tzinfo=UTC),
        restored_at=datetime(2026, 11, 29, 2, 16, 5, tzinfo=UTC) if complete else None,
    )


# -- PostgreSQL argv --------------------------------------------------------------------------


def test_pg_dump_argv_is_custom_format_over_tcp_without_password() -> None:
    assert postgres.pg_dump_argv(PG, "/srv/dumps/app_users.dump") == [
        "pg_dump",
        "--host=127.0.10.4",
        "--port=5432",
        "--username=drp",
        "--no-password",
        "--dbname=app_users",
        "--format=custom",
        "--compress=1",
        "--exclude-schema=drp",
        "--file=/srv/dumps/app_users.dump",
    ]


def test_pg_dump_argv_uses_the_exported_snapshot_when_given() -> None:
    argv = postgres.pg_dump_argv(PG, "/d/x.dump", snapshot="00000003-0000001B-1")
    assert argv[-1] == "--snapshot=00000003-0000001B-1"
    assert argv[:-1] == postgres.pg_dump_argv(PG, "/d/x.dump")


def test_pg_restore_argv_is_parallel_stops_at_first_error_and_drops_owners() -> None:
    staging = PG.with_dbname("app_users_drp_new_0123456789")
    assert postgres.pg_restore_argv(staging, "/srv/dumps/app_users.dump", jobs=4) == [
        "pg_restore",
        "--host=127.0.10.4",
        "--port=5432",
        "--username=drp",
        "--no-password",
        "--dbname=app_users_drp_new_0123456789",
        "--jobs=4",
        "--exit-on-error",
        "--no-owner",
        "--",
        "/srv/dumps/app_users.dump",
    ]


def test_pg_restore_argv_options() -> None:
    argv = postgres.pg_restore_argv(PG, "/d.dump", jobs=1, no_owner=False, no_privileges=True)
    assert argv[-4:] == ["--exit-on-error", "--no-privileges", "--", "/d.dump"]
    with pytest.raises(ValueError, match="at least 1"):
        postgres.pg_restore_argv(PG, "/d.dump", jobs=0)


def test_odd_paths_stay_one_word_on_the_ssh_line() -> None:
    line = shell_line(postgres.pg_restore_argv(PG, ODD_PATH))
    assert line.endswith("'/home/drplab-drp/drp dumps/it'\"'\"'s here; rm -rf ~/app_users.dump'")
    assert shell_line(postgres.pg_dump_argv(PG, ODD_PATH)).endswith(
        "'--file=/home/drplab-drp/drp dumps/it'\"'\"'s here; rm -rf ~/app_users.dump'"
    )


# -- MySQL argv -------------------------------------------------------------------------------


MYSQL_DUMP_OPTIONS = [
    "--host=127.0.10.4",
    "--port=3306",
    "--user=drp",
    "--protocol=tcp",
    "--single-transaction",
    "--routines",
    "--triggers",
    "--events",
    "--hex-blob",
    "--no-tablespaces",
    "--default-character-set=utf8mb4",
]
MYSQL_CLIENT = [
    "mariadb",
    "--host=127.0.10.4",
    "--port=3306",
    "--user=drp",
    "--protocol=tcp",
    "--default-character-set=utf8mb4",
    "--batch",
    "--database=app_shop",
]


def test_mysql_dump_argv_is_consistent_complete_and_gzipped_in_one_pass() -> None:
    assert mysql.mysql_dump_argv(MY, "/srv/dumps/app_shop.sql.gz") == [
        "bash",
        "-o",
        "pipefail",
        "-c",
        'out=$1; shift; "$@" | gzip -1 > "$out"',
        "bash",
        "/srv/dumps/app_shop.sql.gz",
        "mariadb-dump",
        *MYSQL_DUMP_OPTIONS,
        "--ignore-table=app_shop._drp_restore_marker",
        "app_shop",
    ]


def test_mysql_dump_argv_uncompressed_writes_the_file_itself() -> None:
    assert mysql.mysql_dump_argv(MY, "/srv/dumps/app_shop.sql", compress=False) == [
        "mariadb-dump",
        *MYSQL_DUMP_OPTIONS,
        "--ignore-table=app_shop._drp_restore_marker",
        "--result-file=/srv/dumps/app_shop.sql",
        "app_shop",
    ]


def test_mysql_dump_argv_can_name_the_oracle_tool() -> None:
    argv = mysql.mysql_dump_argv(MY, "/d.sql", program="mysqldump", compress=False)
    assert argv[0] == "mysqldump"
    assert argv[1:] == mysql.mysql_dump_argv(MY, "/d.sql", compress=False)[1:]


def test_mysql_client_reads_the_dump_file_on_the_host() -> None:
    assert mysql.mysql_client_argv(MY, "/srv/dumps/app_shop.sql") == [
        "sh",
        "-c",
        'f=$1; shift; exec "$@" < "$f"',
        "sh",
        "/srv/dumps/app_shop.sql",
        *MYSQL_CLIENT,
    ]


def test_mysql_client_gunzips_a_gz_dump_on_the_host() -> None:
    assert mysql.mysql_client_argv(MY, "/srv/dumps/app_shop.sql.gz") == [
        "bash",
        "-o",
        "pipefail",
        "-c",
        'f=$1; shift; gzip -dc -- "$f" | "$@"',
        "bash",
        "/srv/dumps/app_shop.sql.gz",
        *MYSQL_CLIENT,
    ]


def test_mysql_marker_dump_argv_takes_drps_marker_table_alone() -> None:
    assert mysql.marker_dump_argv(MY, "d/m.sql") == [
        "mariadb-dump",
        "--host=127.0.10.4",
        "--port=3306",
        "--user=drp",
        "--protocol=tcp",
        "--single-transaction",
        "--skip-triggers",
        "--no-tablespaces",
        "--default-character-set=utf8mb4",
        "--result-file=d/m.sql",
        "app_shop",
        "_drp_restore_marker",
    ]


def test_each_engine_names_its_aside_and_says_how_it_sets_aside_and_puts_back() -> None:
    op = "drill-20261129-0215-7f3a"
    pg, my = engine_for("postgresql"), engine_for("mysql")
    assert (pg.name, my.name) == ("postgresql", "mysql")
    assert pg.aside_name(PG, op, "x") == "app_users_before_drill_20261129_0215_7f3a"
    assert pg.describe_set_aside(PG, op, "x") == f"renamed {pg.aside_name(PG, op, 'x')}"
    assert pg.describe_put_back(PG, op, "x") == f"rename {pg.aside_name(PG, op, 'x')} back"
    assert my.aside_name(MY, op, ".drp/d") == ".drp/d/app_shop.sql.gz"
    assert mysql_aside_files(".drp/d", "app_shop") == (
        ".drp/d/app_shop.sql.gz",
        ".drp/d/app_shop.marker.sql",
    )
    assert (
        my.describe_set_aside(MY, op, ".drp/d")
        == "dumped to drp:.drp/d/app_shop.sql.gz, then dropped"
    )
    assert (
        my.describe_put_back(MY, op, ".drp/d") == "recreate it and load drp:.drp/d/app_shop.sql.gz"
    )
    with pytest.raises(ValueError, match="unknown database engine 'oracle'"):
        engine_for("oracle")


def test_safety_dump_path_sits_beside_the_restored_dump() -> None:
    path = mysql.safety_dump_path("/srv/dumps/app_shop.sql", "app_shop", "drill-20261129-0215-7f3a")
    assert path == "/srv/dumps/app_shop_before_drill_20261129_0215_7f3a.sql.gz"
    assert mysql.safety_dump_path("app_shop.sql.gz", "app_shop", "drill-x") == (
        "app_shop_before_drill_x.sql.gz"
    )


# -- the shell wrappers, run for real -----------------------------------------------------------


def test_stdin_from_file_reads_an_odd_path_and_keeps_secret_lines_apart(tmp_path: Path) -> None:
    directory = tmp_path / "drp dumps" / "it's; here"
    directory.mkdir(parents=True)
    dump_file = directory / "app $shop.sql"
    dump_file.write_text("SELECT 1;\n")
    program = ["sh", "-c", 'printf "pwd=%s\\n" "$MYSQL_PWD"; cat']
    argv = with_secret_env(stdin_from_file_argv(str(dump_file), program), ["MYSQL_PWD"])
    done = subprocess.run(
        ["sh", "-c", shell_line(argv)], input="s3cret\n", capture_output=True, text=True, check=True
    )
    assert done.stdout == "pwd=s3cret\nSELECT 1;\n"


def _swap_program(argv: list[str], program: str, replacement: list[str]) -> list[str]:
    """argv with the database program (and its options) replaced by a stand-in command."""
    start = argv.index(program)
    return [*argv[:start], *replacement]


def test_gzipped_dump_and_load_round_trip_through_odd_paths(tmp_path: Path) -> None:
    directory = tmp_path / "it's a dir"
    directory.mkdir()
    target = str(directory / "app $shop.sql.gz")
    fake_dump = ["sh", "-c", "printf 'INSERT 1;\\n'"]
    dump_argv = _swap_program(mysql.mysql_dump_argv(MY, target), "mariadb-dump", fake_dump)
    subprocess.run(["sh", "-c", shell_line(dump_argv)], check=True)
    load_argv = _swap_program(mysql.mysql_client_argv(MY, target), "mariadb", ["cat"])
    done = subprocess.run(
        ["sh", "-c", shell_line(load_argv)], capture_output=True, text=True, check=True
    )
    assert done.stdout == "INSERT 1;\n"


def test_a_failing_dump_fails_the_gzip_pipeline(tmp_path: Path) -> None:
    target = str(tmp_path / "x.sql.gz")
    dump_argv = _swap_program(mysql.mysql_dump_argv(MY, target), "mariadb-dump", ["false"])
    assert subprocess.run(["sh", "-c", shell_line(dump_argv)]).returncode != 0


def test_a_damaged_gzip_fails_the_load(tmp_path: Path) -> None:
    target = tmp_path / "x.sql.gz"
    target.write_bytes(b"not gzip")
    load_argv = _swap_program(mysql.mysql_client_argv(MY, str(target)), "mariadb", ["cat"])
    done = subprocess.run(["sh", "-c", shell_line(load_argv)], capture_output=True)
    assert done.returncode != 0


def test_file_facts_give_size_and_sha256_of_an_odd_path(tmp_path: Path) -> None:
    target = tmp_path / "a b'c.dump"
    target.write_bytes(b"x" * 1000)
    done = subprocess.run(
        ["sh", "-c", shell_line(file_facts_argv(str(target)))],
        capture_output=True,
        text=True,
        check=True,
    )
    assert parse_file_facts(done.stdout) == (1000, hashlib.sha256(b"x" * 1000).hexdigest())


def test_file_facts_parse_refuses_garbage() -> None:
    with pytest.raises(DatabaseError, match="unexpected output"):
        parse_file_facts("No such file\n")


# -- endpoints and names ----------------------------------------------------------------------


def test_endpoint_label_and_rename() -> None:
    assert PG.label == "drp/app_users"
    assert PG.with_dbname("x").label == "drp/x"


@pytest.mark.parametrize("bad", ["app=users", "-app", "", "a" * 64, "app users", "app;x"])
def test_endpoint_refuses_names_clients_would_misread(bad: str) -> None:
    with pytest.raises(ValueError, match="dbname"):
        DbEndpoint("drp", "127.0.10.4", 5432, "drp", bad)


def test_endpoint_refuses_a_bad_port() -> None:
    with pytest.raises(ValueError, match="port 0"):
        DbEndpoint("drp", "127.0.10.4", 0, "drp", "app")


def test_scratch_names_are_safe_bounded_and_distinct() -> None:
    assert scratch_name("app_users", "before", "activate-20261129-0215-7f3a") == (
        "app_users_before_activate_20261129_0215_7f3a"
    )
    long_a = scratch_name("a" * 50, "before", "drill-20261129-0215-0001")
    long_b = scratch_name("a" * 50, "before", "drill-20261129-0215-0002")
    assert len(long_a) == len(long_b) == 63
    assert long_a != long_b


def test_aside_and_staging_names() -> None:
    assert postgres.aside_name("app_users", "drill-x1") == "app_users_before_drill_x1"
    assert postgres.aside_name("app_users", "drill-x1", 2) == "app_users_before_drill_x1_2"
    staging = postgres.staging_name("app_users", "drill-x1")
    assert staging.startswith("app_users_drp_new_")
    # Every attempt of the operation finds it, whatever backup id it restores under.
    assert staging == postgres.staging_name("app_users", "drill-x1")
    assert staging != postgres.staging_name("app_users", "drill-x2")


def test_reveal_takes_a_str_or_a_masked_secret() -> None:
    class Masked:
        def reveal(self) -> str:
            return "pw"

    assert reveal("pw") == reveal(Masked()) == "pw"


# -- the restore decision ---------------------------------------------------------------------


def test_missing_database_is_restored() -> None:
    decision = decide_restore(DatabaseState(exists=False), "drp/app_users", "b1")
    assert (decision.action, decision.reason) == (
        "restore",
        "drp/app_users does not exist; restore backup b1",
    )


def test_same_backup_again_is_skipped_with_the_reason() -> None:
    state = DatabaseState(exists=True, tables=3, marker=_marker("2026-11-29T02:00"))
    decision = decide_restore(state, "drp/app_users", "2026-11-29T02:00")
    assert decision.action == "skip"
    assert decision.reason == (
        "backup 2026-11-29T02:00 already restored on drp/app_users at "
        "2026-11-29T02:16:05+00:00, marker present"
    )


def test_another_backup_over_ours_is_restored_keeping_the_old_aside() -> None:
    state = DatabaseState(exists=True, tables=3, marker=_marker("b1"))
    decision = decide_restore(state, "drp/app_users", "b2")
    assert decision.action == "restore"
    assert decision.reason == (
        "drp/app_users holds backup b1 restored by drp; keep it aside, then restore backup b2"
    )


def test_an_unfinished_restore_of_the_same_backup_is_done_again() -> None:
    state = DatabaseState(exists=True, tables=2, marker=_marker("b1", complete=False))
    decision = decide_restore(state, "drp/app_shop", "b1")
    assert decision.action == "restore"
    assert "unfinished drp restore of backup b1" in decision.reason


def test_empty_database_is_restored_into() -> None:
    state = DatabaseState(exists=True, tables=0)
    assert state.empty
    decision = decide_restore(state, "drp/app_users", "b1")
    assert decision.reason == "drp/app_users is empty; restore backup b1 into it"


def test_database_without_tables_but_with_other_objects_is_kept_aside() -> None:
    state = DatabaseState(exists=True, tables=0, other_objects=2)
    assert not state.empty
    decision = decide_restore(state, "drp/app_users", "b1")
    assert decision.action == "restore"
    assert decision.reason == (
        "drp/app_users has no tables but 2 other objects (views, routines...); keep it aside, "
        "then restore backup b1"
    )


def test_foreign_data_is_refused_with_the_numbers_and_the_way_to_force() -> None:
    state = DatabaseState(exists=True, tables=3, rows=1204)
    with pytest.raises(NonEmptyDatabase) as caught:
        decide_restore(state, "drp/app_users", "b1")
    message = str(caught.value)
    assert "drp/app_users is not empty (3 tables, 1204 rows)" in message
    assert "no drp restore marker" in message
    assert "force=True (drp: --force)" in message
    assert (caught.value.tables, caught.value.rows) == (3, 1204)
    assert isinstance(caught.value, DatabaseError)


def test_foreign_data_is_restored_when_forced_and_the_plan_says_so() -> None:
    state = DatabaseState(exists=True, tables=1, rows=1)
    decision = decide_restore(state, "drp/app_users", "b1", force=True)
    assert decision.action == "restore"
    assert decision.reason == (
        "drp/app_users holds 1 table (1 rows) not restored by drp; forced: keep it aside, "
        "then restore backup b1"
    )


def test_non_empty_database_names_one_table_in_the_singular() -> None:
    with pytest.raises(NonEmptyDatabase, match=r"\(1 table, 1 row\)"):
        decide_restore(DatabaseState(exists=True, tables=1, rows=1), "drp/x", "b1")
