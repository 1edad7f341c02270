"""The sample application seeded on production: files, configuration, two databases.

Sizes are a knob (`drp lab up --files-mb N --rows N`): the defaults keep `up` fast; benchmarks
ask for a gigabyte of files and a million rows. The files under APP_FILES_DIR add up to exactly
`files_mb` MiB (a few thousand small files in nested directories, an index.html and four large
files taking the rest); the six tables hold exactly `rows` rows between them. Content is
deterministic (fixed random seed) apart from the seed id and time written into index.html, which
tell one seeding from another after a restore.

What was seeded is recorded in `data/production/seed.json`; `up` re-seeds only when that record
is missing or other sizes are asked for.
"""

from __future__ import annotations

import base64
import datetime as dt
import os
import random
import secrets as pysecrets
import shutil
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from pydantic import BaseModel, Field

from lab import mariadb, postgres, topology
from lab.accounts import chown_tree

MIB = 1024 * 1024
DEFAULT_FILES_MB = 16
DEFAULT_ROWS = 30_000
MIN_ROWS = 100
LARGE_FILES = 4
SMALL_FILE_AVG = 2048
_CHUNK = 8 * MIB
_NOISE_POOL = 32 * MIB
_EPOCH = dt.datetime(2025, 1, 1, tzinfo=dt.UTC)

# Share of the rows each table gets; order_items takes what rounding leaves.
ROW_SHARES: dict[str, tuple[str, float]] = {
    "users": ("postgresql", 0.10),
    "sessions": ("postgresql", 0.25),
    "audit": ("postgresql", 0.15),
    "products": ("mysql", 0.05),
    "orders": ("mysql", 0.15),
    "order_items": ("mysql", 0.30),
}


class SeedSize(BaseModel):
    files_mb: int = Field(
        default=DEFAULT_FILES_MB, ge=1, description="Total MiB of application files"
    )
    rows: int = Field(
        default=DEFAULT_ROWS, ge=MIN_ROWS, description="Total rows over the six tables"
    )


class SeedReport(BaseModel):
    size: SeedSize = Field(description="What was asked for")
    seed_id: str = Field(description="Random id of this seeding, also shown in index.html")
    seeded_at: dt.datetime = Field(description="When the seeding finished (UTC)")
    seconds: float = Field(description="How long seeding took")
    file_count: int = Field(description="Files under APP_FILES_DIR")
    file_bytes: int = Field(description="Total bytes of the files under APP_FILES_DIR")
    postgresql_rows: dict[str, int] = Field(description=f"Rows per table in {topology.APP_PG_DB}")
    mysql_rows: dict[str, int] = Field(description=f"Rows per table in {topology.APP_MYSQL_DB}")


def marker_path(paths: topology.LabPaths) -> Path:
    return paths.data("production") / "seed.json"


def read_seed(paths: topology.LabPaths) -> SeedReport | None:
    try:
        return SeedReport.model_validate_json(marker_path(paths).read_text())
    except (FileNotFoundError, ValueError):
        return None


def table_rows(rows: int) -> dict[str, int]:
    """How many rows each table gets; they add up to exactly `rows`."""
    counts = {name: max(10, int(rows * share)) for name, (_, share) in ROW_SHARES.items()}
    counts["order_items"] += rows - sum(counts.values())
    if counts["order_items"] < 10:
        raise ValueError(f"rows={rows} is too small; use at least {MIN_ROWS}")
    return counts


# ---------------------------------------------------------------- files


