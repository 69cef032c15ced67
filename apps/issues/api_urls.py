from django.urls import path

from apps.issues import api

urlpatterns = [
    path("issues", api.IssueListApi.as_view(), name="api-issues"),
    path("issues/<int:issue_id>", api.IssueDetailApi.as_view(), name="api-issue"),
    path("issues/<int:issue_id>/actions", api.IssueActionApi.as_view(), name="api-issue-action"),
]
