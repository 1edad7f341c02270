"""The order given in the lab's Prefect UI, as a person gives it: headless Chromium (the Debian
`chromium` package, driven by Playwright; no browser is downloaded) on the UI of the lab's own
Prefect server (`drp lab up` starts it, behind basic auth), for the drill deployment served
against that server as a worker runs it.

The person logs in to the UI with the auth string of the lab's `lab.env` (config/lab.yaml's
env_file, where drp finds the server too), starts the deployment with "Run", opens the suspended
run, reads the brief under "Resume", sends an answer without the data-loss acknowledgement and
sees why it was not taken (the run's state message, the reopened form's first line), then
orders, and finds the report among the run's artifacts. The UI is the one Prefect links a run to
(`/runs/flow-run/ID`); the newer UI (`/v2/`, where the UI's home page leads) shows the reopened
form too.

The lab's server is shared and keeps what it is given: the deployment has a name of its own
(removed at the end, with its runner stopped), the run is found by its id, and a run left
waiting by a failure is cancelled.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import flow_helpers
import pytest
from flow_helpers import (
    LAB_CONFIG,
    ensure_backups,
    knot_answers,
    run_state,
    serving,
    suspended,
    wait_for,
)

from flows import orchestrator
from lab import mail_sink
from runbooks.inventory import Site, load_site

pytestmark = [pytest.mark.lab, pytest.mark.prefect, pytest.mark.browser]

CHROMIUM = "/usr/bin/chromium"  # the Debian package, installed by scripts/setup.sh
NAME = f"browser-test-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}"  # its own, on a shared server
SERVE = f"""
from flows.drill import drp_drill
drp_drill.serve(name="{NAME}", limit=1)
"""
NOT_TAKEN = "The previous answer was not taken: the data loss is not acknowledged"
TIMEOUT_MS = 30_000
OOPS = "Something went wrong"
CODE = re.compile(r"Order code: ([A-Z2-7]{4}-[A-Z2-7]{4})")


# -- fixtures ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class LabServer:
    """The lab's Prefect server, as drp finds it: the PREFECT_* lines of the inventory's
    env_file. `settings` holds the auth string: never printed, never in a message."""

    api_url: str
    ui_url: str
    settings: dict[str, str]


@pytest.fixture(scope="module")
def site(lab) -> Site:
    loaded = load_site(LAB_CONFIG)
    ensure_backups(loaded)
    return loaded


@pytest.fixture(scope="module")
def lab_server(site: Site) -> Iterator[LabServer]:
    """The lab's server, used by this process too (Prefect's client, with the auth string)."""
    from prefect.settings import PREFECT_API_AUTH_STRING, PREFECT_API_URL, temporary_settings

    settings: dict[str, str] = {}
    orchestrator.apply_inventory(site, settings)
    url, auth = settings.get(orchestrator.URL), settings.get(orchestrator.AUTH)
    assert url and auth, f"{site.env_file} names no Prefect server with its auth: `drp lab up`"
    with temporary_settings(updates={PREFECT_API_URL: url, PREFECT_API_AUTH_STRING: auth}):
        yield LabServer(url, url.removesuffix("/api"), settings)


@pytest.fixture(scope="module")
def reports(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("reports")


@pytest.fixture(scope="module")
def runner(
    site: Site, lab_server: LabServer, reports: Path, tmp_path_factory
) -> Iterator[tuple[subprocess.Popen[bytes], Path]]:
    """The drill deployment, served against the lab's server by a runner process (as a worker
    would run it); stopped at the end, and the deployment removed from the server."""
    env = {
        **os.environ,
        **lab_server.settings,
        "PREFECT_RUNNER_POLL_FREQUENCY": "1",
        "DRP_CONFIG": str(LAB_CONFIG),
        "DRP_REPORTS_DIR": str(reports),
    }
    log = tmp_path_factory.mktemp("runner") / "runner.log"
    try:
        with serving(SERVE, env, log, f"drp-drill/{NAME}") as process:
            yield process, log
    finally:
        _forget_deployment(f"drp-drill/{NAME}")


@pytest.fixture(scope="module")
def deployment_id(runner: tuple[subprocess.Popen[bytes], Path]) -> str:
    return flow_helpers.deployment_id(f"drp-drill/{NAME}", *runner)


@pytest.fixture(scope="module")
def page(lab_server: LabServer, shots: Path) -> Iterator[Any]:
    """A page of headless Chromium that reaches the lab's Prefect server only (its UI would call
    outside hosts: its analytics), logged in to its UI."""
    if not os.access(CHROMIUM, os.X_OK):
        pytest.fail(f"{CHROMIUM} is missing: `bash scripts/setup.sh` installs the chromium package")
    from playwright.sync_api import sync_playwright

    server = urlsplit(lab_server.ui_url).hostname
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM,
            headless=True,
            # --no-sandbox: Chromium's sandbox refuses to run as root. No other host than the
            # server's is resolved, so nothing leaves the machine.
            args=["--no-sandbox", f"--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE {server}"],
        )
        try:
            tab = browser.new_page(viewport={"width": 1400, "height": 1000})
            tab.set_default_timeout(TIMEOUT_MS)
            _log_in(tab, lab_server, shots)
            yield tab
        finally:
            browser.close()


@pytest.fixture(scope="module")
def shots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Screenshots of each moment (left in pytest's temporary directory)."""
    return tmp_path_factory.mktemp("screenshots")