def index_html(seed_id: str, seeded_at: dt.datetime, file_count: int, rows: int) -> str:
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>drp lab sample application</title></head>
<body>
<h1>drp lab sample application</h1>
<p>Environment {topology.APP_ENV}, seed {seed_id}, written {seeded_at:%Y-%m-%d %H:%M:%S} UTC
on production: {file_count} files, {rows} database rows.</p>
</body></html>
"""


def small_file_paths(count: int) -> list[str]:
    """Nested directories like a real site: assets by type, uploads by month and customer."""
    assets = [("assets/css", "css"), ("assets/js", "js"), ("assets/img/icons", "svg")]
    out = []
    for i in range(count):
        if i < 150:
            folder, ext = assets[i % 3]
            out.append(f"{folder}/f{i:05d}.{ext}")
        else:
            bucket = i % 120
            folder = f"uploads/{2024 + bucket // 60}/{bucket % 12 + 1:02d}/customer-{bucket:03d}"
            out.append(f"{folder}/doc-{i:06d}.txt")
    return out


def plan_files(files_mb: int, index_size: int) -> list[tuple[str, int]]:
    """(relative path, size) of every file but index.html; all sizes add up to files_mb MiB."""
    total = files_mb * MIB - index_size
    n_small = min(max(2000, files_mb * 20), 50_000)
    small_budget = min(n_small * SMALL_FILE_AVG, total // 4)
    avg = max(1, small_budget // n_small)
    rng = random.Random(1)
    sizes = [max(1, int(avg * rng.uniform(0.5, 1.5))) for _ in range(n_small)]
    plan = list(zip(small_file_paths(n_small), sizes, strict=True))
    large_total = total - sum(sizes)
    each = large_total // LARGE_FILES
    for n in range(LARGE_FILES):
        size = each if n < LARGE_FILES - 1 else large_total - each * (LARGE_FILES - 1)
        plan.append((f"media/video-{n + 1}.bin", size))
    return plan


def _text_pool() -> str:
    return base64.b64encode(random.Random(2).randbytes(96 * 1024)).decode()


def write_files(files_dir: Path, size: SeedSize, seed_id: str, seeded_at: dt.datetime) -> int:
    """Writes the application's files; returns their total size in bytes."""
    if files_dir.exists():
        shutil.rmtree(files_dir)
    files_dir.mkdir(parents=True)
    # index.html states the file count, which depends on the plan, which depends on its size:
    # the count's digits do not change with the index's few bytes, so one pass settles it.
    draft = index_html(seed_id, seeded_at, 0, size.rows)
    plan = plan_files(size.files_mb, len(draft.encode()))
    index = index_html(seed_id, seeded_at, len(plan) + 1, size.rows)
    plan = plan_files(size.files_mb, len(index.encode()))
    (files_dir / "index.html").write_text(index)
    pool = _text_pool()
    rng = random.Random(3)
    # Incompressible bytes for the large files, drawn once: generating a gigabyte of random
    # data costs several times more than writing it.
    largest = max(size for relative, size in plan if relative.startswith("media/"))
    noise = memoryview(rng.randbytes(max(1, min(largest, _NOISE_POOL))))
    made: set[Path] = set()
    for relative, length in plan:
        path = files_dir / relative
        if path.parent not in made:
            path.parent.mkdir(parents=True, exist_ok=True)
            made.add(path.parent)
        if relative.startswith("media/"):
            with path.open("wb") as handle:
                left = length
                while left:
                    chunk = min(left, _CHUNK, len(noise))
                    offset = rng.randrange(0, len(noise) - chunk + 1)
                    handle.write(noise[offset : offset + chunk])
                    left -= chunk
        else:
            header = f"{relative}\n"
            start = rng.randrange(0, len(pool) - SMALL_FILE_AVG * 2)
            body = (header + pool[start : start + length])[:length]
            body += "x" * (length - len(body))
            path.write_text(body)
    return sum(length for _, length in plan) + len(index.encode())


def write_config(config_dir: Path) -> None:
    config_dir.mkdir(parents=True, exist_ok=True)
    production = topology.host("production")
    (config_dir / "app.ini").write_text(
        f"""; Sample application configuration (environment {topology.APP_ENV}).
[app]
name = drp lab sample application
files = ~/{topology.APP_FILES_DIR}
maintenance_flag = ~/{topology.APP_MAINTENANCE_FLAG}

[postgresql]
host = {production.address}
port = {topology.PG_PORT}
database = {topology.APP_PG_DB}
user = {topology.DB_USER}

[mysql]
host = {production.address}
port = {topology.MYSQL_PORT}
database = {topology.APP_MYSQL_DB}
user = {topology.DB_USER}
"""
    )
    (config_dir / "vhost.conf").write_text(
        f"""# Virtual host of the sample application.
server {{
    listen {topology.WEB_PORT};
    server_name www.{topology.ZONE} {topology.ZONE};
    root ~/{topology.APP_FILES_DIR};
    if (-f ~/{topology.APP_MAINTENANCE_FLAG}) {{ return 503; }}
}}
"""
    )


# ---------------------------------------------------------------- PostgreSQL

