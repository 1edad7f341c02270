"""Bad input gets one clear line, a non-zero exit, no traceback, and changes nothing.

Each inventory case changes one line of config/lab.yaml and runs `drp config check` on it: the
only problem printed is `file:line: field: what is wrong, what is expected`. The CLI cases give
a command a value it must refuse before it connects anywhere or starts a flow run.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from flows.cli import app

REPO = Path(__file__).resolve().parents[2]
LAB_YAML = (REPO / "config" / "lab.yaml").read_text()
SLACK_TOKEN = "XqL9vT2mB7kR4wZ8nP3sY6dQ"
runner = CliRunner()

REMOTE = "expected a path on the host, absolute or relative to the SSH user's home"
LOCAL_CONTROL = (
    "expected a local path (relative to the inventory file), got a path with a control "
    "character (NUL byte or line break)"
)
FINITE = "expected a finite number (never .inf or .nan)"
URL = "expected an http:// or https:// URL"
WEBHOOK = "\n  - type: webhook\n    url: {url}\n"
TOO_DEEP = (
    "nested more than 32 levels deep; expected an inventory a few levels deep "
    "(see config/site.example.yaml)"
)


@dataclass(frozen=True)
class Case:
    """`old` (a line of lab.yaml, found once) becomes `new`; the problem is on `new`'s line."""

    old: str
    new: str
    field: str
    message: str
    line_of: str | None = None  # the text whose line the problem names, when not `new`


def dash(path: str, shown: str | None = None) -> str:
    return (
        f"{REMOTE}, not starting with '-', got {shown or path!r}: a command would take it for "
        "an option; give it as an absolute path"
    )


