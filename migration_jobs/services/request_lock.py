"""One request at a time per agency, across every web process and worker.

A run is created queued and committed before its job is enqueued (the job must find its row), so
for a moment a queued run has no job. A second request arriving in that moment would take the
first for one whose job was lost and close it. Holding this lock from the checks through the
enqueue makes that moment invisible to everyone else who asks for the same agency.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from django.db import connections

from migration_jobs.models import AgencyLink

# The first key of the two-key advisory lock, so it never collides with another lock of the project.
REQUEST_CLASS = "hashtext('controlplane.agency-request')"


@contextmanager
def agency_request_lock(link: AgencyLink) -> Iterator[None]:
    """Hold the agency's request lock on the control plane's database, waiting for it if need be.

    Outside a transaction, so the on_commit enqueue of the request runs while it is still held.
    """
    connection = connections["default"]
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT pg_advisory_lock({REQUEST_CLASS}, %s)", [link.pk])
    try:
        yield
    finally:
        with connection.cursor() as cursor:
            cursor.execute(f"SELECT pg_advisory_unlock({REQUEST_CLASS}, %s)", [link.pk])
