"""Settings for kriyplatform.

Every external part is switched on by its own environment variable; with none set, the platform
runs as the embedded default: SQLite + chDB under ``KRIY_DATA_DIR`` and an in-process Celery
broker, all inside one process (see ``kriyplatform.embedded``).
"""

from __future__ import annotations

import os
from pathlib import Path

import dj_database_url

BASE_DIR = Path(__file__).resolve().parent.parent


def env_bool(name: str, default: bool) -> bool:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    return raw.strip().lower() in {"1", "true", "yes", "on"}


def env_int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    return int(raw) if raw not in (None, "") else default


DATA_DIR = Path(os.environ.get("KRIY_DATA_DIR") or BASE_DIR / "var").resolve()

DEBUG = env_bool("DJANGO_DEBUG", False)
SECRET_KEY = (
    os.environ.get("DJANGO_SECRET_KEY") or "embedded-default-insecure-key-set-DJANGO_SECRET_KEY"
)
ALLOWED_HOSTS = [
    h.strip()
    for h in os.environ.get("DJANGO_ALLOWED_HOSTS", "127.0.0.1,localhost,testserver,[::1]").split(
        ","
    )
    if h.strip()
]
CSRF_TRUSTED_ORIGINS = [
    o.strip() for o in os.environ.get("DJANGO_CSRF_TRUSTED_ORIGINS", "").split(",") if o.strip()
]
KRIY_PUBLIC_URL = os.environ.get("KRIY_PUBLIC_URL", "http://127.0.0.1:8000").rstrip("/")

INSTALLED_APPS = [
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django.contrib.humanize",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "django_htmx",
    "template_partials",
    "apps.accounts",
    "apps.orgs",
    "apps.apikeys",
    "apps.audit",
    "apps.ingest",
    "apps.spans",
    "apps.detection",
    "apps.issues",
    "apps.metrics",
    "apps.alerts",
    "apps.demo",
    "apps.web",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "kriyplatform.middleware.SecurityHeadersMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    "kriyplatform.middleware.ServiceUnavailableMiddleware",
]

ROOT_URLCONF = "kriyplatform.urls"
WSGI_APPLICATION = "kriyplatform.wsgi.application"
AUTH_USER_MODEL = "accounts.User"
LOGIN_URL = "accounts:signin"
LOGIN_REDIRECT_URL = "web:home"
LOGOUT_REDIRECT_URL = "accounts:signin"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "frontend" / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "apps.orgs.context.tenancy",
            ],
            "builtins": ["django.contrib.humanize.templatetags.humanize"],
        },
    }
]

# --- relational store -------------------------------------------------------------------------
DATABASES = {
    "default": dj_database_url.parse(
        os.environ.get("DATABASE_URL") or f"sqlite:///{DATA_DIR / 'kriy.sqlite3'}",
        conn_max_age=env_int("DATABASE_CONN_MAX_AGE", 60),
        conn_health_checks=True,
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # One embedded process with web + worker threads: wait for the write lock instead of failing.
    DATABASES["default"]["OPTIONS"] = {
        "timeout": 30,
        "transaction_mode": "IMMEDIATE",
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    }
    DATABASES["default"]["CONN_MAX_AGE"] = 0
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- span store ---------------------------------------------------------------------------------
# chdb://<dir> (embedded, default) or http(s)://user:pass@host:8123/db (ClickHouse server).
CLICKHOUSE_URL = os.environ.get("CLICKHOUSE_URL") or f"chdb://{DATA_DIR / 'clickhouse'}"
# A cluster name turns the DDL into Replicated*MergeTree tables behind Distributed tables.
CLICKHOUSE_CLUSTER = os.environ.get("CLICKHOUSE_CLUSTER", "")
CLICKHOUSE_DATABASE = os.environ.get("CLICKHOUSE_DATABASE", "kriy")
# Embedded only: after chDB opens, hand its start-up-only code pages back to the kernel
# (clickhouse.client.release_startup_pages; ~150 MB less resident memory).
KRIY_CHDB_RELEASE_STARTUP_PAGES = env_bool("KRIY_CHDB_RELEASE_STARTUP_PAGES", True)

# --- cache / redis --------------------------------------------------------------------------------
REDIS_URL = os.environ.get("REDIS_URL", "")
if REDIS_URL:
    CACHES = {
        "default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": REDIS_URL}
    }
else:
    CACHES = {
        "default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache", "LOCATION": "kriy"}
    }