INVENTORY_CASES: dict[str, Case] = {
    # -- values that begin with '-' (point: `find -delete` would delete the home) --
    "tree path -delete": Case(
        "path: srv/app/www", "path: -delete", "environments[0].files[0].path", dash("-delete")
    ),
    "config path ./-rf": Case(
        "path: srv/app/config",
        "path: ./-rf",
        "environments[0].configs[0].path",
        dash("-rf"),
    ),
    "backup area -backups": Case(
        "area: backups #", "area: -backups #", "backups.area", dash("-backups")
    ),
    "maintenance flag -f": Case(
        "drp: {flag: srv/app/MAINTENANCE}",
        "drp: {flag: -f}",
        "environments[0].maintenance.drp.flag",
        dash("-f"),
    ),
    "environment name -app": Case(
        "  - name: app #",
        "  - name: -app #",
        "environments[0].name",
        "expected a slug: lower-case letters, digits and dashes, at most 63, e.g. 'app', got "
        "'-app'",
    ),
    "database name -x": Case(
        "      - name: app_users",
        "      - name: -x",
        "environments[0].databases[0].name",
        "expected a name of letters, digits and '_', not starting with a digit (at most 63), "
        "got '-x'",
    ),
    "ssh user -oProxyCommand": Case(
        "    user: drplab-drp",
        "    user: -oProxyCommand=sh",
        "hosts.drp.user",
        "expected a user name (lower-case letters, digits, '_' and '-'), got '-oProxyCommand=sh'",
    ),
    "ssh address -oProxyCommand": Case(
        "    address: 127.0.10.4",
        "    address: -oProxyCommand=sh",
        "hosts.drp.address",
        "expected a host name or an IP address (e.g. drp.example.net or 203.0.113.20), got "
        "'-oProxyCommand=sh'",
    ),
    # -- other remote paths --
    "tree path with a newline": Case(
        "path: srv/app/www",
        'path: "srv/app\\nwww"',
        "environments[0].files[0].path",
        f"{REMOTE}, got a path with a control character",
    ),
    "tree path with ..": Case(
        "path: srv/app/www",
        "path: srv/../../etc",
        "environments[0].files[0].path",
        f"{REMOTE}, without '..', got 'srv/../../etc'",
    ),
    "tree path ~": Case(
        "path: srv/app/www",
        "path: ~/www",
        "environments[0].files[0].path",
        f"{REMOTE}, got '~/www'; write it relative to the home, without '~'",
    ),
    "backup area /": Case(
        "area: backups #",
        "area: / #",
        "backups.area",
        f"{REMOTE}, got '/', a whole file system or home",
    ),
    # -- local paths --
    "known_hosts with a NUL byte": Case(
        "known_hosts: ${DRP_LAB_DIR:-/var/lib/drp-lab}/keys/known_hosts",
        'known_hosts: "/var/lib/drp-lab/keys/known\\0hosts"',
        "known_hosts",
        LOCAL_CONTROL,
    ),
    "key with a NUL byte": Case(
        "    key: ${DRP_LAB_DIR:-/var/lib/drp-lab}/keys/operator # private key",
        '    key: "keys/oper\\0ator" # private key',
        "hosts.production.key",
        LOCAL_CONTROL,
    ),
    "env_file with a line break": Case(
        "env_file: ${DRP_LAB_DIR:-/var/lib/drp-lab}/lab.env",
        'env_file: "lab\\n.env"',
        "env_file",
        LOCAL_CONTROL,
    ),
    # -- URLs and ports --
    "url check port 99999": Case(
        "  - url: http://www.drp-lab.test:8080/",
        "  - url: http://www.drp-lab.test:99999/",
        "environments[0].url_checks[0].url",
        f"{URL} with a port from 1 to 65535 (or none), got 'http://www.drp-lab.test:99999/'",
    ),
    "url check port not a number": Case(
        "  - url: http://www.drp-lab.test:8080/",
        "  - url: http://www.drp-lab.test:http/",
        "environments[0].url_checks[0].url",
        f"{URL} with a port from 1 to 65535 (or none), got 'http://www.drp-lab.test:http/'",
    ),
    "url check port 0": Case(
        "  - url: http://www.drp-lab.test:8080/",
        "  - url: http://www.drp-lab.test:0/",
        "environments[0].url_checks[0].url",
        f"{URL} with a port from 1 to 65535, got port 0",
    ),
    "url check with a space": Case(
        "  - url: http://www.drp-lab.test:8080/",
        "  - url: http://www.drp-lab.test:8080/a b",
        "environments[0].url_checks[0].url",
        f"{URL}, got one with a space or a control character",
    ),
    "ovh url port 99999": Case(
        "  url: http://127.0.10.60:8080/1.0",
        "  url: http://127.0.10.60:99999/1.0",
        "dns.url",
        f"{URL} with a port from 1 to 65535 (or none), got 'http://127.0.10.60:99999/***'",
    ),
    "webhook url port 99999 keeps its token hidden": Case(
        "    path: ${DRP_LAB_DIR:-/var/lib/drp-lab}/tickets.jsonl\n",
        "    path: ${DRP_LAB_DIR:-/var/lib/drp-lab}/tickets.jsonl\n"
        + WEBHOOK.format(url=f"https://hooks.slack.com:99999/services/T000/B000/{SLACK_TOKEN}"),
        "tickets[1].url",
        f"{URL} with a port from 1 to 65535 (or none), got "
        "'https://hooks.slack.com:99999/services/***'",
        line_of="    url: https://hooks.slack.com",
    ),
    "webhook url not http": Case(
        "    path: ${DRP_LAB_DIR:-/var/lib/drp-lab}/tickets.jsonl\n",
        "    path: ${DRP_LAB_DIR:-/var/lib/drp-lab}/tickets.jsonl\n"
        + WEBHOOK.format(url="ftp://tickets.example.net/drop"),
        "tickets[1].url",
        f"{URL} such as https://www.example-kyc.com/, got 'ftp://tickets.example.net/drop'",
        line_of="    url: ftp:",
    ),
    "webhook url malformed reference": Case(
        "    path: ${DRP_LAB_DIR:-/var/lib/drp-lab}/tickets.jsonl\n",
        "    path: ${DRP_LAB_DIR:-/var/lib/drp-lab}/tickets.jsonl\n"
        + WEBHOOK.format(url="env:slack-url"),
        "tickets[1].url",
        "malformed secret reference 'env:slack-url': after 'env:' expected upper-case letters, "
        "digits and underscores, not starting with a digit, e.g. env:OVH_APPLICATION_SECRET",
        line_of="    url: env:",
    ),
    "nameserver port 99999": Case(
        "    - {address: 127.0.10.53, port: 53}",
        "    - {address: 127.0.10.53, port: 99999}",
        "dns.nameservers[0].port",
        "expected a number <= 65535, got 99999",
    ),
    "ssh port 0": Case(
        "    port: 2222\n    user: drplab-drp",
        "    port: 0\n    user: drplab-drp",
        "hosts.drp.port",
        "expected a number >= 1, got 0",
    ),
    # -- waits --
    "url check .inf seconds": Case(
        "    max_seconds: 10",
        "    max_seconds: .inf",
        "environments[0].url_checks[0].max_seconds",
        f"{FINITE}, got inf",
    ),
    "url check .nan seconds": Case(
        "    max_seconds: 10",
        "    max_seconds: .nan",
        "environments[0].url_checks[0].max_seconds",
        f"{FINITE}, got nan",
    ),
    "url check negative seconds": Case(
        "    max_seconds: 10",
        "    max_seconds: -1",
        "environments[0].url_checks[0].max_seconds",
        "expected a number > 0, got -1",
    ),
    "url check more than a day": Case(
        "    max_seconds: 10",
        "    max_seconds: 86401",
        "environments[0].url_checks[0].max_seconds",
        "expected a number <= 86400, got 86401",
    ),
    "url check on a name the switch does not move": Case(
        "      - url: http://www.drp-lab.test:8080/",
        "      - url: http://status.example.net:8080/",
        "environments[0].url_checks[0].url",
        "expected a URL on a name the switch moves (drp-lab.test, www.drp-lab.test), got host "
        "'status.example.net': after the switch the service is checked through this name; add "
        "a dns_records entry for it, or check a switched name",
    ),
    "order codes without the order secret": Case(
        "  secret: env:DRP_LAB_ORDER_SECRET\n",
        "  codes:\n    contacts: [orders@1stkyc.test]\n",
        "orders.codes",
        "order codes need orders.secret (the codes are signed with it); set secret: "
        "env:DRP_ORDER_SECRET",
        line_of="  codes:",
    ),
    "order code contact not an address": Case(
        "  valid_hours: 24\n",
        "  valid_hours: 24\n  codes:\n    contacts: [the customer]\n",
        "orders.codes.contacts[0]",
        "expected an e-mail address such as ops@example.com, got 'the customer'",
        line_of="    contacts: [the customer]",
    ),
    "command timeout .inf": Case(
        "  valid_hours: 24\n",
        "  valid_hours: 24\ntimeouts:\n  command_seconds: .inf\n",
        "timeouts.command_seconds",
        f"{FINITE}, got inf",
        line_of="  command_seconds: .inf",
    ),
    "copy timeout more than a week": Case(
        "  valid_hours: 24\n",
        "  valid_hours: 24\ntimeouts:\n  copy_seconds: 604801\n",
        "timeouts.copy_seconds",
        "expected a number <= 604800, got 604801",
        line_of="  copy_seconds: 604801",
    ),
    "copy idle timeout zero": Case(
        "  valid_hours: 24\n",
        "  valid_hours: 24\ntimeouts:\n  copy_idle_seconds: 0\n",
        "timeouts.copy_idle_seconds",
        "expected a number > 0, got 0",
        line_of="  copy_idle_seconds: 0",
    ),
    "webhook .inf timeout": Case(
        "    path: ${DRP_LAB_DIR:-/var/lib/drp-lab}/tickets.jsonl\n",
        "    path: ${DRP_LAB_DIR:-/var/lib/drp-lab}/tickets.jsonl\n"
        + WEBHOOK.format(url="https://tickets.example.net/api")
        + "    timeout_seconds: .inf\n",
        "tickets[1].timeout_seconds",
        f"{FINITE}, got inf",
        line_of="    timeout_seconds: .inf",
    ),
    "webhook -.inf timeout": Case(
        "    path: ${DRP_LAB_DIR:-/var/lib/drp-lab}/tickets.jsonl\n",
        "    path: ${DRP_LAB_DIR:-/var/lib/drp-lab}/tickets.jsonl\n"
        + WEBHOOK.format(url="https://tickets.example.net/api")
        + "    timeout_seconds: -.inf\n",
        "tickets[1].timeout_seconds",
        f"{FINITE}, got -inf",
        line_of="    timeout_seconds: -.inf",
    ),
    # -- shape --
    "a mapping 40 levels deep": Case(
        "customer: 1stKYC # who orders the DRP activation",
        "customer: " + "{a: " * 40 + "1" + "}" * 40,
        "",
        TOO_DEEP,
    ),
    "retention 0": Case(
        "  retention: 7 #", "  retention: 0 #", "backups.retention", "expected a number >= 1, got 0"
    ),
}


