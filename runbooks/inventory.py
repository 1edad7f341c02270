"""The inventory: one YAML file that describes a site (hosts, environments, backups, DNS, tickets).

`load_site(path)` returns a validated `Site` or raises `ConfigError` listing every problem as
`file:line: field: what is wrong, what is expected`; `check_site(path)` returns that list.

Local paths in the file (SSH key, known_hosts, env_file, ticket file) are relative to the YAML
file, and may name environment variables as `${NAME}` or `${NAME:-default}` (the lab's inventory
finds the lab's state that way). Remote paths (trees to copy, backup area, maintenance flag) are
absolute or relative to the SSH user's home on the host. Secrets are never written in the file,
only referenced (`env:NAME`, `prefect-secret:NAME`, see `runbooks.secrets`).
"""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Iterator, Mapping
from ipaddress import IPv4Address, IPv6Address
from pathlib import Path, PurePosixPath
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    IPvAnyAddress,
    PlainValidator,
    PrivateAttr,
    ValidationError,
    ValidationInfo,
    model_validator,
)
from pydantic_core import PydanticCustomError

from providers.tickets import masked_url
from runbooks.drift_config import Drift
from runbooks.errors import ConfigError
from runbooks.secrets import Secret, SecretRef
from runbooks.watch_config import Watch, watch_problems

Role = Literal["production", "backup_even", "backup_odd", "drp"]
ROLES: tuple[Role, ...] = ("production", "backup_even", "backup_odd", "drp")
DatabaseRole = Literal["production", "drp"]
Engine = Literal["postgresql", "mysql"]
DEFAULT_DB_PORTS: dict[str, int] = {"postgresql": 5432, "mysql": 3306}
OVH_PUBLIC_ENDPOINTS = (
    "ovh-eu",
    "ovh-ca",
    "ovh-us",
    "kimsufi-eu",
    "kimsufi-ca",
    "soyoustart-eu",
    "soyoustart-ca",
)

Loc = tuple[str | int, ...]
PROBLEMS_ERROR = "inventory_problems"


def raise_problems(problems: list[tuple[Loc, str]]) -> None:
    """Report cross-field problems, each at its own field (loc relative to the model checked).

    A model validator can raise only one error; this one carries them all, and the loader
    (`runbooks.inventory_errors`) spreads them back to their fields and YAML lines.
    """
    if problems:
        summary = "; ".join(f"{dotted(loc)}: {message}" for loc, message in problems)
        raise PydanticCustomError(
            PROBLEMS_ERROR, "{summary}", {"summary": summary, "problems": problems}
        )


def dotted(loc: Loc) -> str:
    """`("environments", 0, "databases", 1, "engine")` -> `environments[0].databases[1].engine`."""
    text = ""
    for part in loc:
        if isinstance(part, int):
            text += f"[{part}]"
        elif re.fullmatch(r"[A-Za-z0-9_-]+", part):
            text += f".{part}" if text else part
        else:
            text += f"[{part!r}]"
    return text


# -- value types ------------------------------------------------------------------------------

_SLUG = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")
_LABEL = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")
_RECORD_LABEL = re.compile(r"\*|[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9])?")
_HOST_LABEL = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?")
_UNIX_USER = re.compile(r"[a-z_][a-z0-9_-]{0,31}")
_SQL_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}")
_EMAIL = re.compile(r"[^@\s]+@[^@\s]+")
_SECRET_HEADER = re.compile(r"authorization|cookie|token|secret|key|password|auth", re.IGNORECASE)


def _text(value: Any, what: str) -> str:
    if not isinstance(value, str):
        raise ValueError(f"expected {what}, got {_shown(value)}")
    value = value.strip()
    if not value:
        raise ValueError(f"expected {what}, got an empty value")
    return value


def _shown(value: Any) -> str:
    if value is None:
        return "an empty value"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, bool):
        return f"{str(value).lower()} (a boolean)"
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _slug(value: Any) -> str:
    text = _text(value, "a slug (lower-case letters, digits, dashes)")
    if not _SLUG.fullmatch(text):
        raise ValueError(
            f"expected a slug: lower-case letters, digits and dashes, at most 63, e.g. 'app', "
            f"got {text!r}"
        )
    return text


def _address(value: Any) -> str:
    what = "a host name or an IP address"
    text = _text(value, what)
    if "@" in text:
        raise ValueError(f"expected {what}, got {text!r}; put the user name in `user`")
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        pass
    if text.count(":") == 1 or re.fullmatch(r"[\d.]+", text):
        hint = "; put the port in `port`" if ":" in text else ""
        raise ValueError(f"expected {what}, got {text!r}{hint}")
    name = text.rstrip(".")
    if len(name) > 253 or not all(_HOST_LABEL.fullmatch(label) for label in name.split(".")):
        raise ValueError(f"expected {what} (e.g. drp.example.net or 203.0.113.20), got {text!r}")
    return name.lower()


