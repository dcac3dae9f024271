"""Per-agency migration: identity, mapping, idempotence, resume, catch-up, rollback, refusals.

Everything runs against the real RevOS and unified test databases; jobs run through real RQ
workers on real Redis (in-process burst workers, or worker processes where a test kills one).
"""

from __future__ import annotations

import json
import logging
import os
import re
import signal
import threading
import time
import uuid
from collections import Counter
from types import SimpleNamespace

import psycopg
import pytest
from django.db import IntegrityError, connections, transaction
from psycopg import sql

from migration_jobs.demo.demo import demo_agency_seed, demo_data_seed
from migration_jobs.etl.capture import (
    capture_register,
    capture_remove,
    capture_triggers_install,
    capture_triggers_remove,
)
from migration_jobs.etl.catalog import catalog_read
from migration_jobs.etl.catch_up import CapturedMigration
from migration_jobs.etl.connections import connect
from migration_jobs.etl.engine import (
    NORMALIZED_NAME,
    AgencyBusy,
    AgencyMigration,
    Control,
    KeysCheck,
    MigrationStopped,
    ReferenceCheck,
    RowRejected,
    agency_lock,
    agency_rollback,
    row_triggers_skippable,
)
from migration_jobs.etl.plan import migration_plan_build
from migration_jobs.etl.reverse_capture import unified_captured_tables
from migration_jobs.etl.scheduler import PART_KEY, table_dependencies, table_parents, units_plan
from migration_jobs.models import AgencyLink, ClientLink, MigrationRun
from migration_jobs.refusals import RunRefused
from migration_jobs.selectors.agency_links import LinkedAgency, agency_link_resolve, agency_linked
from migration_jobs.services.agency_links import agency_link_confirm, agency_links_sync
from migration_jobs.services.run_control import migration_run_control
from migration_jobs.services.runs import migration_run_request
from tests.conftest import agency_checksums, childless_leads, run_worker, start_worker_process

Status = MigrationRun.Status


def revos(sql: str, params=()):
    with connections["revos"].cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchall() if cursor.description else None


def unified(sql: str, params=()):
    with connections["unified"].cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchall() if cursor.description else None


def link_for(revos_agency_id) -> AgencyLink:
    agency_links_sync()
    return AgencyLink.objects.get(revos_agency_id=revos_agency_id)


def confirmed(link: AgencyLink) -> AgencyLink:
    return agency_link_confirm(
        link=link, kind=link.suggested_kind, unified_agency_id=link.suggested_agency_id, actor=None
    )


def migrate(link: AgencyLink, kind=MigrationRun.Kind.MIGRATE) -> MigrationRun:
    run = migration_run_request(link=link, kind=kind, actor=None)
    run_worker("migrations")
    run.refresh_from_db()
    return run


@pytest.fixture
def shared_agency(tenant_db, rq_queues):
    """A demo agency that exists in both RevOS and AudienceOS, linked to its AudienceOS self."""
    demo_data_seed(agencies=4, scale=1, seed=7)
    agency_links_sync()
    link = AgencyLink.objects.filter(suggested_kind=AgencyLink.Kind.EXISTING).order_by("name").first()
    assert link is not None, "the demo data has agencies in both apps"
    return confirmed(link)


@pytest.fixture
def large_agency(tenant_db, rq_queues, settings):
    """A RevOS-only agency of some thousands of rows, migrated in small batches."""
    settings.MIGRATION_BATCH_SIZE = 200
    return confirmed(link_for(demo_agency_seed(scale=25, seed=11, name="Large Agency")))


# Identity and mapping ----------------------------------------------------------------------


def test_shared_agency_reuses_audienceos_agency_users_and_clients(shared_agency):
    link = shared_agency
    before = unified('SELECT count(*) FROM "user"')[0][0], unified("SELECT count(*) FROM agency")[0][0]
    run = migrate(link)
    assert run.status == Status.SUCCEEDED, run.error
    assert unified("SELECT count(*) FROM agency")[0][0] == before[1]
    reused_users = unified(
        "SELECT count(*) FROM controlplane.id_map WHERE agency_id = %s AND source_table = 'users' AND NOT inserted",
        [link.revos_agency_id],
    )[0][0]
    assert reused_users > 0, "some RevOS users share an email (in another case) with AudienceOS users"
    revos_users = revos("SELECT count(*) FROM users WHERE agency_id = %s", [link.revos_agency_id])[0][0]
    assert unified('SELECT count(*) FROM "user"')[0][0] == before[0] + revos_users - reused_users
    duplicates = unified('SELECT lower(email) FROM "user" GROUP BY 1 HAVING count(*) > 1')
    assert duplicates == []
    assert run.report["clients"]["reused"] > 0


def client_link_to_another_name(link: AgencyLink, revos_client, revos_name: str):
    """Staff link the RevOS client to an AudienceOS client that name matching would never pick for it."""
    audience_client = unified(
        "SELECT id FROM client WHERE agency_id = %s AND lower(name) <> lower(%s) LIMIT 1",
        [link.unified_agency_id, revos_name],
    )[0][0]
    ClientLink.objects.create(agency_link=link, revos_client_id=revos_client, unified_client_id=audience_client)
    return audience_client


def test_an_explicit_client_link_reuses_that_client_and_rewrites_references(shared_agency):
    link = shared_agency
    revos_client, revos_name, campaign = revos(
        "SELECT c.id, c.name, k.id FROM clients c JOIN campaigns k ON k.client_id = c.id "
        "WHERE c.agency_id = %s LIMIT 1",
        [link.revos_agency_id],
    )[0]
    audience_client = client_link_to_another_name(link, revos_client, revos_name)
    assert migrate(link).status == Status.SUCCEEDED
    assert unified("SELECT count(*) FROM client WHERE id = %s", [revos_client]) == [(0,)], "not duplicated"
    assert unified("SELECT client_id FROM campaign WHERE id = %s", [campaign]) == [(audience_client,)]