@pytest.fixture
def run_ids() -> Iterator[list[str]]:
    """The runs this test started: one still waiting at the end (a failure) is cancelled, so
    that nobody finds it open on the shared server later."""
    started: list[str] = []
    yield started
    from prefect.client.orchestration import get_client
    from prefect.states import Cancelled

    with get_client(sync_client=True) as client:
        for run_id in started:
            state = client.read_flow_run(run_id).state
            if state is not None and not state.is_final():
                client.set_flow_run_state(
                    run_id, Cancelled(message="cancelled by the browser test"), force=True
                )


# -- helpers -----------------------------------------------------------------------------------
def _log_in(page: Any, server: LabServer, shots: Path) -> None:
    """What a person does on the UI's login page: types the whole auth string as the password.

    A failure here says where it stopped and leaves a screenshot (the field shows dots), never
    the string: Playwright's own error is not passed on."""
    from playwright.sync_api import Error, expect

    try:
        page.goto(server.ui_url)  # the home page leads to the login page
        page.wait_for_url(re.compile(r".*/login\b.*"))
        page.get_by_placeholder("admin:pass").fill(server.settings[orchestrator.AUTH])
        page.get_by_role("button", name="Login").click()
        expect(page).not_to_have_url(re.compile(r".*/login\b.*"))
    except (Error, AssertionError):
        page.screenshot(path=str(shots / "login-failed.png"))
        raise AssertionError(
            f"could not log in to the lab's Prefect UI at {server.ui_url} with lab.env's "
            f"{orchestrator.AUTH} as the password; screenshot {shots / 'login-failed.png'}"
        ) from None


def _forget_deployment(name: str) -> None:
    """Removes the test's deployment from the lab's server (its runs stay)."""
    from prefect.client.orchestration import get_client
    from prefect.exceptions import ObjectNotFound

    with get_client(sync_client=True) as client, contextlib.suppress(ObjectNotFound):
        client.delete_deployment(client.read_deployment_by_name(name).id)


def _order_code(site: Site, operation_id: str) -> str:
    """The order code sent for this operation, read where the customer gets it (the lab's mail
    sink); "" when the inventory asks for no code for drills."""
    codes = site.orders.codes
    if codes is None or not codes.drills:
        return ""
    contact = codes.contacts[0]
    deadline = time.monotonic() + 60
    while True:
        sent = [
            m for m in mail_sink.messages()
            if m["X-DRP-Operation"] == operation_id and contact in m["To"]
        ]  # fmt: skip
        if sent:
            found = CODE.search(sent[-1].get_content())
            assert found, f"no order code in the mail to {contact} for {operation_id}"
            return found[1]
        assert time.monotonic() < deadline, f"no order code mailed to {contact} for {operation_id}"
        time.sleep(0.3)


def _field(dialog: Any, label: str) -> Any:
    """A field of the order form, found by its label as the person reads it."""
    return dialog.locator(".schema-form-property").filter(
        has=dialog.page.locator(
            ".schema-form-property__label", has_text=re.compile("^" + re.escape(label))
        )
    )