def _domain(value: Any) -> str:
    what = "a domain name such as example-kyc.com"
    text = _text(value, what).lower().rstrip(".")
    if len(text) > 253 or not all(_LABEL.fullmatch(label) for label in text.split(".")):
        raise ValueError(f"expected {what}, got {value!r}")
    return text


def _record_name(value: Any) -> str:
    if value is None:
        raise ValueError("expected a name relative to the zone ('www', or '@' for the apex)")
    text = _text(value, "a record name") if value != "" else ""
    if text in ("", "@"):
        return ""
    if text.endswith("."):
        raise ValueError(
            f"expected a name relative to the zone (e.g. 'www', '@' for the apex), got the "
            f"absolute name {text!r}"
        )
    lowered = text.lower()
    if not all(_RECORD_LABEL.fullmatch(label) for label in lowered.split(".")):
        raise ValueError(
            f"expected a name relative to the zone (e.g. 'www', '@' for the apex), got {text!r}"
        )
    return lowered


def _unix_user(value: Any) -> str:
    text = _text(value, "a user name")
    if not _UNIX_USER.fullmatch(text):
        raise ValueError(
            f"expected a user name (lower-case letters, digits, '_' and '-'), got {text!r}"
        )
    return text


def _sql_name(value: Any) -> str:
    text = _text(value, "a name")
    if not _SQL_NAME.fullmatch(text):
        raise ValueError(
            f"expected a name of letters, digits and '_', not starting with a digit (at most "
            f"63), got {text!r}"
        )
    return text


def _remote_path(value: Any) -> str:
    what = "a path on the host, absolute or relative to the SSH user's home"
    text = _text(value, what)
    if any(c in text for c in "\0\n\r"):
        raise ValueError(f"expected {what}, got a path with a control character")
    if text.startswith("~"):
        raise ValueError(
            f"expected {what}, got {text!r}; write it relative to the home, without '~'"
        )
    path = PurePosixPath(text)
    if ".." in path.parts:
        raise ValueError(f"expected {what}, without '..', got {text!r}")
    if str(path) in ("/", "."):
        raise ValueError(f"expected {what}, got {text!r}, a whole file system or home")
    if str(path).startswith("-"):
        # A command on the host would read it as an option (`find -delete` deletes the home).
        raise ValueError(
            f"expected {what}, not starting with '-', got {str(path)!r}: a command would take "
            "it for an option; give it as an absolute path"
        )
    return str(path)


_ENV_REFERENCE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}|\$")


def expand_environment(text: str, environ: Mapping[str, str] | None = None) -> str:
    """`${NAME}` and `${NAME:-default}` in a local path, taken from the process environment.

    A variable that is unset (or empty) takes the default; with no default, it is an error that
    names the variable. A `$` of any other shape is refused rather than kept, so that a path
    never silently contains what the author meant to expand."""
    values = os.environ if environ is None else environ

    def replace(match: re.Match[str]) -> str:
        name, default = match.group(1), match.group(2)
        if name is None:
            raise ValueError(
                f"expected ${{NAME}} or ${{NAME:-default}} after '$' in {text!r}; write the "
                "environment variable in braces"
            )
        value = values.get(name, "")
        if value:
            return value
        if default is not None:
            return default
        raise ValueError(
            f"the environment variable {name} is not set (in {text!r}); set it, or give a "
            f"default: ${{{name}:-/some/path}}"
        )

    return _ENV_REFERENCE.sub(replace, text)


def _local_path(value: Any, info: ValidationInfo) -> Path:
    if isinstance(value, Path):
        path = value
    else:
        text = _text(value, "a local path (relative to the inventory file)")
        text = expand_environment(text)
        if any(c in text for c in "\0\n\r"):
            raise ValueError(
                "expected a local path (relative to the inventory file), got a path with a "
                "control character (NUL byte or line break)"
            )
        path = Path(text).expanduser()
    base = (info.context or {}).get("base_dir")
    if base is not None and not path.is_absolute():
        path = Path(os.path.normpath(Path(base) / path))
    return path


def _key(value: Any, info: ValidationInfo) -> Path | Literal["agent"]:
    if value == "agent":
        return "agent"
    return _local_path(value, info)


def _http_url(value: Any) -> str:
    what = "an http:// or https:// URL"
    text = _text(value, what)
    if any(ord(c) < 0x21 or c == "\x7f" for c in text):
        raise ValueError(f"expected {what}, got one with a space or a control character")
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError:
        # Out of range (99999) or not a number; the URL itself may hold a token: not shown.
        raise ValueError(
            f"expected {what} with a port from 1 to 65535 (or none), got {masked_url(text)!r}"
        ) from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(
            f"expected {what} such as https://www.example-kyc.com/, got {masked_url(text)!r}"
        )
    if port == 0:
        raise ValueError(f"expected {what} with a port from 1 to 65535, got port 0")
    return text


