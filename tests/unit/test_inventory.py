"""The inventory: shipped files load, and each kind of mistake is reported at its file, line and
field, with what was expected."""

from __future__ import annotations

import pickle
from ipaddress import IPv4Address
from pathlib import Path

import pytest
from pydantic import ValidationError

from lab import topology
from runbooks.errors import ConfigError
from runbooks.inventory import Site, check_site, expand_environment, load_site
from runbooks.secrets import SecretRef

REPO = Path(__file__).resolve().parents[2]

VALID = """\
name: kyc
customer: 1stKYC
known_hosts: keys/known_hosts
hosts:
  production:
    address: prod.example-kyc.net
    port: 2222
    user: drp
    key: keys/id_ed25519
    public_ipv4: 203.0.113.10
    datacenter: ovh-lim1
  backup_even:
    address: 198.51.100.21
    user: drp
    key: agent
    public_ipv4: 198.51.100.21
    datacenter: ovh-rbx8
  backup_odd:
    address: 198.51.100.22
    user: drp
    key: agent
    public_ipv4: 198.51.100.22
    datacenter: ovh-sbg3
  drp:
    address: drp.example-kyc.net
    user: drp
    key: keys/id_ed25519
    public_ipv4: 203.0.113.40
    datacenter: ovh-gra2
environments:
  - name: portal
    files:
      - path: /var/www/portal
        exclude: [cache/]
    configs:
      - path: /etc/portal
    databases:
      - name: users
        engine: postgresql
        user_database: true
        user: drp
        password: env:PORTAL_PG_PASSWORD
      - name: shop
        engine: mysql
        user: drp
        password: prefect-secret:portal-mysql
        addresses: {production: 127.0.0.1}
    dns_records:
      - {zone: example-kyc.com, name: "@", type: A}
      - {zone: example-kyc.com, name: www, type: A}
    url_checks:
      - url: https://www.example-kyc.com/
        expected_text: 1stKYC
    maintenance:
      production: {flag: /var/www/portal/MAINTENANCE}
      drp: {enable_command: maint on, disable_command: maint off}
backups:
  area: /srv/backups
dns:
  provider: ovh
  endpoint: ovh-eu
  application_key: env:OVH_APPLICATION_KEY
  application_secret: env:OVH_APPLICATION_SECRET
  consumer_key: env:OVH_CONSUMER_KEY
  zones: [example-kyc.com]
tickets:
  - type: file
    path: tickets.jsonl
  - type: webhook
    url: https://tickets.example.net/api
    headers:
      Authorization: env:TICKETS_TOKEN
      X-Project: portal
"""


def variant(tmp_path: Path, old: str, new: str) -> tuple[Path, str]:
    """The valid inventory with one change, written to a file; returns (path, text)."""
    assert VALID.count(old) == 1, f"{old!r} must occur once in VALID"
    text = VALID.replace(old, new)
    path = tmp_path / "site.yaml"
    path.write_text(text)
    return path, text


def line_of(text: str, snippet: str) -> int:
    """1-based line where the first occurrence of `snippet` ends (a multi-line snippet picks
    one of several identical lines by what precedes it)."""
    end = text.index(snippet) + len(snippet.rstrip("\n"))
    return text.count("\n", 0, end) + 1


# -- valid files ------------------------------------------------------------------------------


def test_valid_inventory_loads_with_paths_relative_to_the_file(tmp_path: Path) -> None:
    path, _ = variant(tmp_path, "name: kyc", "name: kyc")
    site = load_site(path)

    assert site.source == path
    assert site.known_hosts == tmp_path / "keys/known_hosts"
    assert site.hosts.production.key_file == tmp_path / "keys/id_ed25519"
    assert site.hosts.backup_even.key == "agent"
    assert site.hosts.backup_even.key_file is None
    assert site.hosts.production.ssh_target == "drp@prod.example-kyc.net:2222"
    assert site.hosts.drp.port == 22
    assert site.tickets[0].path == tmp_path / "tickets.jsonl"


