"""GET /api/metrics: Prometheus' format, from a real client library, read from real servers; and django-rq's own."""

from __future__ import annotations

import django_rq
import pytest
from django.contrib.auth.models import Permission, User
from django.urls import reverse
from prometheus_client.parser import text_string_to_metric_families

from migration_jobs.demo.demo import demo_data_seed
from migration_jobs.models import AgencyLink, MigrationRun
from migration_jobs.selectors.agency_page import agency_cockpit_read
from migration_jobs.services.agency_links import agency_link_confirm, agency_links_sync
from migration_jobs.services.runs import migration_run_request
from migration_jobs.services.throttle import THROTTLE_SECONDS_KEY, throttle_seconds_add, throttle_seconds_by_run
from tests.conftest import run_worker
from tests.test_capture_prune import revos


def samples(text: str) -> dict[tuple[str, tuple], float]:
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


@pytest.fixture
def migrated(tenant_db, rq_queues) -> AgencyLink:
    demo_data_seed(agencies=2, scale=1, seed=3)
    agency_links_sync()
    link = AgencyLink.objects.order_by("name").first()
    link = agency_link_confirm(
        link=link, kind=link.suggested_kind, unified_agency_id=link.suggested_agency_id, actor=None
    )
    migration_run_request(link=link, kind=MigrationRun.Kind.MIGRATE, actor=None)
    run_worker("migrations")
    yield link
    django_rq.get_connection("migrations").delete(THROTTLE_SECONDS_KEY)


def test_metrics_answer_with_each_agencys_capture_backlog_and_the_runs(migrated, client, settings):
    settings.METRICS_TOKEN = "scrape"
    link = migrated
    revos(
        "UPDATE leads SET name = name || '.' WHERE id IN (SELECT id FROM leads WHERE agency_id = %s LIMIT 3)",
        [link.revos_agency_id],
    )
    # Other tests' runs may have waited on the throttle in this Redis: the figure grows by this run's.
    before = sum(throttle_seconds_by_run().values())
    throttle_seconds_add(run_id=1, seconds=2.5)
    response = client.get("/api/metrics", HTTP_AUTHORIZATION="Bearer scrape")
    assert response.status_code == 200 and response["Content-Type"].startswith("text/plain")
    found = samples(response.content.decode())
    agency = (("agency", link.name), ("database", "revos"))
    assert found[("controlplane_capture_backlog_rows", agency)] == 3
    assert found[("controlplane_capture_backlog_age_seconds", agency)] > 0
    assert found[("controlplane_runs", (("kind", "migrate"), ("state", "succeeded")))] == 1
    assert found[("controlplane_queue_depth", (("queue", "migrations"),))] == 0
    assert found[("controlplane_throttle_seconds_total", ())] == pytest.approx(before + 2.5)
    assert found[("controlplane_verification_failures_total", ())] == 0
    assert found[("controlplane_source_up", (("source", "unified"),))] == 1


def test_the_agency_page_shows_its_capture_backlog_as_the_metrics_do(migrated, client, settings):
    settings.METRICS_TOKEN = "scrape"
    link = migrated
    assert agency_cockpit_read(link=link).capture_backlog.rows == 0  # captured, nothing written since
    revos(
        "UPDATE leads SET name = name || '.' WHERE id IN (SELECT id FROM leads WHERE agency_id = %s LIMIT 3)",
        [link.revos_agency_id],
    )
    found = samples(client.get("/api/metrics", HTTP_AUTHORIZATION="Bearer scrape").content.decode())
    backlog = agency_cockpit_read(link=link).capture_backlog
    label = (("agency", link.name), ("database", "revos"))
    assert backlog.rows == found[("controlplane_capture_backlog_rows", label)] == 3
    assert backlog.age_seconds >= found[("controlplane_capture_backlog_age_seconds", label)] > 0
    client.force_login(User.objects.create_superuser("ops", "ops@example.com", "pw"))
    page = client.get(reverse("admin:migration_jobs_agencylink_change", args=[link.pk])).content.decode()
    assert '<strong id="capture-backlog-rows">3</strong> rows not applied' in page
    # An agency RevOS does not capture has no backlog, and the page says so rather than 0.
    other = AgencyLink.objects.exclude(pk=link.pk).order_by("name").first()
    assert agency_cockpit_read(link=other).capture_backlog is None
    page = client.get(reverse("admin:migration_jobs_agencylink_change", args=[other.pk])).content.decode()
    assert "none (RevOS does not capture" in page


def test_metrics_need_the_token_or_staff_and_django_rqs_metrics_answer(migrated, client, settings):
    settings.METRICS_TOKEN = "scrape"
    assert client.get("/api/metrics").status_code == 401
    assert client.get("/api/metrics", HTTP_AUTHORIZATION="Bearer wrong").status_code == 401
    settings.METRICS_TOKEN = ""
    assert client.get("/api/metrics", HTTP_AUTHORIZATION="Bearer ").status_code == 401, "no token set: none works"
    staff = User.objects.create_user("looker", password="x", is_staff=True)
    client.force_login(staff)
    assert client.get("/api/metrics").status_code == 200
    assert client.get("/admin/rq/metrics").status_code == 403, "django-rq's need the job queues permission"
    staff.user_permissions.set(Permission.objects.filter(codename="view_job_queues"))
    answer = client.get("/admin/rq/metrics")
    assert (answer.status_code == 200 and b"rq_workers" in answer.content) or b"rq_jobs" in answer.content
