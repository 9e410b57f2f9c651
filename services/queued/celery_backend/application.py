"""The Celery application of the queued design on Celery: its configuration for this job, and the two tasks.

Configured as a careful engineer would for campaigns on Redis (each choice read in Celery 5.7 / kombu 5.7's sources):
- late acknowledgement (`task_acks_late`): a message is acknowledged after its task returned, retried or failed
  (celery/worker/request.py:628-629, 635-636, 751-764), so a worker that dies mid-task leaves it unacknowledged;
- a visibility timeout: kombu's Redis transport keeps each delivered message in its `unacked` hash, scored in
  `unacked_index` (kombu/transport/redis.py:476-491), and puts back on the queue whatever stayed unacknowledged longer
  than `visibility_timeout` (restore_visible, :523-549), swept every `unacked_restore_interval` seconds in the worker's
  event loop (:754-770). It is not a heartbeat: a message a live worker holds longer than the timeout is delivered
  again while it still runs. So it is set above the longest a healthy worker can hold one (visibility_timeout_s): the
  backstop for a frozen worker's job. A killed worker's job runs again within seconds instead: offpath's workers
  record which of them holds each unacknowledged message, and put back on the queue the messages of a worker whose
  connection left Redis (holding.py);
- one message at a time (`worker_prefetch_multiplier` 1 with the solo pool's concurrency 1): with late acks the
  worker reserves only the task it runs (an ETA retry raises the count while it waits, celery/worker/strategy.py:210);
- its own retry (`Task.retry(countdown=...)`, celery/app/task.py:816-962): a copy of the message, same task id, the
  chain carried along (Context.as_execution_options, :191-212), due after the settings' backoff; the worker holds it
  on its timer and runs it at its ETA (celery/worker/strategy.py:210-214), to the millisecond when it is idle;
- the chain (`generate.si(id) | automate.si(id)`, the canvas): the worker publishes automation only after generation
  returned, before acknowledging it (celery/app/trace.py:405-451, called at :599-603 in the success branch only);
- JSON on the wire (`task_serializer`, `accept_content`), no result backend (the campaign's state is the result), no
  remote control, events, gossip or mingle: what this job does not use costs each worker Redis traffic.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from celery import Celery, Task
from celery.exceptions import Ignore, Reject
from kombu.exceptions import OperationalError

from services.campaign.settings import Settings
from services.campaign.work import ProviderError
from services.queued.attempts import (
    JOB_TIMEOUT_S,
    Attempt,
    Step,
    StepContext,
    automation_attempt,
    generation_attempt,
    redis_away,
    run_attempt,
)

__all__ = ["AUTOMATE", "GENERATE", "RESTORE_INTERVAL_S", "celery_app", "configure", "visibility_timeout_s"]

log = logging.getLogger("offpath.jobs")

GENERATE = "offpath.generate"
AUTOMATE = "offpath.automate"
# How often each idle worker puts back messages unacknowledged past the visibility timeout (kombu's default sweeps
# every 10 s, and scans Redis only on every 10th sweep, kombu/transport/redis.py:1060-1068: 100 s).
RESTORE_INTERVAL_S = 5
_MARGIN_S = 10
PUBLISH_PATIENCE_S = 120
_PUBLISH_RETRY_S = 0.5


def visibility_timeout_s(settings: Settings) -> int:
    """The longest a healthy worker can hold a message unacknowledged, plus a margin: a retry waits its backoff on
    the worker's timer, then, the solo pool running one task at a time, for the task in progress, then runs."""
    return int(max(settings.retry_backoff_s, default=0) + 2 * JOB_TIMEOUT_S + _MARGIN_S)


def celery_app(settings: Settings, context: StepContext | None = None, transport: str | None = None) -> Celery:
    """The application with the two tasks. A worker gives the context its tasks run with; the service gives none,
    and the transport its admissions publish through (services/queued/celery_backend/admission.py)."""
    app = configure(Celery("offpath", set_as_current=False), settings, transport)
    for name, step in ((GENERATE, generation_attempt), (AUTOMATE, automation_attempt)):
        # `throws`: a provider's failure is expected, so the last one is logged without a traceback
        # (celery/app/trace.py:138-148); the one line that says so is ours (services/queued/attempts.py). Not
        # `shared`: a shared task is added to every application made later in the process (celery/app/base.py:
        # 685-692), where the first one made would keep the name, and its context.
        app.task(name=name, bind=True, throws=(ProviderError,), max_retries=settings.retries, shared=False)(
            _task_body(settings, context, step))
    return app


