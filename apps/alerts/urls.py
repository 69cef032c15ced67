from django.urls import path

from apps.alerts import views

app_name = "alerts"
P = "o/<slug:org_slug>/p/<slug:project_slug>/settings/alerts/"
urlpatterns = [
    path(P, views.rules, name="rules"),
    path(P + "rules/new/", views.rule_new, name="rule-new"),
    path(P + "rules/preview/", views.rule_preview, name="rule-preview"),
    path(P + "rules/<int:rule_id>/", views.rule, name="rule"),
    path(P + "rules/<int:rule_id>/edit/", views.rule_edit, name="rule-edit"),
    path(P + "rules/<int:rule_id>/mute/", views.rule_mute, name="rule-mute"),
    path(P + "rules/<int:rule_id>/delete/", views.rule_delete, name="rule-delete"),
    path(P + "channels/", views.channels, name="channels"),
    path(P + "channels/new/", views.channel_new, name="channel-new"),
    path(P + "channels/<int:channel_id>/edit/", views.channel_edit, name="channel-edit"),
    path(P + "channels/<int:channel_id>/test/", views.channel_test, name="channel-test"),
    path(P + "channels/<int:channel_id>/delete/", views.channel_delete, name="channel-delete"),
]
