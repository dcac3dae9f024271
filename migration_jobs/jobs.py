"""RQ jobs: each takes a primary key, loads nothing itself, and calls one service."""

from migration_jobs.services.follow_ups import migration_run_follow_ups
from migration_jobs.services.runs import migration_run_execute


def execute_migration_run(run_id: int) -> str:
    with migration_run_follow_ups(run_id=run_id):
        return migration_run_execute(run_id=run_id).status
