"""`drp config check`: what an operator sees and the exit codes scripts rely on."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from flows.cli import app
from lab import topology

REPO = Path(__file__).resolve().parents[2]
runner = CliRunner()


@pytest.fixture
def lab_copy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """config/lab.yaml in a throwaway tree, its lab state directory (where it finds lab.env
    through ${DRP_LAB_DIR}) a throwaway one too, so lab.env is ours to write."""
    (tmp_path / "config").mkdir()
    path = tmp_path / "config" / "lab.yaml"
    shutil.copy(REPO / "config" / "lab.yaml", path)
    (tmp_path / ".lab").mkdir()
    monkeypatch.setenv("DRP_LAB_DIR", str(tmp_path / ".lab"))
    return path


def secret_values() -> dict[str, str]:
    return {
        name: f"value-{index}-{name.lower()}-zz9"
        for index, name in enumerate(topology.SECRET_NAMES)
    }


def check(*args: str | Path):
    return runner.invoke(app, ["config", "check", *map(str, args)])


def test_valid_inventory_prints_a_summary_and_exits_0() -> None:
    result = check(REPO / "config" / "lab.yaml")

    assert result.exit_code == 0, result.output
    out = result.stdout
    assert "valid: " in out and "site drp-lab" in out and "customer 1stKYC" in out
    for role, lab_host in zip(
        ("production", "backup_even", "backup_odd", "drp"), topology.HOSTS, strict=True
    ):
        assert role in out
        assert f"{lab_host.user}@{lab_host.address}:{topology.SSH_PORT}" in out
        assert lab_host.datacenter in out
    # environment app: 1 file tree, 1 config tree, 2 databases (1 user db), 2 records, 1 check
    assert [line.split() for line in out.splitlines() if line.strip().startswith("app ")] == [
        ["app", "1", "1", "2", "1", "2", "1"]
    ]
    assert "DNS: ovh, endpoint drp-lab (http://127.0.10.60:8080/1.0); zones: drp-lab.test" in out
    assert "Tickets: file " in out
    assert "Timeouts: commands 300 s, copies 86400 s (idle 600 s), databases 86400 s" in out
    assert "env:DRP_LAB_OVH_APPLICATION_SECRET" in out
    assert result.stderr == ""


def test_site_example_is_valid_and_shows_its_backends() -> None:
    result = check(REPO / "config" / "site.example.yaml")

    assert result.exit_code == 0, result.output
    assert "endpoint ovh-eu" in result.stdout
    assert "webhook https://tickets.example.net/api/v1/tickets" in result.stdout
    assert "prefect-secret:kyc-mysql-password" in result.stdout


def test_invalid_inventory_prints_every_problem_and_exits_1(lab_copy: Path) -> None:
    text = lab_copy.read_text()
    text = text.replace("engine: mysql", "engine: mongodb")
    text = text.replace("datacenter: lab-gra1", "datacenter: lab-lim1")
    lab_copy.write_text(text)

    result = check(lab_copy)

    assert result.exit_code == 1
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    engine_line = next(i for i, t in enumerate(text.splitlines(), 1) if "mongodb" in t)
    assert lines == [
        f"{lab_copy}:{engine_line}: environments[0].databases[1].engine: expected one of "
        "'postgresql', 'mysql', got 'mongodb'",
        f"{lab_copy}: 1 problem(s); nothing else was checked",
    ]

    # Once the structure is right, the plan's rules are checked.
    lab_copy.write_text(text.replace("engine: mongodb", "engine: mysql"))
    result = check(lab_copy)
    dc_line = next(i for i, t in enumerate(text.splitlines(), 1) if "lab-lim1" in t and i > 40)
    assert result.exit_code == 1
    assert result.stderr.splitlines()[0].startswith(
        f"{lab_copy}:{dc_line}: hosts.drp.datacenter: expected a datacenter other than "
        "production's, got 'lab-lim1'"
    )


def test_missing_file_exits_2(tmp_path: Path) -> None:
    result = check(tmp_path / "absent.yaml")
    assert result.exit_code == 2
    assert (
        result.stderr
        == f"{tmp_path / 'absent.yaml'}: does not exist; expected an inventory YAML file\n"
    )


def test_resolve_secrets_reads_the_env_file_and_never_prints_values(lab_copy: Path) -> None:
    values = secret_values()
    env_file = lab_copy.parent.parent / ".lab" / "lab.env"
    env_file.write_text("".join(f"{k}={v}\n" for k, v in values.items()))

    result = check(lab_copy, "--resolve-secrets")

    assert result.exit_code == 0, result.output
    for name in ("DRP_LAB_PG_PASSWORD", "DRP_LAB_OVH_CONSUMER_KEY"):
        assert f"resolves env:{name}" in result.stdout
    for value in values.values():
        assert value not in result.output


def test_unresolved_secret_is_named_and_exits_1(lab_copy: Path) -> None:
    values = secret_values()
    del values["DRP_LAB_MYSQL_PASSWORD"]
    env_file = lab_copy.parent.parent / ".lab" / "lab.env"
    env_file.write_text("".join(f"{k}={v}\n" for k, v in values.items()))

    result = check(lab_copy, "--resolve-secrets")

    assert result.exit_code == 1
    assert (
        "unresolved env:DRP_LAB_MYSQL_PASSWORD (environments[0].databases[1].password): "
        "secret env:DRP_LAB_MYSQL_PASSWORD is not set (or empty)"
    ) in result.stdout
    assert "1 secret reference(s) do not resolve" in result.stdout
    for value in values.values():
        assert value not in result.output


def test_secrets_in_the_process_environment_never_appear(
    lab_copy: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    values = secret_values()
    for name, value in values.items():
        monkeypatch.setenv(name, value)

    for args in ([lab_copy], [lab_copy, "--resolve-secrets"]):
        result = check(*args)
        assert result.exit_code == 0, result.output
        for value in values.values():
            assert value not in result.output


def test_inline_secret_in_the_file_is_refused_without_showing_it(lab_copy: Path) -> None:
    lab_copy.write_text(
        lab_copy.read_text().replace(
            "password: env:DRP_LAB_PG_PASSWORD", "password: Inline-Pw-4417"
        )
    )
    result = check(lab_copy)

    assert result.exit_code == 1
    assert "Inline-Pw-4417" not in result.output
    assert "environments[0].databases[0].password: expected a secret reference" in result.stderr
    assert "put it in an environment variable and write env:NAME" in result.stderr


def test_help_teaches_the_checks_and_exit_codes() -> None:
    result = runner.invoke(app, ["config", "check", "--help"])
    assert result.exit_code == 0
    text = " ".join(result.stdout.split())
    assert "--resolve-secrets" in text
    assert "file:line: field: what is wrong and what is expected" in text
    assert "exits 1" in text and "exits 2" in text


def test_an_unset_variable_in_a_local_path_is_one_clear_line(
    lab_copy: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("DRP_SITE_STATE", raising=False)
    text = lab_copy.read_text()
    old = "env_file: ${DRP_LAB_DIR:-/var/lib/drp-lab}/lab.env"
    assert text.count(old) == 1
    text = text.replace(old, "env_file: ${DRP_SITE_STATE}/lab.env")
    lab_copy.write_text(text)
    line = next(i for i, t in enumerate(text.splitlines(), 1) if "DRP_SITE_STATE" in t)

    result = check(lab_copy, "--resolve-secrets")

    assert result.exit_code == 1
    assert result.stdout == ""
    assert result.stderr.splitlines() == [
        f"{lab_copy}:{line}: env_file: the environment variable DRP_SITE_STATE is not set "
        "(in '${DRP_SITE_STATE}/lab.env'); set it, or give a default: "
        "${DRP_SITE_STATE:-/some/path}",
        f"{lab_copy}: 1 problem(s); nothing else was checked",
    ]
    assert "Traceback" not in result.output


def test_the_lab_inventory_finds_its_state_through_drp_lab_dir(lab_copy: Path) -> None:
    """lab_copy points DRP_LAB_DIR at a throwaway directory: the secrets come from there."""
    values = secret_values()
    state = lab_copy.parent.parent / ".lab"
    (state / "lab.env").write_text("".join(f"{k}={v}\n" for k, v in values.items()))

    result = check(lab_copy, "--resolve-secrets")

    assert result.exit_code == 0, result.output
    assert "resolves env:DRP_LAB_PG_PASSWORD" in result.stdout
    assert f"Tickets: file {state / 'tickets.jsonl'}" in result.stdout


def test_an_inventory_without_an_order_secret_is_valid_with_a_warning(lab_copy: Path) -> None:
    """Valid, but every resume would ask the customer again: the operator is told before."""
    text = lab_copy.read_text()
    lab_copy.write_text(text.replace("  secret: env:DRP_LAB_ORDER_SECRET\n", "", 1))
    result = check(lab_copy)
    assert result.exit_code == 0, result.output
    assert (
        "warning: orders.secret is not set: a stored order cannot be trusted, so every resume "
        "asks the customer for the order again; set orders.secret: env:DRP_ORDER_SECRET"
    ) in " ".join(result.stdout.split())
    assert "warning" not in check(REPO / "config" / "lab.yaml").stdout  # the lab's has one
