from typing import Any, cast
from uuid import UUID

from django.core.management.base import CommandError, CommandParser
from django.db import DatabaseError, OperationalError

from migration_jobs.demo.bad_rows import BadRow, demo_bad_rows_plant
from migration_jobs.demo.demo import (
    DemoDataError,
    DemoSummary,
    demo_data_reset,
    demo_data_seed,
    demo_phase0_problems_plant,
)
from migration_jobs.management.base import ProjectCommand


class Command(ProjectCommand):
    help = (
        "Fill the RevOS source database and the AudienceOS baseline of the unified database with "
        "synthetic, referentially consistent demo data, identical for the same --seed. About half of the "
        "--agencies exist in both apps (names spelled differently, same domain, some users and clients "
        "shared), the rest only in RevOS, plus one or two AudienceOS-only agencies. --scale 1 is a small "
        "demo (~1,000 RevOS rows per agency); --scale 1000 makes agencies of ~1M rows. Refuses to run "
        "when the databases already hold this seed's agencies: pass --reset to empty every tenant table "
        "of both databases first (demo and test databases only), or choose another --seed."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--agencies", type=int, default=6, help="RevOS agencies to create (default 6).")
        parser.add_argument("--scale", type=float, default=1.0, help="Row-count multiplier (default 1).")
        parser.add_argument("--seed", type=int, default=1, help="Random seed; same seed, same data (default 1).")
        parser.add_argument(
            "--reset",
            action="store_true",
            help="TRUNCATE every tenant table in the RevOS and unified databases before seeding.",
        )
        parser.add_argument(
            "--with-bad-rows",
            action="store_true",
            help="Make a few rows of one RevOS-only agency ones the unified schema refuses (the plan lists them).",
        )
        parser.add_argument(
            "--with-phase0-problems",
            action="store_true",
            help="Afterwards, put back the problems Phase 0 fixed, so the schema audit has findings.",
        )

    def handle(
        self,
        *args: Any,
        agencies: int,
        scale: float,
        seed: int,
        reset: bool,
        with_phase0_problems: bool,
        with_bad_rows: bool,
        **options: Any,
    ) -> None:
        try:
            if reset:
                demo_data_reset()
                self.stdout.write("Emptied the tenant tables of the RevOS and unified databases.")
            summary = demo_data_seed(agencies=agencies, scale=scale, seed=seed)
            if with_phase0_problems:
                demo_phase0_problems_plant()
            bad_rows = self._bad_rows(summary) if with_bad_rows else []
        except DemoDataError as error:
            raise CommandError(str(error)) from error
        except OperationalError:
            raise  # a database is down, not the data wrong: ProjectCommand names which
        except DatabaseError as error:
            raise CommandError(f"Seeding failed: {error}".strip()) from error
        for agency in summary.agencies:
            names = " / ".join(repr(n) for n in (agency.revos_name, agency.unified_name) if n)
            self.stdout.write(f"  {agency.kind:<8} {names}")
        for table, count in sorted(summary.rows.items()):
            self.stdout.write(f"  {table:<45} {count:>10,}", ending="\n")
        self.stdout.write(self.style.SUCCESS(f"Seeded {summary.total:,} rows (seed {seed}, scale {scale:g})."))
        if with_phase0_problems:
            self.stdout.write("Planted the Phase 0 problems in both databases.")
        for row in bad_rows:
            self.stdout.write(f"  bad row: {row.table} {row.source_id} (refused by {row.constraint})")

    def _bad_rows(self, summary: DemoSummary) -> list[BadRow]:
        revos_only = [a for a in summary.agencies if a.kind == "revos"]
        if not revos_only:
            raise DemoDataError("--with-bad-rows needs a RevOS-only agency: seed more --agencies.")
        agency = revos_only[0]
        self.stdout.write(f"Bad rows planted in {agency.revos_name} ({agency.revos_id}):")
        return demo_bad_rows_plant(agency_id=cast(UUID, agency.revos_id))  # a RevOS-only agency has its RevOS id
