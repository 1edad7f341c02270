"""DNS records at OVH, through the official `ovh` client (API v1 `/domain/zone/...`).

OVH holds a record set as several records (one per target, each with an id). Reading lists the
ids for a subDomain and fieldType and fetches each one; setting updates records in place (PUT)
where it can and creates or deletes the difference, so a one-address switch is one PUT. Changes
reach OVH's name servers only on `refresh()` (POST /domain/zone/{zone}/refresh), hence
`needs_refresh = True`. A zone's switch (`apply_zone`) makes every write, then one refresh; a
failed write first puts back the ones already made, so the name servers never serve half of it.

Credentials are given explicitly and only those are used: `ovh.Client` would otherwise take any
missing value from OVH_* environment variables or ovh.conf files, and its constructor reads those
files (and the OAuth2 variables) even when every key is given. `_ExplicitOvhClient` sets the
client up from its arguments alone, with an HTTP session that ignores proxy variables and
~/.netrc.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import ovh
import ovh.client
import ovh.exceptions
import requests

from providers.dns_base import (
    BaseDnsProvider,
    DnsError,
    RecordChange,
    RecordSet,
    SecretLike,
    normalize_target,
    normalize_zone,
    record_label,
    reveal_secret,
    scrub,
)
from providers.ovh_endpoint import register_endpoint

DEFAULT_TIMEOUT = 30.0  # seconds per API call (the client's own default is 180)


class _ExplicitOvhClient(ovh.Client):  # type: ignore[misc]
    """`ovh.Client` built from its arguments only: no OVH_* variable, no ovh.conf, no OAuth2.

    Signing, time-delta handling and error mapping stay the official client's.
    """

    def __init__(
        self,
        endpoint_url: str,
        application_key: str,
        application_secret: str,
        consumer_key: str,
        timeout: float,
    ) -> None:
        # Deliberately not calling ovh.Client.__init__: see the module docstring.
        self._endpoint = endpoint_url
        self._application_key = application_key
        self._application_secret = application_secret
        self._consumer_key = consumer_key
        self._client_id = None
        self._client_secret = None
        self._oauth2 = None
        self._time_delta = None
        session = requests.Session()
        session.trust_env = False  # no *_PROXY variables, no ~/.netrc credentials
        self._session = session
        self._timeout = timeout


def resolve_endpoint(endpoint: str) -> str:
    """The URL behind an endpoint name (OVH's own, or one registered with register_endpoint)."""
    try:
        return str(ovh.client.ENDPOINTS[endpoint])
    except KeyError:
        known = ", ".join(sorted(ovh.client.ENDPOINTS))
        raise DnsError(
            f"unknown OVH endpoint {endpoint!r}; known: {known} (register another one with "
            "providers.ovh_endpoint.register_endpoint(name, url), or give endpoint_url)"
        ) from None


# -- The plan of API calls (pure) -----------------------------------------------------------


@dataclass(frozen=True)
class OvhRecord:
    """One record as OVH's API shows it."""

    id: int
    sub_domain: str
    field_type: str
    target: str
    ttl: int  # 0: the zone's default

    @classmethod
    def from_api(cls, data: dict[str, Any]) -> OvhRecord:
        return cls(
            id=int(data["id"]),
            sub_domain=str(data.get("subDomain") or ""),
            field_type=str(data["fieldType"]),
            target=str(data["target"]),
            ttl=int(data.get("ttl") or 0),
        )


@dataclass(frozen=True)
class OvhCall:
    """One API call of a plan: method, path, JSON body, and the sentence for a dry run."""

    method: str
    path: str
    body: dict[str, Any] | None
    description: str


def record_set_of(zone: str, name: str, rtype: str, records: Sequence[OvhRecord]) -> RecordSet:
    """The record set the records make; DNS has one TTL per set, the smallest one wins."""
    targets = tuple(sorted({normalize_target(rtype, r.target) for r in records}))
    ttl = min((r.ttl for r in records), default=None)
    return RecordSet(zone, name, rtype, targets, ttl)


def plan_ovh_calls(existing: Sequence[OvhRecord], wanted: RecordSet) -> list[OvhCall]:
    """The fewest calls that make `existing` hold exactly `wanted`: PUT in place, then POST
    the extra targets, then DELETE the extra records. Records already right are left alone."""
    base = f"/domain/zone/{wanted.zone}/record"
    records = sorted(existing, key=lambda r: r.id)
    missing = list(wanted.targets)
    keep: list[OvhRecord] = []
    retarget: list[OvhRecord] = []
    fix_ttl: list[OvhRecord] = []
    for record in records:
        target = normalize_target(wanted.rtype, record.target)
        if target in missing:
            missing.remove(target)
            ttl_right = wanted.ttl is None or record.ttl == wanted.ttl
            (keep if ttl_right else fix_ttl).append(record)
        else:
            retarget.append(record)

    calls: list[OvhCall] = []
    ttl_body = {} if wanted.ttl is None else {"ttl": wanted.ttl}
    for record in fix_ttl:
        calls.append(
            OvhCall(
                "PUT",
                f"{base}/{record.id}",
                {"target": record.target, **ttl_body},
                f"PUT {base}/{record.id} ttl {record.ttl} -> {wanted.ttl} ({record.target})",
            )
        )
    for record, target in zip(retarget, missing, strict=False):
        ttl_changes = wanted.ttl is not None and wanted.ttl != record.ttl
        ttl_note = f", ttl {record.ttl} -> {wanted.ttl}" if ttl_changes else ""
        calls.append(
            OvhCall(
                "PUT",
                f"{base}/{record.id}",
                {"target": target, **ttl_body},
                f"PUT {base}/{record.id} target {record.target} -> {target}{ttl_note}",
            )
        )
    for target in missing[len(retarget) :]:
        calls.append(
            OvhCall(
                "POST",
                base,
                {"fieldType": wanted.rtype, "subDomain": wanted.name, "target": target, **ttl_body},
                f"POST {base} {record_label(wanted.name, wanted.rtype)} {target}"
                + (f" ttl {wanted.ttl}" if ttl_body else ""),
            )
        )
    for record in retarget[len(missing) :]:
        calls.append(
            OvhCall(
                "DELETE",
                f"{base}/{record.id}",
                None,
                f"DELETE {base}/{record.id} ({record_label(wanted.name, wanted.rtype)} "
                f"{record.target})",
            )
        )
    return calls


# -- Errors ---------------------------------------------------------------------------------


def _error_code(err: ovh.exceptions.APIError) -> str:
    response = getattr(err, "response", None)
    if response is None:
        return ""
    try:
        body = response.json()
    except ValueError:
        return ""
    return str(body.get("errorCode") or "") if isinstance(body, dict) else ""


def _error_detail(err: ovh.exceptions.APIError) -> str:
    """The library's message on one line; for transport failures only the root cause (the
    client wraps requests' exceptions several levels deep)."""
    text = " ".join(str(err).split())
    if isinstance(err, ovh.exceptions.HTTPError):
        cause = re.search(r"\[Errno -?\d+\][^'\"()]*|(?:Read|Connect) timed out", text)
        return f"HTTPError: {cause.group(0).strip() if cause else 'request failed'}"
    return f"{type(err).__name__}: {text}" if text else type(err).__name__


def ovh_error_hint(err: Exception, endpoint: str, zone: str) -> str:
    """What to check, given the ovh client's exception (its class, and OVH's errorCode)."""
    code = _error_code(err) if isinstance(err, ovh.exceptions.APIError) else ""
    rights = f"GET/PUT/POST/DELETE on /domain/zone/{zone}/*"
    if isinstance(err, ovh.exceptions.InvalidKey) or code == "INVALID_KEY":
        return f"check the application key: endpoint {endpoint} does not know it"
    if isinstance(err, ovh.exceptions.NotCredential | ovh.exceptions.InvalidCredential) or code in (
        "NOT_CREDENTIAL",
        "INVALID_CREDENTIAL",
    ):
        return (
            f"check the consumer key: endpoint {endpoint} does not know it, or it expired or "
            "was never validated; request a new one with rights " + rights
        )
    if code == "INVALID_SIGNATURE":
        return "check the application secret: the request signature does not match it"
    if code == "QUERY_TIME_OUT":
        return "check this machine's clock: OVH refuses signed requests more than 3 minutes off"
    if isinstance(err, ovh.exceptions.NotGrantedCall) or code == "NOT_GRANTED_CALL":
        return f"the consumer key lacks the right for this call; grant it {rights}"
    if isinstance(err, ovh.exceptions.Forbidden):
        return f"the account behind these keys may not manage zone {zone}"
    if isinstance(err, ovh.exceptions.ResourceNotFoundError):
        return (
            f"zone {zone} (or the record) does not exist for this account at endpoint "
            f"{endpoint}; check the zone name and the account"
        )
    if isinstance(err, ovh.exceptions.HTTPError):
        return f"could not reach endpoint {endpoint}; check its URL and the network"
    if isinstance(err, ovh.exceptions.InvalidResponse):
        return f"endpoint {endpoint} did not answer JSON; check that its URL is OVH's API"
    if isinstance(err, ovh.exceptions.BadParametersError):
        return "OVH refused the request's parameters"
    return "OVH's API failed; try again, and check OVH's status page if it persists"


# -- The provider ---------------------------------------------------------------------------


class OvhDns(BaseDnsProvider):
    """Records of zones hosted at OVH.

    `endpoint` is an endpoint name (`ovh-eu`, or one registered with
    `providers.ovh_endpoint.register_endpoint`); with `endpoint_url` the name is registered
    for that URL first. The keys may be strings or masked secrets (`.reveal()`), revealed
    when the first call is made.
    """

    kind = "ovh"
    needs_refresh = True
    supported_types = frozenset({"A", "AAAA", "CNAME", "TXT"})

    def __init__(
        self,
        *,
        endpoint: str,
        application_key: SecretLike,
        application_secret: SecretLike,
        consumer_key: SecretLike,
        endpoint_url: str | None = None,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> None:
        if endpoint_url is not None:
            try:
                register_endpoint(endpoint, endpoint_url)
            except ValueError as err:
                raise DnsError(f"OVH endpoint: {err}") from err
        self.endpoint = endpoint
        self.url = resolve_endpoint(endpoint)
        self.timeout = timeout
        self._keys = (application_key, application_secret, consumer_key)
        self._client: _ExplicitOvhClient | None = None
        self._cache: dict[tuple[str, str, str], list[OvhRecord]] = {}

    def __repr__(self) -> str:
        return f"OvhDns(endpoint={self.endpoint!r}, url={self.url!r}, keys=***)"

    # -- API plumbing ----------------------------------------------------------------------
    def _api(self) -> _ExplicitOvhClient:
        if self._client is None:
            application_key, application_secret, consumer_key = (
                reveal_secret(k) for k in self._keys
            )
            self._client = _ExplicitOvhClient(
                self.url, application_key, application_secret, consumer_key, self.timeout
            )
        return self._client

    def _secrets(self) -> list[str]:
        return [reveal_secret(k) for k in self._keys]

    def _call(
        self,
        zone: str,
        method: str,
        path: str,
        *,
        record: str | None = None,
        query: dict[str, str] | None = None,
        body: dict[str, Any] | None = None,
    ) -> Any:
        shown = path + ("?" + "&".join(f"{k}={v}" for k, v in query.items()) if query else "")
        call = f"{method} {shown}"
        self.logger(zone).debug("%s", call)
        client = self._api()
        try:
            if method == "GET":
                return client.get(path, **(query or {}))
            if method == "DELETE":
                return client.delete(path)
            return client.call(method, path, body)
        except ovh.exceptions.APIError as err:
            detail = _error_detail(err)
            hint = ovh_error_hint(err, self.endpoint, zone)
            where = f"zone {zone}" + (f", record {record}" if record else "")
            text = (
                f"OVH {call} failed ({where}, endpoint {self.endpoint}): "
                f"{detail}. {hint[0].upper()}{hint[1:]}."
            )
            message = scrub(text, self._secrets())
            # Not chained: the library's exception holds the signed request, whose headers
            # carry the consumer key; everything useful from it is in the message.
            raise DnsError(message, zone=zone, record=record, call=call) from None

    def _records(self, zone: str, name: str, rtype: str) -> list[OvhRecord]:
        label = record_label(name, rtype)
        path = f"/domain/zone/{zone}/record"
        ids = self._call(
            zone, "GET", path, record=label, query={"fieldType": rtype, "subDomain": name}
        )
        records = [
            OvhRecord.from_api(self._call(zone, "GET", f"{path}/{i}", record=label)) for i in ids
        ]
        # OVH may treat an empty subDomain filter as "any": keep only the asked name and type.
        return [r for r in records if r.sub_domain == name and r.field_type == rtype]

    # -- hooks -----------------------------------------------------------------------------
    def _read(self, zone: str, name: str, rtype: str) -> RecordSet:
        records = self._records(zone, name, rtype)
        self._cache[(zone, name, rtype)] = records
        return record_set_of(zone, name, rtype, records)

    def _operations(self, current: RecordSet, wanted: RecordSet) -> tuple[str, ...]:
        existing = self._cache.get((current.zone, current.name, current.rtype), [])
        calls = plan_ovh_calls(existing, wanted)
        return (*(c.description for c in calls), f"POST /domain/zone/{wanted.zone}/refresh")

    def _write(self, current: RecordSet, wanted: RecordSet) -> None:
        # Re-read: the plan's ids must be the ones OVH holds now.
        existing = self._records(wanted.zone, wanted.name, wanted.rtype)
        log = self.logger(wanted.zone)
        for call in plan_ovh_calls(existing, wanted):
            log.info("%s", call.description)
            self._call(wanted.zone, call.method, call.path, record=wanted.label, body=call.body)

    def _zone_operations(self, zone: str, changes: Sequence[RecordChange]) -> tuple[str, ...]:
        calls = [
            c.description
            for change in changes
            for c in plan_ovh_calls(self._known(change.before), change.after)
        ]
        return (*calls, f"POST /domain/zone/{zone}/refresh (once, after every write)")

    def _known(self, current: RecordSet) -> list[OvhRecord]:
        """The records (with their ids) of the last read of this set, else read now."""
        found = self._cache.get((current.zone, current.name, current.rtype))
        if found is None:
            found = self._records(current.zone, current.name, current.rtype)
            self._cache[(current.zone, current.name, current.rtype)] = found
        return found

    def _write_zone(self, zone: str, changes: Sequence[RecordChange]) -> str:
        """Every write first, then one refresh. If a write fails, the ones already made are
        undone (in reverse order) before anything is refreshed: OVH's name servers never see
        half of the zone's switch. The record ids are those of the step's read."""
        log = self.logger(zone)
        undo: list[OvhCall] = []
        for change in changes:
            for call in plan_ovh_calls(self._known(change.before), change.after):
                log.info("%s", call.description)
                try:
                    answer = self._call(
                        zone, call.method, call.path, record=change.after.label, body=call.body
                    )
                except DnsError as err:
                    raise self._put_back(zone, undo, err) from None
                undo.append(self._inverse(zone, call, change.before, answer))
        for records in {(c.before.zone, c.before.name, c.before.rtype) for c in changes}:
            self._cache.pop(records, None)  # ids changed: read them again next time
        said = self.refresh(zone)
        return f"{len(undo)} write(s) then one refresh ({said})"

    def _inverse(self, zone: str, call: OvhCall, before: RecordSet, answer: Any) -> OvhCall:
        """The call that undoes `call`, from the records as they were read."""
        base = f"/domain/zone/{zone}/record"
        if call.method == "POST":
            new_id = int(answer["id"]) if isinstance(answer, dict) and "id" in answer else 0
            return OvhCall("DELETE", f"{base}/{new_id}", None, f"DELETE {base}/{new_id}")
        record_id = int(call.path.rsplit("/", 1)[1])
        old = next(r for r in self._known(before) if r.id == record_id)
        if call.method == "PUT":
            body = {"target": old.target, "ttl": old.ttl}
            return OvhCall("PUT", call.path, body, f"PUT {call.path} back to {old.target}")
        body = {"fieldType": old.field_type, "subDomain": old.sub_domain, "target": old.target,
                "ttl": old.ttl}  # fmt: skip
        return OvhCall("POST", base, body, f"POST {base} {old.target} again")

    def _put_back(self, zone: str, undo: list[OvhCall], failure: DnsError) -> DnsError:
        """Undo the writes already made, newest first; the error to raise says how it went."""
        log = self.logger(zone)
        stuck: list[str] = []
        for call in reversed(undo):
            log.warning("putting back: %s", call.description)
            try:
                self._call(zone, call.method, call.path, body=call.body)
            except DnsError as err:
                stuck.append(f"{call.description}: {err}")
        if stuck:
            message = (
                f"{failure} The {len(undo)} write(s) already made could not all be put back "
                f"({'; '.join(stuck)}). Nothing was refreshed: OVH's name servers still serve "
                f"the zone as it was. Fix zone {zone} in OVH's console before any refresh."
            )
        else:
            message = (
                f"{failure} The {len(undo)} write(s) already made were put back and nothing was "
                f"refreshed: zone {zone} is as it was. Run again once OVH answers."
            )
        return DnsError(message, zone=zone, record=failure.record, call=failure.call)

    # -- zone ------------------------------------------------------------------------------
    def refresh(self, zone: str) -> str:
        zone = normalize_zone(zone)
        self._call(zone, "POST", f"/domain/zone/{zone}/refresh")
        self.logger(zone).info("zone refreshed: changes sent to the name servers")
        return f"OVH zone {zone} refreshed: pending changes sent to its name servers"

    def check_credentials(self, zone: str) -> str:
        """GET /domain/zone/{zone}: the keys work and the account holds the zone. Read-only."""
        zone = normalize_zone(zone)
        info = self._call(zone, "GET", f"/domain/zone/{zone}")
        servers = ", ".join(info.get("nameServers") or []) if isinstance(info, dict) else ""
        return f"OVH endpoint {self.endpoint}: zone {zone} readable" + (
            f" (name servers: {servers})" if servers else ""
        )
