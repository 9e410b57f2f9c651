"""The queued design on Celery: the contract every backend keeps (tests/queue_backend_contract.py), read through
Celery's messages as kombu keeps them in Redis."""

from __future__ import annotations

import base64
import json

import redis

from tests.queue_backend_contract import Admitted, QueueBackendContract


class TestCelery(QueueBackendContract):
    backend = "celery"
    running_place = "unacked"
    retry_lateness_s = 0.1  # the worker's timer fires at the ETA (services/queued/celery_backend/application.py)
    # A killed worker's message goes back to the queue once its holder has been gone for 3 s (holding.py), not after
    # the visibility timeout.
    redelivery_s = 10.0

    def admitted(self, connection: redis.Redis, campaign_id: str) -> Admitted:
        (raw,) = connection.lrange("campaigns", 0, -1)
        envelope = json.loads(raw)  # kombu's envelope, JSON
        assert envelope["content-type"] == "application/json", envelope  # the task message too: never pickle
        args, _kwargs, embed = json.loads(base64.b64decode(envelope["body"]))
        (then,) = embed["chain"]
        return Admitted(envelope["headers"]["task"].rpartition(".")[2], envelope["headers"]["id"], args,
                        then["task"].rpartition(".")[2], then["options"]["task_id"])
