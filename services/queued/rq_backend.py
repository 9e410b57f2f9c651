"""The RQ backend, the queued design's first and default one: the protocol of services/queued/backend.py over the RQ
modules beside it (enqueue.py, jobs.py, worker.py, liveness.py, retries.py).

RQ lets the admission write state and job in one MULTI/EXEC: it buffers its own writes onto the pipeline we hand it
(Queue.enqueue_many(pipeline=...), enqueue.py), so a crash can leave neither a campaign without its job nor a job
without its campaign; the same holds for automation, enqueued in the transaction that records generation's outcome.
"""

from __future__ import annotations

from collections.abc import Callable

from redis import Redis
from rq import Queue

from services.campaign.settings import Settings
from services.queued.attempts import Chain
from services.queued.enqueue import JobPlanner, campaign_queue
from services.queued.jobs import rq_chaining

__all__ = ["RQ", "RQBackend"]


class RQBackend:
    name = "rq"

    def admission(self, settings: Settings, redis_version: tuple[int, int, int]) -> JobPlanner:
        return JobPlanner(campaign_queue(settings), settings, redis_version)

    def chaining(self, settings: Settings, redis: Redis) -> Chain:
        return rq_chaining(settings, redis)

    def backlog_key(self, settings: Settings) -> str:
        return f"{Queue.redis_queue_namespace_prefix}{settings.queue_name}"  # Queue.key, without a connection

    def run_worker(self, settings: Settings, name: str | None, burst: bool,
                   on_ready: Callable[[], None] | None = None) -> int:
        from services.queued.worker import run_rq_worker  # the entry point's own module (backend.py says why)

        return run_rq_worker(settings, name, burst, on_ready)


RQ = RQBackend()
