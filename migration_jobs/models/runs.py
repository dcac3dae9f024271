"""What the control plane itself owns: agency links, migration runs and verification results.

These live in the `default` database. They refer to tenant rows by UUID (never a ForeignKey
across databases): `revos_agency_id` in the RevOS source, `unified_agency_id` in the unified one.
"""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import models
from django.utils import timezone

from migration_jobs.models.tracked import TrackedRun


class AgencyLink(models.Model):
    """A RevOS agency and the unified agency it becomes, as suggested and then confirmed by staff."""

    class Kind(models.TextChoices):
        EXISTING = "existing", "Same agency as an AudienceOS one"
        NEW = "new", "New in the unified database"

    revos_agency_id = models.UUIDField(unique=True)
    name = models.CharField(max_length=200)
    domain = models.CharField(max_length=200, blank=True)
    suggested_kind = models.CharField(max_length=10, choices=Kind.choices)
    suggested_agency_id = models.UUIDField(null=True, blank=True)
    suggestion_reason = models.CharField(max_length=300, blank=True)
    kind = models.CharField(max_length=10, choices=Kind.choices, blank=True)
    unified_agency_id = models.UUIDField(null=True, blank=True, db_index=True)
    confirmed_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    confirmed_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]
        verbose_name = "RevOS agency"
        verbose_name_plural = "RevOS agencies"
        permissions = [
            ("confirm_agencylink", "Can confirm which unified agency a RevOS agency becomes"),
            # django-rq's dashboard shows every job's arguments and errors and can requeue or
            # delete them: its own permission, never just is_staff (controlplane/urls.py).
            ("view_job_queues", "Can view the job queues"),
            # Emptying a queue, deleting, requeueing or stopping jobs, clearing a registry: any POST
            # to those pages changes Redis, so it needs more than reading them (controlplane/urls.py).
            ("manage_job_queues", "Can empty queues and delete, requeue or stop jobs"),
            # The one change staff make to tenant rows: which app sees one (services/app_context.py).
            ("set_app_context", "Can set which app sees a unified row"),
        ]

    def __str__(self) -> str:
        return self.name

    @property
    def is_confirmed(self) -> bool:
        return self.confirmed_at is not None and self.unified_agency_id is not None


class ClientLink(models.Model):
    """Staff's explicit word that a RevOS client is an existing unified client (name matching aside)."""

    agency_link = models.ForeignKey(AgencyLink, on_delete=models.CASCADE, related_name="client_links")
    revos_client_id = models.UUIDField()
    unified_client_id = models.UUIDField()
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["agency_link", "revos_client_id"], name="one_link_per_revos_client")
        ]

    def __str__(self) -> str:
        return f"{self.revos_client_id} -> {self.unified_client_id}"


