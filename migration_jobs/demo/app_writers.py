"""App-like writers for the rehearsal: both apps keep writing while the fleet moves, and nothing may be lost.

Each thread is one app instance writing to its share of the agencies (one writer per agency, so
the order of its writes is the order they committed in): inserts, updates and deletes of leads it
created, each one autocommitted statement as the apps' API makes them. It writes where the agency
lives: RevOS until RevOS refuses (the fence: a cutover is under way or done), then the unified
database (what the flags API would tell it), and back to RevOS when the unified side refuses
(the cutover failed and lifted its fence, or has not switched yet). Every refusal counts. One more
thread writes AudienceOS's own agencies in the unified database, traffic the fleet must not disturb.

At the end every acknowledged write is looked for where the agency's truth is (the unified
database once it is cut over, RevOS otherwise): a row whose last acknowledged value is not there
is a lost write.
"""

from __future__ import annotations

import random
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from uuid import UUID

import psycopg

from migration_jobs.etl.connections import connect

APPLICATION = "rehearsal-app"  # not the control plane's prefix: the fence's drain waits for these
REFUSALS = ("25006", "42501", "P0001")  # read-only (the fences, the unified guard), privilege, raised


@dataclass
class WriterAgency:
    revos_agency_id: UUID
    unified_agency_id: UUID
    side: str = "revos"  # where the writer writes it now
    rows: dict[str, str | None] = field(default_factory=dict)  # lead id -> last acknowledged name (None: deleted)


@dataclass
class WriteTally:
    acknowledged: Counter = field(default_factory=Counter)  # by side
    refused: Counter = field(default_factory=Counter)  # by side
    errors: list[str] = field(default_factory=list)  # anything but a refusal: the rehearsal reports them


class FleetWriters:
    """Threads writing `rate` statements per second in all, until `stop()`; see the module docstring."""

    def __init__(
        self,
        *,
        agencies: list[tuple[UUID, UUID]],
        audience_leads: list[UUID],
        threads: int,
        rate: float,
        seed: int,
    ) -> None:
        self.agencies = [WriterAgency(r, u) for r, u in agencies]
        self.audience = {str(lead): None for lead in audience_leads}
        self.threads_count = max(1, threads)
        self.interval = self.threads_count / rate if rate > 0 else 0.0
        self.seed = seed
        self.tally = WriteTally()
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self.paused = threading.Event()
        self.threads: list[threading.Thread] = []

    def start(self) -> None:
        for index in range(self.threads_count):
            share = self.agencies[index :: self.threads_count]
            thread = threading.Thread(target=self._run, args=(index, share), name=f"app-writer-{index}", daemon=True)
            thread.start()
            self.threads.append(thread)
        thread = threading.Thread(target=self._audience_run, name="audience-writer", daemon=True)
        thread.start()
        self.threads.append(thread)

    def stop(self) -> None:
        self.stopping.set()
        for thread in self.threads:
            thread.join(timeout=30)

    def _sleep(self) -> None:
        while self.paused.is_set() and not self.stopping.is_set():
            time.sleep(0.05)
        if self.interval:
            self.stopping.wait(self.interval)

    def _run(self, index: int, share: list[WriterAgency]) -> None:
        if not share:
            return
        rng = random.Random(f"{self.seed}:{index}")
        with _app_connection("revos") as revos, _app_connection("unified") as unified:
            sides = {"revos": revos, "unified": unified}
            n = 0
            while not self.stopping.is_set():
                self._sleep()
                n += 1
                agency = rng.choice(share)
                self._write_one(agency, sides, rng, value=f"app-{index}-{n}")

    def _write_one(self, agency: WriterAgency, sides: dict[str, psycopg.Connection], rng, *, value: str) -> None:
        mine = [row for row, name in agency.rows.items() if name is not None]
        side = agency.side
        if side == "unified" and not mine:
            op = None  # nothing of its own there to change: ask RevOS again
        elif side == "unified":
            op = "update"
        else:
            op = rng.choice(("insert", "insert", "update", "update", "delete")) if mine else "insert"
        if op is None:
            agency.side = "revos"
            return
        row = str(uuid.uuid4()) if op == "insert" else rng.choice(mine)
        statement, parameters = _statement(side, op, row, value, agency.revos_agency_id)
        try:
            sides[side].execute(statement, parameters)
        except psycopg.Error as error:
            if error.sqlstate in REFUSALS:
                with self.lock:
                    self.tally.refused[side] += 1
                agency.side = "unified" if side == "revos" else "revos"
                return
            with self.lock:
                self.tally.errors.append(f"{side} {op}: {str(error).splitlines()[0]}")
            return
        agency.rows[row] = None if op == "delete" else value
        with self.lock:
            self.tally.acknowledged[side] += 1

    def _audience_run(self) -> None:
        if not self.audience:
            return
        rng = random.Random(f"{self.seed}:audience")
        leads = list(self.audience)
        with _app_connection("unified") as unified:
            n = 0
            while not self.stopping.is_set():
                self._sleep()
                n += 1
                lead, value = rng.choice(leads), f"aos-{n}"
                try:
                    unified.execute("UPDATE lead SET name = %s WHERE id = %s", [value, lead])
                except psycopg.Error as error:
                    with self.lock:
                        self.tally.errors.append(f"audience update: {str(error).splitlines()[0]}")
                    continue
                self.audience[lead] = value
                with self.lock:
                    self.tally.acknowledged["audience"] += 1

    def lost(self, *, cut_over: Callable[[UUID], bool]) -> list[str]:
        """Every acknowledged write not found where its agency's truth is, one line each."""
        lost = []
        with _app_connection("revos") as revos, _app_connection("unified") as unified:
            for agency in self.agencies:
                truth = cut_over(agency.revos_agency_id)
                connection, table = (unified, "lead") if truth else (revos, "leads")
                found = dict(
                    connection.execute(
                        f"SELECT id::text, name FROM {table} WHERE id = ANY(%s::uuid[])", [list(agency.rows)]
                    ).fetchall()
                )
                for row, name in agency.rows.items():
                    if found.get(row) != name:
                        lost.append(
                            f"lead {row} of agency {agency.revos_agency_id}: wrote {name!r}, found {found.get(row)!r}"
                        )
            found = dict(
                unified.execute(
                    "SELECT id::text, name FROM lead WHERE id = ANY(%s::uuid[])", [list(self.audience)]
                ).fetchall()
            )
            lost += [
                f"AudienceOS lead {row}: wrote {name!r}"
                for row, name in self.audience.items()
                if name and found.get(row) != name
            ]
        return lost


def _statement(side: str, op: str, row: str, value: str, agency: UUID) -> tuple[str, list]:
    if side == "unified":
        return "UPDATE lead SET name = %s WHERE id = %s", [value, row]
    return {
        "insert": ("INSERT INTO leads (id, agency_id, name) VALUES (%s, %s, %s)", [row, agency, value]),
        "update": ("UPDATE leads SET name = %s WHERE id = %s", [value, row]),
        "delete": ("DELETE FROM leads WHERE id = %s", [row]),
    }[op]


def _app_connection(alias: str) -> psycopg.Connection:
    """A connection as the app's: named as an app's, and on the unified database in the API's role
    (service_role, as AudienceOS's backend writes; its guard and fences apply to the API roles)."""
    connection = connect(alias, autocommit=True, purpose="app")
    connection.execute("SELECT set_config('application_name', %s, false)", [APPLICATION])
    if alias == "unified":
        connection.execute("SET ROLE service_role")
    return connection
