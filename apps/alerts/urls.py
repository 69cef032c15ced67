from django.urls import path

from apps.alerts import views

app_name = "alerts"
P = "o/<slug:org_slug>/p/<slug:project_slug>/"
urlpatterns = [
    path(P + "settings/alerts/", views.rules, name="rules"),
]
