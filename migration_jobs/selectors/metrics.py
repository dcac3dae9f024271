"""The control plane's metrics in Prometheus' format, read when scraped (prometheus_client's custom collector).

Nothing is counted in a process's memory: the web processes, the workers and the loops are many
processes on many hosts, so every value is read at scrape time from where it is kept (the control
plane's runs, the RevOS and unified captures, Redis's queues). A database that does not answer
leaves its metrics out and sets controlplane_source_up{source=...} to 0, so a scrape never fails.
"""

from __future__ import annotations

from collections.abc import Iterator
from uuid import UUID

import django_rq
import psycopg
from django.db.models import Count
from django.utils import timezone
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from redis.exceptions import RedisError

from migration_jobs.etl.capture_prune import capture_backlogs
from migration_jobs.etl.connections import DatabaseUnreachable, connect
from migration_jobs.models import AgencyLink, MigrationRun, VerificationRun
from migration_jobs.services.throttle import THROTTLE_SECONDS_KEY

QUEUES = ("migrations", "verification", "audit")


class ControlPlaneCollector(Collector):
    """Every metric of the issue's list: runs, rows/s, capture backlog, fences, failures, throttle, queues."""

    def collect(self) -> Iterator[Metric]:
        up = GaugeMetricFamily(
            "controlplane_source_up", "Whether a source of these metrics answered.", labels=["source"]
        )
        yield from self._runs()
        for alias in ("revos", "unified"):
            try:
                yield from self._capture(alias)
                up.add_metric([alias], 1)
            except (DatabaseUnreachable, psycopg.Error):
                up.add_metric([alias], 0)
        try:
            yield from self._queues()
            up.add_metric(["redis"], 1)
        except RedisError:
            up.add_metric(["redis"], 0)
        yield up

    def _runs(self) -> Iterator[Metric]:
        runs = GaugeMetricFamily("controlplane_runs", "Migration runs by kind and state.", labels=["kind", "state"])
        for row in MigrationRun.objects.values("kind", "status").annotate(n=Count("pk")).order_by():
            runs.add_metric([row["kind"], row["status"]], row["n"])
        yield runs
        rate = GaugeMetricFamily(
            "controlplane_rows_per_second", "Rows per second of each running run.", labels=["agency", "kind"]
        )
        for run in MigrationRun.objects.filter(status=MigrationRun.Status.RUNNING).select_related("agency_link"):
            rate.add_metric([run.agency_link.name, run.kind], run.rows_per_second)
        yield rate
        failures = CounterMetricFamily(
            "controlplane_verification_failures", "Verification runs whose verdict was fail.", labels=[]
        )
        failures.add_metric([], VerificationRun.objects.filter(verdict=VerificationRun.Verdict.FAIL).count())
        yield failures

    def _capture(self, alias: str) -> Iterator[Metric]:
        with connect(alias, purpose="metrics") as connection:
            backlogs = capture_backlogs(connection)
            fenced = dict(
                connection.execute(
                    "SELECT agency_id, extract(epoch FROM now() - fenced_at) FROM controlplane.capture_agency"
                    " WHERE fenced_at IS NOT NULL"
                ).fetchall()
            )
            connection.commit()
        names = _names(alias, set(backlogs))
        labels = ["agency", "database"]
        rows = GaugeMetricFamily("controlplane_capture_backlog_rows", "Rows written, not yet applied.", labels=labels)
        age = GaugeMetricFamily(
            "controlplane_capture_backlog_age_seconds", "Age of the oldest write not yet applied.", labels=labels
        )
        kept = GaugeMetricFamily(
            "controlplane_capture_records", "Capture records kept (pruned: applied).", labels=labels
        )
        fence = GaugeMetricFamily(
            "controlplane_fence_held_seconds", "Seconds an agency's fence has held.", labels=labels
        )
        now = timezone.now()
        for agency_id, backlog in backlogs.items():
            label = [names.get(agency_id, str(agency_id)), alias]
            kept.add_metric(label, backlog.records)
            if alias == "revos":  # the reverse capture has no position: it is read whole at a switch back
                rows.add_metric(label, backlog.pending_rows)
                oldest = backlog.oldest_pending_at
                age.add_metric(label, (now - oldest).total_seconds() if oldest else 0)
            if agency_id in fenced:
                fence.add_metric(label, float(fenced[agency_id]))
        yield from (rows, age, kept, fence)

    def _queues(self) -> Iterator[Metric]:
        depth = GaugeMetricFamily("controlplane_queue_depth", "Jobs waiting in each RQ queue.", labels=["queue"])
        for name in QUEUES:
            depth.add_metric([name], django_rq.get_queue(name).count)
        yield depth
        connection = django_rq.get_connection("migrations")
        throttled = sum(float(v) for v in connection.hgetall(THROTTLE_SECONDS_KEY).values())
        throttle = CounterMetricFamily(
            "controlplane_throttle_seconds", "Seconds runs waited for the unified database's health.", labels=[]
        )
        throttle.add_metric([], throttled)
        yield throttle


def _names(alias: str, agency_ids: set[UUID]) -> dict[UUID, str]:
    field = "revos_agency_id" if alias == "revos" else "unified_agency_id"
    return dict(AgencyLink.objects.filter(**{f"{field}__in": agency_ids}).values_list(field, "name"))
