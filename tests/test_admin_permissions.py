"""Every URL under /admin/ checks its permission, changes nothing for who lacks it, and never 500s.

The URLs are found by walking Django's URL resolver (every URLPattern of every nested URLResolver:
the project's admin pages, Django's, and django-rq's job pages mounted at /admin/rq/), not listed
by hand, so a page an upgrade adds is covered without anyone naming it. Each converter is filled
with a real id where one exists and with unknown and malformed ones, and each URL is requested
(GET and POST) as a staff user without any permission, as one with only view permissions, and as
a superuser.
"""

from __future__ import annotations

import inspect
import itertools
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from urllib.parse import quote

import django_rq
import pytest
from django.apps import apps
from django.contrib.admin import ModelAdmin
from django.contrib.auth.models import Permission, User
from django.contrib.contenttypes.models import ContentType
from django.contrib.sessions.models import Session
from django.db import connections, router
from django.test import Client
from django.urls import URLResolver, get_resolver, resolve, reverse
from django.urls.exceptions import Resolver404
from django.utils.regex_helper import normalize
from django_rq.settings import get_queues_list
from rq import Worker
from rq.worker_registration import unregister

from migration_jobs.admin.runs import AGENCY_ACTIONS
from migration_jobs.admin.switch_back import REASONED_ACTIONS
from migration_jobs.models import AgencyLink, MigrationRun
from migration_jobs.models.flags import FeatureFlag

# Pages every staff member may use whatever their permissions: the index (it lists only what the
# user may see), logging in and out, changing one's own password, the admin's translations.
STAFF_PAGES = {
    "admin:index",
    "admin:login",
    "admin:logout",
    "admin:password_change",
    "admin:password_change_done",
    "admin:jsi18n",
}
REFUSED = {403, 404, 405}
# The modules admin URLs may come from: Django's admin (its generic RedirectView included), the
# project's own, and django-rq's views only where the project mounts them (admin/rq/).
OWN_MODULES = ("django.contrib.", "django.views.generic.", "migration_jobs.")
JOB_QUEUE_PREFIX = "admin/rq/"


@dataclass(frozen=True)
class Endpoint:
    """One URLPattern, with the regex of its full path from the root."""

    regex: str
    callback: Callable
    name: str | None

    @property
    def view(self) -> Callable:
        """The view itself, under every decorator and wrapper (a class-based view's class)."""
        view = inspect.unwrap(self.callback)
        return getattr(view, "view_class", view)

    @property
    def model_admin(self) -> ModelAdmin | None:
        function = self.callback
        while function is not None:
            owner = getattr(function, "model_admin", None) or getattr(function, "__self__", None)
            if isinstance(owner, ModelAdmin):
                return owner
            function = getattr(function, "__wrapped__", None)
        return None

    @property
    def is_job_queue_page(self) -> bool:
        return self.regex.startswith(JOB_QUEUE_PREFIX)

    def __str__(self) -> str:
        return self.name or self.regex


def admin_endpoints() -> list[Endpoint]:
    """Every URLPattern the root URLconf serves under admin/, found by walking the resolver."""

    def walk(patterns, prefix: str, namespace: str) -> Iterator[Endpoint]:
        for pattern in patterns:
            regex = prefix + pattern.pattern.regex.pattern.removeprefix("^")
            if isinstance(pattern, URLResolver):
                inner = ":".join(part for part in (namespace, pattern.namespace) if part)
                yield from walk(pattern.url_patterns, regex, inner)
            else:
                name = f"{namespace}:{pattern.name}" if namespace and pattern.name else pattern.name
                yield Endpoint(regex=regex, callback=pattern.callback, name=name)

    endpoints = [e for e in walk(get_resolver().url_patterns, "", "") if e.regex.startswith("admin/")]
    assert len(endpoints) > 100, "the walk found the admin's URLs"
    return endpoints


