from django.apps import AppConfig


class SpansConfig(AppConfig):
    name = "apps.spans"
    label = "spans"
