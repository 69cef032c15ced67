"""Production profile: ``DJANGO_SETTINGS_MODULE=kriyplatform.settings_production``.

Passes ``manage.py check --deploy``. Expects TLS in front (a proxy setting X-Forwarded-Proto).
"""

import os

from kriyplatform.settings import *  # noqa: F403

DEBUG = False
# The demo organization is for the embedded default; production seeds nothing unless asked.
KRIY_DEMO = env_bool("KRIY_DEMO", False)  # noqa: F405
SECRET_KEY = os.environ["DJANGO_SECRET_KEY"]
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_SSL_REDIRECT = env_bool("DJANGO_SECURE_SSL_REDIRECT", True)  # noqa: F405
SECURE_REDIRECT_EXEMPT = [r"^healthz$"]
SECURE_HSTS_SECONDS = env_int("DJANGO_HSTS_SECONDS", 31536000)  # noqa: F405
SECURE_HSTS_INCLUDE_SUBDOMAINS = True
SECURE_HSTS_PRELOAD = True
SESSION_COOKIE_SECURE = True
CSRF_COOKIE_SECURE = True
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"},
}
WHITENOISE_USE_FINDERS = False
