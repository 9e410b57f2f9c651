"""One Celery worker process: the solo pool, which runs each task in the worker's own process and thread, one at a
time (celery/concurrency/solo.py), no fork per task; what a SimpleWorker is to RQ.

Celery's own worker program (celery.apps.worker.Worker) runs it, with its own signal handling: SIGTERM is a warm
shutdown, the task in progress finishes first (celery/apps/worker.py:324-363, :491-497); on the way out kombu puts
back the messages this worker held unacknowledged (an ETA retry waiting on its timer; kombu/transport/redis.py:467,
493-497). Gossip, mingle and the worker heartbeat are off: they are for remote control and monitoring, which this
deployment does not use, and each costs Redis traffic per worker.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from collections.abc import Callable
from typing import Any

from celery import Celery, signals
from celery.worker import state

from services.campaign.settings import Settings
from services.queued.attempts import StepContext, no_chain
from services.queued.celery_backend.application import celery_app
from services.queued.celery_backend.holding import HOLDER_OPTION, HolderWatch, WorkerTransport
from services.queued.lifetime import ParentWatch, announce_ready

__all__ = ["BURST_IDLE_S", "run_celery_worker"]

log = logging.getLogger("offpath.worker")

# Burst mode: exit once no task has run for this long and none is waiting on the timer.
BURST_IDLE_S = 0.5


def run_celery_worker(settings: Settings, name: str | None, burst: bool,
                      on_ready: Callable[[], None] | None = None) -> int:
    """The Celery backend's worker, with offpath's holder watch (holding.py); `on_ready` runs once it consumes, after
    its ready line."""
    context = StepContext(settings, lambda settings, redis: no_chain)  # the chain publishes automation (application.py)
    holder = name or f"worker-{os.getpid()}"
    app = celery_app(settings, context, transport=f"{WorkerTransport.__module__}:{WorkerTransport.__name__}")
    app.conf.broker_transport_options = {**app.conf.broker_transport_options, HOLDER_OPTION: holder}
    stopping = threading.Event()
    watch = HolderWatch(settings.redis_url, holder, settings.queue_name, app.conf.broker_transport_options, stopping)
    watch.register()
    watch.start()

    def ready() -> None:
        announce_ready("celery", name)
        if on_ready is not None:
            on_ready()

    try:
        return serve(app, name, burst, ready)
    finally:
        stopping.set()
        context.close()


def serve(app: Celery, name: str | None, burst: bool, on_ready: Callable[[], None] | None = None) -> int:
    """Run `app`'s worker in this process until a warm shutdown (or, in burst mode, until no task is left); its exit
    code. Also what benchmarks/drain_cost.py runs Celery's own floor with: same worker, same shutdown."""
    activity = _Activity()
    signals.task_postrun.connect(activity.touch, weak=False)

    def ready(**_: Any) -> None:
        if on_ready is not None:
            on_ready()
        if burst:  # the idle clock starts once the worker consumes, not while it connects
            activity.touch()
            threading.Thread(target=activity.stop_when_idle, name="burst", daemon=True).start()

    signals.worker_ready.connect(ready, weak=False)
    ParentWatch().start()
    worker = app.Worker(
        hostname=name, pool="solo", concurrency=1, loglevel=logging.getLogger().getEffectiveLevel(),
        without_gossip=True, without_mingle=True, without_heartbeat=True, quiet=True,
    )
    worker.start()
    return int(worker.exitcode or 0)


class _Activity:
    """When the last task ended; in burst mode, the stop once nothing has happened for BURST_IDLE_S."""

    def __init__(self) -> None:
        self.last = time.monotonic()

    def touch(self, **_: Any) -> None:
        self.last = time.monotonic()

    def stop_when_idle(self) -> None:
        while True:
            time.sleep(BURST_IDLE_S / 5)
            # Reserved: received, not finished (the task in progress included); scheduled: an ETA retry on the timer.
            busy = state.reserved_requests or state.scheduled_requests or state.active_requests
            if not busy and time.monotonic() - self.last > BURST_IDLE_S:
                os.kill(os.getpid(), signal.SIGTERM)  # the warm shutdown SIGTERM always is
                return
