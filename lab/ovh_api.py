"""The OVH API v1 DNS zone endpoints as the lab emulates them, apart from any HTTP plumbing.

Requests are checked as OVH does (application key, consumer key, timestamp window, `$1$` SHA-1
signature) and refused with OVH's status codes and JSON error shapes, so the official `ovh`
client raises the same exception classes as against the real API. Records live in a
`ZoneState`, saved as JSON after every change; they reach the DNS server only on
`POST /domain/zone/{zone}/refresh`, as on OVH.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from http import HTTPStatus
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import dns.exception
import dns.name

from lab.errors import LabError
from lab.zone_sync import (
    FIELD_TYPES,
    DnsServer,
    Record,
    ZoneSyncError,
    parse_target,
    push_records,
)

logger = logging.getLogger("ovh-emulator")

API_BASE = "/1.0"
TIME_WINDOW_SECONDS = 180  # a signed request whose timestamp is further off is refused
FIRST_RECORD_ID = 1_000_001


# --- Signatures --------------------------------------------------------------------------------


def ovh_signature(
    application_secret: str,
    consumer_key: str,
    method: str,
    url: str,
    body: str,
    timestamp: str,
) -> str:
    """OVH's request signature: "$1$" + SHA-1 of the fields joined by "+"."""
    text = "+".join([application_secret, consumer_key, method.upper(), url, body, timestamp])
    return "$1$" + hashlib.sha1(text.encode("utf-8")).hexdigest()


@dataclass(frozen=True, repr=False)
class Credentials:
    """The one application and consumer key the emulator knows."""

    application_key: str
    application_secret: str
    consumer_key: str

    def __repr__(self) -> str:  # never show the secret in a traceback or a log
        return f"Credentials(application_key={self.application_key!r}, ...)"


# --- Errors, in OVH's shapes -------------------------------------------------------------------


class ApiError(Exception):
    """An answer other than success: HTTP status and OVH's JSON error body."""

    def __init__(self, status: HTTPStatus, body: dict[str, str]):
        super().__init__(body.get("message", ""))
        self.status = status
        self.body = body


def auth_error(status: HTTPStatus, error_code: str, message: str) -> ApiError:
    # Authentication errors carry errorCode, which the ovh client maps to exception classes.
    http_code = f"{status.value} {status.phrase}"
    return ApiError(status, {"errorCode": error_code, "httpCode": http_code, "message": message})


def client_error(status: HTTPStatus, error_class: str, message: str) -> ApiError:
    return ApiError(status, {"class": f"Client::{error_class}", "message": message})


def not_found(message: str) -> ApiError:
    return client_error(HTTPStatus.NOT_FOUND, "NotFound", message)


def bad_request(message: str) -> ApiError:
    return client_error(HTTPStatus.BAD_REQUEST, "BadRequest", message)


# (status, errorCode, message) of OVH's authentication refusals
INVALID_KEY = (HTTPStatus.FORBIDDEN, "INVALID_KEY", "Invalid application key")
NOT_AUTHENTICATED = (HTTPStatus.UNAUTHORIZED, "NOT_AUTHENTICATED", "You must login first")
NOT_CREDENTIAL = (HTTPStatus.FORBIDDEN, "NOT_CREDENTIAL", "This credential does not exist")
QUERY_TIME_OUT = (HTTPStatus.BAD_REQUEST, "QUERY_TIME_OUT", "Query out of time")
INVALID_SIGNATURE = (HTTPStatus.BAD_REQUEST, "INVALID_SIGNATURE", "Invalid signature")


def _same(given: str, expected: str) -> bool:
    return hmac.compare_digest(given.encode("utf-8"), expected.encode("utf-8"))


def authenticate(
    credentials: Credentials,
    headers: dict[str, str],
    method: str,
    url: str,
    body: str,
    now: float,
    window: int = TIME_WINDOW_SECONDS,
) -> None:
    """Raises the ApiError OVH answers to a request it will not serve; checks the application,
    then the consumer, the clock and the signature. `headers` keys are lower-case."""
    if not _same(headers.get("x-ovh-application", ""), credentials.application_key):
        raise auth_error(*INVALID_KEY)
    consumer = headers.get("x-ovh-consumer", "")
    if not consumer:
        raise auth_error(*NOT_AUTHENTICATED)
    if not _same(consumer, credentials.consumer_key):
        raise auth_error(*NOT_CREDENTIAL)
    timestamp = headers.get("x-ovh-timestamp", "")
    if not timestamp.isdigit() or abs(int(timestamp) - now) > window:
        raise auth_error(*QUERY_TIME_OUT)
    expected = ovh_signature(credentials.application_secret, consumer, method, url, body, timestamp)
    if not _same(headers.get("x-ovh-signature", ""), expected):
        raise auth_error(*INVALID_SIGNATURE)


