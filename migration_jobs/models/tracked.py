"""The one lifecycle every tracked run shares: queued -> running -> ended, each step a conditional UPDATE.

MigrationRun, VerificationRun and SchemaAuditRun (and any run kind added later) inherit it. RQ
delivers a job at least once and staff may pause or cancel while a worker starts, so no step
trusts the copy of the row it holds: each one is `UPDATE ... WHERE status IN (...)` and says
whether it won.
"""

from __future__ import annotations

import uuid
from typing import Any

from django.conf import settings
from django.db import models
from django.utils import timezone


class TrackedRun(models.Model):
    """A unit of work an RQ job carries out and staff watch.

    Subclasses redeclare `status` with their own choices (the stored values predate this base)
    and name, in class attributes, the statuses a worker may start from, the active ones, and the
    one a failure ends in.
    """

    QUEUED = "queued"
    RUNNING = "running"
    ACTIVE_STATUSES: tuple[str, ...] = (QUEUED, RUNNING)
    # A redelivered job may take over a run its dead worker left running; a subclass can narrow this.
    STARTABLE_STATUSES: tuple[str, ...] = (QUEUED, RUNNING)
    FAILED_STATUS = "failed"
    JOB_PREFIX = "run"
    QUEUE = ""  # the RQ queue its jobs go to: where the dashboard finds them

    status = models.CharField(max_length=10, default=QUEUED)
    job_id = models.CharField(max_length=100, blank=True)
    requested_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    error = models.TextField(blank=True)

    class Meta:
        abstract = True

    @classmethod
    def new_job_id(cls) -> str:
        """A fresh RQ job id, assigned before enqueueing: django-rq returns no job inside atomic()."""
        return f"{cls.JOB_PREFIX}-{uuid.uuid4()}"

    @property
    def is_active(self) -> bool:
        return self.status in self.ACTIVE_STATUSES

    def start(self, **fields: Any) -> bool:
        """Claim the run for this worker; False when it ended, was stopped, or cannot be started again."""
        fields.setdefault("started_at", timezone.now())
        return self._transition(self.STARTABLE_STATUSES, status=self.RUNNING, **fields)

    def finish(self, status: str, *, from_statuses: tuple[str, ...] | None = None, **fields: Any) -> bool:
        """End the run in `status` if it is still active (or in `from_statuses`); False if it was not."""
        fields.setdefault("finished_at", timezone.now())
        return self._transition(from_statuses or self.ACTIVE_STATUSES, status=status, **fields)

    def fail(self, error: str, **fields: Any) -> bool:
        """End the run as failed, saying why; False when it had already ended."""
        return self.finish(self.FAILED_STATUS, error=error, **fields)

    def _transition(self, from_statuses: tuple[str, ...], **fields: Any) -> bool:
        changed = type(self)._default_manager.filter(pk=self.pk, status__in=from_statuses).update(**fields)
        self.refresh_from_db()
        return bool(changed)
