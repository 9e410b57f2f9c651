"""The queued design on Dramatiq: the contract every backend keeps (tests/queue_backend_contract.py), read through
Dramatiq's messages as its Redis broker keeps them."""

from __future__ import annotations

import json

import redis

from tests.queue_backend_contract import Admitted, QueueBackendContract


class TestDramatiq(QueueBackendContract):
    backend = "dramatiq"
    running_place = "held"
    waiting_place = "held"  # the worker prefetches two messages (services/queued/dramatiq_backend/worker.py)
    # A delayed retry is moved to the queue by the delay queue's consumer, then fetched by the queue's: each looks at
    # least every worker_timeout, 100 ms (services/queued/dramatiq_backend/broker.py).
    retry_lateness_s = 0.3
    # A killed worker's job runs again once maintenance finds it silent for 10 s (broker.py).
    redelivery_s = 25.0

    def admitted(self, connection: redis.Redis, campaign_id: str) -> Admitted:
        (redis_id,) = connection.lrange("dramatiq:campaigns", 0, -1)
        message = json.loads(connection.hget("dramatiq:campaigns.msgs", redis_id))  # Dramatiq's encoding: JSON
        then = message["options"]["pipe_target"]
        return Admitted(message["actor_name"], message["message_id"], message["args"], then["actor_name"],
                        then["message_id"])