def check(path: Path) -> Result:
    return runner.invoke(app, ["config", "check", str(path)])


def one_line(result: Result, exit_code: int) -> str:
    """The command failed with `exit_code` and one line of error (plus the count line)."""
    output = result.stdout + result.stderr
    assert result.exit_code == exit_code, output
    assert "Traceback" not in output, output
    assert result.exception is None or isinstance(result.exception, SystemExit), output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    return lines[0] if lines else result.stdout.strip()


def files_in(directory: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(directory)): p.read_bytes() for p in directory.rglob("*") if p.is_file()
    }


@pytest.mark.parametrize("name", list(INVENTORY_CASES))
def test_inventory_mistake_is_one_line_at_its_file_line_and_field(
    name: str, tmp_path: Path
) -> None:
    case = INVENTORY_CASES[name]
    assert LAB_YAML.count(case.old) == 1, f"{case.old!r} is not once in lab.yaml"
    text = LAB_YAML.replace(case.old, case.new)
    path = tmp_path / "lab.yaml"
    path.write_text(text)
    before = files_in(tmp_path)
    marker = case.line_of or case.new.lstrip("\n")
    line = text[: text.index(marker)].count("\n") + 1

    result = check(path)

    problem = one_line(result, 1)
    field = f" {case.field}:" if case.field else ""
    assert problem == f"{path}:{line}:{field} {case.message}"
    assert result.stderr.splitlines() == [
        problem,
        f"{path}: 1 problem(s); nothing else was checked",
    ]
    assert "Traceback" not in result.output
    assert SLACK_TOKEN not in result.output
    assert files_in(tmp_path) == before  # nothing written