# --- State -------------------------------------------------------------------------------------


class ZoneState:
    """The zone's records as the API holds them, saved to a JSON file after every change."""

    def __init__(self, path: Path, zone: str, records: list[Record], next_id: int, updated: str):
        self.path = path
        self.zone = zone
        self.records = {r.id: r for r in records}
        self.next_id = next_id
        self.last_update = updated
        self.lock = threading.RLock()

    @classmethod
    def load(cls, path: Path, zone: str) -> ZoneState | None:
        if not path.exists():
            return None
        try:
            data = json.loads(path.read_text())
            records = [Record.from_api(r) for r in data["records"]]
            next_id, updated = int(data["nextId"]), str(data["lastUpdate"])
            held_zone = str(data["zone"])
        except (ValueError, KeyError, TypeError) as err:
            raise LabError(
                f"{path} is not a state file of the emulator ({err}); remove it to import "
                "the zone again from the DNS server"
            ) from err
        if held_zone != zone:
            raise LabError(
                f"{path} holds zone {held_zone!r}, not {zone!r}; "
                "give another --state-dir or remove the file"
            )
        return cls(path, zone, records, next_id, updated)

    @classmethod
    def imported(cls, path: Path, zone: str, records: list[Record]) -> ZoneState:
        next_id = max((r.id for r in records), default=FIRST_RECORD_ID - 1) + 1
        state = cls(path, zone, records, next_id, _now_iso())
        state.save()
        return state

    def save(self) -> None:
        data = {
            "zone": self.zone,
            "nextId": self.next_id,
            "lastUpdate": self.last_update,
            "records": [
                r.api(self.zone) for r in sorted(self.records.values(), key=lambda r: r.id)
            ],
        }
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(self.path.name + ".tmp")
        tmp.write_text(json.dumps(data, indent=2) + "\n")
        tmp.replace(self.path)

    def get(self, record_id: int) -> Record:
        try:
            return self.records[record_id]
        except KeyError:
            raise not_found(f"The requested object (id = {record_id}) does not exist") from None

    def add(self, sub_domain: str, field_type: str, target: str, ttl: int) -> Record:
        record = Record(self.next_id, sub_domain, field_type, target, ttl)
        self.records[record.id] = record
        self.next_id += 1
        self._changed()
        return record

    def replace(self, record: Record) -> None:
        self.records[record.id] = record
        self._changed()

    def remove(self, record_id: int) -> None:
        self.get(record_id)
        del self.records[record_id]
        self._changed()

    def _changed(self) -> None:
        self.last_update = _now_iso()
        self.save()


def _now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


# --- The API ----------------------------------------------------------------------------------


def _json_body(body: str) -> dict[str, Any]:
    if not body:
        return {}
    try:
        data = json.loads(body)
    except ValueError:
        raise bad_request("Invalid JSON received") from None
    if not isinstance(data, dict):
        raise bad_request("Invalid JSON received: an object is expected")
    return data


def _string(body: dict[str, Any], name: str, default: str | None = None) -> str:
    value = body.get(name, default)
    if value is None:
        raise bad_request(f"[{name}] Property is mandatory")
    if not isinstance(value, str):
        raise bad_request(f"[{name}] Given data ({value!r}) is not valid for type string")
    return value


def _ttl(body: dict[str, Any], default: int) -> int:
    value = body.get("ttl", default)
    if value is None:
        return 0
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise bad_request(f"[ttl] Given data ({value!r}) is not valid for type long")
    return value


def _record_id(text: str) -> int:
    if not text.isdigit():
        raise bad_request(f"[id] Given data ({text}) is not valid for type long")
    return int(text)


Handler = Callable[..., tuple[HTTPStatus, Any]]

# Fault injection for tests: while this file exists beside the state file, writes matching it
# are answered 500, or held. Its JSON:
#   {"method": "PUT", "pass": 1, "fail": 1}: let `pass` matching writes through, then answer the
#       next `fail` ones 500, not applied (`method` "*": any write);
#   {"method": "PUT", "pass": 1, "stall_seconds": 20}: let `pass` through, then hold the next
#       matching write `stall_seconds` before it is applied and answered (a slow API: a client
#       killed meanwhile leaves the zone half-written, and its write lands later); with
#       "fail": 1 as well, the held write is answered 500 after the wait and never applied
#       (a gateway timeout). Reads and other writes are served while one is held;
#   "path": the part of the request's path it applies to, "/record" (the record writes) unless
#       given: "/refresh" holds or fails the zone's refresh.
# The emulator counts down in the file and removes it once used (a stall: as soon as the held
# write starts waiting), so a test sees it consumed; the log says what was injected.
FAULTS_FILE = "faults.json"
WRITE_METHODS = ("PUT", "POST", "DELETE")