def _webhook_url(value: Any) -> SecretRef | str:
    if isinstance(value, SecretRef):
        return value
    if isinstance(value, str) and SecretRef.looks_like_reference(value):
        return SecretRef.parse(value)
    return _http_url(value)


def _email(value: Any) -> str:
    text = _text(value, "an e-mail address")
    if not _EMAIL.fullmatch(text):
        raise ValueError(f"expected an e-mail address such as ops@example.com, got {text!r}")
    return text


def _datacenter(value: Any) -> str:
    return _text(value, "a datacenter name such as 'ovh-gra'")


def _header_value(value: Any) -> SecretRef | str:
    if isinstance(value, SecretRef):
        return value
    if not isinstance(value, str):
        raise ValueError(f"expected text or a secret reference, got {_shown(value)}")
    if SecretRef.looks_like_reference(value):
        return SecretRef.parse(value)
    return value


Slug = Annotated[str, PlainValidator(_slug, json_schema_input_type=str)]
Address = Annotated[str, PlainValidator(_address, json_schema_input_type=str)]
DomainName = Annotated[str, PlainValidator(_domain, json_schema_input_type=str)]
RecordName = Annotated[str, PlainValidator(_record_name, json_schema_input_type=str)]
UnixUser = Annotated[str, PlainValidator(_unix_user, json_schema_input_type=str)]
SqlName = Annotated[str, PlainValidator(_sql_name, json_schema_input_type=str)]
RemotePath = Annotated[str, PlainValidator(_remote_path, json_schema_input_type=str)]
LocalPath = Annotated[Path, PlainValidator(_local_path, json_schema_input_type=str)]
KeySpec = Annotated[Path | Literal["agent"], PlainValidator(_key, json_schema_input_type=str)]
HttpUrl = Annotated[str, PlainValidator(_http_url, json_schema_input_type=str)]
WebhookUrl = Annotated[SecretRef | str, PlainValidator(_webhook_url, json_schema_input_type=str)]
Email = Annotated[str, PlainValidator(_email, json_schema_input_type=str)]
Datacenter = Annotated[str, PlainValidator(_datacenter, json_schema_input_type=str)]
HeaderValue = Annotated[SecretRef | str, PlainValidator(_header_value, json_schema_input_type=str)]
Port = Annotated[int, Field(ge=1, le=65535)]
# A wait: never forever (.inf), never NaN or negative, at most a day.
Seconds = Annotated[float, Field(gt=0, le=86400, allow_inf_nan=False)]
# A wait for long work (a copy, a restore): at most a week.
LongSeconds = Annotated[float, Field(gt=0, le=7 * 86400, allow_inf_nan=False)]
Text = Annotated[str, AfterValidator(lambda v: _text(v, "some text"))]


class _Model(BaseModel):
    # hide_input_in_errors: a rejected value may be an inline secret; never echo it.
    model_config = ConfigDict(extra="forbid", frozen=True, hide_input_in_errors=True)


# -- hosts ------------------------------------------------------------------------------------


class Host(_Model):
    """A server drp reaches over SSH."""

    address: Address = Field(
        description="SSH address of the server: a host name or an IP address (no user, no port)."
    )
    port: Port = Field(22, description="SSH port of the server.")
    user: UnixUser = Field(description="SSH user drp logs in as.")
    key: KeySpec = Field(
        description=(
            "Private key for SSH, a path relative to the inventory file; or `agent` to use "
            "the keys of the running ssh-agent."
        )
    )
    public_ipv4: IPv4Address = Field(
        description="The public IPv4 address that DNS records point to when this host serves."
    )
    public_ipv6: IPv6Address | None = Field(
        None, description="The public IPv6 address (needed only for AAAA records)."
    )
    datacenter: Datacenter = Field(
        description="Datacenter the server is in (free text such as 'ovh-gra'); compared "
        "between hosts to keep backups and DRP out of production's datacenter."
    )
    provider: str | None = Field(None, description="Hosting provider, a label (e.g. 'OVH').")

    @property
    def key_file(self) -> Path | None:
        """The private key file, or None when the ssh-agent provides keys."""
        return None if self.key == "agent" else Path(self.key)

    @property
    def ssh_target(self) -> str:
        """`user@address:port`, for messages."""
        address = f"[{self.address}]" if ":" in self.address else self.address
        return f"{self.user}@{address}:{self.port}"

    def same_server_as(
        self, other: Host
    ) -> Literal["address", "public_ipv4", "public_ipv6"] | None:
        """Which identifying field two hosts share, if any (then they are one server)."""
        if self.address == other.address:
            return "address"
        if self.public_ipv4 == other.public_ipv4:
            return "public_ipv4"
        if self.public_ipv6 is not None and self.public_ipv6 == other.public_ipv6:
            return "public_ipv6"
        return None


