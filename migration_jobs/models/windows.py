"""A night's window over a bulk request: the agencies in waves, and when the night ends."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils import timezone


class BulkWindow(models.Model):
    """Bulk migrate or cutover of many agencies over one or more nights (services/windows.py).

    The runs it queues carry its `bulk_request`, as every bulk request's runs do (the auto-stop
    judges them together). Its agencies go in waves of `wave_size`, in `agency_link_ids` order;
    no run of it starts at or after `stop_at`. Reopening it for another night moves `stop_at`.
    """

    class Kind(models.TextChoices):
        MIGRATE = "migrate", "Migrate"
        CUTOVER = "cutover", "Cut over"

    bulk_request = models.UUIDField(unique=True)
    kind = models.CharField(max_length=10, choices=Kind.choices)
    agency_link_ids = models.JSONField(default=list)  # the plan's order: waves are slices of it
    wave_size = models.PositiveIntegerField()
    stop_at = models.DateTimeField()  # this night's end
    nights = models.PositiveIntegerField(default=1)
    opened_at = models.DateTimeField(default=timezone.now)  # when this night's window opened
    reason = models.CharField(max_length=300, blank=True)
    # Agencies a request refused (link id -> why): not asked again until the next night.
    refused = models.JSONField(default=dict, blank=True)
    requested_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} of {len(self.agency_link_ids)} agencies ({str(self.bulk_request)[:8]})"
