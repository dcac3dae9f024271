"""RQ jobs: each takes a primary key, loads nothing itself, and calls one service."""

from migration_jobs.services.switch_back import tracked_run_execute


def execute_migration_run(run_id: int) -> str:
    return tracked_run_execute(run_id=run_id).status
