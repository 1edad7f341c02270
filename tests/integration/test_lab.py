"""The local lab answers for real: SSH, rsync between hosts, both databases, the web app.

Every test talks to the running lab's daemons on their loopback addresses. Tests of the seeded
state first reset the lab (once for the module); the down/up cycle comes last and leaves the
lab running again.
"""

from __future__ import annotations

import base64
import datetime as dt
import http.client
import json
import os
import shlex
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import fabric
import paramiko
import psycopg
import pymysql
import pytest

from lab import api, prefect_server, procs, topology
from lab import seed as seeding
from lab.secrets import load_secrets
from lab.seed import MIB, SeedReport, read_seed

pytestmark = pytest.mark.lab

HOST_NAMES = [h.name for h in topology.HOSTS]
DB_HOSTS = [h for h in topology.HOSTS if h.databases]


# ---------------------------------------------------------------- helpers


def strict_connection(
    lab, host: topology.LabHost, known_hosts: Path, user: str | None = None
) -> fabric.Connection:
    """A Fabric connection that trusts only `known_hosts` and logs in with the operator key."""
    conn = fabric.Connection(
        host=host.address,
        port=topology.SSH_PORT,
        user=user or host.user,
        config=fabric.Config(ssh_config=paramiko.SSHConfig()),  # no ~/.ssh or /etc/ssh config
        connect_timeout=10,
        connect_kwargs={
            "key_filename": str(lab.paths.operator_key),
            "look_for_keys": False,
            "allow_agent": False,
        },
    )
    # Fabric installs AutoAddPolicy: replace it before the first connection.
    conn.client.load_host_keys(str(known_hosts))
    conn.client.set_missing_host_key_policy(paramiko.RejectPolicy())
    return conn


@pytest.fixture
def ssh(lab) -> Iterator:
    opened: list[fabric.Connection] = []

    def connect(name: str, known_hosts: Path | None = None, user: str | None = None):
        conn = strict_connection(
            lab, topology.host(name), known_hosts or lab.paths.known_hosts, user
        )
        opened.append(conn)
        return conn

    yield connect
    for conn in opened:
        conn.close()


def http_get(address: str, path: str, host_header: str) -> tuple[int, str]:
    conn = http.client.HTTPConnection(address, topology.WEB_PORT, timeout=10)
    try:
        conn.request("GET", path, headers={"Host": host_header})
        reply = conn.getresponse()
        return reply.status, reply.read().decode()
    finally:
        conn.close()


def pg_connect(lab, host: topology.LabHost, dbname: str) -> psycopg.Connection:
    return psycopg.connect(
        host=host.address,
        port=topology.PG_PORT,
        user=topology.DB_USER,
        password=lab.secrets["DRP_LAB_PG_PASSWORD"],
        dbname=dbname,
        connect_timeout=5,
    )


def mysql_connect(lab, host: topology.LabHost, database: str) -> pymysql.Connection:
    return pymysql.connect(
        host=host.address,
        port=topology.MYSQL_PORT,
        user=topology.DB_USER,
        password=lab.secrets["DRP_LAB_MYSQL_PASSWORD"],
        database=database,
        connect_timeout=5,
    )


