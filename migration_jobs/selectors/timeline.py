"""An agency's history as ops read it: every run of every kind with its outcome, and what to do next.

The cockpit, the run page and the `agency_timeline` command all read it here, so the page and the
command line give the same answers. What a kind of run shows (rows copied, steps, a write window)
is asked of `run_kind_shape` alone, so that a new kind is one entry there.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from itertools import islice

from django.db import connections

from migration_jobs.models import AgencyLink, CheckResult, MigrationRun, VerificationRun
from migration_jobs.run_kinds import run_kind_get

Status = MigrationRun.Status


@dataclass(frozen=True)
class KindShape:
    """What a run of one kind has to show beyond its outcome."""

    retry: str  # the cockpit button that runs it again ("" when none does)
    copies_rows: bool = False  # its progress is rows done of rows total, batch by batch (a migration)
    resumable: bool = False  # a new run of it continues from the stopped one's checkpoints
    steps: bool = False  # it runs named steps (a fenced switch), shown as a table
    write_window: bool = False  # it fences writes: its downtime is part of its outcome
    reported: bool = False  # it ends with a per-table report of rows written or deleted
    working: str = ""  # what it does while it runs, for kinds without rows to count as they go
    tallies: str = ""  # its progress goes table by table, rows "deleted" or "counted" (etl/tally.py)


def run_kind_shape(kind: str) -> KindShape:
    """What a run of `kind` shows, as its declaration in the run-kind registry implies; a kind the
    registry does not know shows its outcome only."""
    try:
        declared = run_kind_get(kind)
    except LookupError:
        return KindShape(retry="")
    switches = declared.unified_db is not None
    return KindShape(
        retry=declared.value,  # its button's action is its value (selectors/cockpit.py)
        copies_rows=declared.loads is True,
        resumable=declared.pausable,
        steps=switches or declared.completes,
        write_window=switches,
        reported=declared.loads is not None,
        working=declared.working,
        tallies=declared.tallies,
    )


# --- counters -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class RunCounters:
    """A run's progress figures, from one place so the bar, the rows and the tables agree."""

    percent: int
    rows_done: int
    rows_total: int
    tables_done: int
    tables_total: int
    rows_per_second: float


def run_counters(*, run: MigrationRun) -> RunCounters:
    """The progress a run shows. A succeeded run went through every table and every row of its plan
    (rows an earlier run copied are counted as done, as the engine counts them on a resume), even
    when its last progress report came before a table with no rows to send one."""
    done = run.status == Status.SUCCEEDED
    rows_done = run.rows_total if done and run.rows_total > run.rows_done else run.rows_done
    tables_done = run.tables_total if done else run.tables_done
    percent = run.progress_percent
    if not (done or run.rows_total) and run.tables_total:  # a plan counts rows it cannot know beforehand
        percent = min(99, int(100 * tables_done / run.tables_total))
    return RunCounters(
        percent=percent,
        rows_done=rows_done,
        rows_total=run.rows_total,
        tables_done=tables_done,
        tables_total=run.tables_total,
        rows_per_second=run.rows_per_second,
    )


def run_shows_progress(*, run: MigrationRun) -> bool:
    """Its pages show progress figures: a migration's always; a rollback's or a plan's while it runs
    and once it counted tables (runs from before they counted them have none to show)."""
    shape = run_kind_shape(run.kind)
    return shape.copies_rows or bool(shape.tallies and (run.is_active or run.tables_total))


def run_tables_in_flight(*, run: MigrationRun) -> list[str]:
    """The tables (or parts of a split table) being written now, as the run last reported them."""
    if run.status != Status.RUNNING or not run.current_table:
        return []
    return [name.strip() for name in run.current_table.split(",") if name.strip()]


@dataclass(frozen=True)
class TableProgress:
    """One table (or part of a split table) being written: rows done so far of rows planned."""

    name: str
    rows_done: int
    rows_planned: int | None  # from the agency's latest plan; None without one

    @property
    def percent(self) -> int | None:
        if not self.rows_planned:
            return None
        return min(99, int(100 * self.rows_done / self.rows_planned))