def test_the_plan_counts_an_explicitly_linked_client_as_reused_exactly_as_the_migration_does(shared_agency):
    link = shared_agency
    unlinked = migrate(link, kind=MigrationRun.Kind.PLAN).report["tables"]["clients"]["reused"]
    # A RevOS client name matching leaves alone, linked by staff to an AudienceOS client of another name.
    normalized = NORMALIZED_NAME.format("name")
    audience_names = unified(f"SELECT {normalized} FROM client WHERE agency_id = %s", [link.unified_agency_id])
    revos_client, revos_name = revos(
        f"SELECT id, name FROM clients WHERE agency_id = %s AND NOT {normalized} = ANY(%s) ORDER BY id LIMIT 1",
        [link.revos_agency_id, [name for (name,) in audience_names]],
    )[0]
    client_link_to_another_name(link, revos_client, revos_name)
    plan = migrate(link, kind=MigrationRun.Kind.PLAN).report["tables"]["clients"]
    run = migrate(link)
    assert run.status == Status.SUCCEEDED, run.error
    assert plan["reused"] == unlinked + 1 == run.report["clients"]["reused"]
    assert plan["to_write"] == plan["source_rows"] - plan["reused"] == run.report["clients"]["inserted"]


def test_rows_land_with_the_seeds_app_context_type_and_ai_provider(shared_agency):
    link = shared_agency
    assert migrate(link).status == Status.SUCCEEDED
    agency = link.unified_agency_id
    assert unified("SELECT DISTINCT app_context FROM lead WHERE agency_id = %s", [agency]) == [("revos",)]
    cartridge_types = unified(
        "SELECT type, app_context FROM cartridge c JOIN controlplane.id_map m ON m.target_id = c.id "
        "WHERE m.agency_id = %s GROUP BY 1, 2 ORDER BY 1",
        [link.revos_agency_id],
    )
    assert cartridge_types == [("brand", "both"), ("style", "both")]
    providers = unified(
        "SELECT DISTINCT ai_provider FROM chat_message c JOIN controlplane.id_map m ON m.target_id = c.id "
        "WHERE m.agency_id = %s",
        [link.revos_agency_id],
    )
    assert providers == [("agentkit",)]
    # AudienceOS's own chat stays Gemini's.
    assert ("gemini",) in unified("SELECT DISTINCT ai_provider FROM chat_message WHERE agency_id = %s", [agency])
    brand_config = unified(
        "SELECT config::text FROM cartridge WHERE type = 'brand' AND agency_id = %s AND app_context = 'both' LIMIT 1",
        [agency],
    )[0][0]
    assert {"company_name", "industry", "tone", "logo_url"} <= set(json.loads(brand_config))


def test_migrate_twice_changes_nothing(shared_agency):
    link = shared_agency
    assert migrate(link).status == Status.SUCCEEDED
    first = agency_checksums(link.unified_agency_id)
    second_run = migrate(link)
    assert second_run.status == Status.SUCCEEDED
    assert agency_checksums(link.unified_agency_id) == first
    assert all(t["inserted"] == t["updated"] == t["deleted"] == 0 for t in second_run.report.values())


def test_catch_up_brings_inserts_updates_and_deletes_and_leaves_audienceos_rows(shared_agency):
    link = shared_agency
    agency = link.unified_agency_id
    assert migrate(link).status == Status.SUCCEEDED
    audience_rows = unified(
        "SELECT md5(string_agg(t::text, '' ORDER BY id)) FROM client t WHERE agency_id = %s "
        "AND id NOT IN (SELECT target_id FROM controlplane.id_map WHERE inserted)",
        [agency],
    )
    gone_lead, changed_lead = (
        r[0] for r in revos("SELECT id FROM leads WHERE agency_id = %s ORDER BY id LIMIT 2", [link.revos_agency_id])
    )
    campaign = revos("SELECT id FROM campaigns WHERE agency_id = %s LIMIT 1", [link.revos_agency_id])[0][0]
    new_lead = uuid.uuid4()
    revos("DELETE FROM dm_messages WHERE lead_id = %s", [gone_lead])
    revos("DELETE FROM dm_deliveries WHERE lead_id = %s", [gone_lead])
    revos("DELETE FROM email_queue WHERE lead_id = %s", [gone_lead])
    revos("DELETE FROM email_extraction_reviews WHERE lead_id = %s", [gone_lead])
    revos("DELETE FROM leads WHERE id = %s", [gone_lead])
    revos("UPDATE leads SET status = 'converted', name = 'Changed Name' WHERE id = %s", [changed_lead])
    revos(
        "INSERT INTO leads (id, agency_id, campaign_id, name, status) VALUES (%s, %s, %s, 'Newcomer', 'new')",
        [new_lead, link.revos_agency_id, campaign],
    )
    run = migrate(link)
    assert run.status == Status.SUCCEEDED, run.error
    assert run.report["leads"]["deleted"] == 1
    assert run.report["leads"]["inserted"] == 1
    assert run.report["leads"]["updated"] == 1
    assert unified("SELECT count(*) FROM lead WHERE id = %s", [gone_lead])[0][0] == 0
    assert unified("SELECT status, name FROM lead WHERE id = %s", [changed_lead]) == [("converted", "Changed Name")]
    assert unified("SELECT name, agency_id FROM lead WHERE id = %s", [new_lead]) == [("Newcomer", agency)]
    assert (
        unified("SELECT count(*) FROM lead WHERE agency_id = %s", [agency])[0][0]
        == revos("SELECT count(*) FROM leads WHERE agency_id = %s", [link.revos_agency_id])[0][0]
    )
    assert (
        unified(
            "SELECT md5(string_agg(t::text, '' ORDER BY id)) FROM client t WHERE agency_id = %s "
            "AND id NOT IN (SELECT target_id FROM controlplane.id_map WHERE inserted)",
            [agency],
        )
        == audience_rows
    )


def test_rollback_removes_exactly_what_the_runs_inserted(shared_agency):
    link = shared_agency
    agency = link.unified_agency_id
    before = agency_checksums(agency)
    assert migrate(link).status == Status.SUCCEEDED
    assert agency_checksums(agency) != before
    rollback = migrate(link, kind=MigrationRun.Kind.ROLLBACK)
    assert rollback.status == Status.SUCCEEDED, rollback.error
    assert agency_checksums(agency) == before
    assert unified("SELECT count(*) FROM controlplane.id_map WHERE agency_id = %s", [link.revos_agency_id]) == [(0,)]


def test_plan_is_a_dry_run_that_writes_nothing(shared_agency):
    link = shared_agency
    before = agency_checksums(link.unified_agency_id)
    run = migrate(link, kind=MigrationRun.Kind.PLAN)
    assert run.status == Status.SUCCEEDED, run.error
    assert agency_checksums(link.unified_agency_id) == before
    leads = revos("SELECT count(*) FROM leads WHERE agency_id = %s", [link.revos_agency_id])[0][0]
    assert run.report["tables"]["leads"] == {
        "target": "lead",
        "source_rows": leads,
        "reused": 0,
        "to_write": leads,
        "already_migrated": 0,
    }
    assert run.report["tables"]["users"]["reused"] > 0


