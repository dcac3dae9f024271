"""The id map's one module answers the questions every layer asks of it, on the real unified database."""

from __future__ import annotations

import uuid

import pytest
from django.db import connections
from django.utils import timezone

from migration_jobs.etl import id_map
from migration_jobs.models import AgencyLink
from migration_jobs.services.agency_links import LinkError, agency_link_confirm

pytestmark = pytest.mark.django_db(databases=["default", "unified"])


def map_rows(agency_id: uuid.UUID, *, reused: int, inserted: int) -> None:
    """Map rows of the agency as a run would: reused identities and inserted rows."""
    with connections["unified"].cursor() as cursor:
        matches = [("users", str(uuid.uuid4()), "user", str(uuid.uuid4())) for _ in range(reused)]
        id_map.identities_record(cursor, agency_id=agency_id, matches=matches)
        for _ in range(inserted):
            row = uuid.uuid4()
            cursor.execute(
                "INSERT INTO controlplane.id_map VALUES (%s, 'posts', %s, 'post', %s, true)", [agency_id, row, row]
            )


def test_an_agency_with_only_reused_rows_counts_as_migrated_but_has_nothing_to_delete():
    agency_id = uuid.uuid4()
    with connections["unified"].cursor() as cursor:
        assert not id_map.agency_has_mapped_rows(cursor, agency_id=agency_id)
        map_rows(agency_id, reused=2, inserted=0)
        assert id_map.agency_has_mapped_rows(cursor, agency_id=agency_id)
        assert id_map.agency_inserted_count(cursor, agency_id=agency_id) == 0
        assert len(id_map.agency_reused_ids(cursor, agency_id=agency_id)) == 2


def test_counts_per_table_and_forgetting_the_agency():
    agency_id = uuid.uuid4()
    map_rows(agency_id, reused=1, inserted=3)
    with connections["unified"].cursor() as cursor:
        assert id_map.agency_mapped_counts(cursor, agency_id=agency_id) == {"users": 1, "posts": 3}
        assert id_map.agency_inserted_count(cursor, agency_id=agency_id) == 3
        assert id_map.table_mapped_count(cursor, agency_id=agency_id, source_table="posts") == 3
        id_map.agency_forget(cursor, agency_id=agency_id)
        assert not id_map.agency_has_mapped_rows(cursor, agency_id=agency_id)


def test_relinking_is_refused_while_a_run_left_rows_mapped_under_the_old_link():
    link = AgencyLink.objects.create(
        revos_agency_id=uuid.uuid4(),
        name="Mapped Agency",
        suggested_kind="new",
        kind="new",
        confirmed_at=timezone.now(),
    )
    link.unified_agency_id = link.revos_agency_id
    link.save()
    # A run that stopped after matching users and before inserting anything still points them at
    # the old unified agency: a new link would have the next run reuse them for the wrong agency.
    map_rows(link.revos_agency_id, reused=1, inserted=0)
    with pytest.raises(LinkError, match="has migrated rows under its current link; roll it back first"):
        agency_link_confirm(link=link, kind=AgencyLink.Kind.EXISTING, unified_agency_id=uuid.uuid4(), actor=None)
