"""The RQ backend, the queued design's first and default one: the protocol of services/queued/backend.py over the RQ
modules beside it (enqueue.py, jobs.py, worker.py, liveness.py, retries.py).

RQ lets the admission write state and job in one MULTI/EXEC: it buffers its own writes onto the pipeline we hand it
(Queue.enqueue_many(pipeline=...), enqueue.py), so a crash can leave neither a campaign without its job nor a job
without its campaign; the same holds for automation, enqueued in the transaction that records generation's outcome.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from redis import Redis
from rq import Queue
from rq.utils import parse_composite_key

from foundation.redis_replies import text
from services.campaign.settings import Settings
from services.queued.attempts import Chain
from services.queued.enqueue import JobPlanner, campaign_queue
from services.queued.jobs import rq_chaining
from services.queued.retries import retrying_key

__all__ = ["RQ", "RQBackend"]


class RQBackend:
    name = "rq"

    def admission(self, settings: Settings, redis_version: tuple[int, int, int]) -> JobPlanner:
        return JobPlanner(campaign_queue(settings), settings, redis_version)

    def chaining(self, settings: Settings, redis: Redis) -> Chain:
        return rq_chaining(settings, redis)

    def backlog_key(self, settings: Settings) -> str:
        return f"{Queue.redis_queue_namespace_prefix}{settings.queue_name}"  # Queue.key, without a connection

    def job_places(self, redis: Redis, queue_name: str, job_ids: set[str]) -> dict[str, list[str]]:
        """RQ's queue and intermediate queue, its started, deferred, ready and scheduled registries, and offpath's
        retrying set (services/queued/retries.py)."""
        queue = Queue(queue_name, connection=redis)
        places: dict[str, list[Any]] = {
            "queue": redis.lrange(queue.key, 0, -1),
            "intermediate": redis.lrange(queue.intermediate_queue.key, 0, -1),
            # started entries are "<job id>:<execution id>"
            "started": [parse_composite_key(text(entry))[0]
                        for entry in redis.zrange(queue.started_job_registry.key, 0, -1)],
            "deferred": redis.zrange(queue.deferred_job_registry.key, 0, -1),
            "ready": redis.zrange(queue.ready_job_registry.key, 0, -1),
            "scheduled": redis.zrange(queue.scheduled_job_registry.key, 0, -1),
            "retrying": redis.zrange(retrying_key(queue_name), 0, -1),
        }
        found = {place: [text(e) for e in entries if text(e) in job_ids] for place, entries in places.items()}
        return {place: ids for place, ids in found.items() if ids}

    def run_worker(self, settings: Settings, name: str | None, burst: bool,
                   on_ready: Callable[[], None] | None = None) -> int:
        from services.queued.worker import run_rq_worker  # the entry point's own module (backend.py says why)

        return run_rq_worker(settings, name, burst, on_ready)


RQ = RQBackend()
