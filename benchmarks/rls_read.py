"""What Row Level Security costs the apps' reads: a typical app query as `authenticated` vs the owner.

The unified database gets `leads` generated leads spread over `agencies` agencies. The app query
is a page of one agency's leads, newest first, plus their count, as the RevOS app asks for them
through PostgREST: role `authenticated`, the JWT claims in `request.jwt.claims`, no WHERE clause
of its own (the policy supplies it). The owner, whom RLS does not bind, runs the same query with
the policy's condition written out, so both return the same rows. Requests alternate between the
two, one transaction each, after a few untimed ones warm the caches.
"""

from __future__ import annotations

import json
import math
import statistics
import time
import uuid

import psycopg

from migration_jobs.etl.connections import connect

PAGE = 50
WARM_UP = 3
APP = "revos"  # leads are RevOS rows
AGENCY_NAMESPACE = uuid.UUID("00000000-0000-4000-8000-0000000b1e5e")

AUTHENTICATED_QUERIES = (
    f"SELECT id, name, email, status, created_at FROM lead ORDER BY created_at DESC, id LIMIT {PAGE}",
    "SELECT count(*) FROM lead",
)
OWNER_CONDITION = "agency_id = %(agency)s AND app_context IN ('both', %(app)s)"
OWNER_QUERIES = (
    f"SELECT id, name, email, status, created_at FROM lead WHERE {OWNER_CONDITION}"
    f" ORDER BY created_at DESC, id LIMIT {PAGE}",
    f"SELECT count(*) FROM lead WHERE {OWNER_CONDITION}",
)


def bench_agencies(count: int) -> list[uuid.UUID]:
    return [uuid.uuid5(AGENCY_NAMESPACE, str(n)) for n in range(count)]


def leads_fill(*, leads: int, agencies: int) -> None:
    """`leads` leads round-robin over `agencies` benchmark agencies, created over a year."""
    ids = bench_agencies(agencies)
    with connect("unified", purpose="benchmark") as connection:
        with connection.cursor() as cursor:
            cursor.executemany(
                "INSERT INTO agency (id, name, slug) VALUES (%s, %s, %s) ON CONFLICT (id) DO NOTHING",
                [(agency, f"RLS bench {n}", f"rls-bench-{n}") for n, agency in enumerate(ids)],
            )
        connection.execute(
            "INSERT INTO lead (id, agency_id, name, email, status, app_context, created_at)"
            " SELECT gen_random_uuid(), (%s::uuid[])[1 + i %% %s], 'Lead ' || i, 'lead' || i || '@example.com',"
            " 'new', 'revos', timestamptz '2025-01-01' + i * (interval '365 days' / %s)"
            " FROM generate_series(0, %s - 1) AS i",
            [ids, agencies, max(leads, 1), leads],
        )
        connection.commit()
        connection.autocommit = True
        connection.execute("VACUUM (ANALYZE) lead")


def _one_request(connection: psycopg.Connection, *, as_app: bool, agency: uuid.UUID) -> tuple[float, list]:
    """Milliseconds for the page and the count in one transaction, as one API request runs them."""
    started = time.perf_counter()
    with connection.transaction():
        if as_app:
            connection.execute("SET LOCAL ROLE authenticated")
            claims = {"role": "authenticated", "aud": "authenticated", "agency_id": str(agency), "app_context": APP}
            connection.execute("SELECT set_config('request.jwt.claims', %s, true)", [json.dumps(claims)])
            rows = [connection.execute(query).fetchall() for query in AUTHENTICATED_QUERIES]
        else:
            parameters = {"agency": agency, "app": APP}
            rows = [connection.execute(query, parameters).fetchall() for query in OWNER_QUERIES]
    elapsed = (time.perf_counter() - started) * 1000
    if not rows[0] or rows[1][0][0] == 0:
        raise RuntimeError(
            f"the benchmark agency {agency} has no leads visible ({'authenticated' if as_app else 'owner'})"
        )
    return elapsed, rows


def _percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[max(0, math.ceil(fraction * len(ordered)) - 1)]


def _summary(timings: list[float]) -> dict:
    return {"p50_ms": round(statistics.median(timings), 2), "p95_ms": round(_percentile(timings, 0.95), 2)}


def rls_read_measure(*, leads: int, agencies: int, requests: int) -> dict:
    """p50/p95 of the app query as `authenticated` and as the owner, and their ratio at p95."""
    leads_fill(leads=leads, agencies=agencies)
    agency = bench_agencies(agencies)[agencies // 2]
    timings: dict[bool, list[float]] = {True: [], False: []}
    with connect("unified", purpose="benchmark") as connection:
        for number in range(WARM_UP + requests):
            answers = {}
            for as_app in (False, True):
                elapsed, answers[as_app] = _one_request(connection, as_app=as_app, agency=agency)
                if number >= WARM_UP:
                    timings[as_app].append(elapsed)
            if answers[True] != answers[False]:
                raise RuntimeError("the policy and the owner's condition disagree: the comparison would be unfair")
        total = connection.execute("SELECT count(*) FROM lead").fetchone()[0]
        visible = connection.execute("SELECT count(*) FROM lead WHERE agency_id = %s", [agency]).fetchone()[0]
    authenticated, owner = _summary(timings[True]), _summary(timings[False])
    return {
        "leads": total,
        "agencies": agencies,
        "agency_leads": visible,
        "requests": requests,
        "query": f"{AUTHENTICATED_QUERIES[0]}; {AUTHENTICATED_QUERIES[1]}",
        "authenticated": authenticated,
        "owner": owner,
        "authenticated_vs_owner_p95": round(authenticated["p95_ms"] / owner["p95_ms"], 3),
    }