def test_yaml_nested_5000_levels_deep_is_one_line(tmp_path: Path) -> None:
    path = tmp_path / "deep.yaml"
    path.write_text("name: " + "[" * 5000 + "]" * 5000 + "\n")

    result = check(path)

    assert one_line(result, 1) == f"{path}:1: {TOO_DEEP}"
    assert "RecursionError" not in result.output


def test_yaml_nested_5000_mappings_deep_is_one_line(tmp_path: Path) -> None:
    path = tmp_path / "deep.yaml"
    path.write_text("".join(f"{' ' * i}k:\n" for i in range(5000)) + " " * 5000 + "k: 1\n")

    result = check(path)

    assert one_line(result, 1) == f"{path}:33: {TOO_DEEP}"


# -- the CLI -----------------------------------------------------------------------------------


@pytest.fixture
def lab_yaml(tmp_path: Path) -> Path:
    path = tmp_path / "lab.yaml"
    shutil.copy(REPO / "config" / "lab.yaml", path)
    return path


BAD_ID = (
    "is not valid: use 4 to 64 lowercase letters, digits and dashes, starting with a letter "
    "(for example activate-20261129-0215-7f3a)"
)


@pytest.mark.parametrize(
    ("command", "operation_id"),
    [
        ("drill", "drill-20261129-0215-7f3a\n"),
        ("activate", "activate-20261129-0215-7f3a\n"),
        ("drill", "Drill-Upper"),
        ("activate", "-rf"),
        ("drill", "ab"),
    ],
)
def test_bad_operation_id_is_one_line_before_anything_starts(
    command: str, operation_id: str, lab_yaml: Path
) -> None:
    result = runner.invoke(app, [command, "-c", str(lab_yaml), "--operation-id", operation_id])

    assert one_line(result, 1) == f"error: operation id {operation_id!r} {BAD_ID}"
    assert len(result.stderr.strip().splitlines()) == 1
    assert not (lab_yaml.parent / "reports").exists()  # no report, no flow run


