"""``kriyplatform`` console entry point: the same commands as ``manage.py``."""

import os
import sys


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "kriyplatform.settings")
    from django.core.management import execute_from_command_line

    execute_from_command_line(["kriyplatform", *sys.argv[1:]])
