from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import transaction
from django.utils.text import slugify

from apps.apikeys.services import api_key_create, parse_scopes
from apps.orgs.services import organization_get_or_create, project_get_or_create
from kriyplatform.errors import AppError


class Command(BaseCommand):
    help = "Create an API key (creating the organization and project if missing) and print only the key."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--org", required=True, help="organization slug")
        parser.add_argument("--project", required=True, help="project slug")
        parser.add_argument(
            "--scopes",
            default="ingest,read",
            help="comma-separated: ingest,read,admin (default ingest,read)",
        )
        parser.add_argument("--name", default="created by create_api_key")

    def handle(self, *args: Any, **opts: Any) -> None:
        for flag in ("org", "project"):
            if slugify(opts[flag]) != opts[flag]:
                raise CommandError(
                    f"--{flag}: use a slug (lowercase letters, digits and dashes), e.g. {slugify(opts[flag]) or 'my-org'}"
                )
        try:
            scopes = parse_scopes(opts["scopes"])
        except AppError as exc:
            raise CommandError(exc.message) from exc
        with transaction.atomic():
            org = organization_get_or_create(slug=opts["org"])
            project = project_get_or_create(organization=org, slug=opts["project"])
            _key, raw = api_key_create(project=project, scopes=scopes, name=opts["name"])
        self.stdout.write(raw)
