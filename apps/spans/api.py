from __future__ import annotations

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response

from apps.orgs.tenancy import ProjectApiView
from apps.spans import selectors
from kriyplatform.params import choice_param, int_param, str_param, time_param

_trace_item = inline_serializer(
    "TraceListItem",
    {
        "trace_id": serializers.CharField(),
        "agent": serializers.CharField(),
        "session_id": serializers.CharField(allow_null=True),
        "name": serializers.CharField(),
        "start_time": serializers.CharField(),
        "duration_ms": serializers.FloatField(),
        "status": serializers.CharField(),
        "outcome": serializers.CharField(allow_null=True),
        "finding_count": serializers.IntegerField(),
    },
)


def trace_filters(params: object) -> selectors.TraceFilters:
    return selectors.TraceFilters(
        agent=str_param(params, "agent", 128),
        session_id=str_param(params, "session_id", 256),
        outcome=choice_param(params, "outcome", selectors.OUTCOMES),
        since_ns=time_param(params, "since"),
        until_ns=time_param(params, "until"),
        q=str_param(params, "q", 256),
        limit=int_param(params, "limit", 50, 1, selectors.MAX_PAGE),
        cursor=str_param(params, "cursor", 512),
    )


class TraceListApi(ProjectApiView):
    @extend_schema(
        operation_id="traces_list",
        summary="List traces, newest first",
        parameters=[
            OpenApiParameter("agent", str),
            OpenApiParameter("session_id", str),
            OpenApiParameter("outcome", str, enum=list(selectors.OUTCOMES)),
            OpenApiParameter("since", str, description="RFC 3339, YYYY-MM-DD or Unix ns"),
            OpenApiParameter(
                "until", str, description="RFC 3339, YYYY-MM-DD or Unix ns (exclusive)"
            ),
            OpenApiParameter("q", str, description="text in the root span's name or agent"),
            OpenApiParameter("limit", int, description="1-500, default 50"),
            OpenApiParameter("cursor", str, description="the next_cursor of the previous page"),
        ],
        responses=inline_serializer(
            "TraceList",
            {"traces": _trace_item, "next_cursor": serializers.CharField(allow_null=True)},
        ),
    )
    def get(self, request: Request) -> Response:
        items, nxt = selectors.traces_list(
            project_id=self.tenant.project_id, filters=trace_filters(request.query_params)
        )
        return Response({"traces": items, "next_cursor": nxt})


class TraceDetailApi(ProjectApiView):
    @extend_schema(
        operation_id="trace_get",
        summary="A trace: its spans, outcome and findings",
        responses=OpenApiTypes.OBJECT,
    )
    def get(self, request: Request, trace_id: str) -> Response:
        return Response(selectors.trace_get(project_id=self.tenant.project_id, trace_id=trace_id))


class SessionDetailApi(ProjectApiView):
    @extend_schema(
        operation_id="session_get",
        summary="A session: its traces in time order and its outcome",
        responses=OpenApiTypes.OBJECT,
    )
    def get(self, request: Request, session_id: str) -> Response:
        return Response(
            selectors.session_get(project_id=self.tenant.project_id, session_id=session_id)
        )


class UsageApi(ProjectApiView):
    @extend_schema(
        summary="What the project has stored (deduplicated) and this month's ingest against the quota",
        responses=OpenApiTypes.OBJECT,
    )
    def get(self, request: Request) -> Response:
        return Response(
            selectors.usage_get(
                project_id=self.tenant.project_id, organization=self.tenant.organization
            )
        )
