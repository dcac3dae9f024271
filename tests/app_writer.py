"""An app in a separate process, writing one agency's rows wherever its data lives, until told to stop.

Usage: python tests/app_writer.py CONFIG_JSON

The randomized zero-loss test (tests/test_zero_loss_random.py) starts several of these beside
migrate, a SIGKILL and resume, catch-ups, a cutover, a switch back and a second cutover. Each writer
mixes, with its own seed: inserts, updates and deletes of leads and comments; posts inserted with
comments and deleted again (RevOS's ON DELETE CASCADE takes the comments); leads moved to another
agency; password changes and sign-ins; and a share of its RevOS writes from a session with
session_replication_role = replica. It writes where the control directory says the agency's data
lives (`side-<agency>`: revos or unified, as an app follows the unified_db flag, a little late), on
the unified database as an app does: role authenticated with the agency's JWT.

Every write is logged as one JSON line with the database's answer: acknowledged, or refused with
its SQLSTATE and message. Rows are partitioned between writers (each updates only the existing
rows whose index falls to it, and the rows it inserted), so the last acknowledged write of a row
is well defined: the test checks it is what the side holding the truth has at the end. The writer
pauses while CONTROL/pause exists and stops once CONTROL/stop exists.
"""

from __future__ import annotations

import json
import random
import sys
import time
import uuid
from pathlib import Path

import psycopg

UNIFIED_TABLE = {"leads": "lead", "comments": "comment", "posts": "post", "auth.users": "auth.users"}


