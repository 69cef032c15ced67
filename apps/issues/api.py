from __future__ import annotations

from drf_spectacular.utils import OpenApiParameter, extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response

from apps.issues import selectors
from apps.issues.models import Issue, IssueStatus
from apps.issues.services import issue_set_status
from apps.orgs.tenancy import ProjectApiView
from kriyplatform.params import choice_param, int_param, str_param


class IssueSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    type = serializers.CharField()
    agent = serializers.CharField()
    span_name = serializers.CharField()
    status = serializers.ChoiceField(choices=IssueStatus.values)
    first_seen = serializers.DateTimeField()
    last_seen = serializers.DateTimeField()
    count = serializers.IntegerField()


_issue = IssueSerializer


class IssueListApi(ProjectApiView):
    @extend_schema(
        operation_id="issues_list",
        summary="Grouped issues, most recently seen first",
        parameters=[
            OpenApiParameter("agent", str),
            OpenApiParameter("status", str, enum=IssueStatus.values),
            OpenApiParameter("type", str),
            OpenApiParameter("limit", int, description="1-1000, default 200"),
            OpenApiParameter("offset", int),
        ],
        responses=inline_serializer(
            "IssueList", {"issues": IssueSerializer(many=True), "total": serializers.IntegerField()}
        ),
    )
    def get(self, request: Request) -> Response:
        p = request.query_params
        qs = selectors.issues_query(
            self.tenant.scoped(Issue),
            agent=str_param(p, "agent", 128),
            status=choice_param(p, "status", tuple(IssueStatus.values)),
            type=str_param(p, "type", 64),
        )
        limit, offset = int_param(p, "limit", 200, 1, 1000), int_param(p, "offset", 0, 0, 10**9)
        return Response(
            {
                "issues": [selectors.issue_out(i) for i in qs[offset : offset + limit]],
                "total": qs.count(),
            }
        )


class IssueDetailApi(ProjectApiView):
    @extend_schema(operation_id="issue_get", summary="One issue", responses=_issue)
    def get(self, request: Request, issue_id: int) -> Response:
        return Response(selectors.issue_out(self.tenant.get(Issue, pk=issue_id)))


class IssueActionApi(ProjectApiView):
    """Resolve, ignore or reopen an issue (keys need the admin scope; members triage on the page)."""

    required_scope = "admin"

    @extend_schema(
        operation_id="issue_action",
        summary="Resolve, ignore or reopen",
        request=inline_serializer(
            "IssueAction",
            {"action": serializers.ChoiceField(choices=["resolve", "ignore", "reopen"])},
        ),
        responses=_issue,
    )
    def post(self, request: Request, issue_id: int) -> Response:
        issue = self.tenant.get(Issue, pk=issue_id)
        action = request.data.get("action") if isinstance(request.data, dict) else None
        actor = request.user if getattr(request.user, "pk", None) else "api key"
        return Response(
            selectors.issue_out(issue_set_status(issue=issue, action=action or "", actor=actor))
        )