PG_SCHEMA = """
CREATE TABLE users (id bigint NOT NULL, email text NOT NULL, full_name text NOT NULL,
    password_hash text NOT NULL, created_at timestamptz NOT NULL, active boolean NOT NULL);
CREATE TABLE sessions (id bigint NOT NULL, user_id bigint NOT NULL, token text NOT NULL,
    created_at timestamptz NOT NULL, expires_at timestamptz NOT NULL, client_ip inet NOT NULL);
CREATE TABLE audit (id bigint NOT NULL, user_id bigint, action text NOT NULL,
    at timestamptz NOT NULL, detail text NOT NULL);
"""
# Keys after the load: building an index once is cheaper than maintaining it row by row.
PG_CONSTRAINTS = """
ALTER TABLE users ADD PRIMARY KEY (id), ADD UNIQUE (email);
ALTER TABLE sessions ADD PRIMARY KEY (id), ADD FOREIGN KEY (user_id) REFERENCES users (id);
ALTER TABLE audit ADD PRIMARY KEY (id), ADD FOREIGN KEY (user_id) REFERENCES users (id);
CREATE INDEX ON sessions (user_id);
CREATE INDEX ON audit (at);
"""
FIRST_NAMES = ("Ada", "Alan", "Grace", "Linus", "Margaret", "Ken", "Barbara", "Dennis", "Radia")
LAST_NAMES = ("Lovelace", "Turing", "Hopper", "Torvalds", "Hamilton", "Thompson", "Liskov")
ACTIONS = ("login", "logout", "password_change", "kyc_upload", "kyc_review", "export")


def _stamp(seconds: int) -> str:
    return (_EPOCH + dt.timedelta(seconds=seconds)).strftime("%Y-%m-%d %H:%M:%S+00")


def _stamps(count: int = 4096) -> list[str]:
    return [_stamp(i * 7717) for i in range(count)]


def _copy(cursor: object, table: str, lines: list[str]) -> None:
    with cursor.copy(f"COPY {table} FROM STDIN") as copy:  # type: ignore[attr-defined]
        for start in range(0, len(lines), 20_000):
            copy.write("".join(lines[start : start + 20_000]))


def pg_lines(counts: dict[str, int]) -> dict[str, list[str]]:
    """COPY text lines of the three PostgreSQL tables."""
    stamps = _stamps()
    n_users = counts["users"]
    users = [
        f"{i}\tuser{i}@example.test\t{FIRST_NAMES[i % 9]} {LAST_NAMES[i % 7]}\t"
        f"{(i * 2654435761) % 2**64:016x}{i:016x}\t{stamps[i % 4096]}\t{'t' if i % 17 else 'f'}\n"
        for i in range(1, n_users + 1)
    ]
    sessions = [
        f"{i}\t{(i * 7919) % n_users + 1}\t{(i * 40503) % 2**32:08x}{i:08x}\t{stamps[i % 4096]}\t"
        f"{stamps[(i + 9) % 4096]}\t10.{i % 256}.{(i // 256) % 256}.{i % 250 + 1}\n"
        for i in range(1, counts["sessions"] + 1)
    ]
    audit = [
        f"{i}\t{(i * 104729) % n_users + 1}\t{ACTIONS[i % 6]}\t{stamps[i % 4096]}\t"
        f"event {i} from portal\n"
        for i in range(1, counts["audit"] + 1)
    ]
    return {"users": users, "sessions": sessions, "audit": audit}


def seed_postgres(
    host: topology.LabHost, secrets: dict[str, str], dbname: str, counts: dict[str, int]
) -> dict[str, int]:
    """(Re)creates `dbname` and fills users, sessions and audit with COPY."""
    with postgres.connect(host, secrets) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{dbname}" WITH (FORCE)')
        admin.execute(f'CREATE DATABASE "{dbname}"')
    lines = pg_lines(counts)
    with postgres.connect(host, secrets, dbname=dbname) as conn:
        conn.autocommit = False
        with conn.cursor() as cursor:
            cursor.execute(PG_SCHEMA)
            for table, table_lines in lines.items():
                _copy(cursor, table, table_lines)
            cursor.execute(PG_CONSTRAINTS)
        conn.commit()
        conn.autocommit = True
        conn.execute("VACUUM ANALYZE")
    return {table: len(table_lines) for table, table_lines in lines.items()}


# ---------------------------------------------------------------- MySQL

MYSQL_SCHEMA = (
    """CREATE TABLE products (id INT NOT NULL PRIMARY KEY, sku VARCHAR(32) NOT NULL UNIQUE,
    name VARCHAR(200) NOT NULL, price_cents INT NOT NULL, stock INT NOT NULL) ENGINE=InnoDB""",
    """CREATE TABLE orders (id INT NOT NULL PRIMARY KEY, user_id BIGINT NOT NULL,
    created_at DATETIME NOT NULL, status VARCHAR(16) NOT NULL, total_cents INT NOT NULL,
    KEY orders_user (user_id)) ENGINE=InnoDB""",
    """CREATE TABLE order_items (id INT NOT NULL PRIMARY KEY, order_id INT NOT NULL,
    product_id INT NOT NULL, quantity INT NOT NULL, price_cents INT NOT NULL,
    KEY items_order (order_id),
    FOREIGN KEY (order_id) REFERENCES orders (id),
    FOREIGN KEY (product_id) REFERENCES products (id)) ENGINE=InnoDB""",
)
STATUSES = ("paid", "shipped", "delivered", "refunded")