def run_tables_progress(*, run: MigrationRun, planned: dict[str, int]) -> list[TableProgress]:
    """The tables in flight with their rows done, as their checkpoints (committed with each batch)
    say; `planned` is rows per RevOS table, from the latest plan. A part of a split table ("messages
    part 2/4") is planned an even share of its table."""
    names = run_tables_in_flight(run=run)
    if not names:
        return []
    with connections["unified"].cursor() as cursor:
        cursor.execute(
            "SELECT source_table, rows_done FROM controlplane.checkpoint"
            " WHERE agency_id = %s AND source_table = ANY(%s)",
            [run.revos_agency_id, names],
        )
        done = dict(cursor.fetchall())
    progress = []
    for name in names:
        table, _, part = name.partition(" part ")
        share = int(part.split("/")[1]) if "/" in part else 1
        total = planned.get(table)
        progress.append(TableProgress(name, int(done.get(name, 0)), None if total is None else total // share))
    return progress


# The tables a rollback's or a plan's progress lists, newest first; the counters say how many in all.
TALLY_SHOWN = 8


def run_tally_progress(*, run: MigrationRun) -> list[TableProgress]:
    """A rollback's or a plan's tables done so far, newest first (the last TALLY_SHOWN), each with the
    rows it deleted or counted there."""
    return [TableProgress(str(name), int(rows), None) for name, rows in reversed(run.table_rows[-TALLY_SHOWN:])]


def run_progress_tables(*, run: MigrationRun | None, planned: Callable[[], dict[str, int]]) -> list[TableProgress]:
    """The per-table progress of an active run: a migration's tables in flight against `planned()`
    (rows per RevOS table, from the latest plan), a rollback's or a plan's tables done so far."""
    if run is None or not run.is_active:
        return []
    shape = run_kind_shape(run.kind)
    if shape.copies_rows:
        return run_tables_progress(run=run, planned=planned())
    return run_tally_progress(run=run) if shape.tallies else []


def run_progress_lines(*, run: MigrationRun, tables: list[TableProgress]) -> list[str]:
    """The run's progress as the cockpit shows it, as plain lines (`agency_timeline`); none for a run
    without progress figures."""
    if not run_shows_progress(run=run):
        return []
    shape = run_kind_shape(run.kind)
    counters = run_counters(run=run)
    rows = f"{counters.rows_done:,}" + (f" / {counters.rows_total:,}" if counters.rows_total else "")
    line = f"{counters.percent} % · {rows} rows {shape.tallies or 'copied'} · tables {counters.tables_done} / "
    line += f"{counters.tables_total} {'done' if not shape.tallies else shape.tallies}"
    if run.is_active and run.current_table:
        line += f" · {'writing' if shape.copies_rows else 'now'} {run.current_table}"
    lines = [f"Progress of {run.get_kind_display()} #{run.pk} ({run.get_status_display().lower()}): {line}"]
    for table in tables:
        planned = f" / {table.rows_planned:,}" if table.rows_planned is not None else ""
        lines.append(f"  {table.name:32} {table.rows_done:>12,}{planned}")
    return lines


# --- the timeline -------------------------------------------------------------------------------


@dataclass(frozen=True)
class TimelineEntry:
    """One run of any kind, as one line of the agency's history."""

    model: str  # "migrationrun" or "verificationrun": which admin page it links to
    pk: int
    kind: str  # what ran, as staff read it ("Cut over", "Verify")
    outcome: str  # "Succeeded", "Failed", "Pass", ...
    tone: str  # ok, failed, active, stopped: its colour
    who: str  # the user, or "command" (a management command or a script), or what queued it
    requested_at: datetime
    started_at: datetime | None
    duration: timedelta | None
    write_downtime_seconds: float | None
    detail: str  # the error, or the note, in one line
    job_queue: str = ""  # the RQ queue of its own job, and the job's id: the run's link to the job
    job_id: str = ""

    @property
    def label(self) -> str:
        return f"{self.kind} #{self.pk}"

    @property
    def took(self) -> str:
        return _seconds_text(self.duration.total_seconds()) if self.duration is not None else ""


_TONES: dict[str, str] = {
    Status.SUCCEEDED: "ok",
    Status.FAILED: "failed",
    Status.QUEUED: "active",
    Status.RUNNING: "active",
    Status.PAUSED: "stopped",
    Status.CANCELLED: "stopped",
}
_VERDICT_TONES: dict[str, str] = {
    VerificationRun.Verdict.PASS: "ok",
    VerificationRun.Verdict.FAIL: "failed",
    VerificationRun.Verdict.ERROR: "failed",
}


def _one_line(text: str, limit: int = 200) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _duration(run: MigrationRun | VerificationRun) -> timedelta | None:
    """Start to end; None for a run that has not started or not ended yet."""
    if not (run.started_at and run.finished_at):
        return None
    return run.finished_at - run.started_at


def run_took(*, run: MigrationRun | VerificationRun) -> str:
    """How long an ended run took, at the precision that matters ("4.2 s", "3m 05s"); "" otherwise."""
    duration = _duration(run)
    return _seconds_text(duration.total_seconds()) if duration is not None else ""


def _who(run: MigrationRun | VerificationRun) -> str:
    if run.requested_by is not None:
        user = run.requested_by.get_username()
        return f"{user} (bulk)" if getattr(run, "bulk_request", None) else user
    if isinstance(run, VerificationRun) and run.migration_run_id:
        return f"after run #{run.migration_run_id}"
    return "command"


def _migration_entry(run: MigrationRun) -> TimelineEntry:
    shape = run_kind_shape(run.kind)
    window = run.report.get("window_seconds") if shape.write_window and isinstance(run.report, dict) else None
    return TimelineEntry(
        model="migrationrun",
        pk=run.pk,
        kind=run.get_kind_display() + (" (full re-read)" if run.full_reread else ""),
        outcome=run.get_status_display(),
        tone=_TONES.get(run.status, "stopped"),
        who=_who(run),
        requested_at=run.created_at,
        started_at=run.started_at,
        duration=_duration(run),
        write_downtime_seconds=window,
        detail=_one_line(run.error or run.status_note),
        job_queue=run.QUEUE,
        job_id=run.job_id,
    )


def _verification_entry(run: VerificationRun) -> TimelineEntry:
    if run.verdict:
        outcome, tone = run.get_verdict_display(), _VERDICT_TONES.get(run.verdict, "failed")
    else:
        outcome, tone = run.get_status_display(), "active" if run.is_active else "stopped"
    return TimelineEntry(
        model="verificationrun",
        pk=run.pk,
        kind="Verify",
        outcome=outcome,
        tone=tone,
        who=_who(run),
        requested_at=run.created_at,
        started_at=run.started_at,
        duration=_duration(run),
        write_downtime_seconds=None,
        detail=_one_line(run.error),
        job_queue=run.QUEUE,
        job_id=run.job_id,
    )


@dataclass(frozen=True)
class Timeline:
    entries: list[TimelineEntry]  # newest first, at most the limit asked for
    total: int  # every run the agency has had


def agency_timeline(*, link: AgencyLink, limit: int | None = None) -> Timeline:
    """Every run of the agency (admin, bulk action, command, follow-up), newest first: a failed
    attempt stays in it after its retry. `limit` keeps the newest that many."""
    runs = MigrationRun.objects.filter(agency_link=link).select_related("requested_by").order_by("-created_at", "-id")
    checks = (
        VerificationRun.objects.filter(agency_link=link).select_related("requested_by").order_by("-created_at", "-id")
    )
    if limit is not None:
        runs, checks = runs[:limit], checks[:limit]
    entries = [_migration_entry(run) for run in runs] + [_verification_entry(run) for run in checks]
    entries.sort(key=lambda entry: (entry.requested_at, entry.pk), reverse=True)
    total = (
        MigrationRun.objects.filter(agency_link=link).count() + VerificationRun.objects.filter(agency_link=link).count()
    )
    return Timeline(entries=list(islice(entries, limit)), total=total)


# --- next actions -------------------------------------------------------------------------------


@dataclass(frozen=True)
class NextAction:
    """What repairs a failure or moves the agency on: a sentence and the button that does it."""

    text: str
    # the cockpit's button ("migrate", "fullreread", "cutover", "verify", "relink"), "" for none
    action: str = ""


# Checks that compare the agency's rows in both databases: a full re-read rewrites every row from
# RevOS, which repairs rows edited or deleted in the unified database behind the tool's back (a
# catch-up reads only what RevOS's change capture recorded, so it cannot see those).
ROW_CHECKS = frozenset({"counts", "content", "references", "delta"})


def verification_next_action(*, verification: VerificationRun) -> NextAction | None:
    """What repairs a failed or errored verification; None when it passed or is under way."""
    if verification.is_active or verification.verdict == VerificationRun.Verdict.PASS:
        return None
    if verification.verdict == VerificationRun.Verdict.ERROR or verification.status == VerificationRun.Status.ERROR:
        return NextAction(
            "The verification could not run its checks: fix what its error names, then Verify again.", "verify"
        )
    failed = set(
        verification.results.exclude(status=CheckResult.Status.PASS).values_list("check_name", flat=True).distinct()
    )
    if failed & ROW_CHECKS:
        return NextAction(
            f"Rows differ between RevOS and the unified database ({', '.join(sorted(failed & ROW_CHECKS))})."
            " If they were edited in the unified database behind the tool's back, a full re-read rewrites every"
            " row of the agency from RevOS; then it is verified again.",
            "fullreread",
        )
    if failed:
        return NextAction(
            f"Failed: {', '.join(sorted(failed))}. These are not about the agency's rows: fix the cause the check"
            " names, then Verify again.",
            "verify",
        )
    return NextAction("The verification failed without failed checks: Verify again.", "verify")


# How etl/engine.py refuses a row AudienceOS already has under another agency (a user matched by email):
# the link is what is wrong, and its error says so in these words.
LINK_REFUSED = "link this agency as existing"
RELINK = "Re-link the agency (Change the link: the existing AudienceOS agency it is, or a new one)"


def run_next_action(*, run: MigrationRun) -> NextAction | None:
    """What to do after a run that did not succeed; None for a run that succeeded or is under way."""
    if run.status in (Status.SUCCEEDED, Status.QUEUED, Status.RUNNING):
        return None
    shape = run_kind_shape(run.kind)
    if run.status == Status.FAILED and LINK_REFUSED in run.error:
        return NextAction(f"The unified database refused a row as another agency's. {RELINK}, then Resume.", "relink")
    if shape.steps:
        return NextAction(
            "Nothing was switched and the fence is lifted. Fix what the failed step names (for a drain, let the"
            " blocking sessions it lists end), then Retry with a reason.",
            shape.retry,
        )
    if shape.resumable and run.status == Status.FAILED and run.failed_table and run.failed_batch is not None:
        return NextAction(
            f"A row of {run.failed_table} was refused: fix it in RevOS (Plan lists every such row), then Resume.",
            shape.retry,
        )
    if shape.resumable:
        return NextAction("Resume continues from the last checkpoint; nothing already written is lost.", shape.retry)
    return NextAction("Fix what the error names, then run it again.", shape.retry)


# The way forward from each agency state when no failure needs repairing first.
_STATE_NEXT = {
    "not linked": NextAction("Confirm which unified agency this RevOS agency becomes.", "confirm"),
    "linked": NextAction("Plan (a dry run), then migrate.", "plan"),
    "migrating": NextAction("A run is under way; this page follows it."),
    "migrated": NextAction(
        "Verify: a passing verification newer than the migration is needed before cutover.", "verify"
    ),
    "verified": NextAction("Ready to cut over (turn unified_db on), with a reason.", "cutover"),
    "cut over": NextAction("The unified database is its source of truth: Complete the move, or Switch back."),
    "complete": NextAction("Nothing: the move is complete."),
    "paused": NextAction("The last migration stopped early: Resume continues from its checkpoint.", "migrate"),
    "failed": NextAction("The last migration failed: fix what its error names, then Resume.", "migrate"),
}


def agency_next_action(
    *,
    state: str,
    last_run: MigrationRun | None,
    verification: VerificationRun | None,
    with_checks: bool = True,
    link_problem: str = "",
) -> NextAction:
    """The one thing to do next for an agency: repair the latest failure, else move it on.

    A failed run counts while it is the agency's latest (a retry that succeeded replaces it); a
    failed verification counts while the agency waits for a passing one. `with_checks=False` does
    not read the verification's checks (the overview, one line per agency, links to the page).
    `link_problem` says why the agency's link no longer holds (selectors/agency_links.py): a failure
    then is the link's to repair first.
    """
    if link_problem and (failed := _failure(state=state, last_run=last_run, verification=verification)):
        return NextAction(f"{failed} failed, and the link no longer holds: {link_problem}. {RELINK}.", "relink")
    if last_run is not None and (action := run_next_action(run=last_run)):
        kind = last_run.get_kind_display()
        return NextAction(
            f"{kind} #{last_run.pk} {last_run.get_status_display().lower()}: {action.text}", action.action
        )
    if (
        state == "migrated"
        and verification is not None
        and verification.verdict
        and not _superseded(verification, last_run)
    ):
        if not with_checks and verification.verdict != VerificationRun.Verdict.PASS:
            return NextAction(f"Verification #{verification.pk} failed: its page names what repairs it.", "verify")
        if with_checks and (action := verification_next_action(verification=verification)):
            return NextAction(f"Verification #{verification.pk} failed. {action.text}", action.action)
    return _STATE_NEXT.get(state, NextAction(""))


def _failure(*, state: str, last_run: MigrationRun | None, verification: VerificationRun | None) -> str:
    """The agency's failure still waiting for a repair ("Migrate #4", "Verification #7"), or ""."""
    if last_run is not None and last_run.status == Status.FAILED:
        return f"{last_run.get_kind_display()} #{last_run.pk}"
    failed = (VerificationRun.Verdict.FAIL, VerificationRun.Verdict.ERROR)
    waiting = state == "migrated" and verification is not None and verification.verdict in failed
    if waiting and verification is not None and not _superseded(verification, last_run):
        return f"Verification #{verification.pk}"
    return ""


def _superseded(verification: VerificationRun, last_run: MigrationRun | None) -> bool:
    """A run that rewrote rows ended after the verification was asked for: it checked older rows."""
    if last_run is None or not last_run.finished_at or not run_kind_shape(last_run.kind).reported:
        return False
    return verification.created_at < last_run.finished_at


def timeline_lines(*, link: AgencyLink, state: str, next_action: NextAction, timeline: Timeline) -> list[str]:
    """The agency's state, next action and timeline as plain lines, as the cockpit shows them."""
    lines = [f"{link.name} ({link.revos_agency_id}): {state}", f"Next: {next_action.text}"]
    lines.append(f"Timeline ({len(timeline.entries)} of {timeline.total} runs, newest first):")
    for entry in timeline.entries:
        took = entry.took or "—"
        window = (
            f" · write downtime {entry.write_downtime_seconds:.2f} s"
            if entry.write_downtime_seconds is not None
            else ""
        )
        started = f"{entry.requested_at:%Y-%m-%d %H:%M:%S}"
        lines.append(f"  {started}  {entry.label:28} {entry.outcome:10} {entry.who:20} {took:>9}{window}")
        if entry.detail:
            lines.append(f"      {entry.detail}")
    return lines


def _seconds_text(seconds: float) -> str:
    """`4.2 s`, `3m 05s`, `1h 02m`: a duration at the precision that matters."""
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, rest = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes}m {rest:02d}s"
    return f"{minutes // 60}h {minutes % 60:02d}m"


# --- one run's page -------------------------------------------------------------------------------


def _when(moment: datetime | None) -> str:
    return f"{moment:%Y-%m-%d %H:%M:%S} UTC" if moment else "—"


def run_summary(*, run: MigrationRun) -> list[tuple[str, str]]:
    """The fields that mean something for this run's kind, as (label, text), summary first."""
    shape = run_kind_shape(run.kind)
    entry = _migration_entry(run)
    lines = [
        ("Outcome", run.get_status_display()),
        ("Requested by", entry.who),
        ("Requested", _when(run.created_at)),
        ("Started", _when(run.started_at)),
        ("Finished", _when(run.finished_at)),
    ]
    if entry.took:
        lines.append(("Took", entry.took))
    if run_shows_progress(run=run):
        counters = run_counters(run=run)
        rows = f"{counters.rows_done:,}" + (f" / {counters.rows_total:,}" if counters.rows_total else "")
        lines.append((f"Rows {shape.tallies}".rstrip(), f"{rows} ({counters.percent} %)"))
        lines.append((f"Tables {shape.tallies}".rstrip(), f"{counters.tables_done} / {counters.tables_total}"))
        if run.full_reread:
            lines.append(("Read", "every row again (full re-read)"))
    if shape.write_window and entry.write_downtime_seconds is not None:
        lines.append(("Write downtime", f"{entry.write_downtime_seconds:.2f} s (fence to switch)"))
    if run.reason:
        lines.append(("Reason", run.reason))
    if run.bulk_request:
        lines.append(("Bulk request", str(run.bulk_request)))
    if run.status_note:
        lines.append(("Note", run.status_note))
    if run.error:
        where = f" (table {run.failed_table}" if run.failed_table and not shape.steps else ""
        if where and run.failed_batch is not None:
            where += f", batch {run.failed_batch}"
        lines.append(("Error", run.error + (where + ")" if where else "")))
    if next_action := run_next_action(run=run):
        lines.append(("Next", next_action.text))
    return lines