# --- celery -----------------------------------------------------------------------------------------
CELERY_BROKER_URL = os.environ.get("CELERY_BROKER_URL") or "memory://localhost/"
CELERY_EMBEDDED = CELERY_BROKER_URL.startswith("memory://")
CELERY_TASK_IGNORE_RESULT = True
CELERY_RESULT_BACKEND = os.environ.get("CELERY_RESULT_BACKEND") or None
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_SOFT_TIME_LIMIT = env_int("CELERY_TASK_SOFT_TIME_LIMIT", 240)
CELERY_TASK_TIME_LIMIT = env_int("CELERY_TASK_TIME_LIMIT", 300)
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_TIMEZONE = "UTC"
# Tests run tasks inline by default; the worker tests start a real worker on Redis instead.
CELERY_TASK_ALWAYS_EAGER = env_bool("CELERY_TASK_ALWAYS_EAGER", False)

# How often the judge runs, in seconds (embedded: a few seconds; production: 30 s).
KRIY_DETECT_INTERVAL = float(
    os.environ.get("KRIY_DETECT_INTERVAL") or (3 if CELERY_EMBEDDED else 30)
)
# Spans younger than this (by ingest version) wait for the next pass, so an insert still in flight
# when the watermark moves is never skipped.
KRIY_DETECT_SETTLE_SECONDS = float(os.environ.get("KRIY_DETECT_SETTLE_SECONDS") or 2)
# Large judge passes parse and judge in worker processes (the parent reads the span store).
KRIY_JUDGE_PROCESSES = env_int("KRIY_JUDGE_PROCESSES", min(4, os.cpu_count() or 1))
KRIY_JUDGE_PARALLEL_MIN_TRACES = env_int("KRIY_JUDGE_PARALLEL_MIN_TRACES", 20_000)
# Embedded default only (judge and web share one process): while ingest runs above this many
# spans/s, the judge waits (at most KRIY_JUDGE_MAX_DEFER_SECONDS) and then takes the backlog in
# one larger, cheaper pass. 0 never defers. Production runs the judge in its own workers.
KRIY_JUDGE_DEFER_ABOVE = env_int("KRIY_JUDGE_DEFER_ABOVE", 5_000 if CELERY_EMBEDDED else 0)
KRIY_JUDGE_MAX_DEFER_SECONDS = float(os.environ.get("KRIY_JUDGE_MAX_DEFER_SECONDS") or 30)
# A contract change re-judges the affected agents' traces of this many days.
KRIY_CONTRACT_REJUDGE_DAYS = env_int("KRIY_CONTRACT_REJUDGE_DAYS", 14)
KRIY_ROLLUP_INTERVAL = float(os.environ.get("KRIY_ROLLUP_INTERVAL") or 60)
KRIY_ALERT_INTERVAL = float(os.environ.get("KRIY_ALERT_INTERVAL") or 60)
# Notifications: HTTP timeout per webhook/Slack attempt; refuse private/loopback webhook targets
# (turn on for a hosted multi-tenant deployment).
KRIY_ALERT_HTTP_TIMEOUT = float(os.environ.get("KRIY_ALERT_HTTP_TIMEOUT") or 5)
KRIY_ALERT_BLOCK_PRIVATE_URLS = env_bool("KRIY_ALERT_BLOCK_PRIVATE_URLS", False)

# --- ingest limits --------------------------------------------------------------------------------
KRIY_INGEST = {
    "MAX_BODY_BYTES": env_int("KRIY_MAX_BODY_BYTES", 16 * 1024 * 1024),  # as received (compressed)
    "MAX_DECOMPRESSED_BYTES": env_int("KRIY_MAX_DECOMPRESSED_BYTES", 64 * 1024 * 1024),
    "MAX_SPANS_PER_REQUEST": env_int("KRIY_MAX_SPANS_PER_REQUEST", 10_000),
    "MAX_ATTRIBUTES_PER_SPAN": env_int("KRIY_MAX_ATTRIBUTES_PER_SPAN", 256),
    "MAX_ATTRIBUTE_BYTES": env_int("KRIY_MAX_ATTRIBUTE_BYTES", 64 * 1024),
    "MAX_IO_BYTES": env_int("KRIY_MAX_IO_BYTES", 1024 * 1024),  # per input / output
    "MAX_EVENTS_PER_SPAN": env_int("KRIY_MAX_EVENTS_PER_SPAN", 128),
    # Group commit: concurrent requests are flushed together, each acknowledged after its flush.
    "BATCH_MAX_WAIT_MS": float(os.environ.get("KRIY_BATCH_MAX_WAIT_MS") or 3),
    "BATCH_MAX_ROWS": env_int("KRIY_BATCH_MAX_ROWS", 20_000),
}
# Ingest checks its own (larger) body limits; Django's 2.5 MB default would cut them short.
DATA_UPLOAD_MAX_MEMORY_SIZE = KRIY_INGEST["MAX_BODY_BYTES"] + 1024 * 1024
# Token bucket per organization: sustained spans per second and the burst on top of it.
KRIY_RATE_LIMIT_SPANS_PER_SEC = env_int("KRIY_RATE_LIMIT_SPANS_PER_SEC", 100_000)
KRIY_RATE_LIMIT_BURST = env_int("KRIY_RATE_LIMIT_BURST", 500_000)
KRIY_DEFAULT_MONTHLY_QUOTA = env_int("KRIY_DEFAULT_MONTHLY_QUOTA", 1_000_000_000)
KRIY_DEFAULT_RETENTION_DAYS = env_int("KRIY_DEFAULT_RETENTION_DAYS", 90)
KRIY_API_KEY_LAST_USED_INTERVAL = env_int("KRIY_API_KEY_LAST_USED_INTERVAL", 60)
KRIY_DEMO = env_bool("KRIY_DEMO", True)

