from django.urls import path

from apps.web import dashboards, explore, views

app_name = "web"
P = "o/<slug:org_slug>/p/<slug:project_slug>/"
urlpatterns = [
    path("", views.landing, name="home"),
    # dashboards
    path(P, dashboards.overview, name="overview"),
    path(P + "report/", dashboards.report, name="report"),
    path(P + "agents/<path:agent>/", dashboards.agent, name="agent"),
    path(P + "settings/contracts/", dashboards.contracts, name="contracts"),
    # explore
    path(P + "issues/", explore.issues, name="issues"),
    path(P + "issues/<int:issue_id>/", explore.issue, name="issue"),
    path(P + "issues/<int:issue_id>/status/", explore.issue_status, name="issue-status"),
    path(P + "traces/", explore.traces, name="traces"),
    path(P + "traces/<str:trace_id>/", explore.trace, name="trace"),
    path(P + "traces/<str:trace_id>/spans/<str:span_id>/", explore.span, name="span"),
    path(P + "sessions/", explore.sessions, name="sessions"),
    path(P + "sessions/<path:session_id>/", explore.session, name="session"),
]
