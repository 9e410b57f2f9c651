"""One attempt of a campaign's step, the same on every queue backend: the state transitions around the slow work, the
failed campaign after the last attempt, and the one line an expected provider failure is worth in the log.

Each step records its side effect atomically with its outcome (one script), and begins by checking that record in the
same round trip as its status transition (StepStore.begin): a job delivered again after a worker crash does not
repeat a finished step, whichever library delivered it. The outcome is written only by the delivery that owns the
step (the fence, services/campaign/steps.py): one taken for dead, or a second copy of a message, that began earlier
writes nothing and is *superseded* (StepContext.superseded), its step left to the owner. A step costs two round
trips, begin and outcome, and one turn of the event loop for the work between them. How automation follows generation
is the backend's (services/queued/backend.py): RQ buffers the automation job onto generation's outcome transaction
(the `chain` below); Celery and Dramatiq publish it themselves once generation returned (their chain and pipeline),
so theirs buffers nothing.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from redis import ConnectionError as RedisConnectionError
from redis import Redis
from redis import TimeoutError as RedisTimeoutError
from redis.backoff import NoBackoff
from redis.client import Pipeline
from redis.retry import Retry

from services.campaign.schema import Status
from services.campaign.settings import Settings
from services.campaign.steps import StepStore
from services.campaign.store import IllegalTransition
from services.campaign.work import ProviderError, generate_campaign_content, trigger_follow_up_automation
from services.queued.halting import halt_at

__all__ = ["JOB_TIMEOUT_S", "REDIS_AWAY", "Attempt", "Chain", "StepContext", "automation_attempt", "automation_job_id",
           "generation_attempt", "generation_job_id", "no_chain", "redis_away", "run_attempt", "worker_redis"]

log = logging.getLogger("offpath.jobs")

# The longest a job may run; each library ends or fails a job that runs longer, where it can (RQ's death penalty,
# Dramatiq's time limit; Celery's solo pool enforces none, celery/concurrency/solo.py:31, so there the profile's own
# bound holds: services/campaign/work.py caps a provider wait at 55 s).
JOB_TIMEOUT_S = 60

# What generation buffers onto the transaction that records its outcome, to make automation follow it.
Chain = Callable[[Pipeline, str], None]
Step = Callable[["StepContext", str], None]


def generation_job_id(campaign_id: str) -> str:
    """The id of a campaign's generation job, the same on every backend (RQ's job id, Celery's task id, Dramatiq's
    message id): deterministic, so the job can be found from its campaign."""
    return f"{campaign_id}-generation"


def automation_job_id(campaign_id: str) -> str:
    return f"{campaign_id}-automation"


# What says Redis is away (refused, closed, not answering in time), as redis-py raises it; each backend adds its
# library's own wrapping of it.
REDIS_AWAY: tuple[type[BaseException], ...] = (RedisConnectionError, RedisTimeoutError)


def redis_away(error: BaseException | None, also: tuple[type[BaseException], ...] = ()) -> BaseException | None:
    """The error in `error`'s chain (itself, its cause, its context) that says Redis is away, if any: a step or a
    library's own write that met it did not fail; its message goes back to its queue once Redis answers."""
    seen: set[int] = set()
    while error is not None and id(error) not in seen:
        if isinstance(error, REDIS_AWAY + also):
            return error
        seen.add(id(error))
        error = error.__cause__ or error.__context__
    return None


def no_chain(pipe: Pipeline, campaign_id: str) -> None:
    """For a library that publishes the next step itself once this one returned (Celery's chain, Dramatiq's
    pipeline): nothing to add to the outcome's transaction."""


def worker_redis(settings: Settings) -> Redis:
    # As the services' client (services/campaign/api.py redis_client): bounded timeouts and no client-side retries, so
    # a job whose Redis is gone fails within about redis_timeout_s, and its library retries it, instead of hanging.
    return Redis.from_url(
        settings.redis_url,
        socket_timeout=settings.redis_timeout_s,
        socket_connect_timeout=settings.redis_timeout_s,
        retry=Retry(NoBackoff(), 0),
    )