def test_defaults_and_derived_values(tmp_path: Path) -> None:
    path, _ = variant(tmp_path, "name: kyc", "name: kyc")
    site = load_site(path)
    env = site.environment("portal")
    users, shop = env.databases

    assert (users.port, shop.port) == (5432, 3306)
    assert users.address_on("production", site.hosts.production) == "prod.example-kyc.net"
    assert shop.address_on("production", site.hosts.production) == "127.0.0.1"
    assert shop.address_on("drp", site.hosts.drp) == "drp.example-kyc.net"
    assert [(r.name, r.fqdn, r.is_apex) for r in env.dns_records] == [
        ("", "example-kyc.com", True),
        ("www", "www.example-kyc.com", False),
    ]
    assert env.url_checks[0].expected_status == 200
    assert env.url_checks[0].max_seconds == 10
    assert (site.backups.retention, site.backups.user_db_interval_hours) == (7, 2)
    with pytest.raises(ConfigError, match="no environment named 'nope'"):
        site.environment("nope")


def test_secret_references_are_listed_with_their_fields(tmp_path: Path) -> None:
    path, _ = variant(tmp_path, "name: kyc", "name: kyc")
    refs = dict(load_site(path).secret_refs())

    assert refs["environments[0].databases[0].password"] == SecretRef("env", "PORTAL_PG_PASSWORD")
    assert str(refs["environments[0].databases[1].password"]) == "prefect-secret:portal-mysql"
    assert str(refs["dns.application_secret"]) == "env:OVH_APPLICATION_SECRET"
    assert str(refs["tickets[1].headers.Authorization"]) == "env:TICKETS_TOKEN"
    assert len(refs) == 6  # X-Project is a plain header


@pytest.mark.parametrize("name", ["lab.yaml", "site.example.yaml"])
def test_shipped_inventories_are_valid(name: str) -> None:
    assert check_site(REPO / "config" / name) == []


def test_lab_inventory_matches_the_lab_topology() -> None:
    site = load_site(REPO / "config" / "lab.yaml")
    lab_root = topology.lab_dir()

    for role, host in site.hosts.by_role().items():
        lab_host = topology.host(role.replace("_", "-"))
        assert host.address == lab_host.address
        assert host.public_ipv4 == IPv4Address(lab_host.address)
        assert host.port == topology.SSH_PORT
        assert host.user == lab_host.user
        assert host.datacenter == lab_host.datacenter
        assert host.key_file == lab_root / "keys" / "operator"
    assert site.known_hosts == lab_root / "keys" / "known_hosts"
    assert site.env_file == lab_root / "lab.env"

    env = site.environment(topology.APP_ENV)
    assert [t.path for t in env.files] == [topology.APP_FILES_DIR]
    assert [t.path for t in env.configs] == [topology.APP_CONFIG_DIR]
    assert [(d.name, d.engine, d.port, d.user, d.user_database) for d in env.databases] == [
        (topology.APP_PG_DB, "postgresql", topology.PG_PORT, topology.DB_USER, True),
        (topology.APP_MYSQL_DB, "mysql", topology.MYSQL_PORT, topology.DB_USER, False),
    ]
    assert {r.fqdn for r in env.dns_records} == {topology.ZONE, f"www.{topology.ZONE}"}
    assert env.maintenance.production.flag == topology.APP_MAINTENANCE_FLAG
    assert env.maintenance.drp.flag == topology.APP_MAINTENANCE_FLAG
    assert site.backups.area == topology.BACKUP_AREA
    assert site.dns.provider == "ovh"
    assert site.dns.endpoint == topology.OVH_ENDPOINT_NAME
    assert site.dns.url == f"http://{topology.OVH_ADDRESS}:{topology.OVH_PORT}/1.0"
    assert site.dns.zones == [topology.ZONE]
    assert {ref.name for _, ref in site.secret_refs()} <= set(topology.SECRET_NAMES)


# -- one mistake each: file, line, field, what was expected ------------------------------------