def fill(endpoint: Endpoint, candidates: dict[str, list[str]], *, with_ids: bool = False) -> list[str]:
    """Every URL of the endpoint made from the candidate values that resolves back to it (with_ids:
    only the URLs that carry a parameter).

    A parameter without candidates fails the test: whoever adds a URL with a new kind of
    parameter says what a real and an unknown value of it are."""
    urls = []
    for form, params in normalize(endpoint.regex):
        if with_ids and not params:
            continue
        missing = [name for name in params if name not in candidates]
        assert not missing, f"{endpoint}: no values for {missing}"
        for values in itertools.product(*(candidates[name] for name in params)):
            path = "/" + form % dict(zip(params, values, strict=True))
            try:
                if resolve(path).func is not endpoint.callback:
                    continue
            except Resolver404:
                continue
            urls.append(quote(path))
    return urls


@dataclass
class Site:
    """The rows and jobs the walked URLs name: one of each where the test can make one."""

    link: AgencyLink
    job_id: str
    worker_key: str
    queue_index: int

    def real_values(self, endpoint: Endpoint) -> dict[str, list[str]]:
        model_admin = endpoint.model_admin
        object_id = self.a_pk(model_admin.model) if model_admin else str(self.link.pk)
        return {
            "object_id": [object_id],
            "id": [object_id],
            "action": [*AGENCY_ACTIONS, *REASONED_ACTIONS],
            "app_label": sorted({model._meta.app_label for model in apps.get_models()}),
            "content_type_id": [str(ContentType.objects.get_for_model(AgencyLink).pk)],
            "url": ["no-such-page/"],
            "queue_index": [str(self.queue_index)],
            "job_id": [self.job_id],
            "result_id": ["no-such-result"],
            "key": [self.worker_key],
            "connection_index": ["0"],
            "scheduler_name": ["no-such-scheduler"],
            "cron_job_name": ["no-such-cron-job"],
            "token": ["notthetoken"],
        }

    def a_pk(self, model) -> str:
        existing = model._default_manager.order_by().values_list("pk", flat=True).first()
        return str(existing) if existing is not None else unknown_pk(model)

    def real_url(self, endpoint: Endpoint) -> str:
        urls = fill(endpoint, self.real_values(endpoint))
        assert urls, f"{endpoint}: no URL resolves to it"
        return urls[0]


def unknown_pk(model) -> str:
    return str(uuid.uuid4()) if model._meta.pk.get_internal_type() == "UUIDField" else "424242"


def bad_values(endpoint: Endpoint) -> dict[str, list[str]]:
    """Ids that are well formed but name nothing, and ids that are malformed."""
    model = endpoint.model_admin.model if endpoint.model_admin else AgencyLink
    ids = [unknown_pk(model), "1;DROP", "99999999999999999999999999"]
    return {
        "object_id": ids,
        "id": ids,
        "action": ["no-such-action"],
        # Only the installed apps' labels resolve: an unknown one is the catch-all's 404.
        "app_label": ["no_such_app"],
        "content_type_id": ["999999"],
        "url": ["no-such-page/"],
        "queue_index": ["999999"],
        "job_id": ["no-such-job"],
        "result_id": ["no-such-result"],
        # Not a worker key at all ("Not a valid RQ worker key"), and one of no worker.
        "key": ["no-such-worker", "rq:worker:no-such-worker"],
        "connection_index": ["999999"],
        "scheduler_name": ["no-such-scheduler"],
        "cron_job_name": ["no/such/cron-job"],
        # Not an id: the stats page's token is ignored for staff who have the permission.
        "token": [],
    }


def bad_urls(endpoint: Endpoint) -> list[str]:
    return fill(endpoint, bad_values(endpoint), with_ids=True)


