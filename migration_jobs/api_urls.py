from django.urls import path

from migration_jobs import api

app_name = "api"

urlpatterns = [
    path("flags/<str:agency_id>/", api.agency_flags, name="agency-flags"),
]