BAD = [
    pytest.param(
        "engine: mysql",
        "engine: mongodb",
        "engine: mongodb",
        "environments[0].databases[1].engine",
        "expected one of 'postgresql', 'mysql', got 'mongodb'",
        id="unknown-engine",
    ),
    pytest.param(
        "    public_ipv4: 203.0.113.40\n",
        "",
        "  drp:",
        "hosts.drp.public_ipv4",
        "missing; expected the public IPv4 address that DNS records point to",
        id="missing-public-ipv4",
    ),
    pytest.param(
        "    address: drp.example-kyc.net",
        "    adress: drp.example-kyc.net",
        "adress:",
        "hosts.drp.adress",
        "unknown field 'adress' (did you mean 'address'?); expected one of: address, port,",
        id="typo-field",
    ),
    pytest.param(
        "password: env:PORTAL_PG_PASSWORD",
        "password: S3cr3t-Inline-Pw",
        "S3cr3t-Inline-Pw",
        "environments[0].databases[0].password",
        "got an inline value (not shown); do not write secrets in the inventory: put it in an "
        "environment variable and write env:NAME",
        id="inline-secret",
    ),
    pytest.param(
        "application_secret: env:OVH_APPLICATION_SECRET",
        "application_secret: env:ovh_secret",
        "env:ovh_secret",
        "dns.application_secret",
        "malformed secret reference 'env:ovh_secret': after 'env:' expected upper-case letters",
        id="malformed-secret-reference",
    ),
    pytest.param(
        "{zone: example-kyc.com, name: www, type: A}",
        "{zone: other-kyc.com, name: www, type: A}",
        "other-kyc.com",
        "environments[0].dns_records[1].zone",
        "expected one of the zones in dns.zones (example-kyc.com), got 'other-kyc.com'",
        id="record-zone-not-managed",
    ),
    pytest.param(
        "datacenter: ovh-gra2",
        "datacenter: ovh-lim1",
        "203.0.113.40\n    datacenter: ovh-lim1",
        "hosts.drp.datacenter",
        "expected a datacenter other than production's, got 'ovh-lim1'",
        id="drp-in-production-datacenter",
    ),
    pytest.param(
        "datacenter: ovh-sbg3",
        "datacenter: OVH-LIM1",
        "OVH-LIM1",
        "hosts.backup_odd.datacenter",
        "expected a datacenter other than production's, got 'OVH-LIM1'",
        id="backup-in-production-datacenter",
    ),
    pytest.param(
        "    address: drp.example-kyc.net",
        "    address: PROD.example-kyc.net",
        "PROD.example-kyc.net",
        "hosts.drp.address",
        "expected a server other than production, got the same address (prod.example-kyc.net)",
        id="drp-same-address-as-production",
    ),
    pytest.param(
        "public_ipv4: 203.0.113.40",
        "public_ipv4: 203.0.113.10",
        "drp.example-kyc.net\n    user: drp\n    key: keys/id_ed25519\n"
        "    public_ipv4: 203.0.113.10",
        "hosts.drp.public_ipv4",
        "expected a server other than production, got the same public_ipv4 (203.0.113.10)",
        id="drp-same-public-ip-as-production",
    ),
    pytest.param(
        "    address: 198.51.100.22\n",
        "    address: 198.51.100.21\n",
        "  backup_odd:\n    address: 198.51.100.21",
        "hosts.backup_odd.address",
        "expected a server other than backup_even, got the same address (198.51.100.21)",
        id="backup-servers-are-one-server",
    ),
    pytest.param(
        "public_ipv4: 203.0.113.10",
        "public_ipv4: 203.0.113.300",
        "203.0.113.300",
        "hosts.production.public_ipv4",
        "expected an IPv4 address such as 203.0.113.10, got '203.0.113.300'",
        id="bad-ipv4",
    ),
    pytest.param(
        "port: 2222",
        "port: 70000",
        "port: 70000",
        "hosts.production.port",
        "expected a number <= 65535, got 70000",
        id="port-out-of-range",
    ),
    pytest.param(
        "backups:\n",
        "  - {name: portal, maintenance: {production: {flag: m}, drp: {flag: m}}}\nbackups:\n",
        "- {name: portal",
        "environments[1].name",
        "expected a unique environment name, got 'portal' again (already environments[0])",
        id="duplicate-environment",
    ),
    pytest.param(
        "name: shop",
        "name: users",
        "name: users\n        engine: mysql",
        "environments[0].databases[1].name",
        "",  # not a duplicate: the engines differ
        id="same-name-other-engine-is-fine",
    ),
    pytest.param(
        "url: https://www.example-kyc.com/",
        "url: ftp://www.example-kyc.com/",
        "ftp://",
        "environments[0].url_checks[0].url",
        "expected an http:// or https:// URL such as https://www.example-kyc.com/, got "
        "'ftp://www.example-kyc.com/'",
        id="non-http-url-check",
    ),
    pytest.param(
        "provider: ovh",
        "provider: route53",
        "route53",
        "dns.provider",
        "expected one of 'ovh', 'rfc2136', got 'route53'",
        id="unknown-dns-provider",
    ),
    pytest.param(
        "endpoint: ovh-eu",
        "endpoint: ovh-emulator",
        "ovh-emulator",
        "dns.endpoint",
        "expected one of ovh-eu, ovh-ca, ovh-us, kimsufi-eu, kimsufi-ca, soyoustart-eu, "
        "soyoustart-ca, got 'ovh-emulator'; or give `url` to register it",
        id="unknown-ovh-endpoint",
    ),
    pytest.param(
        "{zone: example-kyc.com, name: www, type: A}",
        "{zone: example-kyc.com, name: www, type: AAAA}",
        "AAAA",
        "environments[0].dns_records[1].type",
        "an AAAA record needs hosts.production.public_ipv6; expected it set, or type 'A'",
        id="aaaa-without-ipv6",
    ),
    pytest.param(
        "{zone: example-kyc.com, name: www, type: A}",
        "{zone: example-kyc.com, name: www.example-kyc.com, type: A}",
        "name: www.example-kyc.com",
        "environments[0].dns_records[1].name",
        "expected a name relative to the zone, got 'www.example-kyc.com'; write 'www'",
        id="record-name-not-relative",
    ),
    pytest.param(
        "  area: /srv/backups\n",
        "  area: /srv/backups\n  area: /srv/other\n",
        "area: /srv/other",
        "backups.area",
        f"duplicate key 'area' (first at line {line_of(VALID, 'area: /srv/backups')}); expected "
        "each key once",
        id="duplicate-yaml-key",
    ),
    pytest.param(
        "Authorization: env:TICKETS_TOKEN",
        "Authorization: Bearer tok-123456",
        "Bearer tok-123456",
        "tickets[1].headers.Authorization",
        "expected a secret reference for a credential header, got an inline value (not shown)",
        id="inline-credential-header",
    ),
    pytest.param(
        "drp: {enable_command: maint on, disable_command: maint off}",
        "drp: {enable_command: maint on}",
        "drp: {enable_command",
        "environments[0].maintenance.drp.disable_command",
        "missing; expected the command that leaves maintenance, to pair with enable_command",
        id="maintenance-command-without-its-pair",
    ),
    pytest.param(
        "- path: /etc/portal",
        "- path: /etc/portal/../shadow",
        "/etc/portal/../shadow",
        "environments[0].configs[0].path",
        "without '..', got '/etc/portal/../shadow'",
        id="remote-path-with-dotdot",
    ),
    pytest.param(
        "  - type: file\n",
        "  - type: fax\n",
        "type: fax",
        "tickets[0].type",
        "expected one of 'file', 'smtp', 'webhook', got 'fax'",
        id="unknown-ticket-backend",
    ),
    pytest.param(
        "addresses: {production: 127.0.0.1}",
        "addresses: {staging: 127.0.0.1}",
        "addresses: {staging",
        "environments[0].databases[1].addresses.staging",
        "expected one of 'production', 'drp', got 'staging'",
        id="database-address-for-unknown-role",
    ),
    pytest.param(
        "    address: 198.51.100.21\n",
        "    address: root@198.51.100.21\n",
        "root@",
        "hosts.backup_even.address",
        "got 'root@198.51.100.21'; put the user name in `user`",
        id="user-in-ssh-address",
    ),
]


