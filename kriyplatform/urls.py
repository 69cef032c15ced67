from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView

from apps.web.views import healthz

urlpatterns = [
    path("healthz", healthz, name="healthz"),
    path("", include("apps.web.urls")),
    path("", include("apps.accounts.urls")),
    path("", include("apps.orgs.urls")),
    path("", include("apps.ingest.urls")),
    path("", include("apps.alerts.urls")),
    path("", include("apps.demo.urls")),
    path("api/v1/", include("apps.spans.api_urls")),
    path("api/v1/", include("apps.detection.api_urls")),
    path("api/v1/", include("apps.issues.api_urls")),
    path("api/v1/", include("apps.metrics.api_urls")),
    path("api/v1/", include("apps.alerts.api_urls")),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/docs/", SpectacularSwaggerSplitView.as_view(url_name="schema"), name="api-docs"),
]

handler404 = "apps.web.views.not_found"
handler500 = "apps.web.views.server_error"
