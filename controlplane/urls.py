import logging
from collections.abc import Callable
from functools import wraps
from importlib.util import find_spec
from typing import Any

from django.contrib import admin
from django.contrib.auth.decorators import permission_required
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse
from django.urls import URLPattern, include, path
from django.views.generic import RedirectView
from django_rq import views as rq_views
from django_rq.urls import get_admin_urlpatterns, get_api_urlpatterns
from rq.exceptions import NoSuchJobError

JOB_QUEUES_PERMISSION = "migration_jobs.view_job_queues"
MANAGE_JOB_QUEUES_PERMISSION = "migration_jobs.manage_job_queues"
# What django-rq's views raise for an id that names nothing: IndexError (a queue index past the
# last queue), NoSuchJobError (a job id), ValueError ("Not a valid RQ worker key") and
# AssertionError (its worker page asserts the worker it looked up exists).
UNKNOWN_ID_ERRORS = (IndexError, ValueError, NoSuchJobError, AssertionError)
READ_METHODS = ("GET", "HEAD", "OPTIONS")

logger = logging.getLogger(__name__)


def job_queues_view(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    """django-rq's dashboard shows every job's arguments and errors and can requeue and delete
    jobs: staff need "Can view the job queues" for it, its stats endpoints included (django-rq's
    own check there is is_staff or a token), and "Can empty queues …" for any POST (every one of
    its POSTs empties, deletes, requeues, enqueues or stops something, or confirms doing so).
    Not logged in as staff: the admin login; staff without the permission: 403. An unknown queue
    index, job id or worker key is a 404, not django-rq's 500."""

    @wraps(view)
    def guarded(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        if request.method not in READ_METHODS and not request.user.has_perm(MANAGE_JOB_QUEUES_PERMISSION):
            raise PermissionDenied
        try:
            return view(request, *args, **kwargs)
        except UNKNOWN_ID_ERRORS as error:
            # Logged: an error of django-rq's own (not a bad id) should not hide as a quiet 404.
            logger.info("job queue page %s: %s: %s (answered 404)", request.path, type(error).__name__, error)
            raise Http404("No such queue, job or worker.") from error

    return admin.site.admin_view(permission_required(JOB_QUEUES_PERMISSION, raise_exception=True)(guarded))


def job_queue_urlpatterns() -> list[URLPattern]:
    """django-rq's pages, each behind job_queues_view; its rq-scheduler page only where rq-scheduler
    is installed (the project schedules nothing with it: the page could only fail)."""
    patterns = [
        pattern
        for pattern in get_api_urlpatterns() + get_admin_urlpatterns()
        if pattern.callback is not rq_views.scheduler_jobs or find_spec("rq_scheduler") is not None
    ]
    for pattern in patterns:
        pattern.callback = job_queues_view(pattern.callback)
    return patterns


admin.site.site_header = "Unified database control plane"
admin.site.site_title = "Unified DB control plane"
admin.site.index_title = "RevOS → AudienceOS, agency by agency"
# The list pages need the width (runs and verifications have many columns); the index lists every page.
admin.site.enable_nav_sidebar = False

urlpatterns = [
    path("", RedirectView.as_view(url="/admin/", permanent=False)),
    path("admin/rq/", include((job_queue_urlpatterns(), "django_rq"))),
    path("api/", include("migration_jobs.api_urls")),
    path("admin/", admin.site.urls),
]
