"""Structured log lines: every line a migration writes names its agency and run.

`log_context(run_id=..., agency_id=...)` sets the fields for everything logged inside it (the
worker wraps each run in one); `RunContextFilter`, on the handler, copies them onto each record;
the formatters print one line per record, `key=value` or JSON, so a log search for
`agency_id=<uuid>` finds every line of that agency's runs across workers and hosts.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any, Protocol
from uuid import UUID

CONTEXT_FIELDS = ("agency_id", "run_id", "bulk_request")
_context: ContextVar[Mapping[str, str]] = ContextVar("migration_log_context", default=MappingProxyType({}))


@contextmanager
def log_context(**fields: object) -> Iterator[None]:
    """Attach these fields (None ones dropped) to every record logged inside the block."""
    merged = {**_context.get(), **{key: str(value) for key, value in fields.items() if value is not None}}
    token = _context.set(MappingProxyType(merged))
    try:
        yield
    finally:
        _context.reset(token)


class LoggedRun(Protocol):
    """What a line about a run names of it (MigrationRun has it all)."""

    pk: Any
    revos_agency_id: UUID
    bulk_request: UUID | None


def run_log_fields(run: LoggedRun) -> dict[str, str]:
    """The `extra=` for a line about a run logged outside its worker (the web process, say)."""
    fields = {"run_id": str(run.pk), "agency_id": str(run.revos_agency_id)}
    if getattr(run, "bulk_request", None):
        fields["bulk_request"] = str(run.bulk_request)
    return fields


class RunContextFilter(logging.Filter):
    """Copy the current log context onto the record; fields given with `extra=` win."""

    def filter(self, record: logging.LogRecord) -> bool:
        for key, value in _context.get().items():
            if not hasattr(record, key):
                setattr(record, key, value)
        return True


def _fields(record: logging.LogRecord, formatter: logging.Formatter) -> dict[str, str]:
    fields = {
        "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
        "level": record.levelname,
        "logger": record.name,
        "pid": str(record.process),
    }
    for key in CONTEXT_FIELDS:
        value = getattr(record, key, None)
        if value is not None:
            fields[key] = str(value)
    fields["msg"] = record.getMessage()
    if record.exc_info:
        fields["exc"] = formatter.formatException(record.exc_info)
    return fields


def _quoted(value: str) -> str:
    if value and not any(c in value for c in ' "=\n\t'):
        return value
    return json.dumps(value)


class KeyValueFormatter(logging.Formatter):
    """`ts=... level=INFO logger=... agency_id=... run_id=... msg="..."`, one line per record."""

    def format(self, record: logging.LogRecord) -> str:
        return " ".join(f"{key}={_quoted(value)}" for key, value in _fields(record, self).items())


class JsonFormatter(logging.Formatter):
    """One JSON object per line, for log pipelines that parse JSON."""

    def format(self, record: logging.LogRecord) -> str:
        return json.dumps(_fields(record, self))