class Hosts(_Model):
    """The four servers of the disaster-recovery plan, by role."""

    production: Host = Field(description="The main server that normally serves the environments.")
    backup_even: Host = Field(description="Backup server that takes the backups of even days.")
    backup_odd: Host = Field(description="Backup server that takes the backups of odd days.")
    drp: Host = Field(
        description="The DRP server: restored from the backups and switched to when production "
        "is lost."
    )

    def by_role(self) -> dict[Role, Host]:
        return {role: getattr(self, role) for role in ROLES}


# -- environments ---------------------------------------------------------------------------


class Tree(_Model):
    """A directory (or file) copied as a whole."""

    path: RemotePath = Field(
        description="Path on production (and the same on the DRP server), absolute or relative "
        "to the SSH user's home."
    )
    exclude: list[Text] = Field(
        default_factory=list,
        description="rsync patterns left out of the copy (e.g. 'cache/', '*.tmp').",
    )


class Database(_Model):
    """A database of an environment, dumped to the backup servers and restored from them."""

    name: SqlName = Field(description="Database name (the same on production and DRP).")
    engine: Engine = Field(description="Database server: 'postgresql' or 'mysql'.")
    user_database: bool = Field(
        False,
        description="True for the user database: also backed up every "
        "backups.user_db_interval_hours hours, not only daily.",
    )
    port: Port = Field(
        description="Port of the database server (default 5432 for postgresql, 3306 for mysql)."
    )
    user: SqlName = Field(description="Database user drp connects as (dump and restore rights).")
    password: SecretRef = Field(
        description="The database user's password, as a reference: env:NAME or prefect-secret:NAME."
    )
    addresses: dict[DatabaseRole, Address] = Field(
        default_factory=dict,
        description="Address the database server listens on, per host role (production, drp); "
        "default: the host's SSH address.",
    )

    @model_validator(mode="before")
    @classmethod
    def _default_port(cls, data: Any) -> Any:
        if isinstance(data, dict) and "port" not in data:
            # With an unknown engine validation fails on `engine`; any port avoids a second,
            # misleading "port missing" problem.
            return {**data, "port": DEFAULT_DB_PORTS.get(str(data.get("engine")), 1)}
        return data

    def address_on(self, role: DatabaseRole, host: Host) -> str:
        """Where to reach this database on the host playing `role`."""
        return self.addresses.get(role, host.address)


class DnsRecord(_Model):
    """A record switched to the DRP server's address on activation, and back on return."""

    zone: DomainName = Field(description="The zone the record is in; one of dns.zones.")
    name: RecordName = Field(
        description="Name relative to the zone: 'www', or '' / '@' for the zone apex."
    )
    type: Literal["A", "AAAA"] = Field(
        "A", description="'A' (points to public_ipv4) or 'AAAA' (points to public_ipv6)."
    )

    @property
    def fqdn(self) -> str:
        return f"{self.name}.{self.zone}" if self.name else self.zone

    @property
    def is_apex(self) -> bool:
        return not self.name


class UrlCheck(_Model):
    """An HTTP check that says the environment serves (run against the DRP server on a drill)."""

    url: HttpUrl = Field(description="http:// or https:// URL of a page of the environment.")
    expected_status: int = Field(200, ge=100, le=599, description="Expected HTTP status code.")
    expected_text: str | None = Field(
        None, description="Text the response body must contain (optional)."
    )
    max_seconds: Seconds = Field(10, description="Longest acceptable response time, seconds.")


class MaintenanceSwitch(_Model):
    """How to put one side into maintenance: a flag file, or a pair of commands."""

    flag: RemotePath | None = Field(
        None,
        description="File whose presence puts the environment into maintenance (path on the "
        "host, absolute or relative to the SSH user's home).",
    )
    enable_command: str | None = Field(
        None, description="Shell command, run on the host, that enters maintenance."
    )
    disable_command: str | None = Field(
        None, description="Shell command, run on the host, that leaves maintenance."
    )

    @model_validator(mode="after")
    def _one_way(self) -> MaintenanceSwitch:
        enable, disable = self.enable_command, self.disable_command
        if self.flag is not None and (enable or disable):
            raise_problems([(("flag",), "expected either flag or the two commands, not both")])
        if self.flag is None and not (enable and disable):
            problem: tuple[Loc, str]
            if enable:
                problem = (
                    ("disable_command",),
                    "missing; expected the command that leaves "
                    "maintenance, to pair with enable_command",
                )
            elif disable:
                problem = (
                    ("enable_command",),
                    "missing; expected the command that enters "
                    "maintenance, to pair with disable_command",
                )
            else:
                problem = ((), "expected `flag: PATH`, or `enable_command:` and `disable_command:`")
            raise_problems([problem])
        return self


