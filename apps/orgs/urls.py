from django.urls import path

from apps.orgs import views

app_name = "orgs"
urlpatterns = [
    path("invite/<str:token>/", views.invite, name="invite"),
    path("o/<slug:org_slug>/", views.org_home, name="org-home"),
    path("o/<slug:org_slug>/settings/projects/", views.projects, name="projects"),
    path("o/<slug:org_slug>/settings/members/", views.members, name="members"),
    path(
        "o/<slug:org_slug>/settings/members/<int:membership_id>/role/",
        views.member_role,
        name="member-role",
    ),
    path(
        "o/<slug:org_slug>/settings/members/<int:membership_id>/remove/",
        views.member_remove,
        name="member-remove",
    ),
    path(
        "o/<slug:org_slug>/settings/invitations/<int:invitation_id>/revoke/",
        views.invitation_revoke,
        name="invitation-revoke",
    ),
    path("o/<slug:org_slug>/settings/", views.general, name="general"),
    path("o/<slug:org_slug>/p/<slug:project_slug>/settings/keys/", views.keys, name="keys"),
    path(
        "o/<slug:org_slug>/p/<slug:project_slug>/settings/keys/<int:key_id>/revoke/",
        views.key_revoke,
        name="key-revoke",
    ),
]