def configure(app: Celery, settings: Settings, transport: str | None = None) -> Celery:
    """`app`, configured for this job (the module docstring says why each setting); also how
    benchmarks/drain_cost.py configures Celery's own floor."""
    app.conf.update(
        broker_url=settings.redis_url,
        broker_transport=transport,
        broker_transport_options={
            "visibility_timeout": visibility_timeout_s(settings),
            "unacked_restore_interval": RESTORE_INTERVAL_S,
            "unacked_restore_throttle": 1,
            # A publish or an acknowledgement on a connection that went half-open would wait forever without them.
            "socket_timeout": settings.redis_timeout_s,
            "socket_connect_timeout": settings.redis_timeout_s,
        },
        broker_connection_retry_on_startup=True,
        task_default_queue=settings.queue_name,
        task_serializer="json",
        accept_content=["json"],
        # A publish from a worker (the chain's next task, a retry) waits for Redis through an outage instead of giving
        # up after Celery's default 3 tries in 0.6 s, which left a campaign with its content and no automation (the
        # chaos run of 2026-12-07, a 2 s Redis crash: "Giving up refused callback publish"): up to PUBLISH_PATIENCE_S.
        task_publish_retry_policy={"max_retries": int(PUBLISH_PATIENCE_S / _PUBLISH_RETRY_S), "interval_start": 0,
                                   "interval_step": _PUBLISH_RETRY_S, "interval_max": _PUBLISH_RETRY_S},
        task_acks_late=True,
        worker_prefetch_multiplier=1,
        task_ignore_result=True,
        worker_enable_remote_control=False,
        worker_send_task_events=False,
        task_send_sent_event=False,
        worker_hijack_root_logger=False,
        worker_redirect_stdouts=False,
        # The solo pool runs a task in the event loop's own thread, so a lost connection is noticed only after it;
        # its acknowledgement is then made again until Redis answers (holding.py) (Celery 6's default).
        worker_cancel_long_running_tasks_on_connection_loss=True,
    )
    return app


def _task_body(settings: Settings, context: StepContext | None, step: Step) -> Callable[[Task, str], None]:
    def run(task: Task, campaign_id: str) -> None:
        if context is None:
            raise RuntimeError("the campaign tasks run in an offpath worker (python -m services.queued.worker with "
                               "OFFPATH_QUEUE_BACKEND=celery), which gives them their context; not `celery worker`")
        retries = task.request.retries
        attempt = Attempt(number=retries + 1, of=settings.retries + 1, backoff_s=settings.backoff_s(retries + 1))
        try:
            run_attempt(context, step, campaign_id, attempt)
        except Exception as error:
            if redis_away(error, also=(OperationalError,)) is not None:
                # Not the step's failure: its store was away. Back to the queue, no attempt counted, once Redis
                # answers (holding.py makes the requeue wait for it).
                log.warning("campaign %s: %s met Redis away (%s); its message goes back to the queue", campaign_id,
                            task.name, error)
                raise Reject(error, requeue=True) from error
            if attempt.last:
                raise
            if not isinstance(error, ProviderError):
                # Celery logs a retry at INFO, without its traceback (celery/app/trace.py:191-215): keep it here.
                log.error("campaign %s: %s failed unexpectedly; retrying", campaign_id, task.name,
                                  exc_info=True)
            try:
                raise task.retry(exc=error, countdown=attempt.backoff_s, max_retries=settings.retries) from error
            except Reject as dropped:
                # Celery drops the message when it cannot publish the retry (celery/app/task.py, retry: Reject with
                # requeue=False); with Redis away, it goes back to the queue instead.
                if redis_away(dropped.reason, also=(OperationalError,)) is None:
                    raise
                raise Reject(dropped.reason, requeue=True) from error
        if context.superseded:
            # Another copy of this message owns the step and records it (the fence, services/campaign/steps.py): this
            # one is acknowledged without continuing the chain (Ignore: celery/app/trace.py:572-576,
            # celery/worker/request.py:704-705), or a second automation could run before the owner's outcome exists.
            raise Ignore()

    run.__name__ = step.__name__
    return run
