"""The whole cycle on the lab: activate, write on the DRP side, return to production.

Driven as an operator drives it, with the `drp` command line against the session's Prefect
server, with the OVH provider (the lab's emulator) and with RFC 2136 straight to Knot. What a
user would notice is checked for real: the rows and files on production, what was kept aside,
what Knot answers, which side is in maintenance, and what the report says.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pymysql
import pytest
import yaml
from flow_helpers import DRP, LAB_CONFIG, NAMES, PRODUCTION, drp_cli, ensure_backups, knot_answers

from lab import topology
from runbooks import connect
from runbooks.inventory import Site, expand_environment, load_site
from runbooks.report import load_report
from runbooks.services import dns_provider

pytestmark = [pytest.mark.lab, pytest.mark.prefect]

FLAG = topology.APP_MAINTENANCE_FLAG
WWW = topology.APP_FILES_DIR


def _inventory(directory: Path, provider: str) -> Path:
    """config/lab.yaml, its local paths absolute, with the DNS provider asked for."""
    data = yaml.safe_load(LAB_CONFIG.read_text())
    base = LAB_CONFIG.parent

    def absolute(value: str) -> str:
        value = expand_environment(value)
        return value if Path(value).is_absolute() else str((base / value).resolve())

    data["env_file"] = absolute(data["env_file"])
    data["known_hosts"] = absolute(data["known_hosts"])
    for host in data["hosts"].values():
        host["key"] = absolute(host["key"])
    for backend in data["tickets"]:
        backend["path"] = absolute(backend["path"])
    if provider == "rfc2136":
        data["dns"] = {
            "provider": "rfc2136",
            "server": topology.DNS_ADDRESS,
            "port": topology.DNS_PORT,
            "tsig_key_name": topology.TSIG_KEY_NAME,
            "tsig_algorithm": topology.TSIG_ALGORITHM,
            "tsig_secret": "env:DRP_LAB_TSIG_SECRET",
            "zones": [topology.ZONE],
            "nameservers": [{"address": topology.DNS_ADDRESS, "port": topology.DNS_PORT}],
        }
    path = directory / f"lab-{provider}.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


@pytest.fixture(scope="module")
def reports(lab, prefect_server, tmp_path_factory) -> Iterator[Path]:
    directory = tmp_path_factory.mktemp("return-reports")
    os.environ["DRP_REPORTS_DIR"] = str(directory)
    ensure_backups(load_site(LAB_CONFIG))
    yield directory
    os.environ.pop("DRP_REPORTS_DIR", None)


@pytest.fixture
def lab_as_found(reports) -> Iterator[None]:
    """Whatever the cycle does, the lab ends with production serving: DNS at production and no
    maintenance on either side (production keeps what the return brought, which is the
    application's data plus the test's rows and files)."""
    site = load_site(LAB_CONFIG)
    yield
    with connect.HostPool(site) as pool:
        for role in ("production", "drp"):
            pool[role].run(["rm", "-f", "--", FLAG])
    provider = dns_provider(site)
    for record in site.environments[0].dns_records:
        provider.set_records(record.zone, record.name, record.type, [PRODUCTION])
    provider.refresh(topology.ZONE)
    deadline = time.monotonic() + 30
    while any(v != [PRODUCTION] for v in knot_answers().values()):
        assert time.monotonic() < deadline, knot_answers()
        time.sleep(0.5)


# -- what a user can observe ------------------------------------------------------------------
def _pg(site: Site, role: str) -> psycopg.Connection:
    db = site.environments[0].databases[0]
    endpoint = connect.db_endpoint(site, db, role)  # type: ignore[arg-type]
    return psycopg.connect(
        host=endpoint.address, port=endpoint.port, user=endpoint.user, dbname=db.name,
        password=connect.database_password(site, db).reveal(), autocommit=True,
    )  # fmt: skip


def _my(site: Site, role: str) -> Any:
    db = site.environments[0].databases[1]
    endpoint = connect.db_endpoint(site, db, role)  # type: ignore[arg-type]
    return pymysql.connect(
        host=endpoint.address, port=endpoint.port, user=endpoint.user, database=db.name,
        password=connect.database_password(site, db).reveal(), autocommit=True,
    )  # fmt: skip


def _rows(site: Site, role: str) -> dict[str, list[tuple[Any, ...]]]:
    """The rows that the DRP side's writes touch, as each side holds them."""
    with _pg(site, role) as conn:
        users = conn.execute(
            "SELECT id, email FROM users WHERE id >= 900000 ORDER BY id"
        ).fetchall()
        count = conn.execute("SELECT count(*) FROM users").fetchone()
    my = _my(site, role)
    with my.cursor() as cursor:
        cursor.execute("SELECT id, sku FROM products WHERE id >= 900000 ORDER BY id")
        products = list(cursor.fetchall())
        cursor.execute("SELECT count(*) FROM products")
        products_count = cursor.fetchone()
    my.close()
    return {"users": [*users, count], "products": [*products, products_count]}


