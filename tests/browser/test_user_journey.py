"""A new user's journey in a real browser: Debian's chromium driven by Playwright.

sign up → create an API key → send spans with the API → see the trace, its finding and the
issue → resolve the issue in place. Screenshots of every page visited go to
test-artifacts/screenshots/. The page may load nothing from outside the app, and the browser
console must stay free of errors (a CSP violation is one).
"""

from __future__ import annotations

import os
import re
import shutil
import time
import urllib.request
from pathlib import Path

import orjson
import pytest

from apps.detection.services import judge_pending
from apps.metrics.services import rollup_pending
from tests.factories import span, trace_id

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
SHOTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "screenshots"
pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def browser_page(live_server):
    from playwright.sync_api import sync_playwright

    # Playwright's sync API runs an event loop in this thread; the ORM calls the test makes
    # around it are still plain synchronous code.
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    if not Path(CHROMIUM).exists():
        pytest.fail(
            "Debian's chromium is required for the browser test: apt-get install chromium (make test does it)"
        )
    SHOTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=CHROMIUM,
            headless=True,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
            ],
        )
        context = browser.new_context(viewport={"width": 1366, "height": 900})
        page = context.new_page()
        page.set_default_timeout(15_000)
        outside: list[str] = []
        console_errors: list[str] = []
        page.on(
            "request",
            lambda r: (
                None if r.url.startswith((live_server.url, "data:")) else outside.append(r.url)
            ),
        )
        page.on("console", lambda m: console_errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: console_errors.append(str(e)))
        yield page, outside, console_errors
        context.close()
        browser.close()
    os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)


def shot(page, n: int, name: str) -> None:
    page.screenshot(path=str(SHOTS / f"{n:02d}-{name}.png"), full_page=True)


def post_spans(url: str, key: str, spans: list[dict]) -> dict:
    req = urllib.request.Request(
        url + "/api/v1/spans",
        data=orjson.dumps({"spans": spans}),
        headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(req, timeout=30) as resp:
        return orjson.loads(resp.read())


def test_sign_up_send_spans_see_finding_and_resolve_issue(live_server, browser_page) -> None:
    page, outside, console_errors = browser_page
    base = live_server.url

    page.goto(base + "/")
    assert page.locator("input[name=csrfmiddlewaretoken]").count() >= 1
    shot(page, 1, "landing")

    page.click("text=Create an account")
    page.fill("input[name=email]", "maya@example.com")
    page.fill("input[name=name]", "Maya")
    page.fill("input[name=organization]", "Maya Labs")
    page.fill("input[name=password]", "a long enough passphrase")
    shot(page, 2, "signup")
    page.click("button:has-text('Create account')")
    page.wait_for_url(re.compile(r".*/o/maya-labs/p/default/$"))
    assert "first span" in page.content().lower()
    shot(page, 3, "overview-empty")

    # create an API key from the sidebar
    page.click("nav.sidebar >> text=API keys")
    page.check("input[value=read]")
    page.fill("input[name=name]", "journey")
    page.click("button:has-text('Create key')")
    key = page.locator("#new-key").inner_text().strip()
    assert key.startswith("kp_")
    shot(page, 4, "api-key-created")

    # an agent sends a trace whose CRM lookup came back partial and was used anyway
    tid = trace_id()
    t0 = time.time_ns() - 60 * 10**9  # a minute ago: this week's numbers on the overview
    ms = 1_000_000
    root = span(
        trace_id=tid,
        agent="support",
        name="handle_ticket",
        session_id="sess-journey",
        start_time=t0,
        end_time=t0 + 1500 * ms,
    )
    lookup = span(
        trace_id=tid,
        agent="support",
        parent_span_id=root["span_id"],
        name="crm.lookup",
        kind="tool",
        start_time=t0 + 10 * ms,
        end_time=t0 + 200 * ms,
        attributes={"kriy.result.partial": True},
        input={"customer": "<script>alert(1)</script>"},
    )
    draft = span(
        trace_id=tid,
        agent="support",
        parent_span_id=root["span_id"],
        name="draft_reply",
        kind="llm",
        start_time=t0 + 300 * ms,
        end_time=t0 + 1400 * ms,
    )
    assert post_spans(base, key, [root, lookup, draft])["accepted"] == 3
    judge_pending(settle_seconds=0)
    rollup_pending()

    # the trace, its waterfall and its finding
    page.click("nav.sidebar >> text=Traces")
    page.wait_for_selector(f"text={tid[:8]}", state="attached")
    shot(page, 5, "traces")
    page.click(f"a[href*='{tid}']")
    page.wait_for_url(re.compile(f".*/traces/{tid}/$"))
    content = page.content()
    assert "partial_result_used" in content or "partial result" in content
    assert "crm.lookup" in content
    shot(page, 6, "trace-detail")
    page.goto(f"{base}/o/maya-labs/p/default/traces/{tid}/spans/{lookup['span_id']}/")
    assert (
        "&lt;script&gt;alert(1)&lt;/script&gt;" in page.content()
        or "<script>alert(1)</script>" in page.inner_text("body")
    )
    shot(page, 7, "span-detail")

    # the issue, resolved in place
    page.click("nav.sidebar >> text=Issues")
    row = page.locator("tr", has_text="crm.lookup")
    assert row.count() >= 1
    shot(page, 8, "issues")
    row.first.locator("button:has-text('Resolve')").click()
    page.wait_for_selector("tr:has-text('crm.lookup') >> text=resolved")
    shot(page, 9, "issue-resolved")
    from apps.issues.models import Issue

    assert Issue.objects.get(span_name="crm.lookup").status == "resolved"

    # every other page a new user would open
    pages = [
        ("overview", "/"),
        ("report", "/report/"),
        ("agent", "/agents/support/"),
        ("sessions", "/sessions/"),
        ("session", "/sessions/sess-journey/"),
        ("contracts", "/settings/contracts/"),
        ("alerts", "/settings/alerts/"),
    ]
    for i, (name, path) in enumerate(pages, start=10):
        resp = page.goto(f"{base}/o/maya-labs/p/default{path}")
        assert resp.status == 200, (name, resp.status)
        shot(page, i, name)
    for i, (name, path) in enumerate(
        [
            ("members", "/settings/members/"),
            ("projects", "/settings/projects/"),
            ("org-settings", "/settings/"),
        ],
        start=20,
    ):
        resp = page.goto(f"{base}/o/maya-labs{path}")
        assert resp.status == 200, (name, resp.status)
        shot(page, i, name)

    assert outside == [], f"requests left the app: {outside}"
    assert console_errors == [], f"browser console errors: {console_errors}"