# Refusals: nothing queued, nothing written ----------------------------------------------------


def test_unknown_and_malformed_agency_ids_are_refused(tenant_db):
    with pytest.raises(RunRefused, match="is not an agency id"):
        agency_link_resolve("not-a-uuid")
    with pytest.raises(RunRefused, match="No RevOS agency"):
        agency_link_resolve(str(uuid.uuid4()))


def test_a_linked_agency_carries_its_unified_id_and_an_unlinked_one_is_refused():
    link = AgencyLink(name="Acme", revos_agency_id=uuid.uuid4())
    with pytest.raises(RunRefused, match="Acme is not linked to a unified agency"):
        agency_linked(link=link)
    link.unified_agency_id = uuid.uuid4()
    assert agency_linked(link=link) == LinkedAgency(link.revos_agency_id, link.unified_agency_id, "Acme")


def test_agency_without_a_confirmed_link_cannot_be_migrated(tenant_db, rq_queues):
    link = link_for(demo_agency_seed(scale=1, seed=3))
    with pytest.raises(RunRefused, match="no confirmed link"):
        migration_run_request(link=link, kind=MigrationRun.Kind.MIGRATE, actor=None)
    assert MigrationRun.objects.count() == 0
    assert rq_queues["migrations"].count == 0


def test_a_second_request_while_one_is_queued_is_refused(shared_agency, rq_queues):
    first = migration_run_request(link=shared_agency, kind=MigrationRun.Kind.MIGRATE, actor=None)
    with pytest.raises(RunRefused, match="already has a run queued"):
        migration_run_request(link=shared_agency, kind=MigrationRun.Kind.MIGRATE, actor=None)
    assert rq_queues["migrations"].job_ids == [first.job_id] and first.job_id.startswith(f"migration-{first.pk}-")
    assert shared_agency.runs.count() == 1


def test_the_database_refuses_a_second_active_run_of_an_agency_whatever_path_writes_it(shared_agency, rq_queues):
    """What holds when two requests pass the service's checks at once: the one_active_run_per_agency
    constraint, which the service turns into a refusal."""
    migration_run_request(link=shared_agency, kind=MigrationRun.Kind.MIGRATE, actor=None)
    for status in MigrationRun.ACTIVE_STATUSES:
        with pytest.raises(IntegrityError, match="one_active_run_per_agency"), transaction.atomic():
            MigrationRun.objects.create(
                agency_link=shared_agency, revos_agency_id=shared_agency.revos_agency_id, status=status
            )
    assert shared_agency.runs.count() == 1 and rq_queues["migrations"].count == 1


def test_redis_down_refuses_with_a_clear_message(shared_agency, settings):
    settings.RQ_QUEUES = {name: {**queue, "URL": "redis://127.0.0.1:1/0"} for name, queue in settings.RQ_QUEUES.items()}
    with pytest.raises(RunRefused, match=r"Redis .* cannot be reached"):
        migration_run_request(link=shared_agency, kind=MigrationRun.Kind.MIGRATE, actor=None)
    assert MigrationRun.objects.count() == 0


def test_revos_down_refuses_with_a_clear_message(shared_agency, monkeypatch):
    from django.conf import settings

    monkeypatch.setitem(settings.DATABASES["revos"], "PORT", "1")
    monkeypatch.setitem(settings.DATABASES["revos"], "HOST", "127.0.0.1")
    with pytest.raises(RunRefused, match=r"The revos database .* cannot be reached"):
        migration_run_request(link=shared_agency, kind=MigrationRun.Kind.MIGRATE, actor=None)
    assert MigrationRun.objects.count() == 0


def test_revos_down_during_a_run_fails_it_clearly_and_writes_nothing(shared_agency, monkeypatch):
    from django.conf import settings

    before = agency_checksums(shared_agency.unified_agency_id)
    run = migration_run_request(link=shared_agency, kind=MigrationRun.Kind.MIGRATE, actor=None)
    monkeypatch.setitem(settings.DATABASES["revos"], "PORT", "1")
    monkeypatch.setitem(settings.DATABASES["revos"], "HOST", "127.0.0.1")
    run_worker("migrations")
    run.refresh_from_db()
    assert run.status == Status.FAILED
    assert "The revos database" in run.error and "cannot be reached" in run.error
    assert agency_checksums(shared_agency.unified_agency_id) == before


def test_two_executions_of_one_agency_cannot_overlap(shared_agency):
    link = shared_agency
    with connect("unified") as holder, agency_lock(holder, link.revos_agency_id), pytest.raises(AgencyBusy):
        AgencyMigration(link.revos_agency_id, link.unified_agency_id, True, batch_size=100).run()


# Faults: a refused row, a killed worker, a pause ---------------------------------------------


def test_a_row_the_schema_refuses_fails_the_run_by_name_and_resume_completes_it(shared_agency):
    link = shared_agency
    bad = revos("SELECT id FROM leads WHERE agency_id = %s ORDER BY id LIMIT 1 OFFSET 3", [link.revos_agency_id])[0][0]
    revos("UPDATE leads SET status = 'maybe later' WHERE id = %s", [bad])
    run = migrate(link)
    assert run.status == Status.FAILED
    assert run.failed_table == "leads"
    assert str(bad) in run.error and "lead_status_check" in run.error
    revos("UPDATE leads SET status = 'new' WHERE id = %s", [bad])
    resumed = migrate(link)
    assert resumed.status == Status.SUCCEEDED, resumed.error
    assert unified("SELECT status FROM lead WHERE id = %s", [bad]) == [("new",)]
    assert resumed.report["agencies"]["inserted"] == 0, "tables done before the failure are not redone"


