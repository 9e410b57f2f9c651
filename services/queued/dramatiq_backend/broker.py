"""The Dramatiq broker of the queued design on Dramatiq: its configuration for this job, and the two actors.

Configured as a careful engineer would for campaigns on Redis (each choice read in Dramatiq 2.2's sources):
- acknowledgement after the actor returned: Dramatiq's Redis broker always works that way. A fetch moves the message
  id from the queue to this worker's ack set (dispatch.lua:154-172), and the ack, sent once the message was
  processed, removes it (dispatch.lua:191-196; dramatiq/worker.py:400-452);
- what stands for a visibility timeout is a heartbeat: every call of the broker's script records the calling
  process's heartbeat (dispatch.lua:58), and a worker's consumer threads call it at least every worker_timeout while
  it runs, whatever its job does (its delay-queue consumer keeps fetching: dramatiq/worker.py:296-320). Maintenance,
  run by a random fraction of the script's calls, puts back on their queues the unacknowledged messages of every
  process silent for heartbeat_timeout (dispatch.lua:110-141). Dramatiq's defaults (60 s, one call in a thousand)
  would leave a killed worker's job for minutes; here a worker silent for HEARTBEAT_TIMEOUT_MS is dead, and one call
  in MAINTENANCE_CHANCE_PER_MILLION/1e6 looks, so its job runs again a few seconds after that;
- its own retry, on time: an actor raises `dramatiq.Retry(delay=...)` with the settings' backoff (the Retries
  middleware counts it against max_retries and re-enqueues it with that delay, dramatiq/middleware/retries.py:
  108-148, and logs it at INFO only, without a traceback: dramatiq/worker.py:571-586); a worker's delay-queue
  consumer holds the delayed message until its time and moves it to the queue's tail (dramatiq/worker.py:337-355),
  where the queue's consumer fetches it: each looks at least every worker_timeout, so a retry starts up to about two
  of them late;
- the pipeline (`pipeline([generate, automate])`): the Pipelines middleware enqueues automation only after generation
  returned without error, before the ack (dramatiq/middleware/pipelines.py:41-58);
- a Redis outage loses no message and stops no worker thread: outages.py says what Dramatiq's broker does not survive
  and what is added;
- JSON on the wire (Dramatiq's default encoder), no result backend; the TimeLimit middleware ends an actor that runs
  longer than JOB_TIMEOUT_S, as RQ's death penalty does.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import dramatiq
from dramatiq.brokers.redis import RedisBroker
from dramatiq.middleware import (
    AgeLimit,
    Callbacks,
    CurrentMessage,
    ShutdownNotifications,
    SkipMessage,
    TimeLimit,
)
from redis import Redis

from services.campaign.settings import Settings
from services.campaign.work import ProviderError
from services.queued.attempts import (
    JOB_TIMEOUT_S,
    Attempt,
    Step,
    StepContext,
    automation_attempt,
    generation_attempt,
    run_attempt,
)
from services.queued.dramatiq_backend.outages import (
    REDIS_AWAY,
    OutageSafePipelines,
    OutageSafeRedisBroker,
    OutageSafeRetries,
    redis_away,
)

__all__ = ["AUTOMATE", "GENERATE", "HEARTBEAT_TIMEOUT_MS", "MAINTENANCE_CHANCE_PER_MILLION", "NAMESPACE",
           "WORKER_TIMEOUT_MS", "dramatiq_broker", "redis_broker"]

log = logging.getLogger("offpath.jobs")

GENERATE = "generate"
AUTOMATE = "automate"
NAMESPACE = "dramatiq"  # Dramatiq's default key prefix (dramatiq/brokers/redis.py:95)
# How long an idle worker's consumers sleep at most between two looks at their queues (Dramatiq's default: 1 s,
# dramatiq/worker.py:55): it bounds how late an idle worker takes a new message and how late a delayed retry moves
# to its queue; each look is one call of the broker's script.
WORKER_TIMEOUT_MS = 100
HEARTBEAT_TIMEOUT_MS = 10_000
MAINTENANCE_CHANCE_PER_MILLION = 50_000


def dramatiq_broker(settings: Settings, context: StepContext | None = None) -> RedisBroker:
    """The broker with the two actors. A worker gives the context its actors run with; the service gives none."""
    broker = redis_broker(settings)
    for name, step in ((GENERATE, generation_attempt), (AUTOMATE, automation_attempt)):
        # `throws`: the last attempt's ProviderError fails the message without another retry, logged at INFO
        # without a traceback (dramatiq/middleware/retries.py:101-106, dramatiq/worker.py:577-582); the one line
        # that says so is ours (services/queued/attempts.py).
        # A Redis away is `thrown` too, so Dramatiq logs it in one line; the message then goes back to its queue
        # (outages.py).
        dramatiq.actor(broker=broker, actor_name=name, queue_name=settings.queue_name, max_retries=settings.retries,
                       throws=(ProviderError, *REDIS_AWAY))(_actor_body(settings, context, step))
    return broker


def redis_broker(settings: Settings) -> RedisBroker:
    """A Redis broker configured for this job (the module docstring says why), without actors; also how
    benchmarks/drain_cost.py configures Dramatiq's own floor."""
    client = Redis.from_url(settings.redis_url, socket_timeout=settings.redis_timeout_s,
                            socket_connect_timeout=settings.redis_timeout_s)
    return OutageSafeRedisBroker(
        client=client,
        namespace=NAMESPACE,
        heartbeat_timeout=HEARTBEAT_TIMEOUT_MS,
        maintenance_chance=MAINTENANCE_CHANCE_PER_MILLION,
        # Dramatiq's default middleware (dramatiq/middleware/__init__.py:56-63), with retries as the settings say, its
        # pipeline and retries sending a message back to its queue when their enqueue meets Redis away (outages.py), and
        # CurrentMessage, which tells an actor which delivery it runs (dramatiq/middleware/current_message.py).
        middleware=[AgeLimit(), TimeLimit(time_limit=JOB_TIMEOUT_S * 1000), ShutdownNotifications(), Callbacks(),
                    OutageSafePipelines(), OutageSafeRetries(max_retries=settings.retries), CurrentMessage()],
    )


