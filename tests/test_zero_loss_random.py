"""Randomized concurrent zero-loss test, in the spirit of ghostferry's: writers on both databases
through migrate, a worker SIGKILL and resume, catch-ups, a cutover, a switch back and a second
cutover. At the end every acknowledged write is on the side that holds the truth, every refused
write got the fence error, and the verification's per-table checksums agree.

A few seeds run in `make test` (seconds of writing each); `make soak` runs the same test for
minutes (SOAK_SECONDS, SOAK_WRITERS) and prints the writes acknowledged, refused and lost. The
writers are real processes (tests/app_writer.py), each with its own connections.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from migration_jobs.models import AgencyLink, MigrationRun, VerificationRun
from migration_jobs.models.flags import FeatureFlag
from migration_jobs.services.agency_links import agency_link_confirm, agency_links_sync
from migration_jobs.services.kinds.switch_back import switch_back_run_request
from migration_jobs.services.runs import migration_run_execute as switch_back_run_execute
from migration_jobs.services.runs import migration_run_request
from migration_jobs.services.verification import verification_run_request
from tests.conftest import database_url, run_worker, start_worker_process
from tests.test_cutover import FENCE_ERROR, _still_running, cut_over, migrate, revos, unified, wait_until

Status, Kind = MigrationRun.Status, MigrationRun.Kind
SOAK_SECONDS = float(os.environ.get("SOAK_SECONDS", "0"))
UNIFIED = {"leads": ("lead", "name"), "comments": ("comment", "content"), "posts": ("post", "content")}


class Fleet:
    """The writer processes, their control directory and their log."""

    def __init__(self, tmp_path: Path, link: AgencyLink, other: AgencyLink, *, writers: int, seed: int) -> None:
        self.control, self.link = tmp_path / "control", link
        self.control.mkdir()
        self.logs = [tmp_path / f"writes-{i}.jsonl" for i in range(writers)]
        agency = link.revos_agency_id
        leads = [str(r[0]) for r in revos("SELECT id FROM leads WHERE agency_id = %s ORDER BY id", [agency])]
        posts = [str(r[0]) for r in revos("SELECT id FROM posts WHERE agency_id = %s ORDER BY id", [agency])]
        # A person AudienceOS already has (same email) keeps that account: only the others are copied.
        audience_emails = {r[0] for r in unified("SELECT lower(email) FROM auth.users WHERE email IS NOT NULL")}
        people = [
            str(person)
            for person, email in revos(
                "SELECT a.id, lower(a.email) FROM auth.users a JOIN users u ON u.id = a.id WHERE u.agency_id = %s",
                [agency],
            )
            if email not in audience_emails
        ]
        assert people, "the agency has people whose accounts are copied"
        account = revos("SELECT id FROM linkedin_accounts WHERE agency_id = %s LIMIT 1", [agency])[0][0]
        self.processes = []
        for i, log in enumerate(self.logs):
            config = {
                "seed": seed * 100 + i,
                "revos": database_url("revos"),
                "unified": database_url("unified"),
                "log": str(log),
                "control": str(self.control),
                "agency": {"revos": str(agency), "unified": str(link.unified_agency_id)},
                "other": str(other.revos_agency_id),
                "leads": leads[i::writers],
                "people": people[i::writers] or people,
                "posts": posts,
                "linkedin_account": str(account),
            }
            path = self.control.parent / f"writer-{i}.json"
            path.write_text(json.dumps(config))
            self.processes.append(
                subprocess.Popen([sys.executable, str(Path(__file__).with_name("app_writer.py")), path])
            )

    def entries(self) -> list[dict]:
        return [json.loads(line) for log in self.logs if log.exists() for line in log.read_text().splitlines() if line]

    def write_some(self, count: int, seconds: float = 0) -> None:
        """Wait until `count` more writes are logged, and at least `seconds` have passed."""
        before, started = len(self.entries()), time.monotonic()
        wait_until(
            lambda: self.alive() and len(self.entries()) >= before + count, timeout=120, what=f"{count} more writes"
        )
        time.sleep(max(0.0, seconds - (time.monotonic() - started)))

    def alive(self) -> bool:
        """True while every writer runs; a writer that died fails the test at once, with its exit code."""
        dead = {i: p.returncode for i, p in enumerate(self.processes) if p.poll() is not None}
        assert not dead, f"writer processes died (index: exit code): {dead}"
        return True

    def side(self, side: str) -> None:
        """Where the writers write from now on (written whole at once: a writer reads it every write)."""
        staged = self.control / f"side-{self.link.revos_agency_id}.new"
        staged.write_text(side)
        staged.replace(self.control / f"side-{self.link.revos_agency_id}")

    def paused(self):
        fleet = self

        class Paused:
            def __enter__(self):
                (fleet.control / "pause").touch()
                wait_until(
                    lambda: fleet.alive() and len(list(fleet.control.glob("paused-*"))) == len(fleet.processes),
                    timeout=120,
                    what="writers to pause",
                )

            def __exit__(self, *exc):
                (fleet.control / "pause").unlink()

        return Paused()

    def stop(self) -> None:
        (self.control / "stop").touch()
        for process in self.processes:
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()


def verification_passes(link: AgencyLink) -> None:
    verification = verification_run_request(link=link, actor=None)
    run_worker("verification")
    verification.refresh_from_db()
    failing = list(verification.results.exclude(status="pass").values_list("check_name", "table_name", "actual"))
    assert verification.verdict == VerificationRun.Verdict.PASS, failing


def first_migration_killed_and_resumed(link: AgencyLink) -> None:
    run = migration_run_request(link=link, kind=Kind.MIGRATE, actor=None)
    worker = start_worker_process("migrations", "--worker-class", "rq.worker.SimpleWorker", MIGRATION_BATCH_SIZE="20")
    try:
        wait_until(lambda: MigrationRun.objects.filter(pk=run.pk, rows_done__gte=200).exists(), what="progress")
    finally:
        os.killpg(worker.pid, signal.SIGKILL)
        worker.wait(timeout=30)
    wait_until(lambda: not _still_running(link), what="the killed run to be recognised as dead")
    migrate(link)  # resumes from the checkpoints


def lifecycle(fleet: Fleet, link: AgencyLink, *, phase_writes: int, phase_seconds: float) -> None:
    """migrate (killed, resumed) -> catch-ups -> cutover -> switch back -> catch-up -> second cutover."""
    first_migration_killed_and_resumed(link)
    for _ in range(2):
        fleet.write_some(phase_writes, phase_seconds)
        migrate(link)
    with fleet.paused():  # a full verification wants a quiet moment; the cutover itself does not
        migrate(link)
        verification_passes(link)
    fleet.write_some(phase_writes, phase_seconds)
    cutover = cut_over(link)
    assert cutover.status == Status.SUCCEEDED, cutover.error
    fleet.write_some(phase_writes // 4)  # refused on RevOS until the app follows the flag
    fleet.side("unified")
    fleet.write_some(phase_writes, phase_seconds)
    back = switch_back_run_execute(
        run_id=switch_back_run_request(link=link, reason="soak", actor=None, enqueue=False).pk
    )
    assert back.status == Status.SUCCEEDED, back.error
    fleet.write_some(phase_writes // 4)  # refused on the unified database until the app follows
    fleet.side("revos")
    fleet.write_some(phase_writes, phase_seconds)
    migrate(link)
    with fleet.paused():
        migrate(link)
        verification_passes(link)
    fleet.write_some(phase_writes, phase_seconds)
    again = cut_over(link)
    assert again.status == Status.SUCCEEDED, again.error
    fleet.write_some(phase_writes // 4)  # refused: the writers stop before they follow the flag


def lost_writes(entries: list[dict], link: AgencyLink, other: AgencyLink) -> list[str]:
    """Every row's last acknowledged write, compared with the side that holds the truth now."""
    final: dict[tuple[str, str], tuple[str | None, str]] = {}
    for entry in sorted((e for e in entries if e["ok"]), key=lambda e: (e["writer"], e["n"])):
        for table, row, value, agency in entry["effects"]:
            final[(table, row)] = (value, agency)
    lost = []
    for (table, row), (value, agency) in final.items():
        if agency == "other":  # moved to an agency that stays on RevOS
            found = revos("SELECT name FROM leads WHERE id = %s AND agency_id = %s", [row, other.revos_agency_id])
            expected = [(value,)]
        elif table == "auth.users":
            found = unified("SELECT encrypted_password FROM auth.users WHERE id = %s", [row])
            expected = [(value,)]
        else:
            target, column = UNIFIED[table]
            found = unified(f"SELECT {column} FROM {target} WHERE id = %s", [row])
            expected = [] if value is None else [(value,)]
        if [tuple(r) for r in found] != expected:
            lost.append(f"{table} {row}: expected {expected}, found {found}")
    return lost


