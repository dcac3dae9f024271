"""The registry of run kinds: what every part of the control plane asks about a kind of MigrationRun.

A kind is one declaration (`RunKind`) in its own module under services/kinds/, which registers it
when imported (as netbox's JobRunner subclasses and zulip's `@assign_queue` workers do); the app
imports that package once it is ready. The lifecycle (services/runs.py), the fence, the flags,
the concurrency limit, the follow-ups, the cockpit and the admin buttons ask this registry
instead of listing kinds, so adding a kind is one new module.

Below services and selectors alike, like refusals.py: it holds declarations and answers
questions, and imports no kind.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from django.contrib.auth.models import User

from migration_jobs.models import AgencyLink, MigrationRun

# Does a run's work: (run, mark_running) -> its report, or (report, note) where the run gets a note.
# mark_running is called once the work holds the agency's lock (or needs none).
Work = Callable[[MigrationRun, Callable[[], None]], "dict[str, Any] | tuple[dict[str, Any], str]"]
# How staff ask for a run of a kind that is not queued like the others: (link, actor, reason) -> the run.
Request = Callable[[AgencyLink, User | None, str], MigrationRun]

# What a run of a kind that declares nothing else would do to a cut-over agency.
SOURCE_OF_TRUTH = "the unified database is its source of truth"


@dataclass(frozen=True)
class Button:
    """The agency page's button for a kind (admin/runs.py, admin/switch_back.py)."""

    done: str  # the message once requested: {name} the agency's, {pk} the run's, {label} the kind's
    reasoned: bool = False  # staff type a reason (the reasoned-action path)
    may_not: str = ""  # "You may not {may_not}." to staff without the permission (reasoned buttons)
    refused: str = "Refused"  # how a refusal's message starts


@dataclass(frozen=True)
class RunKind:
    """One kind of run, declared once: every question the control plane asks about a kind."""

    value: str  # MigrationRun.kind in the database
    label: str
    work: Work
    permission: str = ""  # "migration_jobs.<codename>" staff need to ask for it from the admin
    button: Button | None = None
    request: Request | None = None  # the button's service; None: services/runs.py migration_run_request
    reason_for: str = ""  # "A cutover": a run of the kind needs staff's typed reason, and is refused without
    writes: bool = False  # writes the unified database: holds a slot of the concurrency limit
    changes_data: bool = False  # the cutover interlock wants a passing verification after it
    verified_after: bool = False  # a verification is queued once it succeeds
    cancellable: bool = False  # the cockpit's Cancel applies while it runs
    pausable: bool = False  # the cockpit's Pause applies while it runs; Resume once paused or failed
    loads: bool | None = None  # True: puts the agency's rows in the unified database; False: takes them out
    dry_run: bool = False  # reads only; a run that supersedes a dry run takes a queued one's place
    supersedes_dry_run: bool = False
    unified_db: bool | None = None  # what its switch sets unified_db to; None: it switches nothing
    completes: bool = False  # ends the agency's move for good
    working: str = ""  # what a run of it does while it runs, for the cockpit, when it has no rows to count
    # Its progress is counted table by table, not checkpointed batch by batch (etl/tally.py): what it
    # does to each table's rows ("deleted", "counted"); "" for a kind without such progress.
    tallies: str = ""
    when_cut_over: str | None = SOURCE_OF_TRUTH  # why it is refused for a cut-over agency; None: it is not
    # Raise RunRefused saying why the agency cannot have such a run: before the agency's request
    # lock is taken, and under it once the databases and Redis answer.
    request_check: Callable[[AgencyLink], None] | None = None
    queue_check: Callable[[AgencyLink], None] | None = None
    # A running run whose worker died: (status, error) it ends with; None: failed, to be resumed.
    recover: Callable[[MigrationRun], tuple[str, str]] | None = None

    @property
    def shown_button(self) -> Button:
        """Its button, for the admin code that only reaches kinds that have one."""
        if self.button is None:
            raise LookupError(f"run kind {self.value!r} has no button")
        return self.button

    @property
    def switches(self) -> bool:
        """It turns unified_db over (a fenced switch: services/fenced_switch.py)."""
        return self.unified_db is not None

    @property
    def moves_rows(self) -> bool:
        """It puts the agency's rows in the unified database or takes them out (what "migrated" reads)."""
        return self.loads is not None

    @property
    def unloads(self) -> bool:
        return self.loads is False


_REGISTRY: dict[str, RunKind] = {}


def run_kind_register(kind: RunKind) -> RunKind:
    """Add a kind (at its module's import); a second kind with the same value is a mistake."""
    if kind.value in _REGISTRY and _REGISTRY[kind.value] != kind:
        raise ValueError(f"run kind {kind.value!r} is registered twice")
    _REGISTRY[kind.value] = kind
    return kind


def run_kind_get(value: str) -> RunKind:
    """The kind of this MigrationRun.kind value; LookupError for a kind nobody registered."""
    try:
        return _REGISTRY[value]
    except KeyError:
        raise LookupError(f"no run kind {value!r} is registered (known: {', '.join(_REGISTRY)})") from None


def run_kinds() -> list[RunKind]:
    """Every registered kind, in the order they registered."""
    return list(_REGISTRY.values())


def run_kind_values(**attributes: object) -> list[str]:
    """The values of the kinds whose attributes (fields or properties) equal these, for `kind__in`."""
    return [
        kind.value
        for kind in _REGISTRY.values()
        if all(getattr(kind, name) == wanted for name, wanted in attributes.items())
    ]
