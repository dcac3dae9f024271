"""Admin changelist latency: the unified Client list filtered by app_context, on a big client table.

Requests go through Django's test Client in this process, logged in as a superuser: the whole
request (middleware, admin, queries against the unified database, template rendering), without
a network hop or a web server in front.
"""

from __future__ import annotations

import math
import statistics
import time
import uuid

from django.conf import settings
from django.contrib.auth import get_user_model
from django.test import Client
from django.test.utils import override_settings
from django.urls import reverse

from migration_jobs.etl.connections import connect

AGENCY_ID = uuid.UUID("00000000-0000-4000-8000-0000000be7c4")
FILTER = {"app_context__exact": "revos"}
WARM_UP = 3


def clients_fill(*, total: int) -> int:
    """Bring the unified client table to `total` rows with generated clients; return the count.

    The clients belong to one benchmark agency and spread evenly over the three app_contexts.
    """
    with connect("unified", purpose="benchmark") as connection:
        existing = connection.execute("SELECT count(*) FROM client").fetchone()[0]
        connection.execute(
            "INSERT INTO agency (id, name, slug) VALUES (%s, 'Benchmark clients', 'benchmark-clients')"
            " ON CONFLICT (id) DO NOTHING",
            [AGENCY_ID],
        )
        connection.execute(
            "INSERT INTO client (id, agency_id, name, stage, app_context, created_at, updated_at)"
            " SELECT md5('benchmark-client-' || i)::uuid, %s, 'Client ' || i, 'active',"
            " (ARRAY['audience', 'revos', 'both'])[1 + i %% 3],"
            " timestamptz '2025-01-01' + i * interval '1 second', timestamptz '2025-01-01' + i * interval '1 second'"
            " FROM generate_series(1, %s) AS i",
            [AGENCY_ID, max(0, total - existing)],
        )
        connection.commit()
        connection.autocommit = True
        connection.execute("VACUUM (ANALYZE) client")
        return connection.execute("SELECT count(*) FROM client").fetchone()[0]


def _percentile(values: list[float], fraction: float) -> float:
    """Nearest-rank percentile: the smallest value at least `fraction` of the values do not exceed."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(fraction * len(ordered)) - 1)]


def _superuser_client() -> Client:
    user, _ = get_user_model().objects.get_or_create(
        username="benchmark", defaults={"is_staff": True, "is_superuser": True, "email": ""}
    )
    browser = Client()
    browser.force_login(user)
    return browser


def changelist_measure(*, clients: int, requests: int) -> dict:
    """Median and p95 of `requests` timed page loads, after a few untimed ones warm the caches."""
    rows = clients_fill(total=clients)
    url = reverse("admin:migration_jobs_client_changelist")
    timings: list[float] = []
    with override_settings(ALLOWED_HOSTS=[*settings.ALLOWED_HOSTS, "testserver"]):
        browser = _superuser_client()
        for number in range(WARM_UP + requests):
            started = time.perf_counter()
            response = browser.get(url, FILTER)
            elapsed = time.perf_counter() - started
            if response.status_code != 200:
                raise RuntimeError(f"{url} answered {response.status_code}")
            if number >= WARM_UP:
                timings.append(elapsed * 1000)
    return {
        "clients": rows,
        "requests": requests,
        "url": f"{url}?app_context__exact=revos",
        "p50_ms": round(statistics.median(timings), 1),
        "p95_ms": round(_percentile(timings, 0.95), 1),
        "max_ms": round(max(timings), 1),
        # The first list_display column is rendered as <th class="field-name"> on every row.
        "rows_on_page": response.content.count(b'class="field-name"'),
    }