@dataclass(frozen=True)
class Fault:
    """What the faults file asks for one write: wait `stall` seconds first, then answer
    `error` instead of applying it (None: apply it)."""

    stall: float = 0.0
    error: ApiError | None = None


def _injected_500() -> ApiError:
    return ApiError(
        HTTPStatus.INTERNAL_SERVER_ERROR,
        {"class": "Server::InternalServerError", "message": "Internal server error (injected)"},
    )


def injected_fault(path: Path | None, method: str, route: str) -> Fault | None:
    """What to do instead of simply applying this write, if the faults file asks for anything."""
    if path is None or method not in WRITE_METHODS:
        return None
    try:
        fault = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(fault, dict) or fault.get("method", "*") not in ("*", method):
        return None
    if str(fault.get("path", "/record")) not in route:
        return None
    if int(fault.get("pass", 0)) > 0:
        fault["pass"] = int(fault["pass"]) - 1
        path.write_text(json.dumps(fault))
        return None
    stall = float(fault.get("stall_seconds", 0))
    if stall > 0:
        path.unlink(missing_ok=True)
        fails = "fail" in fault
        logger.warning(
            "injected stall: %s %s held %.1f s, then %s",
            method, route, stall, "answered 500" if fails else "applied",
        )  # fmt: skip
        return Fault(stall, _injected_500() if fails else None)
    left = int(fault.get("fail", 1)) - 1
    if left > 0:
        path.write_text(json.dumps({**fault, "fail": left}))
    else:
        path.unlink(missing_ok=True)
    logger.warning("injected fault: %s %s answered 500", method, route)
    return Fault(error=_injected_500())