class Maintenance(_Model):
    """Maintenance switches of an environment on each side."""

    production: MaintenanceSwitch = Field(description="Maintenance switch on production.")
    drp: MaintenanceSwitch = Field(description="Maintenance switch on the DRP server.")


class Environment(_Model):
    """A client application (a virtual host): its files, configurations, databases and names."""

    name: Slug = Field(description="Short name of the environment (lower-case, dashes).")
    files: list[Tree] = Field(
        default_factory=list, description="Trees of data files to copy (e.g. the web root)."
    )
    configs: list[Tree] = Field(
        default_factory=list,
        description="Configuration files or directories to copy (e.g. vhost, app config).",
    )
    databases: list[Database] = Field(default_factory=list, description="Databases to restore.")
    dns_records: list[DnsRecord] = Field(
        default_factory=list, description="DNS records switched between production and DRP."
    )
    url_checks: list[UrlCheck] = Field(
        default_factory=list, description="HTTP checks that say the environment serves."
    )
    maintenance: Maintenance = Field(
        description="How to put the environment into maintenance on production and on DRP."
    )


# -- backups, DNS, tickets ---------------------------------------------------------------------


class Backups(_Model):
    """Where and how often the backup servers keep backups."""

    area: RemotePath = Field(
        description="Directory holding the backups on each backup server (absolute or relative "
        "to the SSH user's home)."
    )
    retention: int = Field(7, ge=1, description="Backup sets kept per server and environment.")
    user_db_interval_hours: int = Field(
        2, ge=1, le=24, description="Hours between two backups of the user databases."
    )
    user_db_to_both_servers: bool = Field(
        True,
        description="Send each user-database backup to both backup servers (else to the server "
        "of the day).",
    )


class NameServer(_Model):
    """An authoritative server asked to confirm a DNS switch."""

    address: IPvAnyAddress = Field(description="IP address of the server.")
    port: Port = Field(53, description="DNS port.")


class _DnsBase(_Model):
    zones: list[DomainName] = Field(
        min_length=1, description="Zones the site manages; every dns record names one of them."
    )
    nameservers: list[NameServer] = Field(
        default_factory=list,
        description="Authoritative servers asked after a switch until all answer the new "
        "address; empty: the zone's NS records are used.",
    )


class OvhDns(_DnsBase):
    """DNS hosted by OVH, changed through the OVH API."""

    provider: Literal["ovh"] = Field(description="'ovh'.")
    endpoint: Slug = Field(
        description="OVH API endpoint name (e.g. 'ovh-eu'), or a name of ours given with `url`."
    )
    url: HttpUrl | None = Field(
        None,
        description="API base URL registered under `endpoint` (an emulator); omit for OVH's own.",
    )
    application_key: SecretRef = Field(description="OVH application key, as a reference.")
    application_secret: SecretRef = Field(description="OVH application secret, as a reference.")
    consumer_key: SecretRef = Field(description="OVH consumer key, as a reference.")

    @model_validator(mode="after")
    def _endpoint_known(self) -> OvhDns:
        if self.url is None and self.endpoint not in OVH_PUBLIC_ENDPOINTS:
            raise_problems(
                [
                    (
                        ("endpoint",),
                        f"expected one of {', '.join(OVH_PUBLIC_ENDPOINTS)}, got "
                        f"{self.endpoint!r}; or give `url` to register it",
                    )
                ]
            )
        if self.url is not None and self.endpoint in OVH_PUBLIC_ENDPOINTS:
            raise_problems(
                [
                    (
                        ("endpoint",),
                        f"expected a name of our own with `url`, got OVH's {self.endpoint!r} "
                        "(it would redirect OVH's endpoint)",
                    )
                ]
            )
        return self


TsigAlgorithm = Literal["hmac-sha256", "hmac-sha384", "hmac-sha512", "hmac-sha224", "hmac-sha1"]


class Rfc2136Dns(_DnsBase):
    """DNS changed by RFC 2136 dynamic updates signed with TSIG (BIND, Knot, PowerDNS)."""

    provider: Literal["rfc2136"] = Field(description="'rfc2136'.")
    server: IPvAnyAddress = Field(description="Primary server that takes updates.")
    port: Port = Field(53, description="Its DNS port.")
    tsig_key_name: DomainName = Field(description="Name of the TSIG key.")
    tsig_algorithm: TsigAlgorithm = Field("hmac-sha256", description="TSIG algorithm.")
    tsig_secret: SecretRef = Field(description="The TSIG key (base64), as a reference.")


