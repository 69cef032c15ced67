from django.apps import AppConfig


class ApikeysConfig(AppConfig):
    name = "apps.apikeys"
    label = "apikeys"

    def ready(self) -> None:
        from apps.apikeys import schema  # noqa: F401 - registers the OpenAPI auth scheme
