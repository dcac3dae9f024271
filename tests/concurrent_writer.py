"""A RevOS app in a separate process: inserts, updates and deletes rows of some agencies until told to stop.

Usage: python tests/concurrent_writer.py DSN LOG_FILE CONTROL_DIR AGENCY_ID...

Every write is one autocommitted statement, as the app's API makes them, and each outcome is logged
as one JSON line: acknowledged (RevOS committed it) or refused (with PostgreSQL's SQLSTATE and
message). Leads exercise a table with agency_id, comments a table that reaches its agency through
its post. Only rows the writer inserted itself are deleted, so no foreign key stands in the way.
The writer pauses while CONTROL_DIR/pause exists and stops once CONTROL_DIR/stop exists.
"""

from __future__ import annotations

import json
import random
import sys
import time
import uuid
from pathlib import Path

import psycopg


def main(dsn: str, log_path: str, control_dir: str, agencies: list[str]) -> None:
    control = Path(control_dir)
    rng = random.Random(12)
    own: dict[tuple[str, str], list[str]] = {(a, t): [] for a in agencies for t in ("leads", "comments")}
    with psycopg.connect(dsn, autocommit=True, application_name="concurrent-writer") as db, open(log_path, "a") as log:
        posts = {
            a: [r[0] for r in db.execute("SELECT id::text FROM posts WHERE agency_id = %s", [a])] for a in agencies
        }
        n = 0
        while not (control / "stop").exists():
            if (control / "pause").exists():
                (control / "paused").touch()
                time.sleep(0.02)
                continue
            (control / "paused").unlink(missing_ok=True)
            n += 1
            agency, table = rng.choice(agencies), rng.choice(("leads", "comments"))
            mine = own[(agency, table)]
            op = rng.choice(("insert", "update", "delete")) if mine else "insert"
            row_id = str(uuid.uuid4()) if op == "insert" else rng.choice(mine)
            value = f"w{n}"
            entry = {"n": n, "agency": agency, "table": table, "op": op, "id": row_id, "value": value}
            try:
                db.execute(*_statement(table, op, row_id, value, agency, rng.choice(posts[agency])))
            except psycopg.Error as error:
                entry.update(ok=False, sqlstate=error.sqlstate, error=str(error).splitlines()[0])
            else:
                entry["ok"] = True
                if op == "insert":
                    mine.append(row_id)
                elif op == "delete":
                    mine.remove(row_id)
            log.write(json.dumps(entry) + "\n")
            log.flush()
            time.sleep(0.003)


def _statement(table: str, op: str, row_id: str, value: str, agency: str, post: str) -> tuple[str, list]:
    if table == "leads":
        return {
            "insert": ("INSERT INTO leads (id, agency_id, name) VALUES (%s, %s, %s)", [row_id, agency, value]),
            "update": ("UPDATE leads SET name = %s WHERE id = %s", [value, row_id]),
            "delete": ("DELETE FROM leads WHERE id = %s", [row_id]),
        }[op]
    return {
        "insert": ("INSERT INTO comments (id, post_id, content) VALUES (%s, %s, %s)", [row_id, post, value]),
        "update": ("UPDATE comments SET content = %s WHERE id = %s", [value, row_id]),
        "delete": ("DELETE FROM comments WHERE id = %s", [row_id]),
    }[op]


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4:])