Dns = Annotated[OvhDns | Rfc2136Dns, Field(discriminator="provider")]


class FileTickets(_Model):
    """Tickets appended to a local JSON-lines file."""

    type: Literal["file"] = Field(description="'file'.")
    path: LocalPath = Field(description="The file, relative to the inventory file.")


class SmtpTickets(_Model):
    """Tickets sent by e-mail."""

    type: Literal["smtp"] = Field(description="'smtp'.")
    host: Address = Field(description="SMTP server.")
    port: Port = Field(587, description="SMTP port.")
    sender: Email = Field(description="From address.")
    recipients: list[Email] = Field(min_length=1, description="Who receives the tickets.")
    starttls: bool = Field(True, description="Upgrade the connection with STARTTLS.")
    user: str | None = Field(None, description="SMTP login (optional).")
    password: SecretRef | None = Field(None, description="SMTP password, as a reference.")
    timeout_seconds: Seconds = Field(30, description="Give up after this many seconds.")

    @model_validator(mode="after")
    def _login_pairs(self) -> SmtpTickets:
        if self.password is not None and not self.user:
            raise_problems([(("user",), "missing; expected the login that goes with `password`")])
        if self.user and self.password is None:
            raise_problems(
                [(("password",), "missing; expected a reference such as env:SMTP_PASSWORD")]
            )
        return self


class WebhookTickets(_Model):
    """Tickets POSTed as JSON to a URL (a ticketing system's API)."""

    type: Literal["webhook"] = Field(description="'webhook'.")
    url: WebhookUrl = Field(
        description="URL the ticket is POSTed to, or a secret reference (env:NAME) to it when "
        "the URL holds a token (Slack, Teams); shown with its path's tokens masked."
    )
    headers: dict[str, HeaderValue] = Field(
        default_factory=dict,
        description="Extra HTTP headers; a value may be a reference (env:NAME) and must be one "
        "for credentials (Authorization, tokens, keys).",
    )
    timeout_seconds: Seconds = Field(10, description="Give up after this many seconds.")

    @model_validator(mode="after")
    def _credentials_are_references(self) -> WebhookTickets:
        raise_problems(
            [
                (
                    ("headers", name),
                    "expected a secret reference for a credential header, got an inline value "
                    "(not shown); put it in an environment variable and write env:NAME",
                )
                for name, value in self.headers.items()
                if isinstance(value, str) and _SECRET_HEADER.search(name)
            ]
        )
        return self


TicketBackend = Annotated[FileTickets | SmtpTickets | WebhookTickets, Field(discriminator="type")]


class OrderCodesConfig(_Model):
    """One-time order codes: sent to the customer's order contacts when the gate opens, and
    asked for in the order form (Prefect has no users: a typed name alone proves nothing)."""

    contacts: list[Email] = Field(
        min_length=1,
        description="Who may order: the customer's order contacts, who receive each code "
        "(e-mail addresses; SMTP backends mail them, webhooks and files get them listed).",
    )
    valid_minutes: float = Field(
        default=60,
        gt=0,
        le=24 * 60,
        allow_inf_nan=False,
        description="Minutes a code stands; an expired code gets a new one sent.",
    )
    drills: bool = Field(
        default=False,
        description="Drills need a code too (false: a drill is ordered without one).",
    )


class Orders(_Model):
    """How the customer's order is kept: signed with a site secret, valid for a while."""

    secret: SecretRef | None = Field(
        default=None,
        description="Site secret that signs each order stored in a report (HMAC over the "
        "operation id, plan hash, who, reference and time), as a reference (env:NAME): an order "
        "written into a report by hand is refused on resume. Without it a resume always asks "
        "for the order again.",
    )
    valid_hours: float = Field(
        default=24,
        gt=0,
        le=24 * 365,
        allow_inf_nan=False,
        description="Hours an order stands: a resume after that asks for the order again.",
    )
    codes: OrderCodesConfig | None = Field(
        default=None,
        description="One-time order codes sent to the customer's order contacts (needs "
        "`secret`); without them the order form asks for a name and a reference only.",
    )

    @model_validator(mode="after")
    def _codes_need_the_secret(self) -> Orders:
        if self.codes is not None and self.secret is None:
            raise_problems(
                [
                    (
                        ("codes",),
                        "order codes need orders.secret (the codes are signed with it); set "
                        "secret: env:DRP_ORDER_SECRET",
                    )
                ]
            )
        return self