class ZoneApi:
    """The emulated endpoints, independent of HTTP plumbing: (method, URL, headers, body) in,
    (status, JSON value) out."""

    def __init__(
        self,
        state: ZoneState,
        dns_server: DnsServer,
        credentials: Credentials,
        window: int = TIME_WINDOW_SECONDS,
    ):
        self.state = state
        self.dns_server = dns_server
        self.credentials = credentials
        self.window = window
        self.origin = dns.name.from_text(state.zone)
        self.faults = state.path.parent / FAULTS_FILE
        zone_path = r"/domain/zone/(?P<zone>[^/]+)"
        self.routes: list[tuple[re.Pattern[str], dict[str, Handler]]] = [
            (re.compile(r"/domain/zone"), {"GET": self.list_zones}),
            (re.compile(zone_path), {"GET": self.get_zone}),
            (
                re.compile(zone_path + "/record"),
                {"GET": self.list_records, "POST": self.create_record},
            ),
            (
                re.compile(zone_path + r"/record/(?P<record_id>[^/]+)"),
                {"GET": self.get_record, "PUT": self.update_record, "DELETE": self.delete_record},
            ),
            (re.compile(zone_path + "/refresh"), {"POST": self.refresh}),
        ]

    def handle(
        self, method: str, target: str, headers: dict[str, str], body: str, base_url: str
    ) -> tuple[HTTPStatus, Any]:
        """`target` is the request's path and query as sent, `base_url` scheme://host:port."""
        split = urlsplit(target)
        if not split.path.startswith(API_BASE + "/"):
            raise not_found("Got an invalid (or empty) URL")
        path = split.path[len(API_BASE) :]
        if path == "/auth/time" and method == "GET":
            return HTTPStatus.OK, int(time.time())
        authenticate(
            self.credentials, headers, method, base_url + target, body, time.time(), self.window
        )
        query = {k: v[-1] for k, v in parse_qs(split.query, keep_blank_values=True).items()}
        for pattern, methods in self.routes:
            match = pattern.fullmatch(path)
            if match is None:
                continue
            handler = methods.get(method)
            if handler is None:
                raise client_error(
                    HTTPStatus.METHOD_NOT_ALLOWED, "MethodNotAllowed", "Method not allowed"
                )
            params = match.groupdict()
            if "zone" in params and params.pop("zone") != self.state.zone:
                raise not_found("This service does not exist")
            with self.state.lock:
                fault = injected_fault(self.faults, method, path)
                if fault is None:
                    return handler(query=query, body=body, **params)
                if not fault.stall and fault.error is not None:
                    raise fault.error
            time.sleep(fault.stall)  # held without the zone's lock: reads go on meanwhile
            logger.warning("held %s %s: %s now", method, path,
                           "answered 500" if fault.error else "applied")  # fmt: skip
            if fault.error is not None:
                raise fault.error
            with self.state.lock:
                return handler(query=query, body=body, **params)
        raise not_found("Got an invalid (or empty) URL")

    # Zones

    def list_zones(self, query: dict[str, str], body: str) -> tuple[HTTPStatus, Any]:
        return HTTPStatus.OK, [self.state.zone]

    def get_zone(self, query: dict[str, str], body: str) -> tuple[HTTPStatus, Any]:
        name_servers = sorted(
            r.target.rstrip(".")
            for r in self.state.records.values()
            if r.sub_domain == "" and r.field_type == "NS"
        )
        return HTTPStatus.OK, {
            "name": self.state.zone,
            "hasDnsAnycast": False,
            "dnssecSupported": False,
            "nameServers": name_servers,
            "lastUpdate": self.state.last_update,
        }

    def refresh(self, query: dict[str, str], body: str) -> tuple[HTTPStatus, Any]:
        records = list(self.state.records.values())
        try:
            changes = push_records(self.dns_server, records)
        except (ZoneSyncError, ValueError) as err:
            logger.error("zone refresh failed: %s", err)
            raise ApiError(
                HTTPStatus.INTERNAL_SERVER_ERROR,
                {"class": "Server::InternalServerError", "message": f"Zone refresh failed: {err}"},
            ) from err
        logger.info("zone %s refreshed: %d RRset(s) changed", self.state.zone, changes)
        return HTTPStatus.OK, None

    # Records

    def list_records(self, query: dict[str, str], body: str) -> tuple[HTTPStatus, Any]:
        records = sorted(self.state.records.values(), key=lambda r: r.id)
        if "fieldType" in query:
            records = [r for r in records if r.field_type == query["fieldType"]]
        if "subDomain" in query:
            records = [r for r in records if r.sub_domain == query["subDomain"]]
        return HTTPStatus.OK, [r.id for r in records]

    def create_record(self, query: dict[str, str], body: str) -> tuple[HTTPStatus, Any]:
        data = _json_body(body)
        field_type = _string(data, "fieldType")
        sub_domain = _string(data, "subDomain", "")
        target = _string(data, "target")
        ttl = _ttl(data, 0)
        self._check_fields(sub_domain, field_type, target)
        record = self.state.add(sub_domain, field_type, target, ttl)
        return HTTPStatus.OK, record.api(self.state.zone)

    def get_record(
        self, query: dict[str, str], body: str, record_id: str
    ) -> tuple[HTTPStatus, Any]:
        return HTTPStatus.OK, self.state.get(_record_id(record_id)).api(self.state.zone)

    def update_record(
        self, query: dict[str, str], body: str, record_id: str
    ) -> tuple[HTTPStatus, Any]:
        record = self.state.get(_record_id(record_id))
        data = _json_body(body)
        unknown = sorted(set(data) - {"subDomain", "target", "ttl"})
        if unknown:
            raise bad_request(f"[{unknown[0]}] Property is unknown or read-only")
        sub_domain = _string(data, "subDomain", record.sub_domain)
        target = _string(data, "target", record.target)
        ttl = _ttl(data, record.ttl)
        self._check_fields(sub_domain, record.field_type, target)
        self.state.replace(Record(record.id, sub_domain, record.field_type, target, ttl))
        return HTTPStatus.OK, None

    def delete_record(
        self, query: dict[str, str], body: str, record_id: str
    ) -> tuple[HTTPStatus, Any]:
        self.state.remove(_record_id(record_id))
        return HTTPStatus.OK, None

    def _check_fields(self, sub_domain: str, field_type: str, target: str) -> None:
        if field_type not in FIELD_TYPES:
            raise bad_request(
                f"[fieldType] Given data ({field_type}) does not belong to the "
                f"DomainZoneFieldTypeEnum enumeration (the lab emulates {', '.join(FIELD_TYPES)})"
            )
        if sub_domain.startswith(".") or sub_domain.endswith(".") or ".." in sub_domain:
            raise bad_request(f"[subDomain] Invalid subdomain {sub_domain!r}")
        try:
            if sub_domain:
                dns.name.from_text(sub_domain, self.origin)
            parse_target(field_type, target, self.origin)
        except (dns.exception.DNSException, ValueError) as err:
            raise bad_request(f"Invalid record: {err}") from err
