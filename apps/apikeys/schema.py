"""OpenAPI: API keys are bearer tokens (``Authorization: Bearer kp_…``)."""

from drf_spectacular.extensions import OpenApiAuthenticationExtension


class ApiKeyScheme(OpenApiAuthenticationExtension):
    target_class = "apps.apikeys.auth.ApiKeyAuthentication"
    name = "ApiKey"

    def get_security_definition(self, auto_schema):
        return {
            "type": "http",
            "scheme": "bearer",
            "bearerFormat": "kp_<46 characters>",
            "description": "A project API key. Scopes: ingest, read, admin.",
        }
