from django.urls import path

from migration_jobs import api, api_metrics

app_name = "api"

urlpatterns = [
    path("flags/<str:agency_id>/", api.agency_flags, name="agency-flags"),
    path("metrics", api_metrics.metrics, name="metrics"),
]
