"""The queued design on RQ: the contract every backend keeps (tests/queue_backend_contract.py), read through RQ's
jobs. RQ's own behaviours beyond it: tests/test_queued.py, tests/test_chaining.py, tests/test_liveness.py."""

from __future__ import annotations

import json
import zlib

import redis
from rq import Queue
from rq.job import Job
from rq.serializers import JSONSerializer

from tests.queue_backend_contract import Admitted, QueueBackendContract


class TestRQ(QueueBackendContract):
    backend = "rq"
    running_place = "started"
    retry_lateness_s = 0.05  # the abandonment watch's holder moves a due retry within milliseconds (retries.py)

    def admitted(self, connection: redis.Redis, campaign_id: str) -> Admitted:
        queue = Queue("campaigns", connection=connection, serializer=JSONSerializer)
        (job_id,) = queue.job_ids
        job = Job.fetch(job_id, connection=connection, serializer=JSONSerializer)
        assert json.loads(zlib.decompress(connection.hget(job.key, "data")))  # RQ compresses job data: JSON inside
        # Generation enqueues automation itself, with its outcome: no automation job exists yet.
        assert not connection.exists(f"rq:job:{campaign_id}-automation")
        return Admitted(job.func_name.rpartition(".")[2], job.id, list(job.args), None, None)