def _open_form(page: Any) -> Any:
    page.get_by_role("button", name="Resume").click()
    dialog = page.get_by_role("dialog")
    dialog.get_by_text("will be lost").first.wait_for()  # the brief, then the field too
    return dialog


def _until_said(page: Any, act: Any, said: str, what: str, tries: int = 3) -> None:
    """`act()`, until the UI says `said` (a toast); again when it says it went wrong instead.

    The Prefect server keeps its state in SQLite, which now and then refuses a write while
    another is under way ("database is locked"): the API answers 503, nothing is changed, and
    the UI says "Oops. Something went wrong.". A person tries again; so does this (Prefect's
    own client retries such answers by itself)."""
    from playwright.sync_api import expect

    ok, oops = page.get_by_text(said), page.get_by_text(OOPS)
    for attempt in range(1, tries + 1):
        act()
        expect(ok.or_(oops).first).to_be_visible()
        if ok.first.is_visible():
            return
        print(f"{what}: the UI said {OOPS!r} (attempt {attempt}); again")
        page.reload()  # the toast stays until closed; a reload closes it (and any dialog)
    raise AssertionError(f"{what}: the UI said {OOPS!r} {tries} times")


def _answer(page: Any, *, acknowledged: bool, code: str = "") -> Any:
    """What the person does in the Resume dialog (opened if it is not): name, reference, the
    acknowledgement as asked, the order code if one is given, Submit."""

    def act() -> None:
        dialog = page.get_by_role("dialog")
        if not dialog.is_visible():
            dialog = _open_form(page)
        _field(dialog, "Ordered by").locator("textarea").fill("Jane Doe")
        _field(dialog, "Order reference").locator("textarea").fill("1STKYC-91")
        switch = _field(dialog, "Data loss acknowledged").get_by_role("switch")
        if (switch.get_attribute("aria-checked") == "true") != acknowledged:
            switch.click()
        if code:
            _field(dialog, "Order code").locator("textarea, input").first.fill(code)
        dialog.get_by_role("button", name="Submit").click()

    return act


def _form_first_line(dialog: Any) -> str:
    """What the form's text says first (the brief rendered above the fields)."""
    return str(dialog.locator("article.markdown-renderer").first.locator(":scope > *").first
               .inner_text())  # fmt: skip


def _at_gate_report(reports: Path) -> dict[str, Any]:
    found = [json.loads(p.read_text()) for p in reports.glob("*.json")]
    assert len(found) == 1, [r["operation_id"] for r in found]
    return found[0]


# -- the test ----------------------------------------------------------------------------------
def test_order_given_in_the_lab_s_prefect_ui(
    site: Site,
    lab_server: LabServer,
    runner: Any,
    page: Any,
    deployment_id: str,
    reports: Path,
    shots: Path,
    run_ids: list[str],
) -> None:
    try:
        _order_in_the_ui(site, deployment_id, lab_server.ui_url, reports, page, shots, run_ids)
    except BaseException:
        page.screenshot(path=str(shots / "failed.png"))
        print(f"failed at {page.url}; screenshot {shots / 'failed.png'}")
        raise