def _files(site: Site, role: str, path: str) -> dict[str, str]:
    """name -> sha256 of every file under `path` on the host."""
    with connect.HostPool(site) as pool:
        out = (
            pool[role]
            .run(
                [
                    "sh",
                    "-c",
                    'cd "$1" && find . -type f ! -path "./cache/*" -exec sha256sum {} +',
                    "sh",
                    path,
                ],
                check=False,
            )
            .stdout
        )
    pairs = (line.split(None, 1) for line in out.splitlines())
    return {name.strip().removeprefix("./"): digest for digest, name in pairs}


def _exists(site: Site, role: str, path: str) -> bool:
    with connect.HostPool(site) as pool:
        return pool[role].run(["test", "-e", path], check=False).ok


def _write_on_drp(site: Site) -> int:
    """What customers do while the DRP server serves: rows and files added, changed, deleted.
    Returns the first id of the rows added (new ones at each call)."""
    first = 900_000 + int(time.time() * 10) % 10_000_000
    with _pg(site, "drp") as conn:
        conn.execute(
            "INSERT INTO users (id, email, full_name, password_hash, created_at, active) "
            "VALUES (%s, %s, 'New One', 'x', now(), true), (%s, %s, 'New Two', 'x', now(), true)",
            (first, f"new{first}@drp.test", first + 1, f"new{first + 1}@drp.test"),
        )
    my = _my(site, "drp")
    with my.cursor() as cursor:
        cursor.execute(
            "INSERT INTO products (id, sku, name, price_cents, stock) "
            "VALUES (%s, %s, 'Written on DRP', 1999, 3)",
            (first, f"DRP-{first}"),
        )
    my.close()
    # A file both sides held before the outage, deleted on the DRP server during it.
    victim = f"uploads/victim-{first}.txt"
    with connect.HostPool(site) as pool:
        for role in ("production", "drp"):
            pool[role].run(["sh", "-c", 'mkdir -p "$(dirname "$1")" && echo before > "$1"',
                            "sh", f"{WWW}/{victim}"])  # fmt: skip
        script = (
            'cd "$1" && echo "written during the outage" > drp-new.txt '
            '&& echo "changed during the outage" >> index.html && rm -- "$2" '
            '&& printf %s "$2" > ../deleted-name'
        )
        pool["drp"].run(["sh", "-c", script, "sh", WWW, victim])
    return first


def _deleted_name(site: Site) -> str:
    with connect.HostPool(site) as pool:
        return pool["drp"].run(["cat", "srv/app/deleted-name"]).stdout.strip().removeprefix("./")


def _activate(api_url: str, inventory: Path, op: str) -> None:
    done = drp_cli(api_url, "activate", "-c", str(inventory), "--operation-id", op,
                   "--order-by", "Jane Doe", "--reference", "1STKYC-70",
                   "--acknowledge-data-loss")  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert knot_answers() == {name: [DRP] for name in NAMES}


