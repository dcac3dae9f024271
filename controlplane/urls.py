from django.contrib import admin
from django.contrib.auth.decorators import user_passes_test
from django.urls import include, path
from django.views.generic import RedirectView
from django_rq.urls import get_admin_urlpatterns, get_api_urlpatterns

# django-rq's dashboard can requeue and delete any job, so only superusers get it, not all staff;
# migrations are started, paused and resumed from the agency pages, behind their own permissions.
superuser_only = user_passes_test(lambda user: user.is_active and user.is_superuser, login_url="admin:login")

admin.site.site_header = "Unified database control plane"
admin.site.site_title = "Unified DB control plane"
admin.site.index_title = "RevOS → AudienceOS, agency by agency"
# The list pages need the width (runs and verifications have many columns); the index lists every page.
admin.site.enable_nav_sidebar = False

urlpatterns = [
    path("", RedirectView.as_view(url="/admin/", permanent=False)),
    path(
        "admin/rq/",
        include((get_api_urlpatterns() + get_admin_urlpatterns(view_wrapper=superuser_only), "django_rq")),
    ),
    path("api/", include("migration_jobs.api_urls")),
    path("admin/", admin.site.urls),
]