@pytest.mark.parametrize(("old", "new", "at", "field", "message"), BAD)
def test_each_mistake_is_reported_at_its_file_line_and_field(
    tmp_path: Path, old: str, new: str, at: str, field: str, message: str
) -> None:
    path, text = variant(tmp_path, old, new)
    problems = [str(p) for p in check_site(path)]

    if not message:  # a near-miss that must stay valid
        assert problems == []
        return
    expected_start = f"{path}:{line_of(text, at)}: {field}: "
    assert any(p.startswith(expected_start) and message in p for p in problems), problems


def test_duplicate_database_of_the_same_engine(tmp_path: Path) -> None:
    path, text = variant(
        tmp_path, "name: shop\n        engine: mysql", "name: users\n        engine: postgresql"
    )
    problems = [str(p) for p in check_site(path)]

    lines = [n for n, t in enumerate(text.splitlines(), start=1) if t == "      - name: users"]
    line = lines[1]
    assert problems == [
        f"{path}:{line}: environments[0].databases[1].name: expected a unique postgresql "
        "database name, got 'users' again (already environments[0].databases[0])"
    ]


def test_inline_secret_is_never_echoed(tmp_path: Path) -> None:
    path, _ = variant(
        tmp_path, "consumer_key: env:OVH_CONSUMER_KEY", "consumer_key: Zq9-very-secret"
    )
    with pytest.raises(ConfigError) as caught:
        load_site(path)
    assert "Zq9-very-secret" not in str(caught.value)
    assert "dns.consumer_key" in str(caught.value)