class StepContext:
    """What every job of one worker process shares, owned by its worker: the settings and profile, one event loop
    for the slow work, one Redis connection for the steps' writes, and how generation chains automation (a loop or a
    connection per job would add their setup, a handshake, to each). Built once at the worker's start, closed at its
    exit; nothing here reads the environment, and nothing connects before the first job."""

    def __init__(self, settings: Settings, chaining: Callable[[Settings, Redis], Chain]) -> None:
        self.settings = settings
        self.profile = settings.profile()  # a wrong profile fails at the worker's start, not on its first job
        self.runner = asyncio.Runner()
        self.redis = worker_redis(settings)
        self.steps = StepStore(self.redis)
        self.chain = chaining(settings, self.redis)
        # Whether the attempt being run (run_attempt) lost its step to another delivery: it recorded nothing, and its
        # library's own record of the job belongs to that delivery too (services/queued/worker.py).
        self.superseded = False

    def close(self) -> None:
        try:
            self.redis.close()
        finally:
            self.runner.close()


@dataclass(frozen=True)
class Attempt:
    """Which delivery of a job this is, as its library counts them: number `number` (1-based) of at most `of`, and
    the backoff before the next one, if any."""

    number: int
    of: int
    backoff_s: float

    @property
    def last(self) -> bool:
        return self.number >= self.of


def generation_attempt(ctx: StepContext, campaign_id: str) -> None:
    start = ctx.steps.begin(campaign_id, Status.generating, done="content_digest",
                            first_only={"started_at": time.time()})
    if start is None:
        log.info("campaign %s: content already generated; not again", campaign_id)
        return
    halt_at("begun")
    content = ctx.runner.run(generate_campaign_content(campaign_id, start.request, ctx.profile, attempt=start.attempt))
    if not ctx.steps.record_outcome(campaign_id, start.attempt, "content", {"content_digest": content.digest},
                                    also=ctx.chain):
        _superseded(ctx, campaign_id, "generation", start.attempt)
        return
    halt_at("recorded")


def automation_attempt(ctx: StepContext, campaign_id: str) -> None:
    start = ctx.steps.begin(campaign_id, Status.automating, done="follow_ups_scheduled")
    if start is None:
        log.info("campaign %s: follow-ups already scheduled; not again", campaign_id)
        return
    halt_at("begun")
    automation = ctx.runner.run(
        trigger_follow_up_automation(campaign_id, start.request, ctx.profile, attempt=start.attempt)
    )
    if not ctx.steps.finish(
        campaign_id,
        start.attempt,
        Status.completed,
        {"completed_at": time.time(), "follow_ups_scheduled": automation.follow_ups_scheduled},
        executions={"automation": 1},
    ):
        _superseded(ctx, campaign_id, "automation", start.attempt)
        return
    halt_at("recorded")


def _superseded(ctx: StepContext, campaign_id: str, step: str, attempt: int) -> None:
    ctx.superseded = True
    log.warning("campaign %s: %s attempt %d no longer owns its step (its job was taken for dead and ran again, or a "
                "second copy began it); its outcome is not recorded", campaign_id, step, attempt)


STEP_NAMES: dict[Step, str] = {generation_attempt: "generation", automation_attempt: "automation"}


def run_attempt(ctx: StepContext, step: Step, campaign_id: str, attempt: Attempt) -> None:
    """Run one attempt of `step`. A failure is raised again for the library to retry; after the last attempt the
    campaign is marked `failed` first. An expected failure (a provider's, ProviderError) is logged here as one line;
    logging an unexpected one, with its traceback, is left to the backend, once."""
    ctx.superseded = False
    try:
        step(ctx, campaign_id)
    except IllegalTransition:
        # Already completed or failed (e.g. a duplicate delivery after a worker crash): nothing to do.
        log.warning("campaign %s is past this step; skipping", campaign_id)
    except Exception as error:
        if attempt.last:
            ctx.steps.fail(campaign_id, error)
        if isinstance(error, ProviderError):
            log.warning("%s", failure_line(campaign_id, STEP_NAMES.get(step, "step"), attempt, error))
        raise


def failure_line(campaign_id: str, step: str, attempt: Attempt, error: BaseException, now: float | None = None) -> str:
    """`campaign <id>: generation attempt 1 of 3 failed (ProviderError: ...); retry at 15:46:01.123 (in 1 s)`."""
    what = f"campaign {campaign_id}: {step} attempt {attempt.number} of {attempt.of} failed ({type(error).__name__}: " \
           f"{error})"
    if attempt.last:
        return f"{what}; no retry left, campaign failed"
    due = (time.time() if now is None else now) + attempt.backoff_s
    clock = time.strftime("%H:%M:%S", time.localtime(due)) + f".{int(due % 1 * 1000):03d}"
    return f"{what}; retry at {clock} (in {attempt.backoff_s:g} s)"
