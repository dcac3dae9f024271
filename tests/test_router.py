"""Each model reads and writes the database that owns it; Django migrations touch only `default`."""

import pytest
from django.apps import apps
from django.db import router

from migration_jobs.models.runs import MigrationRun
from migration_jobs.models.unified import Agency, Client
from migration_jobs.verify.model_drift import unified_models

UNIFIED_MODELS = unified_models()
CONTROL_PLANE_MODELS = [m for m in apps.get_models() if m not in UNIFIED_MODELS]


def label(model) -> str:
    return model._meta.label


def test_the_unified_models_are_the_unmanaged_migration_jobs_models():
    unmanaged = {m for m in apps.get_app_config("migration_jobs").get_models() if not m._meta.managed}
    assert unmanaged == set(UNIFIED_MODELS)
    assert len(UNIFIED_MODELS) > 50


@pytest.mark.parametrize("model", UNIFIED_MODELS, ids=label)
def test_unified_model_reads_and_writes_the_unified_database(model):
    assert router.db_for_read(model) == "unified"
    assert router.db_for_write(model) == "unified"
    assert model.objects.all().db == "unified"


@pytest.mark.parametrize("model", CONTROL_PLANE_MODELS, ids=label)
def test_control_plane_model_reads_and_writes_the_default_database(model):
    assert router.db_for_read(model) == "default"
    assert router.db_for_write(model) == "default"


@pytest.mark.parametrize("model", UNIFIED_MODELS + CONTROL_PLANE_MODELS, ids=label)
@pytest.mark.parametrize("alias", ["unified", "revos"])
def test_migrations_never_touch_a_tenant_database(alias, model):
    assert router.allow_migrate(alias, model._meta.app_label, model_name=model._meta.model_name) is False
    assert router.allow_migrate_model(alias, model) is False


@pytest.mark.parametrize("model", [m for m in CONTROL_PLANE_MODELS if m._meta.managed], ids=label)
def test_managed_control_plane_models_migrate_in_default(model):
    assert router.allow_migrate_model("default", model) is True


def test_relations_stay_inside_one_database():
    assert router.allow_relation(Client(), Agency()) is True
    assert router.allow_relation(Agency(), MigrationRun()) is False
