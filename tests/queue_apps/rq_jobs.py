"""RQ jobs for the chaos measures' tests (offpath/worker_faults.py): each records when RQ started it, in a Redis list."""

from __future__ import annotations

import time

from rq import get_current_job

STARTS_KEY = "test:rq-jobs:starts"


def fail_first_attempt(seconds: float) -> float:
    """Records its start (RQ's `started_at` of this run, epoch seconds), works `seconds`, and fails on its first
    attempt: with a Retry, RQ runs it again at once."""
    job = get_current_job()
    assert job is not None and job.started_at is not None, "run by an RQ worker"
    job.connection.rpush(STARTS_KEY, repr(job.started_at.timestamp()))
    time.sleep(seconds)
    if job.retries_left:
        raise RuntimeError("the first attempt fails, as a provider failure would")
    return seconds