def _order_in_the_ui(
    site: Site,
    deployment_id: str,
    ui: str,
    reports: Path,
    page: Any,
    shots: Path,
    run_ids: list[str],
) -> None:
    from playwright.sync_api import expect

    from flows import gate

    dns_before = knot_answers()
    started = time.monotonic()
    moments: dict[str, float] = {}

    def moment(name: str) -> None:
        moments[name] = round(time.monotonic() - started, 1)
        page.screenshot(path=str(shots / f"{len(moments):02d}-{name}.png"))

    # "Run" on the deployment, no parameters ("Quick run"), then the run's page.
    page.goto(f"{ui}/deployments/deployment/{deployment_id}")

    def quick_run() -> None:
        page.get_by_role("button", name="Run", exact=True).click()
        page.get_by_text("Quick run").click()

    _until_said(page, quick_run, "scheduled to start", "Run")
    page.get_by_role("button", name="View run").last.click()  # in the toast
    page.wait_for_url(re.compile(r".*/runs/flow-run/[0-9a-f-]{36}$"))
    run_id = page.url.rsplit("/", 1)[1]
    run_ids.append(run_id)
    wait_for(run_id, suspended(1), "suspended at the gate")
    gate.paused_brief(run_id)  # (returns once the form can be answered)
    page.reload()  # what the person does rather than wait for the page's next poll
    badge = page.locator(".state-badge").first
    expect(badge).to_have_text("Suspended")
    report = _at_gate_report(reports)
    assert report["operation_id"].endswith(run_id.replace("-", "")[:8])
    plan_hash = report["plan_hash"]
    code = _order_code(site, report["operation_id"])  # when the inventory asks for one

    # Resume shows the brief: what will be done, the data loss in words, the plan and its hash.
    dialog = _open_form(page)
    expect(dialog.get_by_text(f"order for the DRP drill of {site.name}")).to_be_visible()
    expect(dialog.get_by_text(re.compile(r"^Data loss: data written after .* will be lost"))
           ).to_be_visible()  # fmt: skip
    expect(dialog.get_by_role("heading", name=re.compile(f"^Plan {plan_hash}"))).to_be_visible()
    expect(_field(dialog, "Plan hash").locator("textarea")).to_have_value(plan_hash)
    moment("brief")

    # An answer without the data-loss acknowledgement: Prefect says only "resumed"...
    _until_said(page, _answer(page, acknowledged=False), "Flow run resumed", "Submit")
    moment("resumed-toast")

    # ... and the run, back at its gate, says why: in its state and atop the reopened form.
    wait_for(run_id, suspended(2), "suspended at the gate again")
    brief = gate.paused_brief(run_id)  # once the form can be answered
    assert brief.startswith(f"> **{NOT_TAKEN.replace(': ', ':** ', 1)}"), brief[:300]
    state = run_state(run_id)
    assert suspended(2)(state) and (state.message or "").startswith(NOT_TAKEN), state.message
    assert "The order form is open again" in state.message
    page.reload()
    expect(badge).to_have_text("Suspended")
    page.get_by_text("Details", exact=True).first.click()
    expect(page.get_by_text(re.compile("^" + re.escape(NOT_TAKEN[:60])))).to_be_visible()
    moment("state-message")
    dialog = _open_form(page)
    assert _form_first_line(dialog).startswith(NOT_TAKEN), _form_first_line(dialog)
    expect(_field(dialog, "Ordered by").locator("textarea")).to_have_value("Jane Doe")
    expect(_field(dialog, "Order reference").locator("textarea")).to_have_value("1STKYC-91")
    moment("reopened-form")

    # The newer UI, where the UI's home page leads: the same reason atop the same form.
    dialog.get_by_role("button", name="Close").last.click()
    page.goto(f"{ui}/v2/runs/flow-run/{run_id}")
    page.get_by_role("button", name="Open menu").first.click()
    page.get_by_role("menuitem", name="Resume").click()
    v2 = page.get_by_role("dialog")
    expect(v2.get_by_text(NOT_TAKEN).first).to_be_visible()
    moment("reopened-form-v2")

    # The complete answer: the run completes.
    page.goto(f"{ui}/runs/flow-run/{run_id}")
    _until_said(page, _answer(page, acknowledged=True, code=code), "Flow run resumed", "Submit")
    final = wait_for(run_id, lambda s: s.is_final(), "was finished")
    assert final.is_completed(), final.message
    page.reload()
    expect(badge).to_have_text("Completed")
    moment("completed")

    # The report, among the run's artifacts.
    done = json.loads((reports / f"{report['operation_id']}.json").read_text())
    assert done["outcome"] == "succeeded", done["message"]
    assert done["order"]["via"] == "Prefect UI" and done["order"]["reference"] == "1STKYC-91"
    page.get_by_text("Artifacts", exact=True).first.click()
    card = page.get_by_text(f"report-{report['operation_id']}")
    expect(card.first).to_be_visible()
    expect(page.get_by_text(f"drill {report['operation_id']}: succeeded")).to_be_visible()
    card.first.click()
    expect(page.get_by_text(re.compile(r"RTO")).first).to_be_visible()
    moment("report")
    assert knot_answers() == dns_before  # a drill leaves DNS alone
    print(f"moments (s since Run): {moments}; screenshots: {shots}")