def test_inline_secret_is_not_echoed_by_direct_model_validation(tmp_path: Path) -> None:
    import yaml

    data = yaml.safe_load(VALID)
    data["environments"][0]["databases"][0]["password"] = "Zq9-very-secret"
    with pytest.raises(ValidationError) as caught:
        Site.model_validate(data)
    assert "Zq9-very-secret" not in str(caught.value)


def test_yaml_syntax_error_names_file_and_line(tmp_path: Path) -> None:
    path, text = variant(tmp_path, "  zones: [example-kyc.com]", "  zones: [example-kyc.com")
    problems = [str(p) for p in check_site(path)]

    assert len(problems) == 1
    line = line_of(text, "tickets:")  # where the parser notices the open bracket
    assert problems[0].startswith(f"{path}:{line}: invalid YAML: ")
    assert "expected valid YAML" in problems[0]


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.yaml"
    assert [str(p) for p in check_site(path)] == [
        f"{path}: file not found; expected an inventory YAML file (see config/site.example.yaml)"
    ]


@pytest.mark.parametrize(("content", "got"), [("", "an empty file"), ("- a\n- b\n", "a list")])
def test_top_level_must_be_a_mapping(tmp_path: Path, content: str, got: str) -> None:
    path = tmp_path / "site.yaml"
    path.write_text(content)
    assert [str(p) for p in check_site(path)] == [
        f"{path}:1: expected a mapping at the top level (name:, customer:, hosts:, ...), got {got}"
    ]


def test_every_problem_is_reported_sorted_by_line(tmp_path: Path) -> None:
    path, text = variant(tmp_path, "engine: mysql", "engine: mongodb")
    text = text.replace("port: 2222", "port: 0")
    text = text.replace("  area: /srv/backups", "  area: /srv/backups\n  retentoin: 3")
    path.write_text(text)

    with pytest.raises(ConfigError) as caught:
        load_site(path)
    fields = [p.field for p in caught.value.problems]
    assert fields == [
        "hosts.production.port",
        "environments[0].databases[1].engine",
        "backups.retentoin",
    ]
    assert [p.line for p in caught.value.problems] == sorted(p.line for p in caught.value.problems)
    assert "did you mean 'retention'?" in str(caught.value)
    assert str(caught.value).count("\n") == 2  # one problem per line


def test_a_site_serialises_to_references_only(tmp_path: Path) -> None:
    path, _ = variant(tmp_path, "name: kyc", "name: kyc")
    site = load_site(path)
    dumped = site.model_dump(mode="json")
    assert dumped["dns"]["application_secret"] == "env:OVH_APPLICATION_SECRET"
    assert pickle.loads(pickle.dumps(site)) == site


def test_a_duplicate_key_does_not_hide_other_problems(tmp_path: Path) -> None:
    path, text = variant(tmp_path, "  area: /srv/backups\n", "  area: /srv/backups\n  area: x\n")
    text = text.replace("engine: mysql", "engine: mongodb")
    path.write_text(text)

    assert [(p.line, p.field) for p in check_site(path)] == [
        (line_of(text, "mongodb"), "environments[0].databases[1].engine"),
        (line_of(text, "area: x"), "backups.area"),
    ]


# -- environment variables in local paths -----------------------------------------------------


