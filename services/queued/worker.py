"""Entry point of one worker process, on the deployment's queue backend: `python -m services.queued.worker`; and the
RQ backend's worker.

Every backend's worker runs one job at a time in its own process, writes `offpath worker ready` on stderr once it
consumes (services/queued/lifetime.py), stops warm on SIGTERM and ends with its parent. RQ's:

A SimpleWorker runs jobs in its own process instead of forking a work horse per job: the jobs are
short and mostly wait on providers, and a fork per job costs more than the work (measured in the
foundation issue's note). Isolation comes from running several worker processes instead.

The process owns what its jobs share (a WorkerContext: settings, profile, event loop, Redis connection), built
once at start from the settings main() reads and closed at exit; each OffpathWorker hands it to the jobs
it performs.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, nullcontext
from types import FrameType

from redis import Redis
from redis.backoff import NoBackoff
from redis.exceptions import RedisError
from redis.retry import Retry
from rq import Queue, SimpleWorker
from rq.exceptions import StopRequested
from rq.executions import Execution
from rq.job import Job
from rq.job_lifecycle import call_exception_handlers
from rq.serializers import JSONSerializer
from rq.worker import WorkerStatus

from foundation.errors import EXIT_ERROR, ConfigurationError
from services.campaign.settings import Settings
from services.campaign.work import ProviderError
from services.queued.backend import queue_backend
from services.queued.enqueue import campaign_queue
from services.queued.halting import halt_at
from services.queued.jobs import WorkerContext, performing_with
from services.queued.lifetime import ParentWatch, announce_ready
from services.queued.liveness import AbandonmentWatch, Pulse
from services.queued.retries import OffpathJob

log = logging.getLogger("offpath.worker")

# After losing Redis, how long a worker waits for it to answer again before it gives up and exits
# (its supervisor decides what next): long enough for a Redis restart (the chaos experiment's
# takes about 2 s), short enough that a worker whose Redis is gone for good does not linger.
REDIS_PATIENCE_S = 60.0


class OffpathWorker(SimpleWorker):
    """RQ's SimpleWorker, plus: the jobs it performs run with the process's WorkerContext, a stop request
    outlives the worker that received it, and a warm shutdown does not wait on a Redis that is gone."""

    def __init__(self, *args, context: WorkerContext | None = None, stopping: threading.Event | None = None,
                 pulse: Pulse | None = None, on_ready: Callable[[], None] | None = None, **kwargs) -> None:
        # Keyword arguments with defaults keep RQ's constructor contract (rq/worker/base.py:314 builds
        # workers by class to describe them); such a worker performs no job, so needs no context.
        super().__init__(*args, **kwargs)
        self.context = context
        # Shared by every worker main() starts in this process: main() must not start a fresh one after a stop.
        self.stopping = stopping if stopping is not None else threading.Event()
        self.parent_pid = os.getppid()
        # Proves, while a job runs, that this worker is alive (services/queued/liveness.py).
        self.pulse = pulse
        self.on_ready = on_ready

    def bootstrap(self, *args, **kwargs) -> None:  # type: ignore[no-untyped-def]
        # Registered, subscribed and listening (rq/worker/base.py:1006-1013); the dequeue loop follows.
        super().bootstrap(*args, **kwargs)
        if self.pulse is not None:
            self.pulse.named(self.name)  # before the first job: the watch sees this worker's pulse from then on
        if self.on_ready is not None:
            self.on_ready()

    def unsubscribe(self) -> None:
        # RQ's teardown stops its pub/sub thread with `pubsub_thread.stop()` and then joins it for at most 1 s
        # (rq/worker/base.py:1134-1140). redis-py 8's stop() joins the thread itself, without a bound
        # (redis/client.py:1943-1956), and the thread RQ started with sleep_time=60 (rq/worker/base.py:1108-1110) waits
        # up to 60 s for a subscription once unsubscribed (redis/client.py:1734-1737): measured, an orphaned worker
        # (its parent gone) hung in its teardown for a minute. Same steps, the wait bounded as RQ meant it.
        if self.pubsub_thread is None:
            return
        self.pubsub.unsubscribe()
        try:
            self.pubsub_thread.stop(timeout=1)
        except TypeError:  # redis-py before 8: stop() only clears the flag
            self.pubsub_thread.stop()
            self.pubsub_thread.join(timeout=1)
        self.pubsub.close()

    def handle_exception(self, job: Job, *exc_info) -> None:  # type: ignore[no-untyped-def]
        # RQ logs every exception a job raised with its traceback (rq/worker/base.py:1347-1354). A provider's failure
        # is expected, and the job logged it as one line (services/queued/attempts.py); anything else keeps RQ's.
        if exc_info and isinstance(exc_info[1], ProviderError):
            call_exception_handlers(self._exc_handlers, job, *exc_info)
            return
        super().handle_exception(job, *exc_info)

    def heartbeat(self, timeout: int | None = None, pipeline=None) -> None:  # type: ignore[no-untyped-def]
        # RQ's dequeue loop retries a lost Redis forever, heartbeat first (rq/worker/base.py:1160-1162, the
        # retry at :1199-1208), and never looks at a stop request there: a worker asked to stop mid-job (it
        # finishes the job first) whose Redis then went away with its harness kept retrying, orphaned. While
        # idle, a stop request or a vanished parent ends the loop instead; a busy worker's heartbeats (before
        # its job runs) are left alone, so a dequeued job is never dropped on the floor.
        if self.get_state() == WorkerStatus.IDLE and (self.stopping.is_set() or os.getppid() != self.parent_pid):
            if not self.stopping.is_set():
                log.warning("the process that started this worker (pid %d) is gone; stopping", self.parent_pid)
                self.stopping.set()  # a stop like SIGTERM's: no fresh worker after this one (_serve)
            raise StopRequested()
        super().heartbeat(timeout, pipeline)

    def dequeue_job_and_maintain_ttl(self, timeout: int | None, max_idle_time: int | None = None
                                     ) -> tuple[Job, Queue] | None:
        dequeued = super().dequeue_job_and_maintain_ttl(timeout, max_idle_time)
        if dequeued is not None:
            halt_at("dequeued")  # in RQ's intermediate queue only (services/queued/halting.py: a test's hook)
        return dequeued

    def prepare_execution(self, job: Job) -> Execution:
        execution = super().prepare_execution(job)
        halt_at("prepared")
        return execution

    def prepare_job_execution(self, job: Job, remove_from_intermediate_queue: bool = False) -> None:
        super().prepare_job_execution(job, remove_from_intermediate_queue)
        halt_at("started")

    def handle_job_success(self, job: Job, queue: Queue, started_job_registry, execution: Execution  # type: ignore[no-untyped-def]
                           ) -> None:
        if self.context is not None and self.context.superseded:
            self._let_go(job, execution)
            return
        super().handle_job_success(job, queue, started_job_registry, execution)

    def _let_go(self, job: Job, execution: Execution) -> None:
        # The step's outcome was refused: this execution was declared abandoned and the job requeued (or already run
        # again) by the abandonment watch, which owns RQ's record of the job from then on. Marking it finished here would
        # overwrite the status of the delivery now queued or running. Only this execution's own keys are removed.
        log.warning("job %s: its execution %s was taken from this worker; RQ's record of the job is left to the "
                    "delivery that runs it now", job.id, execution.id)
        if self.pulse is not None:
            try:
                self.pulse.taken(execution)
            except RedisError as exc:
                log.warning("could not record the false abandonment of job %s: %s", job.id, exc)
        try:
            with self.connection.pipeline() as pipe:
                self.cleanup_execution(job, pipeline=pipe, execution=execution)
                pipe.execute()
        except RedisError as exc:  # not raised into RQ: its failure path would retry the job a third time
            log.warning("could not clean up the taken execution of job %s: %s", job.id, exc)

    def perform_job(self, job: Job, queue: Queue, execution: Execution) -> bool:
        if self.context is None:
            return super().perform_job(job, queue, execution)  # the job itself says it has no context
        with performing_with(self.context), self._pulse(queue, execution, job):
            return super().perform_job(job, queue, execution)

    def _pulse(self, queue: Queue, execution: Execution, job: Job) -> AbstractContextManager[None]:
        if self.pulse is None:
            return nullcontext()
        return self.pulse.beating(queue, execution, self.get_heartbeat_ttl(job))

    def request_stop(self, signum: int, frame: FrameType | None) -> None:
        self.stopping.set()
        try:
            super().request_stop(signum, frame)
        except RedisError as exc:
            # Busy, so RQ records the request in Redis and waits for the job; with Redis gone the
            # job cannot finish either. Stop now: RQ's recovery retries the job once Redis is back.
            log.warning("stop requested while Redis is unreachable (%s); stopping without finishing the job", exc)
            raise StopRequested from None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Run one offpath worker on the deployment's queue backend "
                                                 "(OFFPATH_QUEUE_BACKEND: rq, celery or dramatiq; default rq).")
    parser.add_argument("--name", default=None, help="worker name (default: the library's)")
    parser.add_argument("--burst", action="store_true", help="exit when no job is left")
    parser.add_argument("--log-level", default=os.environ.get("OFFPATH_LOG_LEVEL", "WARNING"))
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level, format="%(asctime)s worker %(process)d %(levelname)s %(message)s")
    try:
        settings = Settings.from_env()
        return queue_backend(settings.queue_backend).run_worker(settings, args.name, args.burst)
    except ConfigurationError as exc:  # bad input (a setting, the profile): one line, not a traceback
        print(f"services.queued.worker: {exc}", file=sys.stderr)
        return EXIT_ERROR


def run_rq_worker(settings: Settings, name: str | None, burst: bool, on_ready: Callable[[], None] | None = None) -> int:
    """The RQ backend's worker (services/queued/rq_backend.py); `on_ready` runs once it consumes, after its ready
    line."""
    context = WorkerContext(settings)  # loads the profile: a wrong one fails at start, not on the first job
    # The bound on a stop once the parent is gone (lifetime.py). It does not ask for the stop itself: the kernel's
    # parent-death SIGTERM does, and so does the worker on seeing its parent gone (OffpathWorker.heartbeat); a second
    # SIGTERM would turn RQ's warm stop into a cold one (rq/worker/base.py:550-551, 573-598).
    ParentWatch(ask=False).start()
    try:
        return _serve(settings, context, name, burst, logging.getLevelName(logging.getLogger().getEffectiveLevel()),
                      on_ready)
    finally:
        context.close()


def _serve(settings: Settings, context: WorkerContext, name: str | None, burst: bool, log_level: str,
           on_ready: Callable[[], None] | None = None) -> int:
    """Run workers one after another, a fresh one after each loss of Redis, until one stops."""
    parent = os.getppid()
    stopping = threading.Event()
    names = _names(name)
    pause_s = 0.5
    # Every worker process runs a watch; one at a time holds the queue's lock and acts (liveness.py). It outlives the
    # fresh workers started below, and stops with the process.
    watch = AbandonmentWatch(settings.redis_url, settings.queue_name, stopping)
    watch.start()
    pulse = Pulse(settings.redis_url)
    pulse.start()
    announced = threading.Event()  # once per process, not per fresh worker

    def ready() -> None:
        if not announced.is_set():
            announced.set()
            announce_ready("rq", name)
            if on_ready is not None:
                on_ready()

    while True:
        try:
            if _work(settings, context, stopping, pulse, next(names), burst, log_level, ready):
                return 0
            # RQ's work loop quits, and returns as if done, on a Redis timeout or any error it does not handle
            # (rq/worker/base.py:679-695): measured with Redis at maxmemory, where a refused write of RQ's own
            # bookkeeping ended a worker process for good. That is a loss like the one below.
            lost = "the worker quit on an error (logged above)"
        except RedisError as exc:
            # RQ quits when Redis goes away in the middle of a job (measured: every worker of a
            # chaos run died on a Redis crash and nothing drained after the restart). Like a
            # process manager, start a fresh worker once Redis answers; the abandonment watch retries
            # the job the old one held. Not after a stop request, nor once the parent is gone:
            # that kept a worker alive, orphaned, after its harness was killed (it took the
            # kernel's parent-death SIGTERM as a warm shutdown, then Redis went down with the
            # harness and the worker's teardown failed).
            if stopping.is_set():
                log.warning("Redis connection lost (%s) while stopping; stopped", exc)
                return 0
            lost = f"Redis connection lost ({exc})"
        signal.signal(signal.SIGTERM, signal.SIG_DFL)  # a stop while waiting ends the process
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        log.warning("%s; starting a fresh worker in %.1f s, once Redis answers", lost, pause_s)
        reason = _wait_for_redis(settings.redis_url, parent, pause_s, REDIS_PATIENCE_S)
        if reason is not None:
            log.error("%s; this worker stops", reason)
            return 1
        pause_s = min(pause_s * 2, 5.0)


def _names(name: str | None) -> Iterator[str | None]:
    """The name of each fresh worker: RQ refuses a name that a live-looking worker registered, and a
    worker that lost Redis could not register its death."""
    yield name
    generation = 1
    while True:
        yield None if name is None else f"{name}-{generation}"
        generation += 1


def _wait_for_redis(url: str, parent: int, pause_s: float, patience_s: float) -> str | None:
    """Pause, then block until Redis answers (None); or say why not to wait any longer."""
    client = Redis.from_url(url, socket_timeout=1, socket_connect_timeout=1)
    deadline = time.monotonic() + patience_s
    try:
        while True:
            time.sleep(pause_s)
            if os.getppid() != parent:
                return f"the process that started this worker (pid {parent}) is gone"
            try:
                client.ping()
                return None
            except RedisError:
                pass
            if time.monotonic() > deadline:
                return f"Redis at {url} did not answer for {patience_s:g} s"
            pause_s = min(pause_s * 2, 5.0)
    finally:
        client.close()


def _work(settings: Settings, context: WorkerContext, stopping: threading.Event, pulse: Pulse, name: str | None,
          burst: bool, log_level: str, ready: Callable[[], None]) -> bool:
    """Run one RQ worker until it returns; True when that was meant (a stop request, or burst mode's empty queue)."""
    # One retry, at once, not redis-py 8's ten with backoff (up to ~5 s a command: redis/_defaults.py:37-39): it covers
    # a pooled connection that a Redis restart broke, and RQ's dequeue loop and _serve handle a Redis that stays away;
    # a teardown against a Redis that died with the harness then fails in milliseconds instead of retrying every write.
    connection = Redis.from_url(settings.redis_url, retry=Retry(NoBackoff(), 1))
    queue = campaign_queue(settings, connection)
    # The job of a crashed worker is recovered in seconds by the abandonment watch (liveness.py), and retries are
    # moved to the queue on time by the same watch (retries.py); RQ's own registry maintenance stays as the backstop.
    # Maintenance runs only between jobs or when the blocking dequeue times out (worker_ttl - 15 s); with RQ's
    # defaults (10 min, 405 s) it waited minutes. Here: maintenance every 5 s, dequeue timeout 5 s. (No campaign waits
    # for maintenance on the way from generation to automation: generation enqueues automation itself, enqueue.py.)
    worker = OffpathWorker(
        [queue], connection=connection, serializer=JSONSerializer, job_class=OffpathJob, name=name,
        job_monitoring_interval=5, maintenance_interval=5, worker_ttl=20,
        context=context, stopping=stopping, pulse=pulse, on_ready=ready,
    )
    # No RQ scheduler: nothing here uses RQ's scheduled registry (a retry with an interval is filed on offpath's own set
    # and moved by the watch, retries.py; no job is enqueued for later). RQ runs its scheduler as a forked child of the
    # worker (rq/scheduler.py:332-339), which the kernel's parent-death signal does not reach and which holds copies of
    # the worker's sockets: a SIGKILLed worker's pulse connection stayed open in it (so its death went unseen,
    # liveness.py), and the child could outlive a killed harness.
    worker.work(burst=burst, with_scheduler=False, logging_level=log_level)
    return burst or stopping.is_set() or worker._stop_requested


if __name__ == "__main__":
    sys.exit(main())
