from django.urls import path

from apps.spans import api

urlpatterns = [
    path("traces", api.TraceListApi.as_view(), name="api-traces"),
    path("traces/<str:trace_id>", api.TraceDetailApi.as_view(), name="api-trace"),
    path("sessions/<path:session_id>", api.SessionDetailApi.as_view(), name="api-session"),
    path("usage", api.UsageApi.as_view(), name="api-usage"),
]