@pytest.mark.parametrize(
    ("text", "environ", "expected"),
    [
        pytest.param(
            "${LAB}/keys/operator", {"LAB": "/srv/lab"}, "/srv/lab/keys/operator", id="set"
        ),
        pytest.param("${LAB:-/var/lib/x}/lab.env", {}, "/var/lib/x/lab.env", id="unset-default"),
        pytest.param("${LAB:-/var/lib/x}/lab.env", {"LAB": ""}, "/var/lib/x/lab.env", id="empty"),
        pytest.param("${LAB:-/var/lib/x}/k", {"LAB": "/srv/a b"}, "/srv/a b/k", id="set-default"),
        pytest.param("${A}/${B:-b}", {"A": "/a"}, "/a/b", id="two"),
        pytest.param("keys/operator", {}, "keys/operator", id="none"),
    ],
)
def test_expand_environment(text: str, environ: dict[str, str], expected: str) -> None:
    assert expand_environment(text, environ) == expected


def test_expand_environment_reads_the_process_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("DRP_TEST_KEYS", "/srv/keys")
    assert expand_environment("${DRP_TEST_KEYS}/id") == "/srv/keys/id"
    monkeypatch.delenv("DRP_TEST_KEYS")
    assert expand_environment("${DRP_TEST_KEYS:-/etc/keys}/id") == "/etc/keys/id"


@pytest.mark.parametrize("environ", [{}, {"LAB": ""}], ids=["unset", "empty"])
def test_a_variable_without_default_must_be_set(environ: dict[str, str]) -> None:
    with pytest.raises(ValueError) as caught:
        expand_environment("${LAB}/lab.env", environ)
    assert str(caught.value) == (
        "the environment variable LAB is not set (in '${LAB}/lab.env'); set it, or give a "
        "default: ${LAB:-/some/path}"
    )


@pytest.mark.parametrize("text", ["$LAB/lab.env", "/srv/co$t", "${lab dir}/x", "${LAB"])
def test_a_dollar_outside_braces_is_refused(text: str) -> None:
    with pytest.raises(ValueError, match=r"expected \$\{NAME\} or \$\{NAME:-default\} after '\$'"):
        expand_environment(text, {"LAB": "/srv/lab"})


def test_an_inventory_expands_variables_in_its_local_paths(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DRP_TEST_STATE", str(tmp_path / "state dir"))
    monkeypatch.delenv("DRP_TEST_UNSET", raising=False)
    path, _ = variant(
        tmp_path, "known_hosts: keys/known_hosts", "known_hosts: ${DRP_TEST_STATE}/known_hosts"
    )
    text = path.read_text()
    text = text.replace("key: keys/id_ed25519", "key: ${DRP_TEST_UNSET:-keys}/id_ed25519", 1)
    text = text.replace("path: tickets.jsonl", "path: ${DRP_TEST_STATE}/tickets.jsonl")
    path.write_text(text)

    site = load_site(path)

    assert site.known_hosts == tmp_path / "state dir" / "known_hosts"
    # the default is relative: to the inventory file, as any relative local path
    assert site.hosts.production.key_file == tmp_path / "keys" / "id_ed25519"
    assert site.tickets[0].path == tmp_path / "state dir" / "tickets.jsonl"


def test_an_unset_variable_in_a_local_path_is_reported_at_its_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("DRP_TEST_UNSET", raising=False)
    path, text = variant(
        tmp_path, "known_hosts: keys/known_hosts", "known_hosts: ${DRP_TEST_UNSET}/known_hosts"
    )
    assert [str(p) for p in check_site(path)] == [
        f"{path}:{line_of(text, 'DRP_TEST_UNSET')}: known_hosts: the environment variable "
        "DRP_TEST_UNSET is not set (in '${DRP_TEST_UNSET}/known_hosts'); set it, or give a "
        "default: ${DRP_TEST_UNSET:-/some/path}"
    ]


def test_the_lab_inventory_follows_drp_lab_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("DRP_LAB_DIR", raising=False)
    default = load_site(REPO / "config" / "lab.yaml")
    assert default.env_file == topology.DEFAULT_LAB_DIR / "lab.env"
    assert default.hosts.drp.key_file == topology.DEFAULT_LAB_DIR / "keys" / "operator"

    monkeypatch.setenv("DRP_LAB_DIR", str(tmp_path / "other lab"))
    moved = load_site(REPO / "config" / "lab.yaml")
    assert moved.env_file == tmp_path / "other lab" / "lab.env"
    assert moved.known_hosts == tmp_path / "other lab" / "keys" / "known_hosts"
    assert moved.tickets[0].path == tmp_path / "other lab" / "tickets.jsonl"
