"""RQ's queue, read from its registries: offpath's own queued design's, and any RQ queue on Redis."""

from __future__ import annotations

import time
from datetime import UTC, datetime

import redis
from rq import Queue, Worker
from rq.serializers import JSONSerializer

from offpath.command_count import harness_redis
from offpath.queues.adapter import QueueState
from services.queued.retries import retrying_key

__all__ = ["RqQueue"]


class RqQueue:
    """An RQ queue's registries, read directly with ZCARD/LLEN/SCARD in one MULTI: the registries' own `.count` runs
    their cleanup, which moves jobs, and probing must not change what it measures."""

    name = "rq"

    def __init__(self, redis_url: str, queue_name: str):
        self.connection = harness_redis(redis_url)
        self.queue = Queue(queue_name, connection=self.connection, serializer=JSONSerializer)
        self.since = time.time()
        q = self.queue
        self.keys = {
            "queue": q.key, "ready": q.ready_job_registry.key, "intermediate": q.intermediate_queue_key,
            "deferred": q.deferred_job_registry.key, "scheduled": q.scheduled_job_registry.key,
            # retries waiting for their time (offpath's queued design: services/queued/retries.py); absent elsewhere
            "retrying": retrying_key(q.name),
            "started": q.started_job_registry.key, "finished": q.finished_job_registry.key,
            "failed": q.failed_job_registry.key, "workers": f"rq:workers:{q.name}",
        }

    def buffer(self, pipe: redis.client.Pipeline) -> None:
        """Queue the reads of one state onto `pipe` (the probe adds its own reads to the same MULTI)."""
        keys = self.keys
        pipe.llen(keys["queue"])
        pipe.zcard(keys["ready"])
        pipe.zcard(keys["deferred"])
        pipe.zcard(keys["scheduled"])
        pipe.zcard(keys["retrying"])
        pipe.zcard(keys["started"])
        pipe.llen(keys["intermediate"])
        pipe.zcard(keys["finished"])
        pipe.zcard(keys["failed"])
        pipe.scard(keys["workers"])

    READS = 10

    @staticmethod
    def state(values: list[int]) -> QueueState:
        depth, ready, deferred, scheduled, retrying, started, intermediate, finished, failed, workers = values
        # A job being handed to a worker sits on RQ's intermediate list until its execution has started.
        return QueueState(depth=depth + ready, deferred=deferred, scheduled=scheduled + retrying,
                          started=started + intermediate, finished_total=finished, failed_total=failed,
                          workers=workers)

    def read(self) -> QueueState:
        pipe = self.connection.pipeline(transaction=True)
        self.buffer(pipe)
        return self.state(pipe.execute())

    def workers_ready(self, expected: int) -> bool:
        """At least `expected` workers registered since this adapter was made (a worker that died without
        unregistering stays listed in RQ's registry until its key expires)."""
        since = datetime.fromtimestamp(self.since - 1, UTC).replace(tzinfo=None)
        workers = Worker.all(connection=self.connection, queue=self.queue)
        born = [w for w in workers if w.birth_date is None or w.birth_date.replace(tzinfo=None) >= since]
        return len(born) >= expected

    def close(self) -> None:
        self.connection.close()