def process_uid(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Uid:"):
            return int(line.split()[1])
    raise AssertionError(f"no Uid line for pid {pid}")


@dataclass(frozen=True)
class ResetOutcome:
    """The lab just after `api.reset()`, and what it looked like before."""

    before_seed: SeedReport
    after: api.LabStatus
    operator_key: str
    known_hosts: str
    secrets: dict[str, str]
    restored_files: Path
    prefect_pid: int | None  # the lab's Prefect server's, before the reset


@pytest.fixture(scope="module")
def fresh_lab(lab) -> ResetOutcome:
    """Leaves behind what a drill would (a backup, restored files and tables on drp), then
    resets the lab, so the tests below see the freshly seeded state whatever ran before."""
    with lab.exclusive():  # no other test session may be using the lab meanwhile
        drp = topology.host("drp")
        before = read_seed(lab.paths)
        assert before is not None
        (lab.paths.host_root("backup-even") / topology.BACKUP_AREA / "app.tar").write_text("x")
        restored = lab.paths.host_root("drp") / topology.APP_FILES_DIR
        restored.mkdir(parents=True, exist_ok=True)
        (restored / "index.html").write_text("<title>restored</title>")
        with pg_connect(lab, drp, topology.APP_PG_DB) as conn:
            conn.execute("CREATE TABLE IF NOT EXISTS reset_check (id int)")
        prefect_pid = {s.name: s.pid for s in api.status().services}[prefect_server.NAME]
        outcome = ResetOutcome(
            before_seed=before,
            after=api.reset(),
            operator_key=lab.paths.operator_key.read_text(),
            known_hosts=lab.paths.known_hosts.read_text(),
            secrets=load_secrets(lab.paths),
            restored_files=restored,
            prefect_pid=prefect_pid,
        )
    return outcome


# ---------------------------------------------------------------- reset


def test_reset_reseeds_production_with_the_same_sizes(fresh_lab: ResetOutcome) -> None:
    after = fresh_lab.after
    assert after.all_running
    assert after.seed is not None
    assert after.seed.seed_id != fresh_lab.before_seed.seed_id
    assert after.seed.size == fresh_lab.before_seed.size
    assert after.notes[0] == "wiped data directories, host roots and backup areas"


def test_reset_keeps_keys_and_secrets(lab, fresh_lab: ResetOutcome) -> None:
    assert fresh_lab.secrets == lab.secrets
    assert fresh_lab.operator_key == lab.paths.operator_key.read_text()
    assert fresh_lab.known_hosts == lab.paths.known_hosts.read_text()


def test_reset_leaves_the_prefect_server_running(fresh_lab: ResetOutcome) -> None:
    """It holds no lab host's data, and its runs and UI stay as they were."""
    after = fresh_lab.after
    assert prefect_server.NAME not in after.stopped
    assert prefect_server.NAME in after.already_running
    shown = {s.name: s for s in after.services}[prefect_server.NAME]
    assert (shown.state, shown.pid) == ("running", fresh_lab.prefect_pid)


def test_backup_areas_start_empty(lab, fresh_lab: ResetOutcome) -> None:
    for name in ("backup-even", "backup-odd"):
        area = lab.paths.host_root(name) / topology.BACKUP_AREA
        assert area.is_dir()
        assert list(area.iterdir()) == []


def test_drp_starts_with_empty_databases_and_no_files(lab, fresh_lab: ResetOutcome) -> None:
    drp = topology.host("drp")
    assert not fresh_lab.restored_files.exists()
    with pg_connect(lab, drp, topology.APP_PG_DB) as conn:
        tables = conn.execute(
            "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public'"
        ).fetchone()[0]
    assert tables == 0
    with mysql_connect(lab, drp, topology.APP_MYSQL_DB) as conn, conn.cursor() as cursor:
        assert cursor.execute("SHOW TABLES") == 0
    status, page = http_get(drp.address, "/", f"www.{topology.ZONE}")
    assert status == 200
    assert "Served by lab host <b>drp</b>" in page
    assert '<span id="file-count">0</span>' in page


# ---------------------------------------------------------------- status and secrets


def test_status_reports_every_service_running(lab) -> None:
    status = api.status()
    by_name = {s.name: s for s in status.services}
    expected = {f"sshd-{h}" for h in HOST_NAMES}
    expected |= {f"{kind}-{h.name}" for h in DB_HOSTS for kind in ("postgres", "mariadb")}
    expected |= {f"web-{h.name}" for h in topology.HOSTS if h.web}
    expected |= {"knot", "ovh-emulator", "mail-sink", "prefect-server"}
    assert expected <= set(by_name)
    assert [s.name for s in status.services if s.state != "running"] == []
    assert all(s.pid for s in status.services)
    assert json.loads(status.to_json())["all_running"] is True


def test_cli_status_and_up_report_a_running_lab(lab) -> None:
    from typer.testing import CliRunner

    from flows.cli import app

    runner = CliRunner()
    shown = runner.invoke(app, ["lab", "status", "--json"])
    assert shown.exit_code == 0, shown.output
    data = json.loads(shown.output)
    assert data["all_running"] is True
    assert {s["name"] for s in data["services"]} >= {"sshd-drp", "knot", "ovh-emulator"}
    again = runner.invoke(app, ["lab", "up"])
    assert again.exit_code == 0, again.output
    assert "lab already running, nothing to start" in again.output
    assert "127.0.10.1:2222" in again.output


def test_up_when_running_starts_nothing(lab) -> None:
    again = api.up()
    assert again.started == []
    assert len(again.already_running) == len(again.services)
    assert again.seconds is not None and again.seconds < 10


def test_databases_and_web_run_as_their_hosts_users(lab) -> None:
    import pwd

    for service in api.status().services:
        if service.kind in ("postgresql", "mariadb", "web"):
            owner = pwd.getpwuid(process_uid(service.pid)).pw_name
            assert owner == topology.host(service.host).user, service.name


def test_secrets_file_is_private_and_well_formed(lab) -> None:
    mode = lab.paths.secrets_env.stat().st_mode & 0o777
    assert mode == 0o600
    assert set(topology.SECRET_NAMES) <= set(lab.secrets)
    assert len(base64.b64decode(lab.secrets["DRP_LAB_TSIG_SECRET"], validate=True)) == 32
    assert len(lab.secrets["DRP_LAB_OVH_APPLICATION_KEY"]) == 16
    assert len(lab.secrets["DRP_LAB_OVH_APPLICATION_SECRET"]) == 32
    assert len(lab.secrets["DRP_LAB_OVH_CONSUMER_KEY"]) == 32


# ---------------------------------------------------------------- SSH


@pytest.mark.parametrize("name", HOST_NAMES)
def test_ssh_reaches_each_host_as_its_user(ssh, name: str) -> None:
    result = ssh(name).run(
        "echo $DRP_LAB_HOST; whoami; pwd; command -v rsync", hide=True, in_stream=False
    )
    host_env, user, home, rsync = result.stdout.split()
    assert host_env == name
    assert user == topology.host(name).user
    assert home.endswith(f"/hosts/{name}")
    assert rsync.endswith("/rsync")


def test_unknown_host_key_is_refused(ssh, tmp_path: Path) -> None:
    empty = tmp_path / "known_hosts"
    empty.write_text("")
    with pytest.raises(paramiko.SSHException, match="not found in known_hosts"):
        ssh("production", known_hosts=empty).run("true", hide=True, in_stream=False)


def test_changed_host_key_is_refused(ssh, lab, tmp_path: Path) -> None:
    # production's address listed with drp's key: what a man in the middle would look like.
    lines = lab.paths.known_hosts.read_text().splitlines()
    drp_key = next(line for line in lines if line.startswith("[127.0.10.4]")).split(None, 1)[1]
    forged = tmp_path / "known_hosts"
    forged.write_text(f"[{topology.host('production').address}]:{topology.SSH_PORT} {drp_key}\n")
    with pytest.raises(paramiko.BadHostKeyException):
        ssh("production", known_hosts=forged).run("true", hide=True, in_stream=False)


def test_only_the_hosts_own_user_may_log_in(ssh) -> None:
    # drp's user exists on this machine, but production's sshd lets only its own user in.
    with pytest.raises(paramiko.AuthenticationException):
        ssh("production", user=topology.host("drp").user).run("true", hide=True, in_stream=False)


def test_password_login_is_refused(lab) -> None:
    production = topology.host("production")
    transport = paramiko.Transport((production.address, topology.SSH_PORT))
    try:
        transport.start_client(timeout=10)
        assert transport.auth_none(production.user) == ["publickey"]
    except paramiko.BadAuthenticationType as err:
        assert err.allowed_types == ["publickey"]
    finally:
        transport.close()


def _rsync_pull(source: topology.LabHost, source_dir: str, dest_dir: str, known: str) -> str:
    ssh_cmd = (
        f"ssh -p {topology.SSH_PORT} -o UserKnownHostsFile={known} "
        "-o StrictHostKeyChecking=yes -o BatchMode=yes"
    )
    return shlex.join(
        ["rsync", "-a", "-e", ssh_cmd, f"{source.user}@{source.address}:{source_dir}/", dest_dir]
    )


def test_rsync_between_hosts_checks_host_keys(ssh) -> None:
    production = topology.host("production")
    drp = ssh("drp")
    dest = "lab-test-rsync"
    drp.run(f"rm -rf {dest}", hide=True, in_stream=False)
    try:
        drp.run(
            _rsync_pull(production, topology.APP_CONFIG_DIR, dest, "~/.ssh/known_hosts"),
            hide=True,
            in_stream=False,
        )
        copied = drp.run(f"ls {dest}; cat {dest}/app.ini", hide=True, in_stream=False).stdout
        assert "app.ini" in copied and "vhost.conf" in copied
        assert f"database = {topology.APP_PG_DB}" in copied
        # The same pull trusting no host key is refused: nothing is copied blindly.
        refused = drp.run(
            _rsync_pull(production, topology.APP_CONFIG_DIR, dest + "-2", "/dev/null"),
            hide=True,
            in_stream=False,
            warn=True,
        )
        assert refused.failed
        assert "Host key verification failed" in refused.stderr
    finally:
        drp.run(f"rm -rf {dest} {dest}-2", hide=True, in_stream=False)


# ---------------------------------------------------------------- databases


def test_postgresql_answers_with_the_seeded_rows(lab, fresh_lab) -> None:
    seed = read_seed(lab.paths)
    assert seed is not None
    with pg_connect(lab, topology.host("production"), topology.APP_PG_DB) as conn:
        counts = {
            table: conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
            for table in ("users", "sessions", "audit")
        }
    assert counts == seed.postgresql_rows
    assert all(count > 0 for count in counts.values())


def test_mariadb_answers_with_the_seeded_rows(lab, fresh_lab) -> None:
    seed = read_seed(lab.paths)
    assert seed is not None
    with (
        mysql_connect(lab, topology.host("production"), topology.APP_MYSQL_DB) as conn,
        conn.cursor() as cursor,
    ):
        counts = {}
        for table in ("products", "orders", "order_items"):
            cursor.execute(f"SELECT COUNT(*) FROM `{table}`")
            counts[table] = cursor.fetchone()[0]
    assert counts == seed.mysql_rows


@pytest.mark.parametrize("host", DB_HOSTS, ids=lambda h: h.name)
def test_database_logins_need_the_lab_password(lab, host: topology.LabHost) -> None:
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        psycopg.connect(
            host=host.address,
            port=topology.PG_PORT,
            user=topology.DB_USER,
            password="wrong",
            dbname="postgres",
            connect_timeout=5,
        )
    with pytest.raises(pymysql.err.OperationalError) as refused:
        pymysql.connect(
            host=host.address, port=topology.MYSQL_PORT, user=topology.DB_USER, password="wrong"
        )
    assert refused.value.args[0] == 1045  # access denied


# ---------------------------------------------------------------- seed sizes


def test_production_is_seeded_with_the_sizes_asked(lab, fresh_lab) -> None:
    seed = read_seed(lab.paths)
    assert seed is not None
    files_dir = lab.paths.host_root("production") / topology.APP_FILES_DIR
    sizes = [
        os.path.getsize(os.path.join(folder, name))
        for folder, _, names in os.walk(files_dir)
        for name in names
    ]
    assert sum(sizes) == seed.size.files_mb * MIB
    assert len(sizes) == seed.file_count >= 2000
    assert sum(1 for size in sizes if size >= MIB) == 4  # the few large files
    depth = max(len(p.relative_to(files_dir).parts) for p in files_dir.rglob("*.txt"))
    assert depth >= 5  # uploads/<year>/<month>/<customer>/doc
    assert (files_dir.parent / "config" / "app.ini").exists()
    total_rows = sum(seed.postgresql_rows.values()) + sum(seed.mysql_rows.values())
    assert total_rows == seed.size.rows


def test_seeding_writes_exactly_the_sizes_asked(lab, tmp_path: Path) -> None:
    """Other sizes than the lab's, into a scratch directory and scratch databases."""
    size = seeding.SeedSize(files_mb=3, rows=1234)
    written = seeding.write_files(tmp_path / "www", size, "check", dt.datetime.now(dt.UTC))
    on_disk = sum(p.stat().st_size for p in (tmp_path / "www").rglob("*") if p.is_file())
    assert written == on_disk == 3 * MIB
    production = topology.host("production")
    counts = seeding.table_rows(size.rows)
    scratch = "lab_seed_check"
    try:
        seeding.seed_postgres(production, lab.secrets, scratch, counts)
        seeding.seed_mysql(production, lab.secrets, scratch, counts, tmp_path)
        with pg_connect(lab, production, scratch) as conn:
            pg_rows = sum(
                conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0]
                for t in ("users", "sessions", "audit")
            )
        with mysql_connect(lab, production, scratch) as conn, conn.cursor() as cursor:
            cursor.execute(
                "SELECT (SELECT COUNT(*) FROM products) + (SELECT COUNT(*) FROM orders)"
                " + (SELECT COUNT(*) FROM order_items)"
            )
            mysql_rows = int(cursor.fetchone()[0])
        assert pg_rows + mysql_rows == 1234
    finally:
        with pg_connect(lab, production, "postgres") as conn:
            conn.autocommit = True
            conn.execute(f"DROP DATABASE IF EXISTS {scratch} WITH (FORCE)")
        with mysql_connect(lab, production, "mysql") as conn, conn.cursor() as cursor:
            cursor.execute(f"DROP DATABASE IF EXISTS {scratch}")