class Staging(_Model):
    """The warm DRP server (`drp stage`, flow drp-stage): the newest verified backups restored
    beside what the DRP server serves, so that an activation swaps them in instead of copying
    and importing everything after the order."""

    enabled: bool = Field(
        default=True,
        description="False: `drp stage` changes nothing and says so, and activations and drills "
        "copy and import everything from the backup servers (the stages left are ignored).",
    )


class Timeouts(_Model):
    """How long drp waits for a command on a host before it gives up, naming the host and the
    command. Nothing waits forever: a hung file system or a dead link ends in an error."""

    command_seconds: Seconds = Field(
        default=300,
        description="A listing, a check or another short command on a host. A backup server "
        "whose file system hangs is reported by the plan after this long, naming the host.",
    )
    copy_seconds: LongSeconds = Field(
        default=86400,
        description="One copy of a tree with rsync, and its dry runs and checksum comparisons.",
    )
    copy_idle_seconds: Seconds = Field(
        default=600,
        description="A copy that moves no data for this long gives up (rsync --timeout).",
    )
    database_seconds: LongSeconds = Field(
        default=86400,
        description="One dump, restore, move or set-aside of a database.",
    )


# -- the site ---------------------------------------------------------------------------------


class Site(_Model):
    """A hosting site's disaster-recovery inventory."""

    name: Slug = Field(description="Short name of the site (lower-case, dashes).")
    customer: Text = Field(description="Who orders the DRP activation (e.g. 1stKYC).")
    env_file: LocalPath | None = Field(
        None,
        description="File of KEY=value lines where env:NAME references are looked up after the "
        "process environment; relative to the inventory file.",
    )
    known_hosts: LocalPath = Field(
        description="known_hosts file with the host keys of every server; unknown keys are "
        "refused. Relative to the inventory file."
    )
    hosts: Hosts = Field(description="The servers, by role.")
    environments: list[Environment] = Field(
        min_length=1, description="Client applications (virtual hosts) to protect."
    )
    backups: Backups = Field(description="Backup area and schedule.")
    dns: Dns = Field(description="Where the DNS zones live and how to change them.")
    tickets: list[TicketBackend] = Field(
        min_length=1, description="Where information tickets go (every backend gets each one)."
    )
    orders: Orders = Field(
        default_factory=Orders,
        description="How the customer's order is signed and how long it stands.",
    )
    timeouts: Timeouts = Field(
        default_factory=Timeouts,
        description="How long commands on the hosts may take (defaults suit most sites).",
    )
    staging: Staging = Field(
        default_factory=Staging,
        description="The warm DRP server: staging of each verified backup on it (`drp stage`).",
    )
    watch: Watch = Field(
        default_factory=Watch,
        description="Supervision (`drp watch`): thresholds per probe, alerts, the disaster alarm.",
    )
    drift: Drift = Field(default_factory=Drift, description="What `drp drift` compares.")

    _source: Path | None = PrivateAttr(None)

    @model_validator(mode="after")
    def _consistent(self) -> Site:
        raise_problems([*_site_problems(self), *watch_problems(self)])
        return self

    @property
    def source(self) -> Path | None:
        """The YAML file this site was loaded from, if any."""
        return self._source

    @property
    def env_files(self) -> list[Path]:
        return [self.env_file] if self.env_file is not None else []

    def environment(self, name: str) -> Environment:
        for environment in self.environments:
            if environment.name == name:
                return environment
        known = ", ".join(e.name for e in self.environments)
        raise ConfigError(f"no environment named {name!r}", expected=f"one of {known}")

    def resolve_secret(self, ref: SecretRef) -> Secret:
        """The value behind `ref` (environment, then env_file, or Prefect), masked."""
        return ref.resolve(self.env_files)

    def secret_refs(self) -> list[tuple[str, SecretRef]]:
        """Every secret reference in the inventory, with the dotted path of its field."""
        return [(dotted(loc), ref) for loc, ref in _walk_refs(self, ())]


def _walk_refs(value: Any, loc: Loc) -> Iterator[tuple[Loc, SecretRef]]:
    if isinstance(value, SecretRef):
        yield loc, value
    elif isinstance(value, BaseModel):
        for name in type(value).model_fields:
            yield from _walk_refs(getattr(value, name), (*loc, name))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _walk_refs(item, (*loc, index))
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _walk_refs(item, (*loc, key))