@pytest.fixture
def site(tenant_db, rq_queues):
    # Transactional tests flush the seeded flags: one flag, so the flag pages have a row.
    FeatureFlag.objects.get_or_create(name="unified_db")
    link = AgencyLink.objects.create(revos_agency_id=uuid.uuid4(), name="Acme", suggested_kind="new")
    MigrationRun.objects.create(agency_link=link, revos_agency_id=link.revos_agency_id, kind="migrate")
    queue = rq_queues["migrations"]
    # A job nobody runs (no worker drains this queue during the test), and a registered worker.
    job = queue.enqueue("os.getcwd")
    queue.enqueue("os.getcwd")
    failed = rq_queues["verification"].enqueue("os.getcwd")
    rq_queues["verification"].failed_job_registry.add(failed, ttl=600)
    worker = Worker([queue], connection=queue.connection, name=f"test-{uuid.uuid4().hex}")
    worker.register_birth()
    index = next(i for i, config in enumerate(get_queues_list()) if config["name"] == "migrations")
    try:
        yield Site(link=link, job_id=job.id, worker_key=worker.key, queue_index=index)
    finally:
        worker.register_death()
        unregister(worker)
        queue.connection.delete(worker.key)


def staff(*, permissions=(), superuser=False) -> tuple[Client, User]:
    user = User.objects.create_user(f"u{User.objects.count()}", password="x", is_staff=True, is_superuser=superuser)
    user.user_permissions.add(*permissions)
    # Not raising: a view's exception is the 500 a browser would see, and the test reports it.
    client = Client(raise_request_exception=False)
    client.force_login(user)
    return client, user


def view_permissions():
    return Permission.objects.filter(codename__startswith="view_")


def everything() -> dict:
    """Every row of every model in its database (but sessions and the last login, which logging in
    writes), and every RQ key in Redis with its value."""
    rows = {}
    tables = {alias: set(connections[alias].introspection.table_names()) for alias in connections}
    for model in apps.get_models():
        database = router.db_for_read(model)
        # django-rq's Dashboard is a model without a table (its admin entry, not mounted).
        if model is Session or model._meta.db_table not in tables[database]:
            continue
        fields = [field.attname for field in model._meta.concrete_fields if field.name != "last_login"]
        manager = model._base_manager.using(database)
        rows[model._meta.label] = list(manager.order_by("pk").values_list(*fields))
    connection = django_rq.get_connection("migrations")
    # But the workers' own records: they expire by themselves (a worker's heartbeat TTL).
    keys = {key: connection.dump(key) for key in connection.scan_iter("rq:*") if not key.startswith(b"rq:worker:")}
    return {"rows": rows, "redis": keys}


def changed(before: dict) -> list[str]:
    """The tables and Redis keys whose content differs from `before` (an `everything()`)."""
    after = everything()
    return sorted(
        str(name)
        for part in ("rows", "redis")
        for name in before[part].keys() | after[part].keys()
        if before[part].get(name) != after[part].get(name)
    )


def queue_lengths() -> dict[str, tuple[int, ...]]:
    lengths = {}
    for config in get_queues_list():
        queue = django_rq.get_queue(config["name"])
        registries = (queue.failed_job_registry, queue.started_job_registry, queue.deferred_job_registry)
        lengths[queue.name] = (queue.count, *(len(registry) for registry in registries))
    return lengths


def answer(client: Client, user: User, method: str, url: str, data: dict | None = None) -> int:
    """The status a request ends on, redirects followed (a redirect to a page that refuses is a
    refusal). Logged in again after the logout page."""
    response = getattr(client, method)(url, data or {}, follow=True)
    if url == reverse("admin:logout"):
        client.force_login(user)
    return response.status_code


def post_data(site: Site, endpoint: Endpoint) -> dict:
    """What a real form of the page would send: the admin's delete action, django-rq's bulk delete."""
    if endpoint.is_job_queue_page:
        return {"action": "delete", "job_ids": [site.job_id], "_selected_action": [site.job_id]}
    return {"action": "delete_selected", "_selected_action": [str(site.link.pk)], "post": "yes", "reason": "x"}


