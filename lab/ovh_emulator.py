"""The lab's OVH API emulator as a process: HTTP server, start-up, and its `Daemon`.

Serves `lab.ovh_api` over HTTP under /1.0. On first start (no state file yet) the zone's
records are imported from the DNS server by TSIG-signed AXFR and given ids; afterwards the state
file is the truth, and each `POST /domain/zone/{zone}/refresh` makes the DNS server's zone equal
it. Every request is logged as method, path and status; never a header or a body, which carry
keys and signatures.

Run: `python -m lab.ovh_emulator --listen ADDR:PORT --state-dir DIR --zone ZONE
--dns-server ADDR:PORT`, with the keys in the environment (SECRET_ENV), never in argv.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import time
import urllib.error
import urllib.request
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import FrameType
from typing import Any
from urllib.parse import urlsplit

from lab import topology
from lab.daemons import Daemon
from lab.errors import LabError
from lab.knot import TSIG_SECRET_NAME, tsig_key
from lab.ovh_api import (
    API_BASE,
    FIRST_RECORD_ID,
    TIME_WINDOW_SECONDS,
    ApiError,
    Credentials,
    ZoneApi,
    ZoneState,
)
from lab.zone_sync import DnsServer, ZoneSyncError, read_zone, records_from_zone

logger = logging.getLogger("ovh-emulator")

APPLICATION_KEY_ENV = "DRP_LAB_OVH_APPLICATION_KEY"
APPLICATION_SECRET_ENV = "DRP_LAB_OVH_APPLICATION_SECRET"
CONSUMER_KEY_ENV = "DRP_LAB_OVH_CONSUMER_KEY"
SECRET_ENV = (APPLICATION_KEY_ENV, APPLICATION_SECRET_ENV, CONSUMER_KEY_ENV, TSIG_SECRET_NAME)
STATE_FILE = "state.json"


def credentials_from_env(env: dict[str, str]) -> Credentials:
    names = (APPLICATION_KEY_ENV, APPLICATION_SECRET_ENV, CONSUMER_KEY_ENV)
    missing = [n for n in names if not env.get(n)]
    if missing:
        raise LabError(f"missing environment variable(s): {', '.join(missing)}")
    return Credentials(env[APPLICATION_KEY_ENV], env[APPLICATION_SECRET_ENV], env[CONSUMER_KEY_ENV])


# --- HTTP --------------------------------------------------------------------------------------


def request_handler(api: ZoneApi) -> type[BaseHTTPRequestHandler]:
    """A handler class bound to `api`: JSON in and out, one log line per request."""

    class OvhRequestHandler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        server_version = "drp-lab-ovh-emulator"
        # Headers and body leave in one segment (the handler flushes after each request);
        # otherwise delayed ACKs add ~40 ms to every call on keep-alive connections.
        wbufsize = 64 * 1024
        disable_nagle_algorithm = True

        def do_GET(self) -> None:
            self._answer("GET")

        def do_POST(self) -> None:
            self._answer("POST")

        def do_PUT(self) -> None:
            self._answer("PUT")

        def do_DELETE(self) -> None:
            self._answer("DELETE")

        def _answer(self, method: str) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length).decode("utf-8") if length else ""
            headers = {k.lower(): v for k, v in self.headers.items()}
            base_url = "http://" + self.headers.get("Host", "")
            try:
                status, value = api.handle(method, self.path, headers, body, base_url)
            except ApiError as err:
                status, value = err.status, err.body
            except Exception:
                logger.exception("%s %s failed", method, urlsplit(self.path).path)
                status = HTTPStatus.INTERNAL_SERVER_ERROR
                value = {"class": "Server::InternalServerError", "message": "Internal server error"}
            payload = json.dumps(value).encode("utf-8")
            try:
                self.send_response(status)
                self.send_header("Content-Type", "application/json; charset=utf-8")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)
            except (BrokenPipeError, ConnectionResetError):  # the client left (a held write)
                self.close_connection = True
                logger.info("%s %s %d (the client was gone)", method, self.path, status.value)
                return
            # Headers and bodies may hold keys and signatures: only method, path and status.
            logger.info("%s %s %d", method, self.path, status.value)

        def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
            pass  # _answer logs its own line

        def log_message(self, format: str, *args: Any) -> None:
            logger.debug(format, *args)

    return OvhRequestHandler


def make_server(address: str, port: int, api: ZoneApi) -> ThreadingHTTPServer:
    server = ThreadingHTTPServer((address, port), request_handler(api))
    server.daemon_threads = True
    return server


# --- Start-up ----------------------------------------------------------------------------------


def host_port(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise argparse.ArgumentTypeError(f"expected ADDRESS:PORT, got {text!r}")
    return host, int(port)


def load_or_import_state(
    state_dir: Path, dns_server: DnsServer, import_timeout: float
) -> ZoneState:
    """The saved state, or on first start the zone's records read from the DNS server.

    The DNS server may still be starting: the import retries until `import_timeout`."""
    path = state_dir / STATE_FILE
    state = ZoneState.load(path, dns_server.zone)
    if state is not None:
        logger.info("loaded %d record(s) of %s from %s", len(state.records), state.zone, path)
        return state
    deadline = time.monotonic() + import_timeout
    while True:
        try:
            zone = read_zone(dns_server)
            break
        except ZoneSyncError:
            if time.monotonic() >= deadline:
                raise
            time.sleep(0.2)
    state = ZoneState.imported(path, dns_server.zone, records_from_zone(zone, FIRST_RECORD_ID))
    logger.info(
        "imported %d record(s) of %s from %s:%d",
        len(state.records),
        state.zone,
        dns_server.address,
        dns_server.port,
    )
    return state


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m lab.ovh_emulator",
        description="Emulates OVH's API v1 DNS zone endpoints in front of a Knot server. "
        f"Keys come from the environment: {', '.join(SECRET_ENV)}.",
    )
    parser.add_argument("--listen", type=host_port, required=True, metavar="ADDR:PORT")
    parser.add_argument("--state-dir", type=Path, required=True)
    parser.add_argument("--zone", required=True)
    parser.add_argument("--dns-server", type=host_port, required=True, metavar="ADDR:PORT")
    parser.add_argument(
        "--import-timeout",
        type=float,
        default=10.0,
        help="seconds to wait for the DNS server on first start (default 10)",
    )
    parser.add_argument(
        "--time-window",
        type=int,
        default=TIME_WINDOW_SECONDS,
        help="accepted clock difference of signed requests, in seconds "
        f"(default {TIME_WINDOW_SECONDS})",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(
        stream=sys.stderr,
        level=logging.INFO,
        format="%(asctime)s %(name)s %(levelname)s %(message)s",
    )
    env = dict(os.environ)
    try:
        credentials = credentials_from_env(env)
        if not env.get(TSIG_SECRET_NAME):
            raise LabError(f"missing environment variable(s): {TSIG_SECRET_NAME}")
        dns_address, dns_port = args.dns_server
        dns_server = DnsServer(dns_address, dns_port, args.zone, tsig_key(env[TSIG_SECRET_NAME]))
        state = load_or_import_state(args.state_dir, dns_server, args.import_timeout)
    except (LabError, ZoneSyncError) as err:
        logger.error("cannot start: %s", err)
        return 2
    address, port = args.listen
    server = make_server(address, port, ZoneApi(state, dns_server, credentials, args.time_window))

    def stop(signum: int, frame: FrameType | None) -> None:
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    logger.info("serving %s on http://%s:%d%s", args.zone, address, port, API_BASE)
    try:
        server.serve_forever()
    finally:
        server.server_close()
        logger.info("stopped")
    return 0


# --- The lab's daemon --------------------------------------------------------------------------


def ovh_emulator_argv(
    listen: tuple[str, int],
    state_dir: Path,
    zone: str,
    dns_server: tuple[str, int],
    python: str = sys.executable,
) -> list[str]:
    """The emulator's command line; the keys travel in the environment, not here."""
    return [
        python,
        "-m",
        "lab.ovh_emulator",
        "--listen",
        f"{listen[0]}:{listen[1]}",
        "--state-dir",
        str(state_dir),
        "--zone",
        zone,
        "--dns-server",
        f"{dns_server[0]}:{dns_server[1]}",
    ]


