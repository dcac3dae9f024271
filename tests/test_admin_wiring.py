"""The admin is wired by declaration: importing it registers ModelAdmins and changes nothing else."""

from __future__ import annotations

from django.contrib import admin
from django.contrib.admin import AdminSite
from django.urls import reverse

from migration_jobs.admin.flags import enable_unified_db_for_selected
from migration_jobs.admin.runs import AgencyLinkAdmin
from migration_jobs.admin.verification import verify_selected_agencies
from migration_jobs.models import AgencyLink, FeatureFlag, MigrationRun, SchemaAuditRun, VerificationRun


def test_importing_the_admin_leaves_the_default_sites_urls_alone():
    # Replacing it at import time would leave a plain function here instead of the site's own method.
    assert getattr(admin.site.get_urls, "__func__", None) is AdminSite.get_urls


def test_every_area_registers_its_model_admins():
    for model in (AgencyLink, MigrationRun, VerificationRun, SchemaAuditRun, FeatureFlag):
        assert admin.site.is_registered(model), model


def test_the_overview_is_a_page_of_the_agency_admin():
    agency_admin = admin.site.get_model_admin(AgencyLink)
    names = [pattern.name for pattern in agency_admin.get_urls()]
    # Ahead of the object URLs, or `overview` would be read as an agency's id.
    assert names.index("migration_jobs_agencylink_overview") < names.index("migration_jobs_agencylink_change")
    assert reverse("admin:migration_jobs_agencylink_overview") == "/admin/migration_jobs/agencylink/overview/"


def test_the_agency_bulk_actions_are_declared_on_the_admin_class():
    declared = AgencyLinkAdmin.actions
    assert {"migrate_selected", verify_selected_agencies, enable_unified_db_for_selected} <= set(declared)
    assert "get_actions" not in vars(AgencyLinkAdmin)