def test_every_admin_url_comes_from_django_the_project_or_the_job_pages_it_mounts():
    endpoints = admin_endpoints()
    foreign = {
        str(e): e.view.__module__
        for e in endpoints
        if not e.view.__module__.startswith(OWN_MODULES)
        and not (e.is_job_queue_page and e.view.__module__.startswith("django_rq."))
    }
    assert foreign == {}
    # django-rq 4 registers its whole dashboard in the admin too, behind is_staff only: not mounted.
    assert not [e for e in endpoints if e.regex.startswith("admin/django_rq/")]
    job_pages = [e for e in endpoints if e.is_job_queue_page]
    assert {"django_rq:home", "django_rq:clear", "django_rq:job_detail"} <= {e.name for e in job_pages}
    # Each job page behind the project's permission check (controlplane/urls.py job_queues_view).
    unguarded = []
    for endpoint in job_pages:
        chain, function = [], endpoint.callback
        while function is not None:
            # The code's own name: functools.wraps copies the wrapped view's name onto each wrapper.
            chain.append(function.__code__.co_qualname)
            function = getattr(function, "__wrapped__", None)
        if "job_queues_view.<locals>.guarded" not in chain:
            unguarded.append(str(endpoint))
    assert unguarded == []
    assert {e.name for e in endpoints} >= STAFF_PAGES


def test_a_staff_user_without_permissions_is_refused_every_admin_url_and_changes_nothing(site):
    client, user = staff()
    before = everything()
    allowed = {}
    for endpoint in admin_endpoints():
        if endpoint.name in STAFF_PAGES:
            continue
        urls = [site.real_url(endpoint), *bad_urls(endpoint)]
        for url in urls:
            codes = (answer(client, user, "get", url), answer(client, user, "post", url, post_data(site, endpoint)))
            if not set(codes) <= REFUSED:
                allowed[url] = codes
    assert allowed == {}
    # The pages every staff member has: they answer, and no POST to them changed anything either.
    for name in STAFF_PAGES - {"admin:logout"}:
        assert answer(client, user, "get", reverse(name)) == 200, name
        answer(client, user, "post", reverse(name), {"old_password": "wrong", "new_password1": "y"})
    assert changed(before) == []


def test_view_permissions_show_pages_but_change_nothing(site):
    client, user = staff(permissions=view_permissions())
    endpoints = admin_endpoints()
    readable = {
        e.name: answer(client, user, "get", site.real_url(e))
        for e in endpoints
        if e.name
        and e.name.endswith(("_changelist", "_change", "_history", "_progress", "_state", "_overview"))
        # Pages of a row: of the models that have one here.
        and "password" not in e.name  # another user's password: a change
        and (e.model_admin is None or e.model_admin.model._default_manager.exists())
    }
    assert "admin:migration_jobs_agencylink_overview" in readable
    assert {name: code for name, code in readable.items() if code != 200} == {}
    # Every POST, whatever the page: nothing changes (the job pages: not even visible, 403).
    before = everything()
    answers = {str(e): answer(client, user, "post", site.real_url(e), post_data(site, e)) for e in endpoints}
    assert changed(before) == []
    assert {name: code for name, code in answers.items() if code >= 500} == {}
    assert {answers[str(e)] for e in endpoints if e.is_job_queue_page} == {403}
    response = client.post(
        reverse("admin:migration_jobs_agencylink_action", args=[site.link.pk, "migrate"]), follow=True
    )
    assert "You do not have permission to migrate agencies." in response.content.decode()


