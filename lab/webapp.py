"""The sample application's web front: one small HTTP server per web host of the lab.

Run as the host's user: `python -m lab.webapp --host production`. It serves, on the host's
address and WEB_PORT, for any Host header (www.drp-lab.test, the apex, the bare address):

- `GET /`: which host serves the page, the title and text of the environment's index.html,
  how many files the environment has, and the row count of every table of its PostgreSQL and
  MySQL databases, so a restore is visible from outside;
- `GET /health`: `{"status": "ok", ...}` with 200 when both databases answer, else 503;
- any other path: that file from the environment's files, or 404;
- while the maintenance flag file exists, every path answers 503 with a maintenance page.

The module needs only the standard library (the host's user may not be able to run the
project's virtualenv); it asks the databases through the `psql` and `mariadb` clients, with the
passwords it receives in DRP_LAB_PG_PASSWORD / DRP_LAB_MYSQL_PASSWORD.
"""

from __future__ import annotations

import argparse
import html
import http.client
import json
import mimetypes
import os
import shutil
import stat
import subprocess
import sys
from dataclasses import dataclass, field
from html.parser import HTMLParser
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlsplit

from lab import topology
from lab.daemons import Daemon

PSQL = "/usr/lib/postgresql/15/bin/psql"
MARIADB = "/usr/bin/mariadb"
DB_TIMEOUT_S = 3
FALLBACK_PYTHON = "/usr/bin/python3"

# Row counts of every table in the public schema, in one statement.
PG_COUNTS_SQL = (
    "SELECT table_name, (xpath('/row/c/text()', query_to_xml(format("
    "'SELECT count(*) AS c FROM %I.%I', table_schema, table_name), false, true, '')))[1]"
    "::text::bigint FROM information_schema.tables "
    "WHERE table_schema = 'public' AND table_type = 'BASE TABLE' ORDER BY 1"
)
MYSQL_COUNTS_SQL = (
    "SET @q = (SELECT GROUP_CONCAT(CONCAT('SELECT ', QUOTE(table_name), ', COUNT(*) FROM `', "
    "table_name, '`') ORDER BY table_name SEPARATOR ' UNION ALL ') FROM information_schema.tables "
    "WHERE table_schema = DATABASE() AND table_type = 'BASE TABLE'); "
    "SET @q = COALESCE(@q, 'SELECT 1, 1 FROM DUAL WHERE FALSE'); "
    "PREPARE counts FROM @q; EXECUTE counts;"
)


@dataclass
class DatabaseState:
    engine: str
    database: str
    ok: bool
    tables: dict[str, int] = field(default_factory=dict)
    error: str | None = None

    def as_dict(self) -> dict[str, object]:
        data: dict[str, object] = {"status": "ok" if self.ok else "unavailable"}
        data["database"] = self.database
        data["tables"] = self.tables
        if self.error:
            data["error"] = self.error
        return data


def _tab_rows(output: str) -> dict[str, int]:
    rows = {}
    for line in output.splitlines():
        name, _, count = line.partition("\t")
        if name:
            rows[name] = int(count)
    return rows


