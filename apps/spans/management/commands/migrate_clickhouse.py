from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from kriyplatform.clickhouse.client import db
from kriyplatform.clickhouse.migrator import migrate, plan


class Command(BaseCommand):
    help = "Apply the span store's numbered ClickHouse migrations (--plan shows them without applying)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--plan", action="store_true", help="print the pending migrations and their SQL"
        )

    def handle(self, *args: Any, **opts: Any) -> None:
        if opts["plan"]:
            pending = plan()
            if not pending:
                self.stdout.write("No ClickHouse migrations to apply.")
            for migration, statements in pending:
                self.stdout.write(f"-- {migration.name}")
                for sql in statements:
                    self.stdout.write(sql.strip().replace("{db}", db()) + ";\n")
            return
        done = migrate(progress=lambda m: self.stdout.write(f"  {m}"))
        self.stdout.write(
            f"ClickHouse: {len(done)} migration(s) applied." if done else "ClickHouse: up to date."
        )
