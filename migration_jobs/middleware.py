"""Turn an unreachable database or Redis into a clear 503 page instead of a 500 traceback."""

import logging

from django.db import OperationalError as DatabaseUnavailable
from django.template.response import TemplateResponse
from redis.exceptions import ConnectionError as RedisUnavailable

logger = logging.getLogger(__name__)


class ServiceUnavailableMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        return self.get_response(request)

    def process_exception(self, request, exception):
        if isinstance(exception, DatabaseUnavailable):
            what = "A database"
        elif isinstance(exception, RedisUnavailable):
            what = "Redis (the job queue)"
        else:
            return None
        logger.error("service unavailable on %s: %s", request.path, exception)
        response = TemplateResponse(
            request,
            "service_unavailable.html",
            {"what": what, "detail": str(exception).strip().splitlines()[0] if str(exception) else ""},
            status=503,
        )
        return response.render()
