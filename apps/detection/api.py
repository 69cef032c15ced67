from __future__ import annotations

from django.db import transaction
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema
from rest_framework.parsers import JSONParser
from rest_framework.request import Request
from rest_framework.response import Response

from apps.detection.services import contracts_document, contracts_put
from apps.orgs.tenancy import ProjectApiView


class ContractsApi(ProjectApiView):
    """The project's agent contracts, in the ``--contracts`` file format of spans.md."""

    required_scope = "admin"
    parser_classes = [JSONParser]

    @extend_schema(summary="Agent contracts of the project", responses=OpenApiTypes.OBJECT)
    def get(self, request: Request) -> Response:
        return Response(contracts_document(project_id=self.tenant.project_id))

    @extend_schema(
        summary="Replace the agent contracts; re-judges the affected agents' recent traces",
        request=OpenApiTypes.OBJECT,
        responses=OpenApiTypes.OBJECT,
    )
    def put(self, request: Request) -> Response:
        actor = request.user if getattr(request.user, "pk", None) else None
        document, changed = contracts_put(
            project=self.tenant.project, document=request.data, actor=actor
        )
        if changed:
            from apps.detection.tasks import rejudge_agents_task

            project_id, agents = self.tenant.project_id, sorted(changed)
            transaction.on_commit(lambda: rejudge_agents_task.delay(project_id, agents))
        return Response(document)