def test_a_source_id_already_taken_by_another_agencys_row_is_refused_and_never_touched(shared_agency):
    link = shared_agency
    lead = revos("SELECT id FROM leads WHERE agency_id = %s ORDER BY id LIMIT 1", [link.revos_agency_id])[0][0]
    other_agency = unified("SELECT id FROM agency WHERE id <> %s ORDER BY id LIMIT 1", [link.unified_agency_id])[0][0]
    unified("INSERT INTO lead (id, agency_id, name) VALUES (%s, %s, 'Not RevOS')", [lead, other_agency])
    run = migrate(link)
    assert run.status == Status.FAILED
    assert str(lead) in run.error and "already taken" in run.error
    assert migrate(link, kind=MigrationRun.Kind.ROLLBACK).status == Status.SUCCEEDED
    assert unified("SELECT agency_id, name FROM lead WHERE id = %s", [lead]) == [(other_agency, "Not RevOS")]


@pytest.mark.parametrize("set_based_checks", [True, False], ids=["set-based", "row-triggers"])
def test_a_parent_missing_in_the_unified_database_fails_the_run_naming_the_row(
    shared_agency, settings, set_based_checks
):
    """A post of this agency whose campaign belongs to another RevOS agency: valid in RevOS, an
    orphan in the unified database. Either way of checking foreign keys names it and writes none of its batch."""
    link = shared_agency
    settings.MIGRATION_SET_BASED_FK_CHECKS = set_based_checks
    post = revos("SELECT id FROM posts WHERE agency_id = %s ORDER BY id LIMIT 1", [link.revos_agency_id])[0][0]
    elsewhere = revos("SELECT id FROM campaigns WHERE agency_id <> %s LIMIT 1", [link.revos_agency_id])[0][0]
    original = revos("SELECT campaign_id FROM posts WHERE id = %s", [post])[0][0]
    revos("UPDATE posts SET campaign_id = %s WHERE id = %s", [elsewhere, post])
    run = migrate(link)
    assert (run.status, run.failed_table) == (Status.FAILED, "posts")
    assert str(post) in run.error and str(elsewhere) in run.error, run.error
    assert unified("SELECT count(*) FROM post WHERE agency_id = %s", [link.unified_agency_id]) == [(0,)]
    assert unified("SELECT count(*) FROM campaign WHERE id = %s", [elsewhere]) == [(0,)]
    revos("UPDATE posts SET campaign_id = %s WHERE id = %s", [original, post])
    assert migrate(link).status == Status.SUCCEEDED


def id_map_rows(link: AgencyLink) -> list[tuple]:
    return unified(
        "SELECT source_table, source_id, target_table, target_id, inserted FROM controlplane.id_map"
        " WHERE agency_id = %s ORDER BY source_table, source_id",
        [link.revos_agency_id],
    )


def test_a_first_load_checked_set_wise_writes_exactly_what_the_row_triggers_write(large_agency, caplog):
    link = large_agency

    def migrate_directly(**options):
        caplog.clear()
        AgencyMigration(link.revos_agency_id, link.unified_agency_id, False, batch_size=200, **options).run()
        return agency_checksums(link.unified_agency_id), id_map_rows(link)

    caplog.set_level(logging.INFO, logger="migration_jobs.etl.engine")
    by_row_triggers = migrate_directly(set_based_checks=False)
    assert "first load" not in caplog.text
    agency_rollback(source_agency_id=link.revos_agency_id, unified_agency_id=link.unified_agency_id)
    assert migrate_directly() == by_row_triggers
    assert "posts -> post: first load, foreign keys checked per batch" in caplog.text
    # A second run is a catch-up: the rows are there, so every table takes the upsert path (but
    # auth.mfa_factors: the demo people have no second factor, so none was ever written).
    assert migrate_directly() == by_row_triggers
    first_loads = [line for line in caplog.text.splitlines() if "first load" in line]
    assert all("auth.mfa_factors" in line for line in first_loads) and "comments -> comment: upsert" in caplog.text


def test_a_batch_checked_set_wise_holds_its_parents_until_it_commits(shared_agency):
    """The set-based check locks the parents it found, as the row triggers do: a parent cannot be
    deleted under a batch that references it."""
    link = shared_agency
    assert migrate(link).status == Status.SUCCEEDED
    campaign = unified("SELECT id FROM campaign WHERE agency_id = %s LIMIT 1", [link.unified_agency_id])[0][0]
    check = ReferenceCheck.build("campaign_id", "campaign", sql.Identifier("staged_posts"))
    with connect("unified") as batch, connect("unified") as other:
        batch.execute("CREATE TEMP TABLE staged_posts (id uuid, campaign_id uuid)")
        batch.execute("INSERT INTO staged_posts VALUES (gen_random_uuid(), %s), (gen_random_uuid(), NULL)", [campaign])
        with batch.cursor() as cursor:
            assert check.first_orphan(cursor) is None
        other.execute("SET lock_timeout = '300ms'")
        with pytest.raises(psycopg.errors.LockNotAvailable):
            other.execute("DELETE FROM campaign WHERE id = %s", [campaign])
        other.rollback()
        batch.execute("INSERT INTO staged_posts VALUES (gen_random_uuid(), gen_random_uuid())")
        with batch.cursor() as cursor:
            orphan = check.first_orphan(cursor)
        assert orphan is not None and "references no campaign row" in orphan[1]


def test_a_first_load_batch_checks_its_distinct_keys_locks_their_parents_and_counts_another_agencys_as_missing(
    shared_agency,
):
    """A first load copies straight into the table: its keys, read from the COPY text, are checked
    as the tenant trigger would (same id and agency) and their parents locked until the commit."""
    link = shared_agency
    assert migrate(link).status == Status.SUCCEEDED
    agency = str(link.unified_agency_id)
    campaign = str(unified("SELECT id FROM campaign WHERE agency_id = %s LIMIT 1", [agency])[0][0])
    other_agency = str(unified("SELECT id FROM agency WHERE id <> %s LIMIT 1", [agency])[0][0])
    check = KeysCheck.build("campaign_id", "campaign", ["id", "agency_id", "campaign_id"], same_agency=True)
    assert check.key_of([b"x", agency.encode(), b"\\N"]) is None
    with connect("unified") as batch, connect("unified") as other, batch.cursor() as cursor:
        assert check.missing(cursor, {(campaign.encode(), agency.encode())}) == set()
        other.execute("SET lock_timeout = '300ms'")
        with pytest.raises(psycopg.errors.LockNotAvailable):
            other.execute("DELETE FROM campaign WHERE id = %s", [campaign])
        other.rollback()
        unknown = str(uuid.uuid4())
        # A campaign of this agency, referenced as another agency's, is missing as the tenant key sees it.
        wanted = {(campaign, agency), (campaign, other_agency), (unknown, agency)}
        missing = check.missing(cursor, {(a.encode(), b.encode()) for a, b in wanted})
        assert missing == {(campaign.encode(), other_agency.encode()), (unknown.encode(), agency.encode())}


