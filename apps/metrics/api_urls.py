from django.urls import path

from apps.metrics import api

urlpatterns = [
    path("agents/<path:agent>/weekly", api.AgentWeeklyApi.as_view(), name="api-agent-weekly"),
    path("summary", api.ProjectSummaryApi.as_view(), name="api-summary"),
]
