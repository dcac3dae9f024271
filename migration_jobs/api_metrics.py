"""GET /api/metrics: the control plane's metrics in Prometheus' text format (selectors/metrics.py).

Behind METRICS_TOKEN (`Authorization: Bearer <token>`, for a Prometheus server) or a logged-in
active staff member (a person looking). A scrape builds its own registry: nothing is kept between
scrapes in this process (see the collector's docstring for why).
"""

from __future__ import annotations

import hmac

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from migration_jobs.selectors.metrics import ControlPlaneCollector


def _allowed(request: HttpRequest) -> bool:
    user = request.user
    if user.is_authenticated and user.is_active and user.is_staff:
        return True
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    expected = settings.METRICS_TOKEN
    return (
        bool(expected) and scheme.lower() == "bearer" and hmac.compare_digest(token.strip().encode(), expected.encode())
    )


@never_cache
@require_GET
def metrics(request: HttpRequest) -> HttpResponse:
    if not _allowed(request):
        response = HttpResponse(
            "Send METRICS_TOKEN as `Authorization: Bearer <token>`, or log in to the admin as staff.\n",
            status=401,
            content_type="text/plain",
        )
        response["WWW-Authenticate"] = "Bearer"
        return response
    registry = CollectorRegistry(auto_describe=False)
    registry.register(ControlPlaneCollector())
    return HttpResponse(generate_latest(registry), content_type=CONTENT_TYPE_LATEST)
