"""Dashboard pages: overview, weekly report, agent page, contracts editor (issue 6)."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest

from apps.detection.services import contracts_document, contracts_put, judge_pending
from apps.metrics.services import monday, rollup_pending
from apps.web.templatetags.charts import TREND, delta_context, line_chart
from tests.factories import post_spans, span, trace_id

pytestmark = pytest.mark.django_db

WEEK_NS = 7 * 86_400 * 10**9
MARCH = int(datetime(2026, 3, 2, 9, tzinfo=UTC).timestamp() * 1e9)  # a Monday
SCRIPT = "<script>alert(1)</script>"
HX = {"HTTP_HX_REQUEST": "true"}


def this_week_ns() -> int:
    """A moment inside the current ISO week and not in the future."""
    now = datetime.now(UTC)
    start = datetime.combine(monday(now.date()), datetime.min.time(), tzinfo=UTC)
    return int((start + min(timedelta(hours=1), (now - start) / 2)).timestamp() * 1e9)


def make(agent: str, t0: int, outcome: str, session: str | None = None) -> list[dict]:
    """One trace of ``agent`` at ``t0`` (ns): failed, defective (a partial result used) or clean."""
    tid = trace_id()
    root = span(
        trace_id=tid,
        agent=agent,
        session_id=session,
        start_time=t0,
        end_time=t0 + 10**9,
        status="error" if outcome == "failed" else "ok",
    )
    out = [root]
    if outcome == "defective":
        out.append(
            span(
                trace_id=tid,
                agent=agent,
                parent_span_id=root["span_id"],
                name="crm.lookup",
                kind="tool",
                start_time=t0 + 10**7,
                end_time=t0 + 2 * 10**7,
                attributes={"kriy.result.partial": True},
            )
        )
        out.append(
            span(
                trace_id=tid,
                agent=agent,
                parent_span_id=root["span_id"],
                name="draft",
                start_time=t0 + 10**8,
                end_time=t0 + 2 * 10**8,
            )
        )
    return out


def ingest(tenant, traces: list[list[dict]]) -> None:
    spans = [s for t in traces for s in t]
    assert post_spans(tenant.api(), spans).status_code == 200
    judge_pending(settle_seconds=0)
    rollup_pending()


def card_of(html: str, agent: str) -> str:
    """The overview card whose heading names ``agent`` (already escaped)."""
    cards = html.split('<article class="card agent-card"')[1:]
    return next(c for c in cards if f">{agent}</" in c)


# --- overview --------------------------------------------------------------------------------


def test_overview_shows_a_card_and_a_trend_per_agent_and_refreshes_itself(tenant_a) -> None:
    now = this_week_ns()
    last = now - WEEK_NS
    ingest(
        tenant_a,
        [
            # support: 3 weeks ago 1 clean; last week 1 failed of 2 (50 %); this week 1 of 4 (25 %)
            make("support", now - 3 * WEEK_NS, "clean"),
            make("support", last, "failed", "s1"),
            make("support", last, "clean", "s1"),
            make("support", now, "defective", "s2"),
            *(make("support", now, "clean", "s2") for _ in range(3)),
            # planner: last week 1 defective of 2 (50 %); this week 1 failed of 1 (100 %)
            make("planner", last, "defective"),
            make("planner", last, "clean"),
            make("planner", now, "failed"),
            make(SCRIPT, now, "clean"),
        ],
    )
    resp = tenant_a.client.get(tenant_a.base + "/")
    html = resp.content.decode()
    assert resp.status_code == 200 and "<html" in html
    assert 'hx-trigger="every 30s"' in html and "updated " in html
    # headline: this week's traces, sessions, spans of all agents
    assert re.search(r"Traces this week</div><div class=\"value\">6<", html)
    # names are escaped everywhere (cards, chart titles, tooltips)
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html and SCRIPT not in html
    support, planner = card_of(html, "support"), card_of(html, "planner")
    # a falling issue rate is better (▼ green), a rising one worse (▲ red)
    assert '<span class="delta better"' in support and "50.0 % better" in support
    assert '<span class="delta worse"' in planner and "100.0 % worse" in planner
    assert "25.0 %" in support  # this week's issue rate, one decimal
    # the open-issues link filters the issues page by agent
    assert f"{tenant_a.base}/issues/?agent=support" in support
    assert f'href="{tenant_a.base}/agents/support/"' in support
    # 12-week chart: points only for the 3 weeks with traces, gap marks for the 9 others
    assert support.count('class="pt pt-issue"') == 3 and support.count('class="pt pt-silent"') == 3
    assert support.count('class="gap-mark"') == 9
    # the lone point 3 weeks ago has no line; last week → this week is one segment per series
    assert support.count('<polyline class="series-issue"') == 1
    assert support.count('<polyline class="series-silent"') == 1
    assert "issue rate 25.0 % (1 of 4 traces)" in support  # the point's tooltip

    frag = tenant_a.client.get(tenant_a.base + "/", **HX)
    body = frag.content.decode()
    assert frag.status_code == 200 and "<html" not in body and "page-head" not in body
    assert body.lstrip().startswith('<div id="overview-live"') and "agent-card" in body


def test_empty_overview_says_how_to_send_the_first_span_and_reloads_when_data_arrives(
    tenant_a,
) -> None:
    resp = tenant_a.client.get(tenant_a.base + "/")
    html = resp.content.decode()
    assert resp.status_code == 200
    assert "http://testserver/api/v1/spans" in html
    assert "OTEL_EXPORTER_OTLP_ENDPOINT=http://testserver" in html
    assert 'OTEL_EXPORTER_OTLP_HEADERS="Authorization=Bearer &lt;key&gt;"' in html
    assert "manage.py detect" in html and "a few seconds after spans arrive" in html
    assert f'href="{tenant_a.base}/settings/keys/"' in html or "/keys/" in html
    assert 'hx-trigger="every 30s"' not in html  # nothing to refresh yet
    wait = {**HX, "HTTP_HX_TRIGGER": "first-span-wait"}
    assert tenant_a.client.get(tenant_a.base + "/", **wait).status_code == 204
    ingest(tenant_a, [make("support", this_week_ns(), "clean")])
    ready = tenant_a.client.get(tenant_a.base + "/", **wait)
    assert ready.status_code == 200 and ready.headers["HX-Refresh"] == "true"


def test_dashboard_pages_of_another_tenant_answer_404(tenant_a, tenant_b) -> None:
    ingest(tenant_b, [make("globex-bot", this_week_ns(), "clean")])
    for path in ("/", "/report/", "/agents/globex-bot/", "/settings/contracts/"):
        assert tenant_b.client.get(tenant_b.base + path).status_code == 200, path
        assert tenant_a.client.get(tenant_b.base + path).status_code == 404, path
        assert tenant_a.client.get(tenant_b.base + path, **HX).status_code == 404, path
    # an agent only the other tenant has seen is unknown here
    assert tenant_a.client.get(tenant_a.base + "/agents/globex-bot/").status_code == 404
    resp = tenant_a.client.post(
        tenant_b.base + "/settings/contracts/",
        {"action": "json", "document": '{"globex-bot": {"latency_slo_ms": 1}}'},
    )
    assert resp.status_code == 404 and contracts_document(project_id=tenant_b.project.pk) == {}


# --- weekly report ---------------------------------------------------------------------------


def march_traffic() -> list[list[dict]]:
    wk1 = MARCH + WEEK_NS
    return [
        # support: week of Mar 2 → 2 of 4 (50 %); week of Mar 9 → 1 of 5 (20 %): 60 % better
        make("support", MARCH, "failed", "a"),
        make("support", MARCH, "defective", "a"),
        make("support", MARCH, "clean", "b"),
        make("support", MARCH, "clean"),
        make("support", wk1, "defective", "c"),
        *(make("support", wk1, "clean", "c") for _ in range(4)),
        # planner: 1 of 4 (25 %) → 1 of 2 (50 %): 100 % worse
        make("planner", MARCH, "defective"),
        *(make("planner", MARCH, "clean") for _ in range(3)),
        make("planner", wk1, "failed", "p"),
        make("planner", wk1, "clean", "p"),
        # an agent new in the week of Mar 9: no improvement defined
        make(SCRIPT, wk1, "clean"),
    ]


def cells(html: str, attr: str, name: str) -> list[int]:
    return [int(v.replace(",", "")) for v in re.findall(rf'{attr}="{name}">([\d,]+)<', html)]


def test_report_headline_figures_are_the_sums_of_its_agent_rows(tenant_a) -> None:
    ingest(tenant_a, march_traffic())
    resp = tenant_a.client.get(tenant_a.base + "/report/", {"week": "2026-03-11"})  # a Wednesday
    html = resp.content.decode()
    assert resp.status_code == 200
    assert "Mar 9 \u2013 Mar 15, 2026" in html  # snapped to its Monday
    for col in ("traces", "sessions", "spans"):
        assert cells(html, "data-total", col) == [sum(cells(html, "data-col", col))], col
    assert cells(html, "data-total", "traces") == [8]
    assert sum(cells(html, "data-col", "failed")) == 1
    assert sum(cells(html, "data-col", "defective")) == 1
    # spans: support 3 + 4 clean roots, planner 2, the new agent 1
    assert cells(html, "data-total", "spans") == [3 + 4 + 2 + 1]
    assert "8</strong> execution traces captured" in html
    assert "25.0 %" in html  # the week's issue rate: 2 of 8
    # (prev 3/8 - this 2/8) / (3/8) = 33.3 % better, also said in words in the headline sentence
    assert "33.3 %</strong> issue rate improvement" in html
    rows = {m[0]: m[1] for m in re.findall(r'<th scope="row">(.*?)</th>(.*?)</tr>', html, re.S)}
    support = next(v for k, v in rows.items() if ">support<" in k)
    planner = next(v for k, v in rows.items() if ">planner<" in k)
    scripted = next(v for k, v in rows.items() if "&lt;script&gt;" in k)
    assert 'class="delta better"' in support and "60.0 % better" in support
    assert 'class="delta worse"' in planner and "100.0 % worse" in planner
    assert "delta-none" in scripted and "—" in scripted
    assert SCRIPT not in html
    # the same week picked as an ISO week (what <input type=week> sends)
    iso = tenant_a.client.get(tenant_a.base + "/report/", {"week": "2026-W11"})
    assert cells(iso.content.decode(), "data-total", "traces") == [8]

    # the issues first seen in the week of Mar 2 are that week's new issues, linked
    first = tenant_a.client.get(tenant_a.base + "/report/", {"week": "2026-03-02"})
    from apps.issues.models import Issue

    new = first.content.decode().split('id="h-new"')[1].split("</section>")[0]
    for issue in Issue.objects.filter(project=tenant_a.project):
        assert f'href="{tenant_a.base}/issues/{issue.pk}/"' in new
    assert "No issue was new, regressed or resolved this week." in html  # the week of Mar 9


def test_report_picker_rejects_a_malformed_week_and_htmx_gets_the_fragment(tenant_a) -> None:
    bad = tenant_a.client.get(tenant_a.base + "/report/", {"week": "last tuesday"})
    html = bad.content.decode()
    assert bad.status_code == 400
    assert 'class="field has-error"' in html and "week: give a day as YYYY-MM-DD" in html
    ok = tenant_a.client.get(tenant_a.base + "/report/", {"week": "2026-03-04"})
    html = ok.content.decode()
    assert "Mar 2 \u2013 Mar 8, 2026" in html and "No traces in this week." in html
    assert "?week=2026-02-23" in html and "?week=2026-03-09" in html  # previous / next
    assert "data-print" in html
    frag = tenant_a.client.get(tenant_a.base + "/report/", {"week": "2026-03-04"}, **HX)
    body = frag.content.decode()
    assert frag.status_code == 200 and "<html" not in body
    assert body.lstrip().startswith('<div id="report"') and "data-print" not in body
    assert "HX-Request" in frag.headers["Vary"]
    # the picker's error reaches the page through htmx too (it does not swap a 4xx)
    bad = tenant_a.client.get(tenant_a.base + "/report/", {"week": "soon"}, **HX)
    assert bad.status_code == 200 and "week: give a day" in bad.content.decode()
    # the back button without a history cache asks for the whole page
    restore = {**HX, "HTTP_HX_HISTORY_RESTORE_REQUEST": "true"}
    full = tenant_a.client.get(tenant_a.base + "/report/", {"week": "2026-03-04"}, **restore)
    assert "<html" in full.content.decode()


# --- agent page ------------------------------------------------------------------------------


def test_agent_page_shows_trends_findings_latency_issues_traces_and_contract(tenant_a) -> None:
    traffic = march_traffic()
    ingest(tenant_a, traffic)
    contracts_put(
        project=tenant_a.project,
        document={"support": {"required_steps": ["crm.lookup"], "latency_slo_ms": 5000}},
    )
    failed_id = traffic[0][0]["trace_id"]
    defective_id = traffic[4][0]["trace_id"]
    url = tenant_a.base + "/agents/support/"
    resp = tenant_a.client.get(url, {"weeks": "52"})
    html = resp.content.decode()
    assert resp.status_code == 200
    # the trend chart: one point per week with traces (Mar 2 and Mar 9), in 52 weeks
    trend = html.split('id="h-trend"')[1].split("</section>")[0]
    assert trend.count('class="pt pt-issue"') == 2 and trend.count('class="gap-mark"') == 50
    findings = html.split('id="h-findings"')[1].split("</section>")[0]
    assert "2 partial_result_used findings over the weeks shown" in findings
    assert findings.count("1 partial_result_used finding</title>") == 2  # one bar per week
    latency = html.split('id="h-latency"')[1].split("</section>")[0]
    assert "p95 duration" in latency and "SLO 5 s" in latency
    assert f'href="{tenant_a.base}/traces/{failed_id}/"' in html
    assert f'href="{tenant_a.base}/traces/{defective_id}/"' in html
    assert "<code>partial_result_used</code>" in html.split('id="h-open"')[1]
    assert '<code class="step">crm.lookup</code>' in html and "Edit the contract" in html
    frag = tenant_a.client.get(url, {"weeks": "52"}, **HX).content.decode()
    assert "<html" not in frag and frag.lstrip().startswith('<div id="agent-body"')
    assert tenant_a.client.get(url, {"weeks": "7"}).status_code == 400
    assert tenant_a.client.get(tenant_a.base + "/agents/nobody/").status_code == 404


def test_agent_page_escapes_the_agent_name(tenant_a) -> None:
    name = "<img src=x onerror=alert(1)>"
    ingest(tenant_a, [make(name, this_week_ns(), "defective")])
    from urllib.parse import quote

    resp = tenant_a.client.get(tenant_a.base + "/agents/" + quote(name, safe="") + "/")
    html = resp.content.decode()
    assert resp.status_code == 200
    assert "&lt;img src=x onerror=alert(1)&gt;" in html and name not in html


# --- contracts editor ------------------------------------------------------------------------


def test_contracts_editor_saves_and_queues_rejudging_of_the_changed_agent(
    tenant_a, monkeypatch, django_capture_on_commit_callbacks, settings
) -> None:
    from apps.detection import tasks

    queued = []
    monkeypatch.setattr(tasks.rejudge_agents_task, "delay", lambda *a: queued.append(a))
    settings.KRIY_CONTRACT_REJUDGE_DAYS = 14
    url = tenant_a.base + "/settings/contracts/"
    with django_capture_on_commit_callbacks(execute=True):
        resp = tenant_a.client.post(
            url,
            {
                "action": "add",
                "add-agent": "support",
                "add-required_steps": "crm.lookup\n\n verify \ncrm.lookup",
                "add-latency_slo_ms": "20000",
            },
            follow=True,
        )
    assert resp.status_code == 200
    assert contracts_document(project_id=tenant_a.project.pk) == {
        "support": {"required_steps": ["crm.lookup", "verify"], "latency_slo_ms": 20000}
    }
    assert queued == [(tenant_a.project.pk, ["support"])]
    html = resp.content.decode()
    assert "traces of support from the last 14 days are being re-judged" in html
    # edit it in place, then through the JSON editor
    from apps.web.templatetags.charts import anchor

    prefix = anchor("support")
    with django_capture_on_commit_callbacks(execute=True):
        tenant_a.client.post(
            url,
            {
                "action": "edit",
                "agent": "support",
                f"{prefix}-agent": "support",
                f"{prefix}-required_steps": "verify",
                f"{prefix}-latency_slo_ms": "",
            },
        )
    assert contracts_document(project_id=tenant_a.project.pk) == {
        "support": {"required_steps": ["verify"]}
    }
    with django_capture_on_commit_callbacks(execute=True):
        resp = tenant_a.client.post(
            url, {"action": "json", "document": '{"planner": {"latency_slo_ms": 30000}}'}
        )
    assert resp.status_code == 302
    assert contracts_document(project_id=tenant_a.project.pk) == {
        "planner": {"latency_slo_ms": 30000}
    }
    assert queued[-1] == (tenant_a.project.pk, ["planner", "support"])
    page = tenant_a.client.get(url).content.decode()
    assert "planner" in page and "&quot;latency_slo_ms&quot;: 30000" in page
    frag = tenant_a.client.get(url, **HX).content.decode()
    assert "<html" not in frag and frag.lstrip().startswith('<div id="contracts-editor"')


def test_contracts_editor_rejects_bad_input_next_to_the_field_and_saves_nothing(
    tenant_a,
) -> None:
    contracts_put(project=tenant_a.project, document={"support": {"latency_slo_ms": 100}})
    before = contracts_document(project_id=tenant_a.project.pk)
    url = tenant_a.base + "/settings/contracts/"
    bad_slo = tenant_a.client.post(
        url,
        {"action": "add", "add-agent": "planner", "add-latency_slo_ms": "fast"},
    )
    html = bad_slo.content.decode()
    assert bad_slo.status_code == 400
    field = html.split('id="id_add-latency_slo_ms"')[1].split("</div>")[0:3]
    assert "Latency SLO: enter a whole number of milliseconds." in "".join(field)
    assert 'value="planner"' in html  # what was typed stays
    bad_json = tenant_a.client.post(url, {"action": "json", "document": '{"a": {"slo": 1'})
    assert bad_json.status_code == 400 and "Not valid JSON" in bad_json.content.decode()
    unknown = tenant_a.client.post(
        url, {"action": "json", "document": '{"a": {"required_steps": ["x"], "slo_ms": 1}}'}
    )
    text = unknown.content.decode()
    assert unknown.status_code == 400 and "unknown field" in text and "has-error" in text
    duplicate = tenant_a.client.post(url, {"action": "add", "add-agent": "support"})
    assert duplicate.status_code == 400 and "already has a contract" in duplicate.content.decode()
    assert contracts_document(project_id=tenant_a.project.pk) == before


def test_contracts_editor_is_read_only_for_a_viewer(tenant_a) -> None:
    from django.test import Client

    from apps.accounts.models import User
    from apps.orgs.models import Membership

    contracts_put(
        project=tenant_a.project,
        document={"support": {"required_steps": ["verify"]}, SCRIPT: {"latency_slo_ms": 5}},
    )
    viewer = User.objects.create_user(email="viewer@acme.example", password="x" * 12)
    Membership.objects.create(organization=tenant_a.org, user=viewer, role="viewer")
    client = Client()
    client.force_login(viewer)
    url = tenant_a.base + "/settings/contracts/"
    html = client.get(url).content.decode()
    assert "Only an admin" in html and '<code class="step">verify</code>' in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html and SCRIPT not in html
    assert 'method="post" action="' + url not in html and "<textarea" not in html
    resp = client.post(url, {"action": "json", "document": "{}"})
    assert resp.status_code == 404
    assert set(contracts_document(project_id=tenant_a.project.pk)) == {"support", SCRIPT}


# --- chart and delta units -------------------------------------------------------------------


def test_improvement_direction_words_and_why_it_is_undefined() -> None:
    assert delta_context(0.234, 0.3, 0.2298, known_prev=True)["kind"] == "better"
    assert delta_context(0.234, 0.3, 0.2298)["text"] == "23.4 % better"
    assert delta_context(-0.5, 0.2, 0.3)["text"] == "50.0 % worse"
    assert delta_context(-0.5, 0.2, 0.3)["kind"] == "worse"
    assert delta_context(0.0, 0.2, 0.2)["kind"] == "flat"
    zero = delta_context(None, 0.0, 0.1, known_prev=True)
    assert zero["kind"] == "none" and "0.0 % issue rate" in zero["why"]
    assert "no traces this week" in delta_context(None, 0.1, None)["why"]


def test_line_chart_leaves_gaps_and_scales_to_the_data() -> None:
    weeks = [
        {"week_start": f"2026-03-{d:02d}", "issue_rate": r, "silent_defect_rate": s}
        for d, r, s in ((2, 0.5, 0.25), (9, None, None), (16, 0.2, 0.1), (23, 0.3, None))
    ]
    c = line_chart(weeks, TREND, title="t", fmt=lambda v: f"{v}", floor=0.02, cap=1.0)
    issue, silent = c["series"]
    assert len(issue["points"]) == 3 and len(issue["segments"]) == 1  # Mar 2 alone, then 16 to 23
    assert len(silent["points"]) == 2 and silent["segments"] == []
    assert [g["x"] for g in c["gaps"]] == [issue["points"][0]["x"] + (c["x1"] - c["x0"]) / 4]
    # ticks in nice steps up to the data maximum, rounded up
    assert [g["label"] for g in c["grid"]] == ["0.0", "0.2", "0.4", "0.6"]
