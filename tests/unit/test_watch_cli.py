"""`drp watch` refuses a bad option or inventory on one line, before it connects anywhere."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from flows.cli import app
from flows.cli_watch import parse_listen

REPO = Path(__file__).resolve().parents[2]
LAB = str(REPO / "config" / "lab.yaml")
runner = CliRunner()


def error_line(args: list[str], code: int) -> str:
    result = runner.invoke(app, ["watch", *args])
    assert result.exit_code == code, result.output
    assert "Traceback" not in result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    return lines[0]


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("9108", "--serve expects ADDRESS:PORT such as 127.0.0.1:9108 (or [::1]:9108), got '9108'"),
        (
            "127.0.0.1:99999",
            "--serve expects ADDRESS:PORT such as 127.0.0.1:9108 (or [::1]:9108), got "
            "'127.0.0.1:99999'",
        ),
        (
            "metrics.example:9108",
            "--serve expects an IP address to listen on, such as 127.0.0.1 or 0.0.0.0, got "
            "'metrics.example'",
        ),
    ],
)
def test_a_bad_listen_address_is_one_line(value: str, message: str) -> None:
    assert error_line(["-c", LAB, "--once", "--serve", value], 2) == f"error: {message}"


def test_listen_addresses() -> None:
    assert parse_listen("127.0.0.1:9108") == ("127.0.0.1", 9108)
    assert parse_listen("[::1]:9108") == ("::1", 9108)
    assert parse_listen("0.0.0.0:9108") == ("0.0.0.0", 9108)


def test_a_textfile_in_a_directory_that_does_not_exist(tmp_path: Path) -> None:
    path = tmp_path / "no-such-dir" / "drp.prom"
    assert error_line(["-c", LAB, "--once", "--textfile", str(path)], 2) == (
        f"error: --textfile {path}: the directory {path.parent} does not exist; give a file in "
        "node_exporter's textfile directory"
    )


def test_an_inventory_that_does_not_exist(tmp_path: Path) -> None:
    missing = tmp_path / "site.yaml"
    line = error_line(["-c", str(missing), "--once"], 1)
    assert line.startswith(f"error: {missing}: ") and "file not found" in line


def test_the_help_says_what_is_watched_and_what_it_sends() -> None:
    result = runner.invoke(app, ["watch", "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    for words in ("Sends alert tickets", "--no-alerts only looks", "--serve", "--textfile"):
        assert words in result.output
