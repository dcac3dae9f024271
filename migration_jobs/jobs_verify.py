"""The RQ job of a verification: a primary key in, one service call."""

from migration_jobs.services.verification import verification_run_execute


def execute_verification_run(verification_run_id: int) -> str:
    return verification_run_execute(verification_run_id=verification_run_id).verdict
