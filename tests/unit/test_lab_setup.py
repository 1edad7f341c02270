"""The lab's set-up logic without running anything: command lines, configs, sizes, secrets."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest

from lab import accounts, mariadb, postgres, procs, seed, sshd, sshkeys, topology, webapp
from lab.commands import as_user
from lab.errors import LabError
from lab.secrets import ensure_secrets, load_secrets, parse_env, render_env

PATHS = topology.LabPaths(Path("/srv/lab"))
PRODUCTION = topology.host("production")


def test_as_user_drops_to_the_user_with_setpriv() -> None:
    assert as_user("drplab-drp", ["id", "-u"]) == [
        "setpriv",
        "--reuid",
        "drplab-drp",
        "--regid",
        "drplab-drp",
        "--init-groups",
        "--",
        "id",
        "-u",
    ]


def test_useradd_gives_a_key_only_account_whose_home_is_the_host_root() -> None:
    assert accounts.useradd_argv(PRODUCTION, PATHS.host_root("production")) == [
        "useradd",
        "--system",
        "--user-group",
        "--no-create-home",
        "--home-dir",
        "/srv/lab/hosts/production",
        "--shell",
        "/bin/bash",
        "--password",
        "*",
        "--comment",
        "drp lab host production",
        "drplab-production",
    ]


def test_keygen_makes_unencrypted_ed25519_keys() -> None:
    assert sshkeys.keygen_argv(Path("/k/operator"), "drp-lab-operator") == [
        "ssh-keygen",
        "-q",
        "-t",
        "ed25519",
        "-N",
        "",
        "-C",
        "drp-lab-operator",
        "-f",
        "/k/operator",
    ]


def test_known_hosts_lines_name_the_port_in_brackets() -> None:
    line = sshkeys.known_hosts_line("127.0.10.1", 2222, "ssh-ed25519 AAAAC3")
    assert line == "[127.0.10.1]:2222 ssh-ed25519 AAAAC3\n"
    assert sshkeys.known_hosts_line("10.0.0.1", 22, "ssh-ed25519 AAAAC3").startswith("10.0.0.1 ")


def test_sshd_runs_in_the_foreground_logging_to_stderr() -> None:
    config = Path("/srv/lab/data/drp/sshd/sshd_config")
    assert sshd.sshd_argv(config) == ["/usr/sbin/sshd", "-D", "-e", "-f", str(config)]


def test_sshd_config_lets_only_the_hosts_user_in_by_key() -> None:
    lines = sshd.render_sshd_config(PATHS, PRODUCTION).splitlines()
    for directive in (
        "ListenAddress 127.0.10.1",
        f"Port {topology.SSH_PORT}",
        "AllowUsers drplab-production",
        "PasswordAuthentication no",
        "UsePAM no",
        "AllowAgentForwarding yes",
        "SetEnv DRP_LAB_HOST=production",
        "PidFile /srv/lab/run/sshd-production.sshd.pid",
        "HostKey /srv/lab/keys/hosts/production/ssh_host_ed25519_key",
    ):
        assert directive in lines


def test_initdb_makes_the_lab_user_superuser_with_scram() -> None:
    argv = postgres.initdb_argv(Path("/d/postgresql"), Path("/d/.pw"))
    assert argv == [
        "/usr/lib/postgresql/15/bin/initdb",
        "--pgdata",
        "/d/postgresql",
        "--username",
        topology.DB_USER,
        "--pwfile",
        "/d/.pw",
        "--auth-local",
        "scram-sha-256",
        "--auth-host",
        "scram-sha-256",
        "--encoding",
        "UTF8",
        "--no-locale",
        "--no-sync",
        "--no-instructions",
    ]


def test_postgres_listens_on_the_hosts_address_with_its_own_sockets() -> None:
    argv = postgres.postgres_argv(Path("/d/postgresql"), "127.0.10.4", Path("/d/sock"))
    assert argv[:3] == ["/usr/lib/postgresql/15/bin/postgres", "-D", "/d/postgresql"]
    settings = dict(arg.split("=", 1) for arg in argv[3:] if arg != "-c")
    assert settings["listen_addresses"] == "127.0.10.4"
    assert settings["port"] == str(topology.PG_PORT)
    assert settings["unix_socket_directories"] == "/d/sock"
    assert "host    all   all   127.0.0.0/8   scram-sha-256" in postgres.PG_HBA


def test_mariadb_ignores_system_option_files() -> None:
    install = mariadb.install_db_argv(Path("/d/mariadb"), Path("/d/admin.sql"))
    assert install == [
        "/usr/bin/mariadb-install-db",
        "--no-defaults",
        "--datadir=/d/mariadb",
        "--auth-root-authentication-method=normal",
        "--skip-name-resolve",
        "--skip-test-db",
        "--extra-file=/d/admin.sql",
    ]
    server = mariadb.mariadbd_argv(Path("/d/mariadb"), "127.0.10.1", Path("/d/sock"))
    assert server[:2] == ["/usr/sbin/mariadbd", "--no-defaults"]  # must come first
    assert "--bind-address=127.0.10.1" in server
    assert f"--port={topology.MYSQL_PORT}" in server
    assert "--socket=/d/sock/mysqld.sock" in server


def test_mariadb_admin_login_does_not_get_shadowed_by_root_entries() -> None:
    sql = mariadb.admin_sql("s3cret'x")
    assert "DROP USER IF EXISTS 'root'@'127.0.0.1', 'root'@'::1', ''@'localhost';" in sql
    assert "CREATE USER 'drp'@'127.0.0.0/255.0.0.0' IDENTIFIED BY 's3cret''x';" in sql
    assert sql.index("FLUSH PRIVILEGES") < sql.index("CREATE USER")


def test_webapp_runs_as_a_module_for_one_host() -> None:
    assert webapp.webapp_argv("/usr/bin/python3", "drp", Path("/srv/lab")) == [
        "/usr/bin/python3",
        "-m",
        "lab.webapp",
        "--host",
        "drp",
        "--lab-dir",
        "/srv/lab",
    ]


def test_a_daemons_rewritten_title_still_matches_its_argv() -> None:
    argv = ["/usr/sbin/sshd", "-D", "-e", "-f", "/srv/lab/data/drp/sshd/sshd_config"]
    title = "sshd: /usr/sbin/sshd -D -e -f /srv/lab/data/drp/sshd/sshd_config [listener] 0 of 10"
    assert procs.cmdline_matches(title, argv, "/srv/lab")
    other = "sshd: /usr/sbin/sshd -D -e -f /etc/ssh/sshd_config [listener] 0 of 10"
    assert not procs.cmdline_matches(other, argv, "/srv/lab")
    assert not procs.cmdline_matches("/usr/bin/python3 -m http.server", argv, "/srv/lab")


@pytest.mark.parametrize("rows", [seed.MIN_ROWS, 999, seed.DEFAULT_ROWS, 1_000_000])
def test_table_rows_add_up_to_the_rows_asked(rows: int) -> None:
    counts = seed.table_rows(rows)
    assert sum(counts.values()) == rows
    assert set(counts) == set(seed.ROW_SHARES)
    assert min(counts.values()) >= 10


@pytest.mark.parametrize("files_mb", [1, seed.DEFAULT_FILES_MB, 1024])
def test_file_plan_adds_up_to_the_mib_asked(files_mb: int) -> None:
    plan = seed.plan_files(files_mb, index_size=400)
    assert sum(size for _, size in plan) + 400 == files_mb * seed.MIB
    assert len(plan) >= 2000 + seed.LARGE_FILES
    large = [size for path, size in plan if path.startswith("media/")]
    assert len(large) == seed.LARGE_FILES
    assert min(large) > max(size for path, size in plan if not path.startswith("media/"))


def test_the_prefect_server_address_is_rewritten_and_its_password_kept(tmp_path: Path) -> None:
    """A lab.env from before (no Prefect lines, or another address): `up` adds the password
    once and states the server's current address, keeping every secret it had."""
    paths = topology.LabPaths(tmp_path)
    first = ensure_secrets(paths)
    older = {k: v for k, v in first.items() if k != "PREFECT_API_AUTH_STRING"}
    paths.secrets_env.write_text(render_env({**older, "PREFECT_API_URL": "http://old:1/api"}))
    again = ensure_secrets(paths)
    assert again["PREFECT_API_URL"] == topology.PREFECT_API_URL
    assert {k: again[k] for k in older if k.startswith("DRP_")} == {
        k: v for k, v in older.items() if k.startswith("DRP_")
    }
    assert again["PREFECT_API_AUTH_STRING"] != first["PREFECT_API_AUTH_STRING"]
    assert ensure_secrets(paths) == again


def test_secrets_are_generated_once_then_reused(tmp_path: Path) -> None:
    paths = topology.LabPaths(tmp_path)
    with pytest.raises(LabError, match="drp lab up"):
        load_secrets(paths)
    first = ensure_secrets(paths)
    assert set(first) == set(topology.SECRET_NAMES) | {"PREFECT_API_URL", "PREFECT_UI_URL"}
    assert first["PREFECT_API_URL"] == "http://127.0.10.70:4200/api"
    user, _, password = first["PREFECT_API_AUTH_STRING"].partition(":")
    assert user == "drp-lab" and len(password) == 32 and password.isalnum()
    assert paths.secrets_env.stat().st_mode & 0o777 == 0o600
    assert len(base64.b64decode(first["DRP_LAB_TSIG_SECRET"])) == 32
    assert first["DRP_LAB_OVH_APPLICATION_KEY"].isalnum()
    assert ensure_secrets(paths) == first
    assert load_secrets(paths) == first


def test_secrets_file_round_trips() -> None:
    values = {"A": "1", "B": "x=y"}
    assert parse_env(render_env(values)) == values