def test_tables_with_always_firing_triggers_or_other_foreign_keys_keep_the_row_triggers(tenant_db):
    """An app's trigger enabled for origin sessions is quiet in the copy's replica mode
    (tests/test_app_triggers.py); one that fires there too keeps its table on the row triggers."""
    with connect("unified") as connection:  # DDL is transactional: the rollback leaves nothing behind
        for statement in (
            "CREATE TABLE probe_parent (id uuid PRIMARY KEY, code int UNIQUE)",
            "CREATE TABLE probe_plain (id uuid PRIMARY KEY, parent_id uuid REFERENCES probe_parent (id))",
            "CREATE TABLE probe_by_code (id uuid PRIMARY KEY, code int REFERENCES probe_parent (code))",
            "CREATE TABLE probe_triggered (id uuid PRIMARY KEY, parent_id uuid REFERENCES probe_parent (id))",
            "CREATE FUNCTION probe_noop() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RETURN NEW; END $$",
            "CREATE TRIGGER probe_t BEFORE INSERT ON probe_triggered FOR EACH ROW EXECUTE FUNCTION probe_noop()",
            "ALTER TABLE probe_triggered ENABLE ALWAYS TRIGGER probe_t",
        ):
            connection.execute(statement)
        checkable = catalog_read(connection).set_checkable
        connection.rollback()
    assert {"probe_parent", "probe_plain", "post", "comment"} <= checkable
    assert not {"probe_by_code", "probe_triggered"} & checkable


def test_capture_triggers_left_by_a_cutover_keep_first_loads_set_wise_but_a_captured_agency_keeps_row_triggers(
    tenant_db, caplog
):
    # A cutover attaches the capture triggers to every unified table RevOS rows go to, and they stay
    # there: later agencies' first loads still take the set-based path. An agency whose own writes
    # are captured on unified does not: turning row triggers off would leave its writes unrecorded.
    link = confirmed(link_for(demo_agency_seed(scale=2, seed=12, name="Captured Agency")))
    tables, added = unified_captured_tables(), []
    try:
        with connect("unified") as connection:
            added = capture_triggers_install(connection, tables=tables)
            assert {"post", "comment"} <= catalog_read(connection).set_checkable
        caplog.set_level(logging.INFO, logger="migration_jobs.etl.engine")
        AgencyMigration(link.revos_agency_id, link.unified_agency_id, False, batch_size=200).run()
        assert "posts -> post: first load, foreign keys checked per batch" in caplog.text
        agency_rollback(source_agency_id=link.revos_agency_id, unified_agency_id=link.unified_agency_id)

        with connect("unified") as connection:
            capture_register(
                connection, agency_id=link.unified_agency_id, agency_name=link.name, tables=tables, wait_seconds=10
            )
        caplog.clear()
        AgencyMigration(link.revos_agency_id, link.unified_agency_id, False, batch_size=200).run()
        assert "first load" not in caplog.text and "posts -> post: upsert" in caplog.text
        posts = unified("SELECT count(*) FROM post WHERE agency_id = %s", [link.unified_agency_id])[0][0]
        recorded = unified(
            "SELECT count(DISTINCT row_id) FROM controlplane.change_log WHERE agency_id = %s AND table_name = 'post'",
            [link.unified_agency_id],
        )[0][0]
        assert recorded == posts > 0
    finally:
        with connect("unified") as connection:
            capture_remove(connection, agency_id=link.unified_agency_id)
            capture_triggers_remove(connection, tables=[t for t in tables if t.name in added])


