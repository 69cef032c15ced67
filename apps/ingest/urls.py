from django.urls import path

from apps.ingest import views

app_name = "ingest"
urlpatterns = [
    path("api/v1/spans", views.native_spans, name="native"),
    path("v1/traces", views.otlp_traces, name="otlp"),
]
