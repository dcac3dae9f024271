from migration_jobs.models import unified  # noqa: F401  (registers the unmanaged unified-database models)
from migration_jobs.models.audit import SchemaAuditRun, SchemaFinding  # noqa: F401
from migration_jobs.models.flags import AgencyAiProvider, AgencyFlagOverride, AiProviderChange, FeatureFlag, FlagChange  # noqa: F401
from migration_jobs.models.runs import AgencyLink, CheckResult, ClientLink, MigrationRun, VerificationRun
from migration_jobs.models.windows import BulkWindow

__all__ = ["AgencyLink", "BulkWindow", "CheckResult", "ClientLink", "MigrationRun", "VerificationRun"]
