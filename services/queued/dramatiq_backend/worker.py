"""One Dramatiq worker process: one worker thread, so one job at a time, in the worker's own process; what a
SimpleWorker is to RQ. Beside it run Dramatiq's consumer threads, one for the queue and one for its delay queue, which
fetch, hold delayed retries and acknowledge (dramatiq/worker.py:212-232).

This is the body of a process of Dramatiq's own CLI (dramatiq/cli.py:441-478: process_boot, Worker.start, wait,
Worker.stop), without its master and the forks it manages: offpath starts one worker process per worker, as for RQ
and Celery. Dramatiq's default prefetch for one thread, two messages (dramatiq/worker.py:87-90), is kept: the consumer
fetches the next message while the thread works, where a prefetch of one would leave the thread idle up to
worker_timeout after each job (the consumer sleeps while it holds its limit, dramatiq/brokers/redis.py:357-371).
SIGTERM stops it warm: the job in progress finishes, and the messages held in memory go back to the queue
(dramatiq/worker.py:136-178).
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections.abc import Callable
from types import FrameType
from typing import Any

from dramatiq import Middleware, Worker
from dramatiq.brokers.redis import RedisBroker

from services.campaign.settings import Settings
from services.queued.attempts import StepContext, no_chain
from services.queued.dramatiq_backend.broker import WORKER_TIMEOUT_MS, dramatiq_broker
from services.queued.lifetime import ParentWatch, announce_ready

__all__ = ["BURST_IDLE_S", "run_dramatiq_worker", "serve"]

log = logging.getLogger("offpath.worker")

BURST_IDLE_S = 0.5
# A warm stop waits this long for the job in progress (Dramatiq's CLI: 600 s, dramatiq/cli.py:247-252).
SHUTDOWN_TIMEOUT_MS = 600_000


def run_dramatiq_worker(settings: Settings, name: str | None, burst: bool,
                        on_ready: Callable[[], None] | None = None) -> int:
    """The Dramatiq backend's worker; `on_ready` runs once it consumes, after its ready line."""
    context = StepContext(settings, lambda settings, redis: no_chain)  # the pipeline enqueues automation (broker.py)

    def ready() -> None:
        announce_ready("dramatiq", name)
        if on_ready is not None:
            on_ready()

    try:
        return serve(dramatiq_broker(settings, context), {settings.queue_name}, burst, ready)
    finally:
        context.close()


def serve(broker: RedisBroker, queues: set[str], burst: bool, on_ready: Callable[[], None] | None = None) -> int:
    """Run a one-thread worker on `broker`'s `queues` in this process until SIGTERM or SIGINT (or, in burst mode,
    until no message is left); its exit code. Also what benchmarks/drain_cost.py runs Dramatiq's own floor with."""
    stopping = threading.Event()

    def stop(signum: int, frame: FrameType | None) -> None:
        stopping.set()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    ParentWatch().start()
    activity = _Activity()
    broker.add_middleware(activity)
    broker.emit_after("process_boot")  # starts the TimeLimit middleware's watch, as Dramatiq's CLI does
    worker = Worker(broker, queues=queues, worker_threads=1, worker_timeout=WORKER_TIMEOUT_MS)
    worker.start()
    broker.client.ping()  # the consumers start on their own threads: say ready once Redis answered this process
    if on_ready is not None:
        on_ready()
    activity.touch()
    try:
        while not stopping.wait(BURST_IDLE_S / 5):
            if burst and activity.idle_for() > BURST_IDLE_S and not _holding(worker):
                break
    finally:
        worker.stop(timeout=SHUTDOWN_TIMEOUT_MS)
        broker.close()
    return 0


def _holding(worker: Worker) -> bool:
    """Whether the worker holds a message: one to run, or a delayed retry waiting for its time."""
    return bool(worker.work_queue.unfinished_tasks
                or any(consumer.delay_queue.unfinished_tasks for consumer in worker.consumers.values()))


class _Activity(Middleware):
    """When the last message was processed."""

    def __init__(self) -> None:
        self.last = time.monotonic()

    def touch(self) -> None:
        self.last = time.monotonic()

    def idle_for(self) -> float:
        return time.monotonic() - self.last

    def after_process_message(self, broker: Any, message: Any, *, result: Any = None, exception: Any = None) -> None:
        self.touch()

    def after_skip_message(self, broker: Any, message: Any) -> None:
        self.touch()