def _ask(engine: str, database: str, argv: list[str], env: dict[str, str]) -> DatabaseState:
    try:
        done = subprocess.run(
            argv,
            capture_output=True,
            text=True,
            env={**os.environ, **env},
            timeout=DB_TIMEOUT_S + 2,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as err:
        return DatabaseState(engine, database, ok=False, error=str(err))
    if done.returncode != 0:
        last_line = (done.stderr.strip().splitlines() or ["no answer"])[-1]
        return DatabaseState(engine, database, ok=False, error=last_line[:300])
    return DatabaseState(engine, database, ok=True, tables=_tab_rows(done.stdout))


def postgres_state(host: topology.LabHost) -> DatabaseState:
    argv = [PSQL, "-X", "-A", "-t", "-F", "\t", "-h", host.address, "-p", str(topology.PG_PORT)]
    argv += ["-U", topology.DB_USER, "-d", topology.APP_PG_DB, "-c", PG_COUNTS_SQL]
    env = {
        "PGPASSWORD": os.environ.get("DRP_LAB_PG_PASSWORD", ""),
        "PGCONNECT_TIMEOUT": str(DB_TIMEOUT_S),
    }
    return _ask("postgresql", topology.APP_PG_DB, argv, env)


def mysql_state(host: topology.LabHost) -> DatabaseState:
    argv = [MARIADB, "--no-defaults", "-h", host.address, "-P", str(topology.MYSQL_PORT)]
    argv += ["-u", topology.DB_USER, f"--connect-timeout={DB_TIMEOUT_S}", "--batch"]
    argv += ["--skip-column-names", "-D", topology.APP_MYSQL_DB, "-e", MYSQL_COUNTS_SQL]
    env = {"MYSQL_PWD": os.environ.get("DRP_LAB_MYSQL_PASSWORD", "")}
    return _ask("mysql", topology.APP_MYSQL_DB, argv, env)


class _IndexParser(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.title = ""
        self.text: list[str] = []
        self._in: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self._in.append(tag)

    def handle_endtag(self, tag: str) -> None:
        if self._in and self._in[-1] == tag:
            self._in.pop()

    def handle_data(self, data: str) -> None:
        if "title" in self._in:
            self.title += data
        elif "body" in self._in and data.strip() and "script" not in self._in:
            self.text.append(data.strip())


@dataclass
class Site:
    """One environment as served by one host."""

    host: topology.LabHost
    root: Path  # the host's root (its user's home)

    @property
    def files_dir(self) -> Path:
        return self.root / topology.APP_FILES_DIR

    def in_maintenance(self) -> bool:
        return (self.root / topology.APP_MAINTENANCE_FLAG).exists()

    def index(self) -> tuple[str, str]:
        """(title, text) of the environment's index.html; empty when it has none."""
        try:
            parser = _IndexParser()
            parser.feed((self.files_dir / "index.html").read_text(errors="replace"))
        except OSError:
            return "", ""
        return parser.title.strip(), " ".join(parser.text)[:2000]

    def file_count(self) -> int:
        return sum(len(files) for _, _, files in os.walk(self.files_dir))

    def health(self) -> tuple[int, dict[str, object]]:
        if self.in_maintenance():
            return 503, {"status": "maintenance", "host": self.host.name}
        pg, my = postgres_state(self.host), mysql_state(self.host)
        ok = pg.ok and my.ok
        body: dict[str, object] = {
            "status": "ok" if ok else "degraded",
            "host": self.host.name,
            "address": self.host.address,
            "postgresql": pg.as_dict(),
            "mysql": my.as_dict(),
            "files": self.file_count(),
        }
        return (200 if ok else 503), body

    def static_file(self, url_path: str) -> Path | None:
        """The file under the environment's files that url_path names, never outside it."""
        relative = unquote(url_path).lstrip("/")
        base = self.files_dir.resolve()
        candidate = (base / relative).resolve()
        if base not in candidate.parents:
            return None
        try:
            if stat.S_ISREG(candidate.stat().st_mode):
                return candidate
        except OSError:
            return None
        return None


def _table_rows(state: DatabaseState) -> str:
    if not state.ok:
        return f"<tr><td colspan=2>unavailable: {html.escape(state.error or '')}</td></tr>"
    if not state.tables:
        return "<tr><td colspan=2>no tables</td></tr>"
    return "".join(
        f"<tr><td>{html.escape(name)}</td><td class=n>{count}</td></tr>"
        for name, count in state.tables.items()
    )


def render_home(site: Site, host_header: str) -> str:
    title, text = site.index()
    pg, my = postgres_state(site.host), mysql_state(site.host)
    h = site.host
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>{html.escape(title or "no index.html")} - {h.name}</title>
<style>body{{font-family:sans-serif;margin:2em}}td.n{{text-align:right}}</style></head>
<body>
<p id="served-by">Served by lab host <b>{h.name}</b> ({h.address}, {h.datacenter}) \
for Host {html.escape(host_header)}</p>
<h1 id="app-title">{html.escape(title or "no index.html")}</h1>
<p id="app-text">{html.escape(text)}</p>
<p>Environment <b>{topology.APP_ENV}</b>: <span id="file-count">{site.file_count()}</span> files</p>
<h2>PostgreSQL {html.escape(pg.database)}</h2><table id="pg">{_table_rows(pg)}</table>
<h2>MySQL {html.escape(my.database)}</h2><table id="mysql">{_table_rows(my)}</table>
</body></html>
"""


MAINTENANCE_PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>Maintenance</title></head>
<body><h1>Down for maintenance</h1><p>This service is being moved. Please come back soon.</p>
</body></html>
"""


class Handler(BaseHTTPRequestHandler):
    site: Site  # set on the subclass made by serve()
    server_version = "drp-lab-webapp/1"

    def _send(self, status: int, body: bytes, content_type: str, head_only: bool) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        if status == HTTPStatus.SERVICE_UNAVAILABLE:
            self.send_header("Retry-After", "120")
        self.end_headers()
        if not head_only:
            self.wfile.write(body)

    def _send_file(self, file: Path, head_only: bool) -> None:
        with file.open("rb") as handle:  # streamed: media files can be hundreds of MB
            self.send_response(200)
            kind = mimetypes.guess_type(file.name)[0] or "application/octet-stream"
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(os.fstat(handle.fileno()).st_size))
            self.end_headers()
            if not head_only:
                shutil.copyfileobj(handle, self.wfile, 1024 * 1024)

    def _answer(self, head_only: bool) -> None:
        path = urlsplit(self.path).path
        if path == "/health":
            status, data = self.site.health()
            body = json.dumps(data, sort_keys=True).encode()
            self._send(status, body, "application/json", head_only)
        elif self.site.in_maintenance():
            self._send(503, MAINTENANCE_PAGE.encode(), "text/html; charset=utf-8", head_only)
        elif path == "/":
            page = render_home(self.site, self.headers.get("Host", ""))
            self._send(200, page.encode(), "text/html; charset=utf-8", head_only)
        elif (file := self.site.static_file(path)) is not None:
            self._send_file(file, head_only)
        else:
            self._send(404, b"not found\n", "text/plain; charset=utf-8", head_only)

    def do_GET(self) -> None:
        self._answer(head_only=False)

    def do_HEAD(self) -> None:
        self._answer(head_only=True)


def serve(site: Site) -> None:
    handler = type("SiteHandler", (Handler,), {"site": site})
    server = ThreadingHTTPServer((site.host.address, topology.WEB_PORT), handler)
    server.daemon_threads = True
    print(f"serving {site.root} for {site.host.name} on {site.host.address}:{topology.WEB_PORT}")
    sys.stdout.flush()
    server.serve_forever()


def answers_http(address: str, port: int, timeout: float = 1.0) -> bool:
    """True once the server answers /health (with any status: the databases may be down)."""
    conn = http.client.HTTPConnection(address, port, timeout=timeout)
    try:
        conn.request("GET", "/health", headers={"Host": f"www.{topology.ZONE}"})
        return conn.getresponse().status in (200, 503)
    except OSError:
        return False
    finally:
        conn.close()


def python_for_hosts() -> str:
    """An interpreter the hosts' users can run: ours, unless it sits in a private directory."""
    here = Path(sys.executable).resolve()
    private = any(not (p.stat().st_mode & stat.S_IXOTH) for p in here.parents)
    return FALLBACK_PYTHON if private else str(here)


def webapp_argv(python: str, host: str, lab_dir: Path) -> list[str]:
    return [python, "-m", "lab.webapp", "--host", host, "--lab-dir", str(lab_dir)]


def web_daemon(paths: topology.LabPaths, host: topology.LabHost, secrets: dict[str, str]) -> Daemon:
    return Daemon(
        name=f"web-{host.name}",
        host=host.name,
        argv=webapp_argv(python_for_hosts(), host.name, paths.root),
        address=host.address,
        port=topology.WEB_PORT,
        ready=lambda: answers_http(host.address, topology.WEB_PORT),
        run_as=host.user,
        env={
            "PYTHONDONTWRITEBYTECODE": "1",
            "DRP_LAB_PG_PASSWORD": secrets["DRP_LAB_PG_PASSWORD"],
            "DRP_LAB_MYSQL_PASSWORD": secrets["DRP_LAB_MYSQL_PASSWORD"],
        },
        cwd=paths.code,  # `-m lab.webapp` finds the package copied there (install_code)
    )


# What `python -m lab.webapp` imports: copied out of the checkout, which may sit in a directory
# the hosts' users cannot enter (a clone in /root).
CODE_FILES = ("__init__.py", "topology.py", "daemons.py", "webapp.py")


def install_code(paths: topology.LabPaths) -> None:
    """Copy the web app's modules to `<lab>/code/lab/`, readable by every lab host user."""
    target = paths.code / "lab"
    target.mkdir(parents=True, exist_ok=True)
    for directory in (paths.code, target):
        directory.chmod(0o755)
    source = Path(__file__).resolve().parent
    for name in CODE_FILES:
        text = (source / name).read_bytes()
        dest = target / name
        if not dest.exists() or dest.read_bytes() != text:
            tmp = dest.with_suffix(".tmp")
            tmp.write_bytes(text)
            tmp.chmod(0o644)
            tmp.replace(dest)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Serve a lab host's sample application.")
    parser.add_argument("--host", required=True, help="lab host name, e.g. production or drp")
    parser.add_argument(
        "--lab-dir",
        type=Path,
        default=None,
        help="the lab's state directory (default: $DRP_LAB_DIR, else /var/lib/drp-lab)",
    )
    args = parser.parse_args(argv)
    lab_paths = topology.LabPaths(args.lab_dir) if args.lab_dir else topology.paths()
    host = topology.host(args.host)
    serve(Site(host=host, root=lab_paths.host_root(host.name)))


if __name__ == "__main__":
    main()
