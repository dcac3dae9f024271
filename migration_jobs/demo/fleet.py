"""A fleet of demo agencies with skewed sizes, for the rehearsal (services/rehearsal.py).

Real fleets are skewed: a few agencies hold most rows, most are small. Sizes follow Zipf's law
over the agencies' ranks (the largest `max_rows`, the k-th about max_rows / k, none below
MIN_ROWS), placed in a shuffled order; a share of them (`merge_share`) also exists in AudienceOS
and merges into it. Each agency is the demo seeder's own (demo.py), so the rows are the ones every
test and benchmark migrates: scale 1 is about a thousand rows.
"""

from __future__ import annotations

import random
import uuid
from dataclasses import dataclass

from migration_jobs.demo.demo import demo_agency_seed, demo_data_seed

ROWS_PER_SCALE = 1000  # demo.py: an agency at scale 1 has about a thousand rows
MIN_ROWS = 200


@dataclass(frozen=True)
class FleetAgency:
    revos_agency_id: uuid.UUID
    name: str
    planned_rows: int
    merges: bool


def fleet_sizes(*, agencies: int, max_rows: int, seed: int) -> list[int]:
    """Each agency's planned rows: Zipf over the ranks (s = 1), shuffled."""
    sizes = [max(MIN_ROWS, round(max_rows / rank)) for rank in range(1, agencies + 1)]
    random.Random(f"fleet:{seed}").shuffle(sizes)
    return sizes


def fleet_seed(*, agencies: int, max_rows: int, merge_share: float, seed: int) -> list[FleetAgency]:
    """Seed the fleet into the configured (demo or test) RevOS and unified databases."""
    rng = random.Random(f"fleet-merge:{seed}")
    fleet = []
    for index, rows in enumerate(fleet_sizes(agencies=agencies, max_rows=max_rows, seed=seed)):
        scale = rows / ROWS_PER_SCALE
        name = f"Fleet {index + 1:04d}"
        if rng.random() < merge_share:
            # One RevOS agency that AudienceOS has too (and one AudienceOS-only agency beside it).
            summary = demo_data_seed(agencies=1, scale=scale, seed=seed * 100_000 + index)
            agency = next(a for a in summary.agencies if a.kind == "both")
            fleet.append(FleetAgency(agency.revos_id, agency.revos_name or "", rows, True))
        else:
            agency_id = demo_agency_seed(scale=scale, seed=seed * 100_000 + index, name=name)
            fleet.append(FleetAgency(agency_id, name, rows, False))
    return fleet