def _site_problems(site: Site) -> Iterator[tuple[Loc, str]]:
    """Rules that span several fields; each problem points at the field to change."""
    hosts = site.hosts
    production = hosts.production
    for role in ("backup_even", "backup_odd", "drp"):
        host: Host = getattr(hosts, role)
        if host.datacenter.casefold() == production.datacenter.casefold():
            yield (
                ("hosts", role, "datacenter"),
                f"expected a datacenter other than production's, got {host.datacenter!r} (the "
                f"same); the policy keeps backups and the DRP server out of the production "
                f"datacenter, so that they survive its loss",
            )
        if shared := host.same_server_as(production):
            yield (
                ("hosts", role, shared),
                f"expected a server other than production, got the same {shared} "
                f"({getattr(host, shared)})",
            )
    if shared := hosts.backup_odd.same_server_as(hosts.backup_even):
        yield (
            ("hosts", "backup_odd", shared),
            f"expected a server other than backup_even, got the same {shared} "
            f"({getattr(hosts.backup_odd, shared)}); even and odd days go to two servers",
        )

    zones = site.dns.zones
    for index, zone in enumerate(zones):
        if zone in zones[:index]:
            yield (("dns", "zones", index), f"expected each zone once, got {zone!r} again")

    seen_envs: dict[str, int] = {}
    seen_dbs: dict[tuple[str, str], str] = {}
    seen_records: dict[tuple[str, str, str], str] = {}
    for e, env in enumerate(site.environments):
        at: Loc = ("environments", e)
        if env.name in seen_envs:
            yield (
                (*at, "name"),
                f"expected a unique environment name, got {env.name!r} again (already "
                f"environments[{seen_envs[env.name]}])",
            )
        seen_envs.setdefault(env.name, e)
        for d, db in enumerate(env.databases):
            key = (db.engine, db.name)
            where = dotted((*at, "databases", d))
            if key in seen_dbs:
                yield (
                    (*at, "databases", d, "name"),
                    f"expected a unique {db.engine} database name, got {db.name!r} again "
                    f"(already {seen_dbs[key]})",
                )
            seen_dbs.setdefault(key, where)
        for r, record in enumerate(env.dns_records):
            rat: Loc = (*at, "dns_records", r)
            if record.zone not in zones:
                yield (
                    (*rat, "zone"),
                    f"expected one of the zones in dns.zones ({', '.join(zones)}), got "
                    f"{record.zone!r}",
                )
            else:
                for zone in zones:
                    if record.name == zone or record.name.endswith("." + zone):
                        yield (
                            (*rat, "name"),
                            f"expected a name relative to the zone, got {record.name!r}; write "
                            f"{record.name.removesuffix(zone).rstrip('.') or '@'!r}",
                        )
            key3 = (record.zone, record.name, record.type)
            if key3 in seen_records:
                yield (
                    (*rat, "name"),
                    f"expected each record once, got {record.type} {record.fqdn} again (already "
                    f"{seen_records[key3]})",
                )
            seen_records.setdefault(key3, dotted(rat))
            if record.type == "AAAA":
                for role in ("production", "drp"):
                    if getattr(hosts, role).public_ipv6 is None:
                        yield (
                            (*rat, "type"),
                            f"an AAAA record needs hosts.{role}.public_ipv6; expected it set, "
                            f"or type 'A'",
                        )
        yield from _url_check_problems(env, at)


def _url_check_problems(env: Environment, at: Loc) -> Iterator[tuple[Loc, str]]:
    """After the switch, drp checks the service through each URL's name: that name must be one
    the switch moves, or the check would reach the old side."""
    names = {record.fqdn.casefold().rstrip(".") for record in env.dns_records}
    if not names:
        return
    for c, url_check in enumerate(env.url_checks):
        host = (urlsplit(url_check.url).hostname or "").rstrip(".")
        if host.casefold() not in names:
            yield (
                (*at, "url_checks", c, "url"),
                f"expected a URL on a name the switch moves ({', '.join(sorted(names))}), got "
                f"host {host!r}: after the switch the service is checked through this name; "
                f"add a dns_records entry for it, or check a switched name",
            )


# -- loading ---------------------------------------------------------------------------------


def load_site(path: str | Path) -> Site:
    """Read and validate an inventory file; ConfigError lists every problem found."""
    from runbooks.inventory_errors import read_yaml, validation_problems

    data, positions, problems = read_yaml(path)
    site = None
    if isinstance(data, dict):  # else the file is unreadable, and problems say why
        try:
            site = Site.model_validate(data, context={"base_dir": Path(path).parent.absolute()})
        except ValidationError as err:
            problems += validation_problems(err, Site, path, data, positions)
    if site is None or problems:
        problems.sort(key=lambda p: (p.line or 0, p.field or ""))
        raise ConfigError(_summary(path, problems), file=path, problems=problems)
    site._source = Path(path)
    return site


def check_site(path: str | Path) -> list[ConfigError]:
    """Every problem of an inventory file (empty when it is valid), sorted by line."""
    try:
        load_site(path)
    except ConfigError as err:
        return list(err.problems) or [err]
    return []


def _summary(path: str | Path, problems: list[ConfigError]) -> str:
    return f"{path}: {len(problems)} problem(s) in the inventory"
