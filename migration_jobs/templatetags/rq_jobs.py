"""Links from a run to its own job in django-rq's dashboard, under the queue its jobs go to."""

from __future__ import annotations

from django import template
from django.urls import reverse
from django_rq.settings import get_queues_map

register = template.Library()


def rq_job_url(*, queue: str, job_id: str) -> str:
    """The dashboard's page of one job; "" without a job. django-rq numbers its queues in the order of
    their names, not of settings.RQ_QUEUES (so "migrations" is not queue 0): the number is asked of it."""
    if not (queue and job_id):
        return ""
    return reverse("django_rq:job_detail", args=[get_queues_map()[queue], job_id])


@register.simple_tag
def job_url(queue: str, job_id: str) -> str:
    """`{% job_url run.QUEUE run.job_id as url %}`: see rq_job_url."""
    return rq_job_url(queue=queue, job_id=job_id)
