from __future__ import annotations

from datetime import date

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework.request import Request
from rest_framework.response import Response

from apps.metrics import selectors
from apps.orgs.tenancy import ProjectApiView
from kriyplatform.errors import AppError
from kriyplatform.params import int_param

WEEK_FIELDS = (
    "week_start",
    "traces",
    "sessions",
    "spans",
    "failed",
    "defective",
    "issue_rate",
    "silent_defect_rate",
    "improvement",
)
EXTRA_FIELDS = (
    "findings",
    "findings_by_type",
    "p50_ms",
    "p95_ms",
    "tokens_in",
    "tokens_out",
    "cost_usd",
    "new_issues",
    "resolved_issues",
    "regressed_issues",
)


def until_param(params: object) -> date | None:
    raw = params.get("until")  # type: ignore[attr-defined]
    if not raw:
        return None
    try:
        return date.fromisoformat(raw)
    except ValueError as exc:
        raise AppError("until: must be a date YYYY-MM-DD", field="until") from exc


class AgentWeeklyApi(ProjectApiView):
    @extend_schema(
        summary="An agent's last N ISO weeks, oldest first (spans.md §4)",
        parameters=[
            OpenApiParameter("weeks", int, description="1-520, default 12"),
            OpenApiParameter(
                "until",
                str,
                description="YYYY-MM-DD: end with the ISO week holding this day (default today)",
            ),
        ],
        responses=OpenApiTypes.OBJECT,
    )
    def get(self, request: Request, agent: str) -> Response:
        weeks = int_param(request.query_params, "weeks", 12, 1, 520)
        rows = selectors.agent_weeks(
            project_id=self.tenant.project_id,
            agent=agent,
            weeks=weeks,
            until=until_param(request.query_params),
        )
        return Response(
            {"agent": agent, "weeks": [{k: r[k] for k in WEEK_FIELDS + EXTRA_FIELDS} for r in rows]}
        )


class ProjectSummaryApi(ProjectApiView):
    @extend_schema(
        summary="Per agent: this week, last week, the N-week trend and open issues (the dashboard)",
        parameters=[OpenApiParameter("weeks", int), OpenApiParameter("until", str)],
        responses=OpenApiTypes.OBJECT,
    )
    def get(self, request: Request) -> Response:
        weeks = int_param(request.query_params, "weeks", 12, 2, 520)
        agents = selectors.project_summary(
            project_id=self.tenant.project_id, weeks=weeks, until=until_param(request.query_params)
        )
        return Response({"agents": agents})
