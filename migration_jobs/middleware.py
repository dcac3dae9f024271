"""Requests the databases cannot serve: a clear 400 or 503 page instead of a 500 traceback."""

import logging
from collections.abc import Callable

from django.db import OperationalError as DatabaseUnavailable
from django.http import HttpRequest, HttpResponse, HttpResponseBadRequest
from django.template.response import TemplateResponse
from redis.exceptions import ConnectionError as RedisUnavailable

logger = logging.getLogger(__name__)


class ServiceUnavailableMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        return self.get_response(request)

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
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


class NulByteMiddleware:
    """A NUL byte anywhere in a request's path or parameters is a 400, before any view runs.

    PostgreSQL text cannot hold one: a search (`?q=%00`), a filter or a form field carrying it
    failed deep in a query with DataError, a 500. One check here covers every admin page, Django's
    and django-rq's included, and every page added later.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        # Form bodies only: request.POST is empty for JSON and other bodies, which views parse themselves.
        parameters = [*request.GET.lists(), *(request.POST.lists() if request.method == "POST" else [])]
        texts = [request.path_info, *(text for key, values in parameters for text in (key, *values))]
        if any("\x00" in text for text in texts):
            return HttpResponseBadRequest(
                "The request contains a NUL byte, which no field can hold.\n", content_type="text/plain"
            )
        return self.get_response(request)
