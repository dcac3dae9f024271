"""The RQ job of a schema audit: load the run, hand it to the service."""

from migration_jobs.models.audit import SchemaAuditRun
from migration_jobs.services.schema_audit import schema_audit_execute


def run_schema_audit(audit_run_id: int) -> None:
    schema_audit_execute(run=SchemaAuditRun.objects.get(pk=audit_run_id))
