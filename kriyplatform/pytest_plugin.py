"""Loaded with ``-p kriyplatform.pytest_plugin`` before pytest-django configures Django: the
suite runs on the PostgreSQL of these machines unless DATABASE_URL says otherwise."""

import os

os.environ.setdefault("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/test")
os.environ.setdefault("KRIY_DEMO", "0")
os.environ.setdefault("CELERY_TASK_ALWAYS_EAGER", "1")