# -- the cycle --------------------------------------------------------------------------------
@pytest.mark.parametrize("provider", ["ovh", "rfc2136"])
def test_activate_write_on_drp_then_return_puts_everything_on_production(
    provider: str, reports: Path, prefect_server, tmp_path: Path, lab_as_found
) -> None:
    inventory = _inventory(tmp_path, provider)
    site = load_site(inventory)
    _activate(prefect_server.api_url, inventory, f"activate-cycle-{provider}-{int(time.time())}")
    _write_on_drp(site)
    deleted = _deleted_name(site)
    drp_rows, drp_files = _rows(site, "drp"), _files(site, "drp", WWW)
    production_before = _files(site, "production", WWW)
    assert drp_rows != _rows(site, "production") and deleted in production_before

    planned = drp_cli(prefect_server.api_url, "plan", "return", "-c", str(inventory))
    assert planned.returncode == 0, planned.stdout[-3000:] + planned.stderr[-3000:]
    assert "DNS goes back to the values recorded before activation" in planned.stdout
    assert "estimated" in planned.stdout and "Data to copy before the freeze" in planned.stdout

    op = f"return-cycle-{provider}-{int(time.time()) % 100000}"
    done = drp_cli(prefect_server.api_url, "return", "-c", str(inventory), "--operation-id", op,
                   "--order-by", "Jane Doe", "--reference", "1STKYC-71")  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "Downtime (write freeze to service verified on production)" in done.stdout
    assert "RPO 0" in done.stdout

    # Every row and file written on the DRP server is on production.
    assert _rows(site, "production") == drp_rows
    assert _files(site, "production", WWW) == drp_files
    # The deleted file is gone from production's tree, but kept aside, as were changed ones.
    assert deleted not in _files(site, "production", WWW)
    kept = _files(site, "production", f"{WWW}.drp-before-{op}")
    assert any(name.endswith(deleted) for name in kept)
    assert any(name.endswith("index.html") for name in kept)
    # Production's previous databases are kept aside too (PostgreSQL renamed).
    with _pg(site, "production") as conn:
        names = [r[0] for r in conn.execute("SELECT datname FROM pg_database").fetchall()]
    assert any(n.startswith("app_users_before_") for n in names), names
    # DNS answers production; production serves; the DRP server stays frozen.
    assert knot_answers() == {name: [PRODUCTION] for name in NAMES}
    assert not _exists(site, "production", FLAG) and _exists(site, "drp", FLAG)
    report = load_report(reports, op)
    assert report.outcome == "succeeded"
    assert report.downtime_seconds is not None and report.downtime_seconds > 0
    assert report.frozen_at is not None and report.service_verified_at > report.frozen_at
    assert report.order["reference"] == "1STKYC-71"
    assert set(report.bytes_by_stage) >= {"pre-sync", "final sync", "databases"}
    tickets = [json.loads(line) for line in Path(site.tickets[0].path).read_text().splitlines()]
    sent = [t for t in tickets if t["event"] == "return-to-production" and t["operation_id"] == op]
    assert len(sent) == 1

    # A finished return, run again, skips every step and says why.
    again = drp_cli(prefect_server.api_url, "return", "-c", str(inventory), "--operation-id", op,
                    "--order-by", "Jane Doe", "--reference", "1STKYC-71")  # fmt: skip
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    report = load_report(reports, op)
    # (the service checks pass again: they change nothing, there is nothing to skip)
    after_order = {r.step: r for r in report.timeline if not r.step.startswith("preflight-")}
    expected = {k: "passed" if k.startswith("verify-") else "skipped" for k in after_order}
    wrong = [(k, r.outcome.value, r.reason) for k, r in after_order.items()
             if r.outcome.value != expected[k]]  # fmt: skip
    assert after_order and not wrong, wrong
    assert not _exists(site, "production", FLAG)  # never back into maintenance
    assert _rows(site, "production") == drp_rows


def test_a_record_changed_by_someone_stops_the_switch_back_unless_forced(
    reports: Path, prefect_server, tmp_path: Path, lab_as_found
) -> None:
    inventory = _inventory(tmp_path, "ovh")
    site = load_site(inventory)
    _activate(prefect_server.api_url, inventory, f"activate-changed-{int(time.time())}")
    provider = dns_provider(site)
    provider.set_records(topology.ZONE, "www", "A", ["127.0.10.99"])  # someone's change
    provider.refresh(topology.ZONE)
    op = f"return-changed-{int(time.time()) % 100000}"
    args = ("return", "-c", str(inventory), "--operation-id", op, "--order-by", "Jane Doe",
            "--reference", "1STKYC-72")  # fmt: skip
    stopped = drp_cli(prefect_server.api_url, *args)
    assert stopped.returncode == 1
    assert "www.drp-lab.test A points at 127.0.10.99" in stopped.stderr
    assert "--force" in stopped.stderr and "Traceback" not in stopped.stderr
    # Production stays in maintenance: never half-restored and serving.
    assert _exists(site, "production", FLAG)
    forced = drp_cli(prefect_server.api_url, *args, "--force")
    assert forced.returncode == 0, forced.stdout[-3000:] + forced.stderr[-3000:]
    assert knot_answers() == {name: [PRODUCTION] for name in NAMES}
    assert not _exists(site, "production", FLAG)