def test_the_job_queues_destructive_actions_need_their_own_permission(site):
    """Viewing the job queues lets one read them: emptying, deleting, requeueing or stopping needs
    "Can empty queues …" too. Every django-rq POST is walked, not a list of the destructive ones."""
    client, user = staff(permissions=Permission.objects.filter(codename="view_job_queues"))
    job_pages = [e for e in admin_endpoints() if e.is_job_queue_page]
    assert {answer(client, user, "get", site.real_url(e)) for e in job_pages if e.name == "django_rq:home"} == {200}
    before, lengths = everything(), queue_lengths()
    assert lengths["migrations"][0] == 2 and lengths["verification"][1] == 1
    answers = {site.real_url(e): answer(client, user, "post", site.real_url(e), post_data(site, e)) for e in job_pages}
    assert reverse("django_rq:clear", args=[site.queue_index]) in answers
    assert {url: code for url, code in answers.items() if code != 403} == {}
    assert queue_lengths() == lengths and changed(before) == []
    # The same POST with the permission empties the queue: the refusal above is the permission's.
    manager, manager_user = staff(
        permissions=Permission.objects.filter(codename__in=["view_job_queues", "manage_job_queues"])
    )
    answer(manager, manager_user, "post", reverse("django_rq:clear", args=[site.queue_index]))
    assert queue_lengths()["migrations"][0] == 0


def test_the_progress_endpoint_shows_nothing_without_view_permission(site):
    MigrationRun.objects.filter(agency_link=site.link).update(error="secret")
    url = reverse("admin:migration_jobs_agencylink_progress", args=[site.link.pk])
    refused = staff()[0].get(url)
    assert refused.status_code == 403 and b"secret" not in refused.content
    assert staff(permissions=view_permissions())[0].get(url).json()["error"] == "secret"


def test_the_stats_endpoints_take_no_token_and_send_strangers_to_the_login(site):
    client, _ = staff()
    token = client.get(reverse("django_rq:home_json"), headers={"authorization": "Bearer anything"})
    assert token.status_code == 403
    anonymous = Client().get(reverse("django_rq:home_json"))
    assert anonymous.status_code == 302 and "/admin/login/" in anonymous["Location"]
    allowed, _ = staff(permissions=Permission.objects.filter(codename="view_job_queues"))
    assert "queues" in allowed.get(reverse("django_rq:home_json")).json()


def test_a_superuser_gets_every_admin_url_and_a_404_for_any_unknown_or_malformed_id(site):
    client, user = staff(superuser=True)
    endpoints = admin_endpoints()
    # Every page with real ids answers (GET only: a superuser's POST would do what it says).
    failing = {}
    for endpoint in endpoints:
        url = site.real_url(endpoint)
        if (code := answer(client, user, "get", url)) >= 500:
            failing[url] = code
    assert failing == {}
    before = everything()
    wrong = {}
    checked = 0
    for endpoint in endpoints:
        for url in bad_urls(endpoint):
            checked += 1
            # A POST-only page may look at the method (405) or at the id (404) first.
            codes = (answer(client, user, "get", url), answer(client, user, "post", url, post_data(site, endpoint)))
            if codes[1] != 404 or codes[0] not in (404, 405):
                wrong[url] = codes
    assert checked > 50 and "/admin/rq/queues/999999/" in {url for e in endpoints for url in bad_urls(e)}
    assert wrong == {}
    assert changed(before) == []


def test_a_nul_byte_in_any_admin_query_is_a_400_not_a_500(site):
    """PostgreSQL text cannot hold a NUL byte: a search or filter carrying one is refused up front."""
    client, user = staff(superuser=True)
    pages = [e for e in admin_endpoints() if not list(normalize(e.regex)[0][1])]
    changelists = [e for e in pages if e.view.__name__ == "changelist_view"]
    assert len(changelists) >= 10 and any(e.name == "admin:migration_jobs_agencylink_overview" for e in pages)
    answers = {str(e): answer(client, user, "get", f"/{normalize(e.regex)[0][0]}?q=%00") for e in pages}
    assert {name: code for name, code in answers.items() if code != 400} == {}
    form = reverse("admin:migration_jobs_agencylink_changelist")
    assert answer(client, user, "post", form, {"action": "x", "_selected_action": "\x00"}) == 400
    assert answer(client, user, "get", "/admin/migration_jobs/agencylink/%00/change/") == 400
