"""The RQ job functions: one attempt of a step each, with the state transitions around it. RQ retries
them, on time (services/queued/retries.py); the last failed attempt marks the campaign `failed` (and RQ keeps the job
in its failed registry).
Generation, once it succeeded, enqueues automation itself, in the transaction that records its outcome (enqueue.py
says why). They run with the context of the worker performing them (WorkerContext, installed by OffpathWorker)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar

from redis import Redis
from redis.backoff import NoBackoff
from redis.retry import Retry
from rq import get_current_job

from services.campaign.schema import Status
from services.campaign.settings import Settings
from services.campaign.steps import StepStore
from services.campaign.store import IllegalTransition
from services.campaign.work import generate_campaign_content, trigger_follow_up_automation
from services.queued.enqueue import JobPlanner, campaign_queue

log = logging.getLogger("offpath.jobs")

Step = Callable[["WorkerContext", str], None]


# Each step records its side effect atomically with its outcome (one MULTI), and begins by checking that record in
# the same round trip as its status transition (StepStore.begin): a job delivered again after a worker crash does not
# repeat a finished step. A step costs two round trips, begin and outcome, and one turn of the event loop for the
# work between them.


def generation_attempt(ctx: WorkerContext, campaign_id: str) -> None:
    start = ctx.steps.begin(campaign_id, Status.generating, done="content_digest",
                            first_only={"started_at": time.time()})
    if start is None:
        log.info("campaign %s: content already generated (and automation enqueued with it); not again", campaign_id)
        return
    content = ctx.runner.run(generate_campaign_content(campaign_id, start.request, ctx.profile, attempt=start.attempt))
    ctx.steps.record_outcome(campaign_id, "content", {"content_digest": content.digest},
                             also=ctx.planner.buffer_automation)


def automation_attempt(ctx: WorkerContext, campaign_id: str) -> None:
    start = ctx.steps.begin(campaign_id, Status.automating, done="follow_ups_scheduled")
    if start is None:
        log.info("campaign %s: follow-ups already scheduled; not again", campaign_id)
        return
    automation = ctx.runner.run(
        trigger_follow_up_automation(campaign_id, start.request, ctx.profile, attempt=start.attempt)
    )
    ctx.steps.finish(
        campaign_id,
        Status.completed,
        {"completed_at": time.time(), "follow_ups_scheduled": automation.follow_ups_scheduled},
        executions={"automation": 1},
    )


def worker_redis(settings: Settings) -> Redis:
    # As the services' client (services/campaign/api.py redis_client): bounded timeouts and no client-side retries, so
    # a job whose Redis is gone fails within about redis_timeout_s, and RQ retries it, instead of hanging.
    return Redis.from_url(
        settings.redis_url,
        socket_timeout=settings.redis_timeout_s,
        socket_connect_timeout=settings.redis_timeout_s,
        retry=Retry(NoBackoff(), 0),
    )


class WorkerContext:
    """What every job of one worker process shares, owned by the worker: its settings and profile, one event loop
    for the slow work, one Redis connection for the steps' writes, and what chains automation to generation (a loop or
    a connection per job would add their setup, a handshake, to each). The worker entry point builds it at start and
    closes it at exit; nothing here reads the environment, and nothing connects before the first job."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.profile = settings.profile()
        self.runner = asyncio.Runner()
        self.redis = worker_redis(settings)
        self.steps = StepStore(self.redis)
        # A sync pipeline: RQ reads the server's version over this connection on the first chain, once per process.
        self.planner = JobPlanner(campaign_queue(settings, self.redis), settings)

    def close(self) -> None:
        try:
            self.redis.close()
        finally:
            self.runner.close()


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


def _is_last_attempt() -> bool:
    job = get_current_job()
    return job is None or not job.retries_left


def _attempt(step: Step, campaign_id: str) -> None:
    ctx = current_context()
    try:
        step(ctx, campaign_id)
    except IllegalTransition:
        # Already completed or failed (e.g. a duplicate delivery after a worker crash): nothing to do.
        log.warning("campaign %s is past this step; skipping", campaign_id)
    except Exception as error:
        if _is_last_attempt():
            ctx.steps.fail(campaign_id, error)
        raise


def generate(campaign_id: str) -> None:
    _attempt(generation_attempt, campaign_id)


def automate(campaign_id: str) -> None:
    _attempt(automation_attempt, campaign_id)