# -- kill and resume --------------------------------------------------------------------------
def _start_return(
    api_url: str, inventory: Path, op: str, log: Path, *extra: str
) -> subprocess.Popen[str]:
    with log.open("a") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "flows.cli", "return", "-c", str(inventory), "--operation-id",
             op, "--order-by", "Jane Doe", "--reference", "1STKYC-73", *extra],
            stdout=out, stderr=subprocess.STDOUT, text=True,
            env={**os.environ, "PREFECT_API_URL": api_url}, start_new_session=True,
        )  # fmt: skip


def _running_on(site: Site, role: str, pattern: str) -> bool:
    user = connect.host(site, role).user  # type: ignore[arg-type]
    found = subprocess.run(["pgrep", "-u", user, "-f", pattern], capture_output=True, check=False)
    return found.returncode == 0


def _kill_when(process: subprocess.Popen[str], ready: Any, what: str, timeout: float = 240) -> None:
    deadline = time.monotonic() + timeout
    while not ready():
        assert process.poll() is None, f"the return ended before {what}"
        assert time.monotonic() < deadline, f"never saw {what}"
        time.sleep(0.05)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()


def _report_steps(reports: Path, op: str) -> dict[str, str]:
    try:
        data = json.loads((reports / f"{op}.json").read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return {}
    return {r["step"]: r["outcome"] for r in data.get("timeline", [])}


def _big_file_on_drp(site: Site, name: str) -> None:
    with connect.HostPool(site) as pool:  # enough that a rate-limited copy takes seconds
        pool["drp"].run(["sh", "-c", f"head -c 6000000 /dev/urandom > {WWW}/{name}"])


def test_a_return_killed_in_each_copy_finishes_when_run_again(
    reports: Path, prefect_server, tmp_path: Path, lab_as_found
) -> None:
    """Killed during the pre-sync, during the final sync and during a database's move: each
    run goes on from where the last one stopped; production stays in maintenance meanwhile."""
    inventory = _inventory(tmp_path, "ovh")
    site = load_site(inventory)
    stamp = int(time.time()) % 100000
    _activate(prefect_server.api_url, inventory, f"activate-kill-{stamp}")
    _write_on_drp(site)
    _big_file_on_drp(site, "drp-big-1.bin")
    op, log = f"return-kill-{stamp}", tmp_path / "return.log"
    copying = "^rsync .*progress2"  # a copy (dry runs, which only check, have no progress)

    # 1. Killed during the pre-sync (before the freeze: the DRP server still serves).
    run = _start_return(prefect_server.api_url, inventory, op, log, "--bwlimit", "2000")
    _kill_when(run, lambda: _running_on(site, "production", copying), "the pre-sync")
    assert not _exists(site, "drp", FLAG)
    # 2. Run again; stopped once the pre-sync is done, while customers still write on DRP.
    run = _start_return(prefect_server.api_url, inventory, op, log)
    presync = [f"pre-sync-app-{s}" for s in ("files-www", "configs-config")]
    _kill_when(run, lambda: all(_report_steps(reports, op).get(k) for k in presync),
               "the end of the pre-sync")  # fmt: skip
    _big_file_on_drp(site, "drp-big-2.bin")  # written after the pre-sync: the final sync's job
    # 3. Killed during the final sync (the DRP server frozen, production in maintenance).
    run = _start_return(prefect_server.api_url, inventory, op, log, "--bwlimit", "2000")
    _kill_when(run, lambda: _exists(site, "drp", FLAG) and _running_on(site, "production", copying),
               "the final sync")  # fmt: skip
    assert _exists(site, "production", FLAG)
    drp_rows, drp_files = _rows(site, "drp"), _files(site, "drp", WWW)
    # 4. Killed while a database crosses from the DRP server to production.
    run = _start_return(prefect_server.api_url, inventory, op, log, "--bwlimit", "300")
    _kill_when(run, lambda: _running_on(site, "production", "^rsync .*/databases/"),
               "a database move")  # fmt: skip
    assert _exists(site, "production", FLAG)  # in maintenance while half-restored

    # 5. The last run finishes the job.
    run = _start_return(prefect_server.api_url, inventory, op, log)
    assert run.wait(timeout=600) == 0, log.read_text()[-4000:]
    assert _rows(site, "production") == drp_rows
    assert _files(site, "production", WWW) == drp_files
    assert knot_answers() == {name: [PRODUCTION] for name in NAMES}
    assert not _exists(site, "production", FLAG)
    report = load_report(reports, op)
    assert report.outcome == "succeeded" and report.downtime_seconds is not None
