from django.urls import path

from apps.alerts import api

urlpatterns = [
    path("alert-rules", api.AlertRuleListApi.as_view(), name="api-alert-rules"),
    path("alert-rules/<int:rule_id>", api.AlertRuleDetailApi.as_view(), name="api-alert-rule"),
    path(
        "alert-rules/<int:rule_id>/events",
        api.AlertRuleEventsApi.as_view(),
        name="api-alert-rule-events",
    ),
    path("channels", api.ChannelListApi.as_view(), name="api-channels"),
    path("channels/<int:channel_id>", api.ChannelDetailApi.as_view(), name="api-channel"),
    path("channels/<int:channel_id>/test", api.ChannelTestApi.as_view(), name="api-channel-test"),
]