def run_randomized(tmp_path: Path, settings, *, seed: int, writers: int, phase_writes: int, phase_seconds: float):
    FeatureFlag.objects.update_or_create(
        name="unified_db", defaults={"requires_verification": True, "enabled_globally": False, "rollout_percentage": 0}
    )
    settings.CUTOVER_DRAIN_TIMEOUT_SECONDS = 10
    from migration_jobs.demo.demo import demo_data_seed

    demo_data_seed(agencies=3, scale=2, seed=seed)
    agency_links_sync()
    link, other = (
        agency_link_confirm(link=lk, kind=lk.suggested_kind, unified_agency_id=lk.suggested_agency_id, actor=None)
        for lk in AgencyLink.objects.order_by("name")[:2]
    )
    migrate(other)  # captured too: its rows pass the same triggers and must never be refused
    fleet = Fleet(tmp_path, link, other, writers=writers, seed=seed)
    try:
        lifecycle(fleet, link, phase_writes=phase_writes, phase_seconds=phase_seconds)
    finally:
        fleet.stop()
    entries = fleet.entries()
    acknowledged = [e for e in entries if e["ok"]]
    refused = [e for e in entries if not e["ok"]]
    lost = lost_writes(entries, link, other)
    astray = [e for e in acknowledged if e["op"] != "sign_in" and 0 in e["rows"]]
    summary = f"seed {seed}: {len(acknowledged)} writes acknowledged, {len(refused)} refused, {len(lost)} lost"
    print(summary)
    assert not lost, f"{summary}: {lost[:10]}"
    assert not astray, f"acknowledged writes that changed no row: {astray[:5]}"
    assert refused, "the fences refused the writes that came after them"
    # RevOS's fence (the agency has moved), the unified one (it is switching back), the unified guard
    # (RevOS holds its data until its cutover): each names the agency.
    reasons = (FENCE_ERROR, "is switching back to RevOS", "lives in RevOS until its cutover")
    wrong = [
        e
        for e in refused
        if e["sqlstate"] != "25006"
        or f'Agency "{link.name}"' not in e["error"]
        or not any(r in e["error"] for r in reasons)
    ]
    assert not wrong, f"refused otherwise than by the fence: {wrong[:5]}"
    assert {r for r in reasons if any(r in e["error"] for e in refused)} >= {FENCE_ERROR, reasons[1]}
    assert all(e["ok"] for e in entries if e["op"] == "sign_in"), "a sign-in alone is never refused"
    assert any(e["replica"] for e in acknowledged) and any(e["op"] == "post" for e in acknowledged)
    verification_passes(link)  # RevOS (fenced) and the unified database agree, table by table
    return len(acknowledged), len(refused), len(lost)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_randomized_writers_on_both_databases_lose_nothing(tenant_db, rq_queues, settings, tmp_path, seed):
    run_randomized(tmp_path, settings, seed=seed, writers=2, phase_writes=60, phase_seconds=0)


@pytest.mark.skipif(not SOAK_SECONDS, reason="make soak sets SOAK_SECONDS")
def test_soak(tenant_db, rq_queues, settings, tmp_path):
    writers = int(os.environ.get("SOAK_WRITERS", "4"))
    # Nine phases of writing: each lasts its share of SOAK_SECONDS.
    run_randomized(tmp_path, settings, seed=7, writers=writers, phase_writes=100, phase_seconds=SOAK_SECONDS / 9)