class Writer:
    def __init__(self, config: dict) -> None:
        self.config = config
        self.rng = random.Random(config["seed"])
        self.control = Path(config["control"])
        self.agency, self.other = config["agency"], config["other"]
        self.n = 0
        self.own: dict[str, list[str]] = {"leads": [], "comments": [], "posts": []}
        self.post_comments: dict[str, list[str]] = {}
        self.moved: list[str] = []  # own leads moved to the other agency (RevOS)

    def side(self) -> str:
        path = self.control / f"side-{self.agency['revos']}"
        return path.read_text().strip() if path.exists() else "revos"

    def run(self) -> None:
        with (
            psycopg.connect(self.config["revos"], autocommit=True, application_name="app-writer") as revos,
            psycopg.connect(self.config["revos"], autocommit=True, application_name="app-writer-replica") as replica,
            psycopg.connect(self.config["unified"], autocommit=True, application_name="app-writer") as unified,
            open(self.config["log"], "a") as log,
        ):
            replica.execute("SET session_replication_role = replica")
            self.databases = {"revos": revos, "replica": replica, "unified": unified}
            while not (self.control / "stop").exists():
                if (self.control / "pause").exists():
                    (self.control / f"paused-{self.config['seed']}").touch()
                    time.sleep(0.02)
                    continue
                (self.control / f"paused-{self.config['seed']}").unlink(missing_ok=True)
                entry = self.write_one()
                log.write(json.dumps(entry) + "\n")
                log.flush()
                time.sleep(self.config.get("pause_seconds", 0.002))

    def write_one(self) -> dict:
        self.n += 1
        side = self.side()
        op = self.rng.choices(
            ["lead", "comment", "password", "sign_in", "post", "move"], weights=[40, 25, 10, 10, 10, 5]
        )[0]
        if side == "unified" and op in ("post", "move"):
            op = "lead"  # the unified schema keeps comments from cascading; moves are RevOS's
        entry = {"writer": self.config["seed"], "n": self.n, "side": side, "value": f"w{self.config['seed']}-{self.n}"}
        replica = side == "revos" and op in ("lead", "password") and self.rng.random() < 0.25
        database = self.databases["replica" if replica else side]
        statements, effects = getattr(self, f"_{op}")(side, entry["value"])
        entry.update(op=op, replica=replica, effects=effects)
        try:
            with database.transaction():
                if side == "unified":
                    database.execute("SET LOCAL ROLE authenticated")
                    claims = {"agency_id": self.agency["unified"], "app_context": "revos", "role": "authenticated"}
                    database.execute("SELECT set_config('request.jwt.claims', %s, true)", [json.dumps(claims)])
                rows = []
                for statement, params in statements:
                    if statement.startswith("AS GOTRUE "):  # Supabase Auth writes accounts as its own role
                        database.execute("SET LOCAL ROLE supabase_auth_admin")
                        statement = statement.removeprefix("AS GOTRUE ")
                    rows.append(database.execute(statement, params).rowcount)
        except psycopg.Error as error:
            entry.update(ok=False, sqlstate=error.sqlstate, error=str(error).splitlines()[0])
        else:
            entry.update(ok=True, rows=rows)  # an update or delete of no row would be a write gone astray
            self._committed(op, effects)
        return entry

    # Each op: the statements, and its effects [(table, id, value or None, agency)] as RevOS names them.

    def _lead(self, side: str, value: str):
        table = "leads" if side == "revos" else "lead"
        agency = self.agency[side]
        mine = self.own["leads"] + self.config["leads"]
        kind = self.rng.choice(["insert", "update", "delete"]) if self.own["leads"] else "insert"
        if kind == "update" or (kind == "delete" and not self.own["leads"]):
            lead = self.rng.choice(mine)
            return [(f"UPDATE {table} SET name = %s WHERE id = %s", [value, lead])], [("leads", lead, value, "mine")]
        if kind == "delete":
            lead = self.rng.choice(self.own["leads"])
            return [(f"DELETE FROM {table} WHERE id = %s", [lead])], [("leads", lead, None, "mine")]
        lead = str(uuid.UUID(int=self.rng.getrandbits(128)))
        insert = f"INSERT INTO {table} (id, agency_id, name) VALUES (%s, %s, %s)"
        return [(insert, [lead, agency, value])], [("leads", lead, value, "mine")]

    def _comment(self, side: str, value: str):
        table = "comments" if side == "revos" else "comment"
        kind = self.rng.choice(["insert", "update", "delete"]) if self.own["comments"] else "insert"
        if kind != "insert":
            comment = self.rng.choice(self.own["comments"])
            if kind == "update":
                update = f"UPDATE {table} SET content = %s WHERE id = %s"
                return [(update, [value, comment])], [("comments", comment, value, "mine")]
            return [(f"DELETE FROM {table} WHERE id = %s", [comment])], [("comments", comment, None, "mine")]
        comment, post = str(uuid.UUID(int=self.rng.getrandbits(128))), self.rng.choice(self.config["posts"])
        if side == "revos":
            insert = ("INSERT INTO comments (id, post_id, content) VALUES (%s, %s, %s)", [comment, post, value])
        else:
            insert = (
                "INSERT INTO comment (id, agency_id, post_id, content) VALUES (%s, %s, %s, %s)",
                [comment, self.agency["unified"], post, value],
            )
        return [insert], [("comments", comment, value, "mine")]

    def _post(self, side: str, value: str):
        """RevOS only: a post with two comments, or an own post deleted with its comments (cascade)."""
        if self.own["posts"] and self.rng.random() < 0.5:
            post = self.rng.choice(self.own["posts"])
            gone = [("posts", post, None, "mine")] + [("comments", c, None, "mine") for c in self.post_comments[post]]
            return [("DELETE FROM posts WHERE id = %s", [post])], gone
        post = str(uuid.UUID(int=self.rng.getrandbits(128)))
        comments = [str(uuid.UUID(int=self.rng.getrandbits(128))) for _ in range(2)]
        statements = [
            (
                "INSERT INTO posts (id, agency_id, linkedin_account_id, content) VALUES (%s, %s, %s, %s)",
                [post, self.agency["revos"], self.config["linkedin_account"], value],
            ),
            *(("INSERT INTO comments (id, post_id, content) VALUES (%s, %s, %s)", [c, post, value]) for c in comments),
        ]
        return statements, [("posts", post, value, "mine")] + [("comments", c, value, "mine") for c in comments]

    def _move(self, side: str, value: str):
        """RevOS only: an own lead moved to the other agency (it leaves this one)."""
        if not self.own["leads"]:
            return self._lead(side, value)
        lead = self.rng.choice(self.own["leads"])
        move = ("UPDATE leads SET agency_id = %s, name = %s WHERE id = %s", [self.other, value, lead])
        return [move], [("leads", lead, value, "other")]

    def _password(self, side: str, value: str):
        person = self.rng.choice(self.config["people"])
        update = "AS GOTRUE UPDATE auth.users SET encrypted_password = %s WHERE id = %s"
        return [(update, [value, person])], [("auth.users", person, value, "mine")]

    def _sign_in(self, side: str, value: str):
        person = self.rng.choice(self.config["people"])
        update = "AS GOTRUE UPDATE auth.users SET last_sign_in_at = now(), updated_at = now() WHERE id = %s"
        return [(update, [person])], []

    def _committed(self, op: str, effects: list) -> None:
        for table, row, value, agency in effects:
            if table not in self.own:
                continue
            if value is None or agency == "other":
                if row in self.own[table]:
                    self.own[table].remove(row)
                self.post_comments.pop(row, None)
            elif row not in self.own[table] and row not in self.config.get(table, []):
                self.own[table].append(row)
        if op == "post" and effects[0][2] is not None:
            self.post_comments[effects[0][1]] = [row for table, row, _, _ in effects[1:]]
        for comments in self.post_comments.values():  # a comment deleted alone leaves its post
            comments[:] = [c for c in comments if c in self.own["comments"]]


if __name__ == "__main__":
    Writer(json.loads(Path(sys.argv[1]).read_text())).run()