class MigrationRun(TrackedRun):
    """One migration (or dry run, or rollback) of one agency, tracked as its RQ job runs."""

    class Kind(models.TextChoices):
        MIGRATE = "migrate", "Migrate"
        PLAN = "plan", "Plan (dry run)"
        ROLLBACK = "rollback", "Roll back"
        CUTOVER = "cutover", "Cut over"
        SWITCH_BACK = "switchback", "Switch back"
        COMPLETE = "complete", "Complete"

    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Running"
        PAUSED = "paused", "Paused"
        CANCELLED = "cancelled", "Cancelled"
        SUCCEEDED = "succeeded", "Succeeded"
        FAILED = "failed", "Failed"

    ACTIVE_STATUSES = STARTABLE_STATUSES = (Status.QUEUED, Status.RUNNING)
    FAILED_STATUS = Status.FAILED
    RESUMABLE_STATUSES = (Status.PAUSED, Status.CANCELLED, Status.FAILED)
    JOB_PREFIX = "migration"
    QUEUE = "migrations"

    class Control(models.TextChoices):
        NONE = "", "None"
        PAUSE = "pause", "Pause requested"
        CANCEL = "cancel", "Cancel requested"

    agency_link = models.ForeignKey(AgencyLink, on_delete=models.PROTECT, related_name="runs")
    # Copied from the link when the run is requested: the one-active-run constraint needs the id on
    # this table, and a run keeps the unified agency it wrote to even if the link changes later.
    revos_agency_id = models.UUIDField(db_index=True)
    unified_agency_id = models.UUIDField(null=True, blank=True)
    kind = models.CharField(max_length=10, choices=Kind.choices, default="migrate")
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.QUEUED, db_index=True)
    control = models.CharField(max_length=10, choices=Control.choices, blank=True, default="")
    # Runs queued together by one "Migrate selected agencies" share an id; the auto-stop counts by it.
    bulk_request = models.UUIDField(null=True, blank=True, db_index=True)
    current_table = models.CharField(max_length=100, blank=True)
    tables_done = models.PositiveIntegerField(default=0)
    tables_total = models.PositiveIntegerField(default=0)
    rows_done = models.BigIntegerField(default=0)
    rows_total = models.BigIntegerField(default=0)
    rows_per_second = models.FloatField(default=0)
    # [table, rows] of each table done so far, in the order done, for a kind whose tables are not
    # checkpointed batch by batch (a rollback's rows deleted, a plan's rows counted: etl/tally.py).
    # A list: jsonb does not keep an object's key order.
    table_rows = models.JSONField(default=list, blank=True)
    status_note = models.CharField(max_length=300, blank=True)
    report = models.JSONField(default=dict, blank=True)
    error_traceback = models.TextField(blank=True)
    failed_table = models.CharField(max_length=100, blank=True)
    failed_batch = models.IntegerField(null=True, blank=True)
    # A migrate run that re-reads every row instead of only those the change capture recorded.
    full_reread = models.BooleanField(default=False)
    # A cutover: staff's typed reason, its steps as they ran ({name, status, seconds, detail}), and
    # whether RevOS refuses the agency's writes on this run's behalf (the flags API says so).
    reason = models.TextField(blank=True)
    steps = models.JSONField(default=list, blank=True)
    fence_held = models.BooleanField(default=False)

    class Meta:
        ordering = ["-created_at"]
        get_latest_by = "created_at"
        permissions = [
            ("cutover_migrationrun", "Can cut an agency over to the unified database"),
            ("switchback_migrationrun", "Can switch a cut-over agency back to RevOS"),
            ("complete_migrationrun", "Can complete an agency's move (no switch back after it)"),
            ("plan_migrationrun", "Can plan (dry-run) an agency migration"),
            ("start_migrationrun", "Can migrate an agency"),
            ("resume_migrationrun", "Can pause, cancel and resume an agency migration"),
            ("rollback_migrationrun", "Can roll back an agency migration"),
        ]
        constraints = [
            # The database itself refuses a second active run of one agency.
            models.UniqueConstraint(
                fields=["revos_agency_id"],
                condition=models.Q(status__in=["queued", "running"]),
                name="one_active_run_per_agency",
            )
        ]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} {self.agency_link} ({self.get_status_display()})"

    def job_id_assign(self) -> str:
        """Name the run's own RQ job after it (run 412: `migration-412-<8 hex>`) once it has a pk and before
        its enqueue. One job per run: each run's job page is its own, and a job is never taken for another
        run's. The random tail keeps a control-plane database rebuilt from scratch (its pks start over)
        clear of the jobs Redis still holds under the old ones."""
        self.job_id = f"{self.JOB_PREFIX}-{self.pk}-{uuid.uuid4().hex[:8]}"
        type(self).objects.filter(pk=self.pk).update(job_id=self.job_id)
        return self.job_id

    @property
    def progress_percent(self) -> int:
        if self.status == self.Status.SUCCEEDED:
            return 100
        if not self.rows_total:
            return 0
        return min(99, int(100 * self.rows_done / self.rows_total))

    @property
    def eta_seconds(self) -> int | None:
        """Seconds until a running run is done at its current rate (GitLab's batched migrations show
        the same); None when it is not running or has no rate yet."""
        if self.status != self.Status.RUNNING or self.rows_per_second <= 0 or not self.rows_total:
            return None
        return max(0, round((self.rows_total - self.rows_done) / self.rows_per_second))

    @property
    def eta_display(self) -> str:
        """`ETA 4m 05s`, or "" when there is none."""
        seconds = self.eta_seconds
        if seconds is None:
            return ""
        hours, rest = divmod(seconds, 3600)
        return f"ETA {hours}h {rest // 60:02d}m" if hours else f"ETA {rest // 60}m {rest % 60:02d}s"

    @property
    def duration(self) -> timedelta | None:
        if not self.started_at:
            return None
        return (self.finished_at or timezone.now()) - self.started_at


class VerificationRun(TrackedRun):
    """One read-only verification of one migrated agency; its checks are CheckResult rows."""

    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Running"
        FINISHED = "finished", "Finished"
        ERROR = "error", "Error"

    ACTIVE_STATUSES = STARTABLE_STATUSES = (Status.QUEUED, Status.RUNNING)
    FAILED_STATUS = Status.ERROR
    JOB_PREFIX = "verification"
    QUEUE = "verification"

    class Verdict(models.TextChoices):
        PENDING = "", "Pending"
        PASS = "pass", "Pass"
        FAIL = "fail", "Fail"
        ERROR = "error", "Error"

    agency_link = models.ForeignKey(AgencyLink, on_delete=models.PROTECT, related_name="verifications")
    migration_run = models.ForeignKey(
        MigrationRun, null=True, blank=True, on_delete=models.SET_NULL, related_name="verifications"
    )
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.QUEUED)
    verdict = models.CharField(max_length=10, choices=Verdict.choices, blank=True, default="", db_index=True)

    class Meta:
        ordering = ["-created_at"]
        get_latest_by = "created_at"
        permissions = [("start_verificationrun", "Can verify an agency")]

    def __str__(self) -> str:
        return f"Verification of {self.agency_link} ({self.get_verdict_display()})"

    def fail(self, error: str, **fields: Any) -> bool:
        """A verification that could not check ends with verdict error, which keeps the cutover closed."""
        return super().fail(error, verdict=self.Verdict.ERROR, **fields)


class CheckResult(models.Model):
    """One check of a verification: what was expected, what was found, and sample ids if not."""

    class Status(models.TextChoices):
        PASS = "pass", "Pass"
        FAIL = "fail", "Fail"
        ERROR = "error", "Error"

    verification_run = models.ForeignKey(VerificationRun, on_delete=models.CASCADE, related_name="results")
    check_name = models.CharField(max_length=100, db_index=True)
    table_name = models.CharField(max_length=100, blank=True)
    status = models.CharField(max_length=10, choices=Status.choices, db_index=True)
    expected = models.TextField(blank=True)
    actual = models.TextField(blank=True)
    details = models.JSONField(default=dict, blank=True)
    # Wall time of the check, both databases included; the benchmark sums them per kind of check.
    seconds = models.FloatField(null=True, blank=True)

    class Meta:
        ordering = ["id"]

    def __str__(self) -> str:
        target = f" {self.table_name}" if self.table_name else ""
        return f"{self.check_name}{target}: {self.status}"