def _actor_body(settings: Settings, context: StepContext | None, step: Step) -> Callable[[str], None]:
    def run(campaign_id: str) -> None:
        message = CurrentMessage.get_current_message()
        if context is None or message is None:
            raise RuntimeError("the campaign actors run in an offpath worker (python -m services.queued.worker with "
                               "OFFPATH_QUEUE_BACKEND=dramatiq), which gives them their context; not `dramatiq`")
        retries = int(message.options.get("retries", 0))
        attempt = Attempt(number=retries + 1, of=settings.retries + 1, backoff_s=settings.backoff_s(retries + 1))
        try:
            run_attempt(context, step, campaign_id, attempt)
        except Exception as error:
            if attempt.last or redis_away(error) is not None:
                raise  # a Redis away: the message goes back to its queue once Redis answers (outages.py)
            if not isinstance(error, ProviderError):
                # Dramatiq does not log an actor's Retry (dramatiq/worker.py:583): the traceback is kept here.
                log.error("campaign %s: %s failed unexpectedly; retrying", campaign_id, step.__name__, exc_info=True)
            raise dramatiq.Retry(f"{type(error).__name__}: {error}", delay=int(attempt.backoff_s * 1000)) from error
        if context.superseded:
            # Another copy of this message owns the step and records it (the fence, services/campaign/steps.py): this
            # one is acknowledged without continuing the pipeline (SkipMessage: dramatiq/worker.py:575-579, no
            # after_process_message, so Pipelines enqueues nothing), or a second automation could run before the
            # owner's outcome exists.
            raise SkipMessage(f"campaign {campaign_id}: superseded by another copy of this message")

    run.__name__ = step.__name__
    return run
