from django.urls import path

from apps.web import pages, views

app_name = "web"
P = "o/<slug:org_slug>/p/<slug:project_slug>/"
urlpatterns = [
    path("", views.landing, name="home"),
    path(P, pages.overview, name="overview"),
    path(P + "report/", pages.report, name="report"),
    path(P + "agents/<str:agent>/", pages.agent, name="agent"),
    path(P + "issues/", pages.issues, name="issues"),
    path(P + "issues/<int:issue_id>/", pages.issue, name="issue"),
    path(P + "issues/<int:issue_id>/status/", pages.issue_status, name="issue-status"),
    path(P + "traces/", pages.traces, name="traces"),
    path(P + "traces/<str:trace_id>/", pages.trace, name="trace"),
    path(P + "traces/<str:trace_id>/spans/<str:span_id>/", pages.span, name="span"),
    path(P + "sessions/", pages.sessions, name="sessions"),
    path(P + "sessions/<path:session_id>/", pages.session, name="session"),
    path(P + "settings/contracts/", pages.contracts, name="contracts"),
    path(P + "settings/alerts/", pages.alerts, name="alerts"),
]
