"""Explore pages: traces, trace waterfall, span detail, sessions, issues — full pages and HTMX
fragments, tenancy, escaping of span content, filters, paging and issue triage."""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

import pytest
from django.test import Client

from apps.detection.services import judge_pending
from apps.issues.models import Issue, IssueEvent, IssueStatus
from tests.factories import post_spans, span, trace_id

pytestmark = pytest.mark.django_db

EVIL = "<script>alert(1)</script>"
EVIL_SESSION = f"s/{EVIL}"  # any text is a valid session id, slashes included
ESCAPED = "&lt;script&gt;alert(1)&lt;/script&gt;"
MS = 1_000_000
# Traffic an hour ago, so the issue chart (last 8 weeks, by real date) has it.
T0 = (time.time_ns() // 10**9 - 3600) * 10**9
HX = {"HTTP_HX_REQUEST": "true"}
HX_MAIN = {"HTTP_HX_REQUEST": "true", "HTTP_HX_TARGET": "main"}


def at(ms: int) -> int:
    return T0 + ms * MS


@dataclass
class Traffic:
    defective: list[dict[str, Any]]
    clean: list[dict[str, Any]]
    failed: list[dict[str, Any]]
    evil: list[dict[str, Any]]
    stale_write: list[dict[str, Any]]
    stale_read: list[dict[str, Any]]
    orphan: dict[str, Any]
    session: str = "sess-42"
    all: list[list[dict[str, Any]]] = field(default_factory=list)


def child(root: dict[str, Any], name: str, start: int, end: int, **over: Any) -> dict[str, Any]:
    return span(
        trace_id=root["trace_id"],
        agent=over.pop("agent", root["agent"]),
        parent_span_id=over.pop("parent_span_id", root["span_id"]),
        name=name,
        kind=over.pop("kind", "tool"),
        start_time=at(start),
        end_time=at(end),
        **over,
    )


def root_span(agent: str, name: str, start: int, end: int, **over: Any) -> dict[str, Any]:
    return span(
        trace_id=trace_id(), agent=agent, name=name, start_time=at(start), end_time=at(end), **over
    )


def build_traffic() -> Traffic:
    # defective: a partial CRM result used by a later step (partial_result_used), in a session
    r1 = root_span("support", "handle_ticket", 0, 1000, session_id="sess-42")
    lookup = child(r1, "crm.lookup", 10, 20, attributes={"kriy.result.partial": True})
    usage = {
        "gen_ai.request.model": "gpt-4o",
        "gen_ai.usage.input_tokens": 120,
        "gen_ai.usage.output_tokens": 40,
    }
    draft = child(r1, "draft", 30, 400, kind="llm", attributes=usage)
    nested = child(r1, "draft.tokenize", 40, 60, parent_span_id=draft["span_id"])
    defective = [r1, lookup, draft, nested]
    # clean planner run
    r2 = root_span("planner", "plan_trip", 2000, 2600)
    clean = [r2, child(r2, "plan", 2010, 2100, kind="llm")]
    # failed research run
    r3 = root_span("research", "research_question", 3000, 3900, status="error")
    failed = [r3, child(r3, "web.search", 3010, 3100, kind="retrieval")]
    # user content with markup everywhere
    r4 = root_span(
        "support",
        EVIL,
        4000,
        4500,
        session_id=EVIL_SESSION,
        status_message=EVIL,
        attributes={"note": EVIL, "kriy.constraints": [EVIL]},
        input={"q": EVIL},
        output=EVIL,
        events=[{"name": EVIL, "time": at(4100), "attributes": {"items": EVIL}}],
    )
    swallow = child(r4, f"swallow {EVIL}", 4010, 4020, status="error", status_message=EVIL)
    evil = [r4, swallow]
    # stale state: turn 1 writes account:1 v2, turn 2 reads v1 afterwards
    r5 = root_span("support", "turn_one", 5000, 5500, session_id="sess-42")
    write = child(
        r5,
        "account.update",
        5100,
        5200,
        attributes={
            "kriy.state.key": "account:1",
            "kriy.state.op": "write",
            "kriy.state.version": 2,
        },
    )
    r6 = root_span("support", "turn_two", 6000, 6500, session_id="sess-42")
    read = child(
        r6,
        "account.read",
        6100,
        6200,
        attributes={
            "kriy.state.key": "account:1",
            "kriy.state.op": "read",
            "kriy.state.version": 1,
        },
    )
    orphan = child(r2, "late.child", 2200, 2300, parent_span_id="00000000000000aa")
    clean.append(orphan)
    t = Traffic(defective, clean, failed, evil, [r5, write], [r6, read], orphan)
    t.all = [t.defective, t.clean, t.failed, t.evil, t.stale_write, t.stale_read]
    return t


@pytest.fixture
def traffic(tenant_a) -> Traffic:
    t = build_traffic()
    r = post_spans(tenant_a.api(), [s for tr in t.all for s in tr])
    assert r.status_code == 200, r.content
    judge_pending(settle_seconds=0)
    return t


def get(tenant, path: str, **headers: Any):
    return tenant.client.get(tenant.base + path, **headers)


def body(resp) -> str:
    return resp.content.decode()


def assert_fragment(resp) -> str:
    assert resp.status_code == 200, resp.content[:500]
    text = body(resp)
    assert "<html" not in text and "<body" not in text
    return text


def assert_no_inline_style(text: str) -> None:
    assert "style=" not in text and "<style" not in text
    assert not re.search(r"<script(?![^>]*\bsrc=)", text)  # only external scripts


# --- traces ----------------------------------------------------------------------------------------


def test_traces_page_lists_judged_traces_with_outcome_status_and_findings(tenant_a, traffic):
    resp = get(tenant_a, "/traces/")
    assert resp.status_code == 200
    text = body(resp)
    assert "<html" in text
    for name in ("handle_ticket", "plan_trip", "research_question", "turn_two"):
        assert name in text
    assert 'class="badge b-defective"' in text and 'class="badge b-failed"' in text
    assert 'class="badge b-clean"' in text
    assert f"{tenant_a.base}/sessions/sess-42/" in text  # session column links
    assert f"{tenant_a.base}/traces/{traffic.defective[0]['trace_id']}/" in text
    assert re.search(r'<time datetime="[^"]+" title="\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC">', text)
    assert 'hx-trigger="change, submit"' in text and 'hx-target="#trace-results"' in text
    assert_no_inline_style(text)


def test_traces_htmx_request_returns_only_the_results_fragment(tenant_a, traffic):
    resp = get(tenant_a, "/traces/?agent=&outcome=failed&q=", **HX)
    text = assert_fragment(resp)
    # the pushed address drops the form's empty fields; caches keep page and fragment apart
    assert resp["HX-Push-Url"] == f"{tenant_a.base}/traces/?outcome=failed"
    assert "HX-Request" in resp["Vary"]
    assert "research_question" in text and "handle_ticket" not in text
    assert 'class="filters"' not in text  # the form stays on the page
    nav = assert_fragment(get(tenant_a, "/traces/", **HX_MAIN))
    assert 'class="filters"' in nav and "<title>Traces" in nav
    # navigation into #main also refreshes the sidebar's current page, out of band
    assert 'hx-swap-oob="outerHTML:nav.sidebar"' in nav and 'aria-current="page">Traces' in nav


def test_traces_filter_by_agent_outcome_session_and_text(tenant_a, traffic):
    text = body(get(tenant_a, "/traces/?agent=planner"))
    assert "plan_trip" in text and "handle_ticket" not in text
    assert '<option value="planner" selected>' in text
    text = body(get(tenant_a, "/traces/?outcome=defective"))
    assert "handle_ticket" in text and "plan_trip" not in text
    text = body(get(tenant_a, "/traces/?session_id=sess-42"))
    assert "turn_one" in text and "turn_two" in text and "plan_trip" not in text
    text = body(get(tenant_a, "/traces/?q=TRIP"))
    assert "plan_trip" in text and "turn_one" not in text


def test_traces_filter_by_time_range_from_datetime_local_inputs(tenant_a, traffic):
    def local(ms: int) -> str:
        return datetime.fromtimestamp(at(ms) / 1e9, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S")

    text = body(get(tenant_a, f"/traces/?since={local(1500)}&until={local(4000)}"))
    assert "plan_trip" in text and "research_question" in text
    assert "handle_ticket" not in text and "turn_one" not in text
    assert f'value="{local(1500)}"' in text  # the input keeps its value


def test_bad_filter_value_shows_the_error_message_not_a_500(tenant_a, traffic):
    resp = get(tenant_a, "/traces/?outcome=great")
    assert resp.status_code == 400
    assert "outcome: must be one of failed, defective, clean" in body(resp)
    assert "<html" in body(resp)
    resp = get(tenant_a, "/traces/?since=yesterday")
    assert resp.status_code == 400 and "since:" in body(resp)
    # htmx does not swap 4xx responses: the fragment carries the error with 200
    text = assert_fragment(get(tenant_a, "/traces/?cursor=nonsense", **HX))
    assert "cursor: not a cursor this API returned" in text


def test_traces_cursor_paging_moves_to_older_traces_without_overlap(tenant_a, traffic):
    first = body(get(tenant_a, "/traces/?limit=4"))
    m = re.search(r'href="(\?[^"]*cursor=[^"]+)"[^>]*>Older', first)
    assert m, "an Older link with a cursor"
    older = body(get(tenant_a, "/traces/" + m.group(1).replace("&amp;", "&")))
    ids = lambda text: set(re.findall(r"/traces/([0-9a-f]{32})/\"", text))  # noqa: E731
    assert len(ids(first)) == 4 and len(ids(older)) == 2
    assert not ids(first) & ids(older)
    assert "← Newest" in older and "Older →" not in older


def test_empty_project_explains_how_to_send_the_first_span(tenant_b):
    resp = get(tenant_b, "/traces/")
    assert resp.status_code == 200
    text = body(resp)
    assert "http://testserver/api/v1/spans" in text
    assert "OTEL_EXPORTER_OTLP_ENDPOINT=http://testserver" in text
    assert 'OTEL_EXPORTER_OTLP_HEADERS="Authorization=Bearer' in text
    assert f'href="{tenant_b.base}/settings/keys/"' in text or "/keys/" in text
    assert "a few seconds after their root span arrives" in text
    assert 'data-copy="first-span-curl"' in text


def test_filters_that_match_nothing_say_so_and_offer_to_clear_them(tenant_a, traffic):
    text = body(get(tenant_a, "/traces/?agent=nobody"))
    assert "No traces match these filters" in text and "Clear filters" in text
    assert "OTEL_EXPORTER" not in text


# --- trace and span --------------------------------------------------------------------------------


def test_trace_page_shows_header_findings_and_a_waterfall_tree(tenant_a, traffic):
    r1, lookup, *_ = traffic.defective
    resp = get(tenant_a, f"/traces/{r1['trace_id']}/")
    assert resp.status_code == 200
    text = body(resp)
    assert "<h1>handle_ticket</h1>" in text
    assert 'class="badge b-defective">defective' in text
    assert "Partial result used" in text and "returned a partial result" in text
    assert "/sessions/sess-42/" in text
    assert "120 / 40" in text  # tokens in / out of the llm span
    # parents before children, children by start time, indented by depth
    waterfall = text[text.index('id="wf-title"') : text.index('id="span-panel"')]
    order = re.findall(r'title="([^"]+)">\1</a>', waterfall)
    assert order[:4] == ["handle_ticket", "crm.lookup", "draft", "draft.tokenize"]
    assert 'class="wf-name d2"' in text
    # the bar geometry is SVG attributes: the root spans the whole track
    assert re.search(r'<rect class="wf-rect s-ok" x="0.00" y="2" width="1000.00"', text)
    assert 'class="wf-rect s-ok has-finding"' in text  # the finding's span is marked
    assert "✓ ok" in text  # status has a text cue too
    # the side panel opens on the span with the finding, linked for HTMX and without JS
    assert 'id="span-panel"' in text and "crm.lookup" in text
    span_url = f"{tenant_a.base}/traces/{r1['trace_id']}/spans/{lookup['span_id']}/"
    assert f'href="{span_url}" hx-get="{span_url}" hx-target="#span-panel"' in text
    assert_no_inline_style(text)


def test_trace_page_puts_spans_whose_parent_has_not_arrived_at_the_end(tenant_a, traffic):
    text = body(get(tenant_a, f"/traces/{traffic.clean[0]['trace_id']}/"))
    assert "Spans whose parent has not arrived" in text
    assert text.index("Spans whose parent has not arrived") < text.index('title="late.child"')


def test_trace_htmx_request_returns_the_page_content_fragment(tenant_a, traffic):
    text = assert_fragment(get(tenant_a, f"/traces/{traffic.defective[0]['trace_id']}/", **HX))
    assert "Waterfall" in text and "<title>Trace handle_ticket" in text


def test_trace_of_another_tenant_or_unknown_id_is_404(tenant_a, tenant_b, traffic):
    tid = traffic.defective[0]["trace_id"]
    assert get(tenant_b, f"/traces/{tid}/").status_code == 404
    assert tenant_b.client.get(f"{tenant_a.base}/traces/{tid}/").status_code == 404
    for page in ("/traces/", "/sessions/", "/issues/"):
        assert tenant_b.client.get(tenant_a.base + page).status_code == 404
    assert get(tenant_a, f"/traces/{trace_id()}/").status_code == 404
    assert get(tenant_a, "/traces/not-a-trace/").status_code == 404
    sid = traffic.defective[1]["span_id"]
    assert get(tenant_b, f"/traces/{tid}/spans/{sid}/").status_code == 404
    assert get(tenant_a, f"/traces/{tid}/spans/00000000000000ff/").status_code == 404


def test_span_page_shows_timing_usage_findings_attributes_and_json(tenant_a, traffic):
    r1, lookup, draft, _ = traffic.defective
    resp = get(tenant_a, f"/traces/{r1['trace_id']}/spans/{draft['span_id']}/")
    assert resp.status_code == 200
    text = body(resp)
    assert "<html" in text and "draft" in text and "gpt-4o" in text and "370 ms" in text
    text = body(get(tenant_a, f"/traces/{r1['trace_id']}/spans/{lookup['span_id']}/"))
    assert "Findings on this span" in text and "Partial result used" in text
    assert 'class="kriy-attr"' in text and "kriy.result.partial" in text
    assert "has not arrived" not in text


def test_span_htmx_request_returns_the_side_panel_fragment(tenant_a, traffic):
    r1, lookup, *_ = traffic.defective
    text = assert_fragment(
        get(tenant_a, f"/traces/{r1['trace_id']}/spans/{lookup['span_id']}/", **HX)
    )
    assert "crm.lookup" in text and "Open span page" in text and "breadcrumbs" not in text


def test_span_content_is_escaped_on_every_page(tenant_a, traffic):
    r4, swallow = traffic.evil
    pages = [
        "/traces/",
        f"/traces/{r4['trace_id']}/",
        f"/traces/{r4['trace_id']}/spans/{r4['span_id']}/",
        f"/traces/{r4['trace_id']}/spans/{swallow['span_id']}/",
        f"/sessions/{quote(EVIL_SESSION)}/",
        "/sessions/",
        "/issues/?status=all",
    ]
    for path in pages:
        for headers in ({}, HX):
            text = body(get(tenant_a, path, **headers))
            assert EVIL not in text, path
    issue = issue_of(tenant_a, "swallowed_error")
    for path in (f"/issues/{issue.pk}/", "/issues/"):
        text = body(get(tenant_a, path))
        assert EVIL not in text and ESCAPED in text, path
    span_page = body(get(tenant_a, f"/traces/{r4['trace_id']}/spans/{r4['span_id']}/"))
    assert span_page.count(ESCAPED) >= 5  # name, message, attributes, input, output, event
    assert "&quot;q&quot;: &quot;&lt;script&gt;" in span_page  # pretty JSON, escaped
    assert ESCAPED in body(get(tenant_a, "/traces/"))
    session_page = body(get(tenant_a, f"/sessions/{quote(EVIL_SESSION)}/"))
    assert "Session <span" in session_page and ESCAPED in session_page


# --- sessions --------------------------------------------------------------------------------------


def test_sessions_list_shows_sessions_with_worst_outcome_and_filters(tenant_a, traffic):
    resp = get(tenant_a, "/sessions/")
    assert resp.status_code == 200
    text = body(resp)
    assert "sess-42" in text and f"/sessions/{quote(EVIL_SESSION, safe='/()')}/" in text
    assert f"{tenant_a.base}/sessions/sess-42/" in text
    text = assert_fragment(get(tenant_a, "/sessions/?outcome=clean", **HX))
    assert "sess-42" not in text
    text = body(get(tenant_a, "/sessions/?agent=planner"))
    assert "No sessions match these filters" in text
    resp = get(tenant_a, "/sessions/?offset=-1")
    assert resp.status_code == 400 and "offset: must be between" in body(resp)


def test_sessions_list_pages_by_offset(tenant_a):
    spans = []
    for i in range(52):
        spans.append(root_span("support", "turn", i * 10, i * 10 + 5, session_id=f"s-{i:03d}"))
    post_spans(tenant_a.api(), spans)
    judge_pending(settle_seconds=0)
    first = body(get(tenant_a, "/sessions/"))
    assert "s-051" in first and "s-001" not in first and "Older →" in first
    second = body(get(tenant_a, "/sessions/?offset=50"))
    assert "s-001" in second and "s-000" in second and "s-051" not in second
    assert "← Newer" in second


def test_session_page_shows_traces_in_order_and_flags_stale_reads(tenant_a, traffic):
    resp = get(tenant_a, "/sessions/sess-42/")
    assert resp.status_code == 200
    text = body(resp)
    assert text.index("handle_ticket") < text.index("turn_one") < text.index("turn_two")
    assert "account:1" in text and "✎ write" in text and "v2" in text and "v1" in text
    assert "stale read" in text
    assert 'class="row-flagged"' in text
    write_id, read_id = traffic.stale_write[1]["span_id"], traffic.stale_read[1]["span_id"]
    assert text.index(write_id) < text.index(read_id)
    text = assert_fragment(get(tenant_a, "/sessions/sess-42/", **HX))
    assert "Shared state reads and writes" in text


def test_session_of_another_tenant_or_unknown_is_404(tenant_a, tenant_b, traffic):
    assert get(tenant_b, "/sessions/sess-42/").status_code == 404
    assert tenant_b.client.get(f"{tenant_a.base}/sessions/sess-42/").status_code == 404
    assert get(tenant_a, "/sessions/nope/").status_code == 404


# --- issues ----------------------------------------------------------------------------------------


def issue_of(tenant, type_: str) -> Issue:
    return Issue.objects.get(project=tenant.project, type=type_)


def test_issues_list_defaults_to_open_and_regressed_with_status_tabs(tenant_a, traffic):
    stale = issue_of(tenant_a, "stale_state")
    stale.status = IssueStatus.IGNORED
    stale.save()
    resp = get(tenant_a, "/issues/")
    assert resp.status_code == 200
    text = body(resp)
    assert "Partial result used" in text and "crm.lookup" in text
    assert "account.read" not in text  # ignored: not in the default view
    assert 'aria-current="page">Open + regressed' in text
    text = body(get(tenant_a, "/issues/?status=ignored"))
    assert "account.read" in text and "crm.lookup" not in text
    text = assert_fragment(get(tenant_a, "/issues/?type=partial_result_used", **HX))
    assert "crm.lookup" in text and "swallow" not in text
    assert get(tenant_a, "/issues/?status=bogus").status_code == 400


def test_member_resolves_an_issue_in_place_with_htmx(tenant_a, traffic):
    issue = issue_of(tenant_a, "partial_result_used")
    url = f"{tenant_a.base}/issues/{issue.pk}/status/"
    resp = tenant_a.client.post(url, {"action": "resolve", "next": "/x"}, **HX)
    text = assert_fragment(resp)
    assert text.strip().startswith(f'<tr id="issue-{issue.pk}">')
    assert 'class="badge b-resolved">resolved' in text and "↺ Reopen" in text
    issue.refresh_from_db()
    assert issue.status == IssueStatus.RESOLVED
    assert IssueEvent.objects.filter(
        issue=issue, kind="resolved", actor=tenant_a.user.email
    ).exists()
    # the detail page's side panel variant
    resp = tenant_a.client.post(url, {"action": "reopen", "view": "detail"}, **HX)
    text = assert_fragment(resp)
    assert 'id="issue-side"' in text and "reopened" in text


def test_triage_without_javascript_redirects_back(tenant_a, traffic):
    issue = issue_of(tenant_a, "partial_result_used")
    url = f"{tenant_a.base}/issues/{issue.pk}/status/"
    back = f"{tenant_a.base}/issues/?agent=support"
    resp = tenant_a.client.post(url, {"action": "ignore", "next": back})
    assert resp.status_code == 302 and resp["Location"] == back
    resp = tenant_a.client.post(url, {"action": "reopen", "next": "https://evil.example/"})
    assert resp.status_code == 302 and resp["Location"] == f"{tenant_a.base}/issues/{issue.pk}/"
    resp = tenant_a.client.post(url, {"action": "explode"})
    assert resp.status_code == 302
    issue.refresh_from_db()
    assert issue.status == IssueStatus.OPEN


def test_viewer_sees_no_triage_buttons_and_cannot_post(tenant_a, traffic):
    from apps.accounts.models import User
    from apps.orgs.models import Membership, Role

    viewer = User.objects.create_user(email="viewer@acme.example", password="x" * 12)
    Membership.objects.create(organization=tenant_a.org, user=viewer, role=Role.VIEWER)
    client = Client()
    client.force_login(viewer)
    issue = issue_of(tenant_a, "partial_result_used")
    text = body(client.get(f"{tenant_a.base}/issues/"))
    assert "crm.lookup" in text and "✓ Resolve" not in text
    text = body(client.get(f"{tenant_a.base}/issues/{issue.pk}/"))
    assert "Viewers can" in text and "✓ Resolve" not in text
    resp = client.post(f"{tenant_a.base}/issues/{issue.pk}/status/", {"action": "resolve"})
    assert resp.status_code == 404
    issue.refresh_from_db()
    assert issue.status == IssueStatus.OPEN


def test_issue_page_explains_the_type_charts_occurrences_and_history(tenant_a, traffic):
    issue = issue_of(tenant_a, "stale_state")
    resp = get(tenant_a, f"/issues/{issue.pk}/")
    assert resp.status_code == 200
    text = body(resp)
    assert "Stale state read" in text and "older than one already written" in text
    assert '<rect class="bar-issue"' in text and "1 occurrence in the last 8 weeks" in text
    assert f"/traces/{traffic.stale_read[0]['trace_id']}/" in text
    assert "History" in text and 'b-open">new' in text
    assert "✓ Resolve" in text
    assert_no_inline_style(text)
    text = assert_fragment(get(tenant_a, f"/issues/{issue.pk}/", **HX))
    assert "What this means" in text


def test_issue_of_another_tenant_is_404_for_pages_and_triage(tenant_a, tenant_b, traffic):
    issue = issue_of(tenant_a, "partial_result_used")
    assert get(tenant_b, f"/issues/{issue.pk}/").status_code == 404
    resp = tenant_b.client.post(f"{tenant_b.base}/issues/{issue.pk}/status/", {"action": "resolve"})
    assert resp.status_code == 404
    assert tenant_b.client.get(f"{tenant_a.base}/issues/").status_code == 404
    issue.refresh_from_db()
    assert issue.status == IssueStatus.OPEN


def test_issues_empty_state_points_to_traces_and_contracts(tenant_b):
    text = body(get(tenant_b, "/issues/"))
    assert "No issues yet" in text and "/settings/contracts/" in text
    text = body(get(tenant_b, "/sessions/"))
    assert "No sessions yet" in text


# --- waterfall layout --------------------------------------------------------------------------------


def wf_span(sid: str, parent: str | None, start_ms: int, end_ms: int) -> dict[str, Any]:
    from apps.spans.selectors import rfc3339

    return {
        "span_id": sid,
        "parent_span_id": parent,
        "name": sid,
        "start_time": rfc3339(at(start_ms)),
        "end_time": rfc3339(at(end_ms)),
    }


def test_waterfall_orders_the_tree_and_places_bars_relative_to_the_trace():
    from apps.web.explore import waterfall

    spans = [
        wf_span("c2", "root", 500, 1000),
        wf_span("root", None, 0, 1000),
        wf_span("c1", "root", 100, 200),
        wf_span("g1", "c1", 150, 160),
        wf_span("lost", "missing", 900, 950),
        wf_span("x", "y", 10, 20),  # x and y are each other's parent: never a tree
        wf_span("y", "x", 30, 40),
    ]
    wf = waterfall(spans, [{"span_id": "g1", "type": "tool_loop", "message": "m"}])
    assert [(r["span"]["span_id"], r["depth"]) for r in wf["rows"]] == [
        ("root", 0),
        ("c1", 1),
        ("g1", 2),
        ("c2", 1),
    ]
    assert {r["span"]["span_id"] for r in wf["orphans"]} == {"lost", "x", "y"}
    root, c1, g1, c2 = wf["rows"]
    assert (root["x"], root["width"]) == (0, 1000)
    assert (c1["x"], c1["width"]) == (100, 100)
    assert (c2["x"], c2["width"]) == (500, 500)
    assert g1["width"] == 10 and g1["findings"] == ["tool_loop"]
    assert wf["total_ms"] == 1000 and wf["ticks"][-1] == 1000


def test_waterfall_keeps_tiny_spans_visible_inside_the_track():
    from apps.web.explore import waterfall

    wf = waterfall([wf_span("root", None, 0, 100_000), wf_span("z", "root", 100_000, 100_000)], [])
    z = wf["rows"][1]
    assert z["width"] == 2.0 and z["x"] + z["width"] <= 1000