def test_config_check_of_a_missing_file_exits_2(tmp_path: Path) -> None:
    result = check(tmp_path / "nope.yaml")
    assert one_line(result, 2) == (
        f"{tmp_path / 'nope.yaml'}: does not exist; expected an inventory YAML file"
    )


def test_config_check_of_a_directory_exits_2(tmp_path: Path) -> None:
    result = check(tmp_path)
    assert one_line(result, 2) == f"{tmp_path}: is a directory; expected an inventory YAML file"


def test_backup_list_of_an_unknown_environment_is_refused_before_connecting(
    lab_yaml: Path,
) -> None:
    result = runner.invoke(app, ["backup", "list", "-c", str(lab_yaml), "-e", "nosuch"])
    assert result.exit_code == 2, result.output
    assert result.stdout.strip() == "no environment named 'nosuch'; expected one of app"


def test_drill_with_an_inventory_path_starting_with_a_dash_starts_nothing(lab_yaml: Path) -> None:
    lab_yaml.write_text(LAB_YAML.replace("path: srv/app/www", "path: -delete"))

    result = runner.invoke(app, ["drill", "-c", str(lab_yaml)])

    line = LAB_YAML.split("path: srv/app/www")[0].count("\n") + 1
    assert one_line(result, 1) == (
        f"error: {lab_yaml}:{line}: environments[0].files[0].path: {dash('-delete')}"
    )
    assert not (lab_yaml.parent / "reports").exists()


def test_backup_list_with_a_bad_inventory_is_one_line(lab_yaml: Path) -> None:
    lab_yaml.write_text(LAB_YAML.replace("area: backups #", "area: -backups #"))

    result = runner.invoke(app, ["backup", "list", "-c", str(lab_yaml)])

    line = LAB_YAML.split("area: backups #")[0].count("\n") + 1
    assert result.exit_code == 2, result.output
    assert result.stdout.strip() == f"{lab_yaml}:{line}: backups.area: {dash('-backups')}"


@pytest.mark.parametrize(
    ("command", "options", "message"),
    [
        (
            "drill",
            ["--order-by", "X", "--reference", "DRILL-1"],
            "the name of the person who orders, 'X', is too short (--order-by): give their "
            "full name",
        ),
        (
            "activate",
            ["--order-by", "  ", "--reference", "INC-1", "--acknowledge-data-loss"],
            "the name of the person who orders is missing (--order-by)",
        ),
        (
            "return",
            ["--order-by", "Jane Doe", "--reference", " "],
            "the order reference is missing (--reference)",
        ),
        (
            "drill",
            ["--order-by", "Jane Doe"],
            "--order-by needs --reference (the order's reference)",
        ),
    ],
)
def test_an_order_the_gate_would_refuse_is_refused_before_anything_starts(
    command: str, options: list[str], message: str, lab_yaml: Path
) -> None:
    """Refused at the gate, it would leave the run waiting there, holding the site."""
    result = runner.invoke(app, [command, "-c", str(lab_yaml), *options])

    assert one_line(result, 2) == f"error: {message}"
    assert not (lab_yaml.parent / "reports").exists()  # no report, no flow run
