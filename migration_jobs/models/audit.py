"""Schema audits: one run per audit of one database, and the findings it kept.

Both live in the control plane's `default` database. The audited databases are only read; a
finding's `suggested_fix` is SQL shown to staff, never executed by the control plane.
"""

from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models
from django.utils import timezone


class SchemaAuditRun(models.Model):
    """One audit of one database, tracked as its RQ job runs; its findings are SchemaFinding rows."""

    class Database(models.TextChoices):
        # "audience" and "unified" read the same alias (AudienceOS becomes the unified database);
        # they differ in what they expect: see migration_jobs.services.schema_audit.AUDIT_TARGETS.
        REVOS = "revos", "RevOS source"
        AUDIENCE = "audience", "AudienceOS baseline"
        UNIFIED = "unified", "Unified"

    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Running"
        FINISHED = "finished", "Finished"
        FAILED = "failed", "Failed"

    database = models.CharField(max_length=10, choices=Database.choices)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.QUEUED, db_index=True)
    job_id = models.CharField(max_length=100, blank=True)
    requested_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    error_count = models.PositiveIntegerField(default=0)
    warn_count = models.PositiveIntegerField(default=0)
    info_count = models.PositiveIntegerField(default=0)
    error = models.TextField(blank=True)

    class Meta:
        ordering = ["-created_at"]
        get_latest_by = "created_at"
        verbose_name = "schema audit"
        permissions = [("run_schemaauditrun", "Can run a schema audit")]

    def __str__(self) -> str:
        return f"Audit of {self.get_database_display()} ({self.get_status_display()})"

    @staticmethod
    def new_job_id() -> str:
        return f"schema-audit-{uuid.uuid4()}"

    def start(self) -> bool:
        """Claim a queued run for this worker; False when another worker (or a retry) already has it."""
        claimed = SchemaAuditRun.objects.filter(pk=self.pk, status=self.Status.QUEUED).update(
            status=self.Status.RUNNING, started_at=timezone.now()
        )
        self.refresh_from_db()
        return bool(claimed)

    def finish(self) -> None:
        counts = dict(self.findings.order_by().values_list("severity").annotate(n=models.Count("id")))
        self.error_count = counts.get(SchemaFinding.Severity.ERROR, 0)
        self.warn_count = counts.get(SchemaFinding.Severity.WARN, 0)
        self.info_count = counts.get(SchemaFinding.Severity.INFO, 0)
        self.status = self.Status.FINISHED
        self.finished_at = timezone.now()
        self.save(update_fields=["error_count", "warn_count", "info_count", "status", "finished_at"])

    def fail(self, error: str) -> None:
        self.status = self.Status.FAILED
        self.error = error
        self.finished_at = timezone.now()
        self.save(update_fields=["status", "error", "finished_at"])


class SchemaFinding(models.Model):
    """One problem (or, at severity info, one fact) an audit found in one table or schema."""

    class Severity(models.TextChoices):
        ERROR = "error", "Error"
        WARN = "warn", "Warning"
        INFO = "info", "Info"

    run = models.ForeignKey(SchemaAuditRun, on_delete=models.CASCADE, related_name="findings")
    rule = models.CharField(max_length=60, db_index=True)
    severity = models.CharField(max_length=5, choices=Severity.choices, db_index=True)
    schema = models.CharField(max_length=63)
    table = models.CharField(max_length=63, blank=True)
    detail = models.TextField()
    suggested_fix = models.TextField(blank=True)

    class Meta:
        ordering = ["id"]

    def __str__(self) -> str:
        target = f"{self.schema}.{self.table}" if self.table else self.schema
        return f"{self.severity} {self.rule} {target}"
