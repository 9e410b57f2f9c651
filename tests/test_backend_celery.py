"""The queued design on Celery: the contract every backend keeps (tests/queue_backend_contract.py), read through
Celery's messages as kombu keeps them in Redis."""

from __future__ import annotations

import base64
import json

import redis
from kombu import Connection

from tests.conftest import Running
from tests.queue_backend_contract import Admitted, QueueBackendContract


class TestCelery(QueueBackendContract):
    backend = "celery"
    running_place = "unacked"
    retry_lateness_s = 0.1  # the worker's timer fires at the ETA (services/queued/celery_backend/application.py)

    def admitted(self, connection: redis.Redis, campaign_id: str) -> Admitted:
        (raw,) = connection.lrange("campaigns", 0, -1)
        envelope = json.loads(raw)  # kombu's envelope, JSON
        assert envelope["content-type"] == "application/json", envelope  # the task message too: never pickle
        args, _kwargs, embed = json.loads(base64.b64decode(envelope["body"]))
        (then,) = embed["chain"]
        return Admitted(envelope["headers"]["task"].rpartition(".")[2], envelope["headers"]["id"], args,
                        then["task"].rpartition(".")[2], then["options"]["task_id"])

    def recover(self, running: Running) -> None:
        # What the visibility timeout does once it has passed (over two minutes): kombu puts back on the queue, as it was,
        # each message left unacknowledged (kombu/transport/redis.py:551-563). Done now, for each, by kombu itself.
        with Connection(running.redis_url) as connection:
            qos = connection.default_channel.qos
            for tag in running.redis().hkeys(qos.unacked_key):
                qos.restore_by_tag(tag.decode(), leftmost=True)
