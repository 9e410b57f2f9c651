"""The RQ job functions: one attempt of a step each (services/queued/attempts.py, the same on every backend). RQ
retries them, on time (services/queued/retries.py); the last failed attempt marks the campaign `failed` (and RQ keeps the
job in its failed registry). Generation, once it succeeded, enqueues automation itself, in the transaction that records
its outcome (enqueue.py says why). They run with the context of the worker performing them (WorkerContext, installed by
OffpathWorker)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

from redis import Redis
from rq import get_current_job

from services.campaign.settings import Settings
from services.queued.attempts import (
    Attempt,
    Chain,
    Step,
    StepContext,
    automation_attempt,
    generation_attempt,
    run_attempt,
)
from services.queued.enqueue import JobPlanner, campaign_queue


def rq_chaining(settings: Settings, redis: Redis) -> Chain:
    """Generation's outcome transaction gets the automation job (enqueue.py says why not RQ's `depends_on`). A sync
    pipeline: RQ reads the server's version over this connection on the first chain, once per process."""
    return JobPlanner(campaign_queue(settings, redis), settings).buffer_automation


class WorkerContext(StepContext):
    """An RQ worker's StepContext: generation chains automation by enqueueing its job."""

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings, rq_chaining)


# RQ calls a job's function by its dotted path with only the arguments it was enqueued with: `Job.func`
# imports it by name (rq/job.py:528-537) and `Job._execute` calls `self.func(*self.args, **self.kwargs)`
# (rq/job.py:1528-1542); the worker reaches that through `perform_job` -> `job.perform()`
# (rq/worker/base.py:1651-1679, from SimpleWorker.execute_job, rq/worker/worker_classes.py:287-291). So a
# worker cannot hand its context to a job as an argument (short of overriding the private _execute).
# RQ's own answer to "which job is running" is a ContextVar set around that call (`_current_job`,
# rq/job.py:1476-1481 and 1913, read by get_current_job); the worker does the same with its context around
# each job it performs (OffpathWorker.perform_job). Outside a job there is none: this holds no state itself.
_worker_context: ContextVar[WorkerContext | None] = ContextVar("offpath_worker_context", default=None)


@contextmanager
def performing_with(context: WorkerContext) -> Iterator[None]:
    """Make `context` the one the job functions run with, for the job being performed inside this block."""
    token = _worker_context.set(context)
    try:
        yield
    finally:
        _worker_context.reset(token)


def current_context() -> WorkerContext:
    context = _worker_context.get()
    if context is None:
        raise RuntimeError(
            "no worker context: the campaign jobs run inside an offpath RQ worker (python -m services.queued.worker), "
            "which gives each job its settings, event loop and Redis connection; run that worker, not `rq worker`"
        )
    return context


def _attempt_of_current_job(settings: Settings) -> Attempt:
    """This delivery of the job RQ is performing, from RQ's own count: the retries it has left, and the interval it
    will wait before the next (Job.get_retry_interval, which OffpathJob.retry files it for)."""
    job = get_current_job()
    if job is None or not job.retries_left:
        return Attempt(number=settings.retries + 1, of=settings.retries + 1, backoff_s=0.0)
    return Attempt(number=max(1, settings.retries - job.retries_left + 1), of=settings.retries + 1,
                   backoff_s=float(job.get_retry_interval()))


def _attempt(step: Step, campaign_id: str) -> None:
    ctx = current_context()
    run_attempt(ctx, step, campaign_id, _attempt_of_current_job(ctx.settings))


def generate(campaign_id: str) -> None:
    _attempt(generation_attempt, campaign_id)


def automate(campaign_id: str) -> None:
    _attempt(automation_attempt, campaign_id)