# ---------------------------------------------------------------- web application


@pytest.mark.parametrize("host_header", [f"www.{topology.ZONE}", topology.ZONE])
def test_web_page_shows_seeded_content(lab, fresh_lab, host_header: str) -> None:
    seed = read_seed(lab.paths)
    assert seed is not None
    status, page = http_get(topology.host("production").address, "/", host_header)
    assert status == 200
    assert "Served by lab host <b>production</b>" in page
    assert "drp lab sample application" in page
    assert f"seed {seed.seed_id}" in page
    assert f'<span id="file-count">{seed.file_count}</span>' in page
    for table, count in {**seed.postgresql_rows, **seed.mysql_rows}.items():
        assert f"<td>{table}</td><td class=n>{count}</td>" in page


def test_web_health_is_ok_when_both_databases_answer(lab, fresh_lab) -> None:
    status, body = http_get(topology.host("production").address, "/health", topology.ZONE)
    assert status == 200
    health = json.loads(body)
    assert health["status"] == "ok"
    assert health["host"] == "production"
    assert health["postgresql"]["tables"]["users"] > 0
    assert health["mysql"]["tables"]["orders"] > 0


def test_maintenance_flag_turns_every_page_into_503(lab) -> None:
    production = topology.host("production")
    flag = lab.paths.host_root("production") / topology.APP_MAINTENANCE_FLAG
    flag.touch()
    try:
        status, page = http_get(production.address, "/", f"www.{topology.ZONE}")
        assert status == 503
        assert "maintenance" in page.lower()
        status, body = http_get(production.address, "/health", f"www.{topology.ZONE}")
        assert (status, json.loads(body)["status"]) == (503, "maintenance")
        assert http_get(production.address, "/index.html", topology.ZONE)[0] == 503
    finally:
        flag.unlink()
    assert http_get(production.address, "/health", f"www.{topology.ZONE}")[0] == 200


