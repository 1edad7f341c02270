"""A webhook URL may hold a token (Slack, Teams): it may be a secret reference, and wherever a
URL is shown (`drp config check`, the plan, the order's brief, a step's reason, the report)
its token is masked."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from flows.cli import app
from providers.tickets import masked_url
from runbooks.common_steps import SendTicket
from runbooks.context import OperationContext
from runbooks.engine import Runbook
from runbooks.inventory import WebhookTickets, load_site
from runbooks.render import plan_markdown
from runbooks.secrets import SecretRef
from runbooks.services import ticket_backends

REPO = Path(__file__).resolve().parents[2]
TOKEN = "XqL9vT2mB7kR4wZ8nP3sY6dQ"
SLACK = f"https://hooks.slack.com/services/T0AB12CD3/B0EF45GH6/{TOKEN}"
TEAMS = (
    "https://contoso.webhook.office.com/webhookb2/0b5f7c1e-aaaa-bbbb-cccc-1234567890ab@"
    f"72f988bf-86f1-41af-91ab-2d7cd011db47/IncomingWebhook/{TOKEN}/"
    "5e1f2a3b-dddd-eeee-ffff-0987654321fe"
)
OPERATION = "drill-20261129-0215-7f3a"
runner = CliRunner()


def inventory(tmp_path: Path, url: str) -> Path:
    text = (REPO / "config" / "lab.yaml").read_text()
    webhook = f"tickets:\n  - type: webhook\n    url: {url}\n"
    assert text.count("\ntickets:\n") == 1
    text = text.replace("\ntickets:\n", "\n" + webhook, 1)  # the first ticket backend
    path = tmp_path / "lab.yaml"
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        (SLACK, "https://hooks.slack.com/services/***"),
        (TEAMS, "https://contoso.webhook.office.com/***"),
        (f"https://discord.com/api/webhooks/1234567890/{TOKEN}", "https://discord.com/api/webhooks/***"),
        ("https://bot:pw@desk.example.org:8443/api/v1/tickets?token=abc", "https://desk.example.org:8443/api/v1/tickets?token=***"),
        (f"https://hooks.example.net/{TOKEN}", "https://hooks.example.net/***"),
    ],
)  # fmt: skip
def test_masked_url_cuts_the_path_where_ids_start(url: str, shown: str) -> None:
    assert masked_url(url) == shown


def test_config_check_shows_an_inline_webhook_url_masked(tmp_path: Path) -> None:
    result = runner.invoke(app, ["config", "check", str(inventory(tmp_path, SLACK))])

    assert result.exit_code == 0, result.output
    assert "webhook https://hooks.slack.com/services/***" in result.stdout
    assert TOKEN not in result.output and "B0EF45GH6" not in result.output


def test_webhook_url_as_a_secret_reference(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DRP_TEST_SLACK_URL", SLACK)
    path = inventory(tmp_path, "env:DRP_TEST_SLACK_URL")

    site = load_site(path)
    result = runner.invoke(app, ["config", "check", str(path), "--resolve-secrets"])

    [webhook] = [t for t in site.tickets if isinstance(t, WebhookTickets)]
    assert webhook.url == SecretRef("env", "DRP_TEST_SLACK_URL")
    assert "webhook env:DRP_TEST_SLACK_URL" in result.stdout
    assert "resolves env:DRP_TEST_SLACK_URL" in result.stdout
    assert TOKEN not in result.output
    monkeypatch.setenv("DRP_REPORTS_DIR", str(tmp_path / "reports"))
    [backend] = [b for b in ticket_backends(site) if b.kind == "webhook"]
    assert backend.target == "*** (URL kept secret)"
    assert backend._url.reveal() == SLACK  # type: ignore[union-attr]  # what is POSTed


@pytest.mark.parametrize("url", [SLACK, TEAMS])
def test_plan_brief_and_step_reason_never_show_the_token(
    url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DRP_REPORTS_DIR", str(tmp_path / "reports"))
    site = load_site(inventory(tmp_path, url))
    ctx = OperationContext(site, OPERATION, "drill")
    step = SendTicket(ctx, "drill-finished", "Drill finished", "RTO 4 min")

    plan = Runbook("drill", [], [step]).plan(OPERATION, site.name)
    shown = [plan.to_json(), plan_markdown(plan, "Brief"), step.check().reason]

    assert masked_url(url) in shown[0] and masked_url(url) in shown[1]
    assert masked_url(url) in shown[2]
    assert all(TOKEN not in text for text in shown), shown