# --- auth -----------------------------------------------------------------------------------------------
PASSWORD_HASHERS = [
    "django.contrib.auth.hashers.Argon2PasswordHasher",
    "django.contrib.auth.hashers.PBKDF2PasswordHasher",
]
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {
        "NAME": "django.contrib.auth.password_validation.MinimumLengthValidator",
        "OPTIONS": {"min_length": 10},
    },
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
KRIY_LOGIN_MAX_FAILURES = env_int("KRIY_LOGIN_MAX_FAILURES", 10)
KRIY_LOGIN_LOCK_SECONDS = env_int("KRIY_LOGIN_LOCK_SECONDS", 300)

# --- email ------------------------------------------------------------------------------------------------
EMAIL_BACKEND = os.environ.get("EMAIL_BACKEND", "django.core.mail.backends.console.EmailBackend")
DEFAULT_FROM_EMAIL = os.environ.get(
    "DEFAULT_FROM_EMAIL", "kriyplatform <alerts@kriyplatform.local>"
)
if os.environ.get("EMAIL_URL"):
    # smtp://user:pass@host:port
    # smtp://user:pass@host:25, smtp+tls://… (STARTTLS, 587) or smtps://… (implicit TLS, 465)
    from urllib.parse import unquote, urlparse

    _e = urlparse(os.environ["EMAIL_URL"])
    EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    EMAIL_USE_TLS = _e.scheme == "smtp+tls"
    EMAIL_USE_SSL = _e.scheme == "smtps"
    EMAIL_HOST = _e.hostname or "localhost"
    EMAIL_PORT = _e.port or (465 if EMAIL_USE_SSL else 587 if EMAIL_USE_TLS else 25)
    EMAIL_HOST_USER, EMAIL_HOST_PASSWORD = unquote(_e.username or ""), unquote(_e.password or "")

# --- i18n / static --------------------------------------------------------------------------------------
LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = False
USE_TZ = True
STATIC_URL = "/static/"
STATICFILES_DIRS = [BASE_DIR / "frontend" / "static"]
STATIC_ROOT = DATA_DIR / "static"
WHITENOISE_USE_FINDERS = True
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}

# Behind a TLS-terminating proxy: the proxy's address (or "*") whose X-Forwarded-* headers
# `manage.py serve` (waitress) trusts; unset, such headers are dropped.
KRIY_TRUSTED_PROXY = os.environ.get("KRIY_TRUSTED_PROXY", "")

# --- security headers (tightened further in settings_production) ---------------------------------
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
SECURE_CROSS_ORIGIN_OPENER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
SESSION_COOKIE_HTTPONLY = True
CSRF_COOKIE_HTTPONLY = False  # HTMX reads it from the page, not the cookie, but keep the default
KRIY_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'self'; "
    "form-action 'self'; frame-ancestors 'none'"
)

# --- DRF / OpenAPI ------------------------------------------------------------------------------------
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "apps.apikeys.auth.ApiKeyAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["rest_framework.parsers.JSONParser"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "kriyplatform.errors.api_exception_handler",
    "UNAUTHENTICATED_USER": None,
}
SPECTACULAR_SETTINGS = {
    "TITLE": "kriyplatform API",
    "DESCRIPTION": "Ingest agent spans (native JSON or OTLP) and read traces, findings, issues and the improvement loop.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "COMPONENT_SPLIT_REQUEST": True,
    # tags from the path after /api/v1/ (traces, issues, contracts, …) instead of one "v1" group
    "SCHEMA_PATH_PREFIX": r"/api/v1",
    # Swagger UI served from the installed sidecar package: no CDN.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "kriyplatform.openapi.add_ingest_paths",
    ],
}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": os.environ.get("KRIY_LOG_LEVEL", "INFO")},
    "loggers": {
        "celery": {"level": "WARNING"},
        "waitress.queue": {"level": "ERROR"},
        "django.request": {"level": "ERROR"},
    },
}
