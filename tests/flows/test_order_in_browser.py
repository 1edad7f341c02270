"""The order given in the Prefect UI, as a person gives it: headless Chromium (the Debian
`chromium` package, driven by Playwright; no browser is downloaded) on the UI of the Prefect
server the tests use, for the drill deployment served as a worker runs it.

The person starts the deployment with "Run", opens the suspended run, reads the brief under
"Resume", sends an answer without the data-loss acknowledgement and sees why it was not taken
(the run's state message, the reopened form's first line), then orders, and finds the report
among the run's artifacts. The UI is the one Prefect links a run to (`/runs/flow-run/ID`); the
newer UI (`/v2/`, where the UI's home page leads) shows the reopened form too.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from flow_helpers import LAB_CONFIG, ensure_backups, knot_answers

from runbooks.inventory import Site, load_site

pytestmark = [pytest.mark.lab, pytest.mark.prefect, pytest.mark.browser]

CHROMIUM = "/usr/bin/chromium"  # the Debian package, installed by scripts/setup.sh
NAME = "browser-test"
SERVE = f"""
from flows.drill import drp_drill
drp_drill.serve(name="{NAME}", limit=1)
"""
NOT_TAKEN = "The previous answer was not taken: the data loss is not acknowledged"
TIMEOUT_MS = 30_000
OOPS = "Something went wrong"


# -- fixtures ----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def site(lab, prefect_server) -> Site:
    loaded = load_site(LAB_CONFIG)
    ensure_backups(loaded)
    return loaded


@pytest.fixture(scope="module")
def reports(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("reports")


@pytest.fixture(scope="module")
def deployment_id(site: Site, prefect_server, reports: Path, tmp_path_factory) -> Iterator[str]:
    """The drill deployment, served by a runner process (as a worker would run it)."""
    env = {
        **os.environ,
        "PREFECT_API_URL": prefect_server.api_url,
        "PREFECT_RUNNER_POLL_FREQUENCY": "1",
        "DRP_CONFIG": str(LAB_CONFIG),
        "DRP_REPORTS_DIR": str(reports),
    }
    log = tmp_path_factory.mktemp("runner") / "runner.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-c", SERVE], env=env, stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
    try:
        yield _registered(f"drp-drill/{NAME}", process, log)
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture(scope="module")
def page(prefect_server) -> Iterator[Any]:
    """A page of headless Chromium that reaches the Prefect server only (its UI would call
    outside hosts: its analytics)."""
    if not os.access(CHROMIUM, os.X_OK):
        pytest.fail(f"{CHROMIUM} is missing: `bash scripts/setup.sh` installs the chromium package")
    from playwright.sync_api import sync_playwright

    server = urlsplit(prefect_server.ui_url).hostname
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
            yield tab
        finally:
            browser.close()


@pytest.fixture(scope="module")
def shots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Screenshots of each moment (left in pytest's temporary directory)."""
    return tmp_path_factory.mktemp("screenshots")


# -- helpers -----------------------------------------------------------------------------------
def _registered(name: str, process: subprocess.Popen[bytes], log: Path) -> str:
    from prefect.client.orchestration import get_client

    deadline = time.monotonic() + 120
    with get_client(sync_client=True) as client:
        while True:
            try:
                return str(client.read_deployment_by_name(name).id)
            except Exception:  # not registered yet
                assert process.poll() is None, log.read_text()[-3000:]
                assert time.monotonic() < deadline, f"{name} never appeared: {log}"
                time.sleep(0.5)


def _state(run_id: str) -> Any:
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        return client.read_flow_run(run_id).state


def _wait(run_id: str, done: Any, what: str, timeout: float = 240) -> Any:
    """Until `done(state)`, read from the API; fails at once if the run ends otherwise."""
    deadline = time.monotonic() + timeout
    while True:
        state = _state(run_id)
        if state is not None and done(state):
            return state
        assert state is None or not state.is_final(), f"ended before it {what}: {state}"
        assert time.monotonic() < deadline, f"never {what}; last state {state}"
        time.sleep(0.3)


def _suspended(pause: int) -> Any:
    return lambda s: s.name == "Suspended" and s.state_details.pause_key == str(pause)


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


def _answer(page: Any, *, acknowledged: bool) -> Any:
    """What the person does in the Resume dialog (opened if it is not): name, reference, the
    acknowledgement as asked, Submit."""

    def act() -> None:
        dialog = page.get_by_role("dialog")
        if not dialog.is_visible():
            dialog = _open_form(page)
        _field(dialog, "Ordered by").locator("textarea").fill("Jane Doe")
        _field(dialog, "Order reference").locator("textarea").fill("1STKYC-91")
        switch = _field(dialog, "Data loss acknowledged").get_by_role("switch")
        if (switch.get_attribute("aria-checked") == "true") != acknowledged:
            switch.click()
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
def test_order_given_in_the_prefect_ui(
    site, deployment_id: str, prefect_server, reports: Path, page: Any, shots: Path
) -> None:
    try:
        _order_in_the_ui(site, deployment_id, prefect_server.ui_url, reports, page, shots)
    except BaseException:
        page.screenshot(path=str(shots / "failed.png"))
        print(f"failed at {page.url}; screenshot {shots / 'failed.png'}")
        raise


def _order_in_the_ui(
    site: Site, deployment_id: str, ui: str, reports: Path, page: Any, shots: Path
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
    _wait(run_id, _suspended(1), "suspended at the gate")
    gate.paused_brief(run_id)  # (returns once the form can be answered)
    page.reload()  # what the person does rather than wait for the page's next poll
    badge = page.locator(".state-badge").first
    expect(badge).to_have_text("Suspended")
    report = _at_gate_report(reports)
    assert report["operation_id"].endswith(run_id.replace("-", "")[:8])
    plan_hash = report["plan_hash"]

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
    _wait(run_id, _suspended(2), "suspended at the gate again")
    brief = gate.paused_brief(run_id)  # once the form can be answered
    assert brief.startswith(f"> **{NOT_TAKEN.replace(': ', ':** ', 1)}"), brief[:300]
    state = _state(run_id)
    assert _suspended(2)(state) and (state.message or "").startswith(NOT_TAKEN), state.message
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
    _until_said(page, _answer(page, acknowledged=True), "Flow run resumed", "Submit")
    final = _wait(run_id, lambda s: s.is_final(), "was finished")
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