def test_a_role_that_may_not_turn_row_triggers_off_keeps_them(tenant_db):
    role = sql.Identifier(f"cp_plain_migrator_{uuid.uuid4().hex[:12]}")  # roles are server-wide
    with connect("unified", autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE ROLE {} NOSUPERUSER").format(role))
        # Without superuser (Supabase's postgres) creating a role does not let one SET ROLE to it.
        admin.execute(sql.SQL("GRANT {} TO CURRENT_USER").format(role))
        try:
            with connect("unified") as connection:
                assert row_triggers_skippable(connection)
                connection.execute(sql.SQL("SET ROLE {}").format(role))
                connection.commit()
                assert not row_triggers_skippable(connection)
                assert connection.execute("SHOW session_replication_role").fetchone()[0] == "origin"
        finally:
            admin.execute(sql.SQL("DROP ROLE {}").format(role))


def clean_run_checksums(link: AgencyLink) -> dict[str, str]:
    """Migrate uninterrupted, take checksums, and roll back: the reference a faulted run must equal."""
    assert migrate(link).status == Status.SUCCEEDED
    reference = agency_checksums(link.unified_agency_id)
    assert migrate(link, kind=MigrationRun.Kind.ROLLBACK).status == Status.SUCCEEDED
    return reference


def wait_for(condition, *, timeout: float = 60, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def test_worker_killed_with_several_tables_in_flight_then_resumed_equals_a_clean_run(large_agency):
    link = large_agency
    reference = clean_run_checksums(link)
    run = migration_run_request(link=link, kind=MigrationRun.Kind.MIGRATE, actor=None)
    # A SimpleWorker runs the job in its own process: killing it kills the migration mid-batch.
    worker = start_worker_process(
        "migrations", "--worker-class", "rq.worker.SimpleWorker", MIGRATION_BATCH_SIZE="200", MIGRATION_WRITERS="3"
    )
    wait_for(
        lambda: MigrationRun.objects.filter(pk=run.pk, rows_done__gte=2000, current_table__contains=", ").exists(),
        what="the run to be well into its tables, several at once",
    )
    os.killpg(worker.pid, signal.SIGKILL)
    worker.wait(timeout=30)
    run.refresh_from_db()
    assert run.status == Status.RUNNING and run.rows_done < run.rows_total, "killed mid-run"
    resumed = migration_run_request(link=link, kind=MigrationRun.Kind.MIGRATE, actor=None)
    run.refresh_from_db()
    assert run.status == Status.FAILED and "stopped without finishing" in run.error
    run_worker("migrations")
    resumed.refresh_from_db()
    assert resumed.status == Status.SUCCEEDED, resumed.error
    assert agency_checksums(link.unified_agency_id) == reference


def test_pause_mid_table_then_resume_equals_an_uninterrupted_run(large_agency):
    link = large_agency
    reference = clean_run_checksums(link)
    run = migration_run_request(link=link, kind=MigrationRun.Kind.MIGRATE, actor=None)
    # Small batches keep the run going long enough to be paused from here.
    worker = start_worker_process("migrations", MIGRATION_BATCH_SIZE="10", MIGRATION_WRITERS="3")
    wait_for(
        lambda: MigrationRun.objects.filter(pk=run.pk, rows_done__gte=500, current_table__contains=", ").exists(),
        what="progress with several tables in flight",
    )
    migration_run_control(run=run, control="pause", actor=None)
    worker.wait(timeout=60)
    run.refresh_from_db()
    assert run.status == Status.PAUSED, run.error
    assert 0 < run.rows_done < run.rows_total
    for table in run.current_table.split(", "):
        checkpoint = unified(
            "SELECT completed, last_source_id IS NOT NULL FROM controlplane.checkpoint "
            "WHERE agency_id = %s AND source_table = %s",
            [link.revos_agency_id, table],
        )
        assert checkpoint in ([(False, True)], [(True, True)]), f"the paused table {table} keeps its checkpoint"
    resumed = migrate(link)
    assert resumed.status == Status.SUCCEEDED, resumed.error
    assert agency_checksums(link.unified_agency_id) == reference


# Several tables at once ----------------------------------------------------------------------


def migrate_in_process(link: AgencyLink, **options) -> None:
    AgencyMigration(link.revos_agency_id, link.unified_agency_id, False, batch_size=200, **options).run()


def table_log(records: list[logging.LogRecord]) -> list[tuple[str, str, int]]:
    """(event, source table, writer) per table start and end line of a run's log, in log order."""
    events = []
    for record in records:
        message = record.getMessage()
        if started := re.match(r"writer (\d+): table ([\w.]+)(?: part \d+/\d+)? -> [\w.]+: ", message):
            events.append(("start", started[2], int(started[1])))
        elif ended := re.match(r"table ([\w.]+)(?: part \d+/\d+)? -> [\w.]+ done: ", message):
            events.append(("end", ended[1], 0))
    return events


def test_parallel_writers_write_exactly_what_one_writer_writes(large_agency):
    link = large_agency
    migrate_in_process(link, writers=1)
    serial = agency_checksums(link.unified_agency_id), id_map_rows(link)
    agency_rollback(source_agency_id=link.revos_agency_id, unified_agency_id=link.unified_agency_id)
    migrate_in_process(link, writers=4)
    assert (agency_checksums(link.unified_agency_id), id_map_rows(link)) == serial
    # And a catch-up run over it (the upsert path) changes nothing.
    migrate_in_process(link, writers=4)
    assert (agency_checksums(link.unified_agency_id), id_map_rows(link)) == serial


def captured_in_process(link: AgencyLink, **options) -> CapturedMigration:
    migration = CapturedMigration(link.revos_agency_id, link.unified_agency_id, False, batch_size=200, **options)
    migration.run()
    return migration


def test_a_capture_catch_up_with_several_writers_writes_what_a_serial_full_reread_writes(large_agency, caplog):
    link = large_agency
    agency = link.revos_agency_id
    captured_in_process(link, writers=1)  # the first load registers the capture
    leads = [row[0] for row in revos("SELECT id FROM leads WHERE agency_id = %s ORDER BY id LIMIT 40", [agency])]
    revos("UPDATE leads SET status = 'contacted' WHERE id = ANY(%s)", [leads])
    revos(
        "UPDATE comments SET content = content || ' (edited)' WHERE id IN (SELECT c.id FROM comments c"
        " JOIN posts p ON p.id = c.post_id WHERE p.agency_id = %s ORDER BY c.id LIMIT 30)",
        [agency],
    )
    revos(
        "UPDATE posts SET content = content || '.' WHERE id IN (SELECT id FROM posts"
        " WHERE agency_id = %s ORDER BY id LIMIT 30)",
        [agency],
    )
    gone = childless_leads(link.unified_agency_id, count=3)
    revos("DELETE FROM leads WHERE id = ANY(%s)", [gone])
    caplog.set_level(logging.INFO, logger="migration_jobs.etl.engine")
    catch_up = captured_in_process(link, writers=3, split_rows=10)
    assert catch_up.used_capture and catch_up.changed_rows == len(set(leads) | set(gone)) + 30 + 30
    writers = {event[2] for event in table_log(caplog.records) if event[0] == "start"}
    assert writers == {1, 2, 3}, "the changed tables were written by several writers, leads in id ranges"
    assert any(" part 2/3 -> " in record.getMessage() for record in caplog.records)
    assert unified("SELECT count(*) FROM lead WHERE id = ANY(%s)", [gone]) == [(0,)]
    kept = list(set(leads) - set(gone))
    assert unified("SELECT count(*) FROM lead WHERE id = ANY(%s) AND status = 'contacted'", [kept]) == [(len(kept),)]
    parallel = agency_checksums(link.unified_agency_id), id_map_rows(link)
    # A serial re-read of every row finds nothing left to write: the parallel catch-up wrote it all.
    full = captured_in_process(link, writers=1, full=True)
    assert not full.used_capture
    assert (agency_checksums(link.unified_agency_id), id_map_rows(link)) == parallel


def test_a_resume_first_reads_again_what_changed_since_the_interrupted_snapshot(large_agency):
    """The resume reads comments in a newer snapshot than the finished posts were read in: a comment
    on a post inserted in between would reference a post the unified database lacks, unless the
    rows written before the interruption that changed since are read again first."""
    link = large_agency
    agency = link.revos_agency_id

    def pause_once_posts_are_done(progress):
        done, units = unified(
            "SELECT count(*) FILTER (WHERE completed), count(*) FROM controlplane.checkpoint"
            " WHERE agency_id = %s AND (source_table = 'posts' OR source_table LIKE 'posts part %%')",
            [agency],
        )[0]
        return Control.PAUSE if units and done == units else Control.CONTINUE

    with pytest.raises(MigrationStopped):
        captured_in_process(link, writers=2, on_progress=pause_once_posts_are_done)
    comments_begun = "SELECT 1 FROM controlplane.checkpoint WHERE agency_id = %s AND source_table LIKE 'comments%%'"
    assert not unified(comments_begun, [agency]), "paused between the posts and their comments"
    post, account = revos(
        "SELECT id, linkedin_account_id FROM posts WHERE agency_id = %s ORDER BY id LIMIT 1", [agency]
    )[0]
    new_post, new_comment = uuid.uuid4(), uuid.uuid4()
    revos(
        "INSERT INTO posts (id, agency_id, linkedin_account_id, content) VALUES (%s, %s, %s, 'after the pause')",
        [new_post, agency, account],
    )
    revos("INSERT INTO comments (id, post_id, content) VALUES (%s, %s, 'on the new post')", [new_comment, new_post])
    revos("UPDATE posts SET content = 'edited after the pause' WHERE id = %s", [post])
    captured_in_process(link, writers=2)
    assert unified("SELECT id, content FROM post WHERE id = ANY(%s) ORDER BY content", [[post, new_post]]) == [
        (new_post, "after the pause"),
        (post, "edited after the pause"),
    ]
    assert unified("SELECT post_id FROM comment WHERE id = %s", [new_comment]) == [(new_post,)]
    # Level with RevOS: a full re-read finds nothing to change.
    resumed = agency_checksums(link.unified_agency_id), id_map_rows(link)
    assert not captured_in_process(link, writers=1, full=True).used_capture
    assert (agency_checksums(link.unified_agency_id), id_map_rows(link)) == resumed


def test_no_table_starts_before_the_tables_it_references_have_finished(large_agency, caplog):
    link = large_agency
    caplog.set_level(logging.INFO, logger="migration_jobs.etl.engine")
    migrate_in_process(link, writers=3, split_rows=1000)
    events = table_log(caplog.records)
    # A table's start is its first part's start; its end, its last part's end.
    position = {}
    for index, (event, table, _) in enumerate(events):
        if event == "end" or ("start", table) not in position:
            position[(event, table)] = index
    with connect("revos", purpose="test") as source, connect("unified", purpose="test") as target:
        plans = migration_plan_build(source=catalog_read(source), target=catalog_read(target))
        parents = table_parents(plans, table_dependencies(target))
    assert {table for event, table, _ in events if event == "end"} == {p.source for p in plans}
    checked = 0
    for child, its_parents in parents.items():
        for parent in its_parents:
            assert position[("end", parent)] < position[("start", child)], f"{child} started before {parent} ended"
            checked += 1
    assert checked > 20
    # Side by side: some table started while another was still being written, by another writer.
    in_flight, overlapped = Counter(), False
    for event, table, _ in events:
        overlapped = overlapped or (event == "start" and sum(in_flight.values()) > 0)
        in_flight[table] += 1 if event == "start" else -1
    assert overlapped
    assert {writer for event, _, writer in events if event == "start"} == {1, 2, 3}


def test_table_parents_wait_for_every_writer_of_a_referenced_table_and_earlier_plans_of_their_own():
    def plan(source, target):
        return SimpleNamespace(source=source, target=target)

    plans = [plan("agencies", "agency"), plan("posts", "post"), plan("imported_posts", "post"), plan("likes", "like")]
    references = {"post": {"agency", "post"}, "like": {"post"}}
    assert table_parents(plans, references) == {
        "agencies": set(),
        "posts": {"agencies"},
        "imported_posts": {"agencies", "posts"},
        "likes": {"posts", "imported_posts"},
    }


def test_pause_with_several_tables_in_flight_stops_every_writer_at_a_batch_boundary(large_agency):
    link = large_agency
    reference = clean_run_checksums(link)
    at_pause: dict[str, int] = {}
    in_flight: tuple[str, ...] = ()
    asked_after_pause = []

    def pause_once_several_are_in_flight(progress):
        nonlocal in_flight
        if at_pause:
            asked_after_pause.append(progress)
        elif len(progress.in_flight) >= 2 and progress.rows_done > 1000:
            in_flight = progress.in_flight
            at_pause.update(checkpoint_rows(link))
            return Control.PAUSE
        return Control.CONTINUE

    with pytest.raises(MigrationStopped):
        migrate_in_process(link, writers=3, on_progress=pause_once_several_are_in_flight)
    assert not asked_after_pause, "no batch is reported once the pause is answered"
    after = checkpoint_rows(link)
    # Only the tables in flight went on, each by at most the one batch it was writing.
    assert set(after) - set(at_pause) <= set(in_flight)
    for table, rows in after.items():
        assert rows - at_pause.get(table, 0) <= (200 if table in in_flight else 0), table
    # A batch boundary: each table's id map rows are exactly the rows its checkpoint counts.
    mapped = dict(
        unified(
            "SELECT source_table, count(*) FROM controlplane.id_map WHERE agency_id = %s GROUP BY 1",
            [link.revos_agency_id],
        )
    )
    per_table = Counter()
    for unit, rows in after.items():
        per_table[PART_KEY.match(unit)["table"] if PART_KEY.match(unit) else unit] += rows
    assert {table: mapped.get(table, 0) for table in per_table} == per_table
    migrate_in_process(link, writers=3)
    assert agency_checksums(link.unified_agency_id) == reference


def checkpoint_rows(link: AgencyLink) -> dict[str, int]:
    return dict(
        unified(
            "SELECT source_table, rows_done FROM controlplane.checkpoint WHERE agency_id = %s",
            [link.revos_agency_id],
        )
    )


def test_a_row_refused_in_one_table_stops_the_other_writers_and_resume_completes(large_agency):
    link = large_agency
    reference = clean_run_checksums(link)
    bad, status = revos(
        "SELECT id, status FROM leads WHERE agency_id = %s ORDER BY id LIMIT 1 OFFSET 3", [link.revos_agency_id]
    )[0]
    revos("UPDATE leads SET status = 'maybe later' WHERE id = %s", [bad])
    with pytest.raises(RowRejected) as refused:
        migrate_in_process(link, writers=3)
    assert (refused.value.table, refused.value.source_id) == ("leads", str(bad))
    assert "lead_status_check" in refused.value.reason
    unfinished = unified(
        "SELECT source_table FROM controlplane.checkpoint WHERE agency_id = %s AND NOT completed",
        [link.revos_agency_id],
    )
    assert ("leads",) in unfinished or not unified(
        "SELECT 1 FROM controlplane.checkpoint WHERE agency_id = %s AND source_table = 'leads'", [link.revos_agency_id]
    )
    revos("UPDATE leads SET status = %s WHERE id = %s", [status, bad])
    migrate_in_process(link, writers=3)
    assert agency_checksums(link.unified_agency_id) == reference


def test_an_error_on_the_runs_thread_stops_every_writer_before_it_is_raised(large_agency):
    link = large_agency
    reported = []

    def fail_on_the_fifth_batch(progress):
        reported.append(progress)
        if len(reported) == 5:
            raise RuntimeError("progress could not be recorded")
        return Control.CONTINUE

    with pytest.raises(RuntimeError, match="could not be recorded"):
        migrate_in_process(link, writers=3, on_progress=fail_on_the_fifth_batch)
    assert len(reported) == 5, "no batch is reported after the error"
    assert not [t.name for t in threading.enumerate() if t.name.startswith(("write-", "read-"))]
    # A closed connection's backend leaves pg_stat_activity a moment later.
    wait_for(
        lambda: (
            not unified(
                "SELECT pid FROM pg_stat_activity WHERE application_name LIKE 'controlplane-migration%%'"
                " AND datname = current_database()"
            )
        ),
        timeout=20,
        what="every writer's connection to be closed",
    )
    migrate_in_process(link, writers=3)  # and the agency's lock was released: a resume runs


def test_a_large_table_is_written_in_id_ranges_by_several_writers_exactly_as_by_one(large_agency, caplog):
    link = large_agency
    migrate_in_process(link, writers=1)
    serial = agency_checksums(link.unified_agency_id), id_map_rows(link)
    agency_rollback(source_agency_id=link.revos_agency_id, unified_agency_id=link.unified_agency_id)
    caplog.set_level(logging.INFO, logger="migration_jobs.etl.engine")
    migrate_in_process(link, writers=3, split_rows=1000)
    assert (agency_checksums(link.unified_agency_id), id_map_rows(link)) == serial
    parts = re.findall(r"writer (\d+): table (\w+) part (\d)/3 -> ", caplog.text)
    split_tables = {table for _, table, _ in parts}
    assert split_tables, "some table has more than 1000 rows"
    for table in split_tables:
        assert sorted(part for _, t, part in parts if t == table) == ["1", "2", "3"]
    assert len({writer for writer, _, _ in parts}) > 1


def test_a_split_table_paused_resumes_range_by_range_whatever_the_writer_count(large_agency):
    link = large_agency
    reference = clean_run_checksums(link)

    def pause_once_parts_are_in_flight(progress):
        parts = [unit for unit in progress.in_flight if " part " in unit]
        return Control.PAUSE if len(parts) >= 2 and progress.rows_done > 1000 else Control.CONTINUE

    with pytest.raises(MigrationStopped):
        migrate_in_process(link, writers=3, split_rows=1000, on_progress=pause_once_parts_are_in_flight)
    keys = unified(
        "SELECT source_table, completed FROM controlplane.checkpoint"
        " WHERE agency_id = %s AND source_table LIKE '%% part %%'",
        [link.revos_agency_id],
    )
    assert len(keys) >= 2, "each part keeps a checkpoint of its own"
    assert all(re.fullmatch(r"\w+ part [123]/3", key) for key, _ in keys)
    # One writer now, and a split threshold that would not split: the earlier split stands.
    migrate_in_process(link, writers=1)
    assert agency_checksums(link.unified_agency_id) == reference
    assert not unified("SELECT 1 FROM controlplane.checkpoint WHERE agency_id = %s", [link.revos_agency_id])


def test_units_keep_an_earlier_split_keep_a_table_begun_whole_and_never_split_a_self_referencing_table():
    def plan(source, target):
        return SimpleNamespace(source=source, target=target)

    plans = [plan("leads", "lead"), plan("comments", "comment"), plan("posts", "post"), plan("notes", "note")]
    rows = {"leads": 5000, "comments": 5000, "posts": 5000, "notes": 10}
    units = units_plan(
        plans,
        rows=rows,
        checkpoint_keys=["leads part 1/2", "posts"],
        references={"comment": {"comment", "post"}},
        writers=4,
        split_rows=1000,
    )
    # posts first: comments wait for it (5000 + 5000 rows in a chain); leads' parts are 2500 rows each.
    assert [unit.name for unit in units] == ["posts", "comments", "leads part 1/2", "leads part 2/2", "notes"]
    low, high = units[2].id_range
    assert low is None and high == uuid.UUID(int=1 << 127)
    assert units[3].id_range == (uuid.UUID(int=1 << 127), None)
    fresh = units_plan(plans, rows=rows, checkpoint_keys=[], references={}, writers=3, split_rows=1000)
    assert [u.name for u in fresh if u.table == "posts"] == ["posts part 1/3", "posts part 2/3", "posts part 3/3"]
    assert [
        u.name for u in units_plan(plans, rows=rows, checkpoint_keys=[], references={}, writers=1, split_rows=1)
    ] == [
        "leads",
        "comments",
        "posts",
        "notes",
    ]


def test_the_largest_table_is_split_whatever_its_share_and_its_chain_starts_first():
    def plan(source, target):
        return SimpleNamespace(source=source, target=target)

    plans = [
        plan("agencies", "agency"),
        plan("notes", "note"),
        plan("leads", "lead"),
        plan("messages", "message"),
        plan("tags", "tag"),
    ]
    rows = {"agencies": 1, "notes": 300, "leads": 200, "messages": 500, "tags": 2}
    references = {"note": {"agency"}, "lead": {"agency"}, "message": {"lead"}, "tag": {"agency"}}
    units = units_plan(plans, rows=rows, checkpoint_keys=[], references=references, writers=2, split_rows=100_000)
    # messages holds under half the rows and is below split_rows, yet both writers write it; leads,
    # its parent, starts before notes, which is larger but which nothing waits for (200 + 500 / 2
    # rows in a chain against 300).
    assert [unit.name for unit in units] == [
        "agencies",
        "leads",
        "notes",
        "messages part 1/2",
        "messages part 2/2",
        "tags",
    ]
    one_writer = units_plan(plans, rows=rows, checkpoint_keys=[], references=references, writers=1, split_rows=1000)
    assert all(unit.parts == 1 for unit in one_writer)
    # A largest table that references itself stays whole.
    whole = units_plan(
        plans,
        rows=rows,
        checkpoint_keys=[],
        references={**references, "message": {"lead", "message"}},
        writers=2,
        split_rows=100_000,
    )
    assert all(unit.parts == 1 for unit in whole)
