"""The inventory's `drift:` section: the built-ins when absent, one clear line per mistake."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from flows.cli import app
from runbooks.inventory import load_site

REPO = Path(__file__).resolve().parents[2]
LAB_YAML = (REPO / "config" / "lab.yaml").read_text()
BASE = LAB_YAML[: LAB_YAML.index("\n# Drift between production")] + "\n"
runner = CliRunner()


def test_an_inventory_without_drift_is_checked_for_the_built_ins(tmp_path: Path) -> None:
    path = tmp_path / "site.yaml"
    path.write_text(BASE)
    drift = load_site(path).drift
    assert drift.versions == {}
    assert drift.ignore == []
    assert drift.loopback is True
    assert drift.command_seconds == 30


def test_the_lab_compares_its_own_versions_and_not_its_shared_loopback() -> None:
    drift = load_site(REPO / "config" / "lab.yaml").drift
    assert drift.versions == {
        "web server": "python3 --version",
        "rsync": "rsync --version | head -n 1",
    }
    assert drift.loopback is False


def test_versions_and_ignore_patterns_are_kept_as_written(tmp_path: Path) -> None:
    path = tmp_path / "site.yaml"
    path.write_text(
        BASE + "drift:\n  versions: {web server: nginx -v, php: 'php -v'}\n"
        "  ignore: ['listening tcp/25', 'config  srv/app/config/cache/*']\n"
    )
    drift = load_site(path).drift
    assert drift.versions == {"web server": "nginx -v", "php": "php -v"}
    assert drift.ignore == ["listening tcp/25", "config srv/app/config/cache/*"]


CASES = {
    "versions as a list": (
        "  versions: [nginx -v]",
        "drift.versions",
        "expected a mapping (indented 'key: value' lines), got a list",
    ),
    "empty command": (
        "  versions: {php: ''}",
        "drift.versions.php",
        "expected a shell command run on both hosts, such as 'nginx -v', got an empty value",
    ),
    "command on two lines": (
        '  versions: {php: "php -v\\nrm -rf www"}',
        "drift.versions.php",
        "expected a shell command on one line, got a line break or a NUL byte",
    ),
    "name with a slash": (
        "  versions: {'web/server': nginx -v}",
        "drift.versions['web/server']",
        "expected a name such as 'web server' or php (letters, digits, spaces, '_.+-', at most "
        "40), got 'web/server'",
    ),
    "ignore pattern of no category": (
        "  ignore: ['listen tcp/25']",
        "drift.ignore[0]",
        "expected a pattern of the items to leave out, starting with one of os, version, "
        "database, listening, crontab, config, disk or '*' (e.g. 'listening tcp/25', 'config "
        "srv/app/config/cache/*'), got 'listen tcp/25'",
    ),
    "misspelt field": (
        "  verions: {php: php -v}",
        "drift.verions",
        "unknown field 'verions' (did you mean 'versions'?); expected one of: versions, ignore, "
        "loopback, command_seconds",
    ),
    "loopback not a boolean": (
        "  loopback: sometimes",
        "drift.loopback",
        "expected true or false, got 'sometimes'",
    ),
    "command time zero": (
        "  command_seconds: 0",
        "drift.command_seconds",
        "expected a number > 0, got 0",
    ),
}


@pytest.mark.parametrize("name", list(CASES))
def test_a_drift_mistake_is_one_line_at_its_file_line_and_field(name: str, tmp_path: Path) -> None:
    added, field, message = CASES[name]
    text = BASE + "drift:\n" + added + "\n"
    path = tmp_path / "site.yaml"
    path.write_text(text)
    line = text[: text.rindex(added)].count("\n") + 1

    result = runner.invoke(app, ["config", "check", str(path)])

    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    assert result.stderr.splitlines() == [
        f"{path}:{line}: {field}: {message}",
        f"{path}: 1 problem(s); nothing else was checked",
    ]


def test_drp_drift_on_a_bad_inventory_is_one_line_exit_2_and_connects_nowhere(
    tmp_path: Path,
) -> None:
    text = BASE + "drift:\n  ignore: ['listen tcp/25']\n"
    path = tmp_path / "site.yaml"
    path.write_text(text)
    line = text.count("\n")

    result = runner.invoke(app, ["drift", "-c", str(path)])

    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    assert result.stdout == ""
    problems = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(problems) == 1
    assert problems[0].startswith(f"error: {path}:{line}: drift.ignore[0]: expected a pattern")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["site.yaml"]  # nothing written
