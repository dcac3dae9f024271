from django.contrib import admin
from django.contrib.auth.decorators import permission_required
from django.urls import include, path
from django.views.generic import RedirectView
from django_rq.urls import get_admin_urlpatterns, get_api_urlpatterns

JOB_QUEUES_PERMISSION = "migration_jobs.view_job_queues"


def job_queues_view(view):
    """django-rq's dashboard shows every job's arguments and errors and can requeue and delete
    jobs: staff need "Can view the job queues" for it, its stats endpoints included (django-rq's
    own check there is is_staff or a token). Not logged in as staff: the admin login; staff
    without the permission: 403."""
    return admin.site.admin_view(permission_required(JOB_QUEUES_PERMISSION, raise_exception=True)(view))


def _wrapped(patterns):
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
    path(
        "admin/rq/",
        include((_wrapped(get_api_urlpatterns()) + get_admin_urlpatterns(view_wrapper=job_queues_view), "django_rq")),
    ),
    path("api/", include("migration_jobs.api_urls")),
    path("admin/", admin.site.urls),
]
