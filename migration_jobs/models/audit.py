"""Schema audits: one run per audit of one database, and the findings it kept.

Both live in the control plane's `default` database. The audited databases are only read; a
finding's `suggested_fix` is SQL shown to staff, never executed by the control plane.
"""

from __future__ import annotations

from django.db import models

from migration_jobs.models.tracked import TrackedRun


class SchemaAuditRun(TrackedRun):
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

    ACTIVE_STATUSES = (Status.QUEUED, Status.RUNNING)
    # An audit is short and read-only: a redelivered job leaves a running audit to its first worker.
    STARTABLE_STATUSES = (Status.QUEUED,)
    FAILED_STATUS = Status.FAILED
    JOB_PREFIX = "schema-audit"
    QUEUE = "audit"

    database = models.CharField(max_length=10, choices=Database.choices)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.QUEUED, db_index=True)
    error_count = models.PositiveIntegerField(default=0)
    warn_count = models.PositiveIntegerField(default=0)
    info_count = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["-created_at"]
        get_latest_by = "created_at"
        verbose_name = "schema audit"
        permissions = [("run_schemaauditrun", "Can run a schema audit")]

    def __str__(self) -> str:
        return f"Audit of {self.get_database_display()} ({self.get_status_display()})"

    def finish_with_counts(self) -> bool:
        """Finish the run, keeping how many findings of each severity it stored."""
        counts = dict(self.findings.order_by().values_list("severity").annotate(n=models.Count("id")))
        return self.finish(
            self.Status.FINISHED,
            error_count=counts.get(SchemaFinding.Severity.ERROR, 0),
            warn_count=counts.get(SchemaFinding.Severity.WARN, 0),
            info_count=counts.get(SchemaFinding.Severity.INFO, 0),
        )


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
