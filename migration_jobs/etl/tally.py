"""Progress table by table, for work not checkpointed batch by batch: a rollback deletes each table's
rows in one statement, a plan counts each table's rows. The engine reports a `TableTally` as each
table begins and ends; the run kind records it on the run (services/kinds/rollback.py, plan.py),
where the cockpit and `agency_timeline` read it."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass
class TableTally:
    """The tables in the order they are taken, the rows of each one finished, the one under way."""

    tables: list[str]
    done: list[tuple[str, int]] = field(default_factory=list)  # (table, rows), in the order finished
    current: str = ""

    @property
    def rows(self) -> int:
        return sum(rows for _, rows in self.done)

    def begin(self, table: str) -> TableTally:
        self.current = table
        return self

    def end(self, table: str, rows: int) -> TableTally:
        self.done.append((table, rows))
        self.current = ""
        return self


OnTally = Callable[[TableTally], None]