def mysql_lines(counts: dict[str, int], n_users: int) -> dict[str, list[str]]:
    """LOAD DATA lines of the three MySQL tables (tab-separated)."""
    stamps = [s[:19] for s in _stamps()]
    n_products, n_orders = counts["products"], counts["orders"]
    products = [
        f"{i}\tSKU-{i:08d}\tProduct {i} ({LAST_NAMES[i % 7]} edition)\t{(i * 37) % 50000 + 99}\t"
        f"{(i * 13) % 500}\n"
        for i in range(1, n_products + 1)
    ]
    orders = [
        f"{i}\t{(i * 7919) % n_users + 1}\t{stamps[i % 4096]}\t{STATUSES[i % 4]}\t"
        f"{(i * 131) % 90000 + 500}\n"
        for i in range(1, n_orders + 1)
    ]
    items = [
        f"{i}\t{(i * 15485863) % n_orders + 1}\t{(i * 3571) % n_products + 1}\t{i % 5 + 1}\t"
        f"{(i * 37) % 50000 + 99}\n"
        for i in range(1, counts["order_items"] + 1)
    ]
    return {"products": products, "orders": orders, "order_items": items}


def seed_mysql(
    host: topology.LabHost,
    secrets: dict[str, str],
    database: str,
    counts: dict[str, int],
    scratch: Path,
) -> dict[str, int]:
    """(Re)creates `database` and fills products, orders and order_items with LOAD DATA."""
    lines = mysql_lines(counts, counts["users"])
    scratch.mkdir(parents=True, exist_ok=True)
    with mariadb.connect(host, secrets, local_infile=True) as conn, conn.cursor() as cursor:
        cursor.execute(f"DROP DATABASE IF EXISTS `{database}`")
        cursor.execute(f"CREATE DATABASE `{database}`")
        cursor.execute(f"USE `{database}`")
        for statement in MYSQL_SCHEMA:
            cursor.execute(statement)
        cursor.execute("SET foreign_key_checks = 0, unique_checks = 0")
        for table, table_lines in lines.items():
            tsv = scratch / f"{database}.{table}.tsv"
            with tsv.open("w") as handle:
                handle.writelines(table_lines)
            try:
                cursor.execute(f"LOAD DATA LOCAL INFILE %s INTO TABLE `{table}`", (str(tsv),))
            finally:
                tsv.unlink()
        cursor.execute("SET foreign_key_checks = 1, unique_checks = 1")
    return {table: len(table_lines) for table, table_lines in lines.items()}


# ---------------------------------------------------------------- production


def seed_production(
    paths: topology.LabPaths, secrets: dict[str, str], size: SeedSize
) -> SeedReport:
    """Writes production's files, configuration and both databases, then the seed record."""
    started = dt.datetime.now(dt.UTC)
    marker_path(paths).unlink(missing_ok=True)
    production = topology.host("production")
    root = paths.host_root("production")
    seed_id = pysecrets.token_hex(4)
    counts = table_rows(size.rows)
    (root / topology.APP_MAINTENANCE_FLAG).unlink(missing_ok=True)
    with ThreadPoolExecutor(max_workers=3) as pool:
        files = pool.submit(write_files, root / topology.APP_FILES_DIR, size, seed_id, started)
        pg = pool.submit(seed_postgres, production, secrets, topology.APP_PG_DB, counts)
        my = pool.submit(
            seed_mysql, production, secrets, topology.APP_MYSQL_DB, counts, paths.data("production")
        )
        file_bytes, pg_rows, mysql_rows = files.result(), pg.result(), my.result()
    write_config(root / topology.APP_CONFIG_DIR)
    chown_tree(root / topology.APP_FILES_DIR.split("/")[0], production.user)
    finished = dt.datetime.now(dt.UTC)
    report = SeedReport(
        size=size,
        seed_id=seed_id,
        seeded_at=finished,
        seconds=round((finished - started).total_seconds(), 2),
        file_count=sum(len(f) for _, _, f in os.walk(root / topology.APP_FILES_DIR)),
        file_bytes=file_bytes,
        postgresql_rows=pg_rows,
        mysql_rows=mysql_rows,
    )
    marker_path(paths).write_text(report.model_dump_json(indent=2) + "\n")
    return report