def auth_time_answers(address: str, port: int, timeout: float = 0.5) -> bool:
    """True when GET /1.0/auth/time answers with the server's clock."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(f"http://{address}:{port}{API_BASE}/auth/time", timeout=timeout) as reply:
            return reply.status == 200 and isinstance(json.loads(reply.read()), int)
    except (OSError, ValueError, urllib.error.URLError):
        return False


def ovh_daemon_for(
    listen: tuple[str, int],
    state_dir: Path,
    zone: str,
    dns_server: tuple[str, int],
    secrets: dict[str, str],
    name: str = "ovh-emulator",
    host: str = "ovh",
) -> Daemon:
    """An emulator in front of the DNS server at `dns_server`, its state under `state_dir`."""
    missing = [n for n in SECRET_ENV if not secrets.get(n)]
    if missing:
        raise LabError(f"lab secrets lack {', '.join(missing)}; see `drp lab up`")
    return Daemon(
        name=name,
        host=host,
        argv=ovh_emulator_argv(listen, state_dir, zone, dns_server),
        address=listen[0],
        port=listen[1],
        ready=lambda: auth_time_answers(*listen),
        env={n: secrets[n] for n in SECRET_ENV},
        cwd=topology.REPO_ROOT,
    )


def ovh_daemon(paths: topology.LabPaths, secrets: dict[str, str]) -> Daemon:
    """The lab's OVH emulator (start it after Knot: its first start imports the zone)."""
    return ovh_daemon_for(
        listen=(topology.OVH_ADDRESS, topology.OVH_PORT),
        state_dir=paths.data("ovh"),
        zone=topology.ZONE,
        dns_server=(topology.DNS_ADDRESS, topology.DNS_PORT),
        secrets=secrets,
    )


if __name__ == "__main__":
    sys.exit(main())