def test_web_serves_the_environment_files(lab) -> None:
    status, body = http_get(topology.host("production").address, "/index.html", topology.ZONE)
    assert status == 200
    assert "<title>drp lab sample application</title>" in body
    assert http_get(topology.host("production").address, "/../lab.env", topology.ZONE)[0] == 404


# ---------------------------------------------------------------- down / up (keep last)


def _lab_ports() -> list[tuple[str, int]]:
    return [(s.address, s.port) for s in api.status().services]


def test_down_then_up_stops_everything_then_brings_it_back(lab) -> None:
    seed_before = read_seed(lab.paths)
    ports = _lab_ports()
    with lab.exclusive():
        stopped = api.down()
        try:
            assert stopped.none_running
            assert len(stopped.stopped) == len(ports)
            listening = [f"{a}:{p}" for a, p in ports if procs.is_listening(a, p)]
            assert listening == []
            assert list(lab.paths.run.glob("*.json")) == []
            assert prefect_server.NAME in stopped.stopped  # the Prefect server went with the rest
            assert not prefect_server.answers_health()
        finally:
            again = api.up()
    assert again.all_running
    assert sorted(again.started) == sorted(s.name for s in again.services)
    assert all(procs.is_listening(a, p) for a, p in ports)
    assert prefect_server.answers_health()  # up waits until it answers, not only listens
    # Data survives a restart: same seeding, no re-seed.
    assert read_seed(lab.paths) == seed_before
    status, _ = http_get(topology.host("production").address, "/health", topology.ZONE)
    assert status == 200
