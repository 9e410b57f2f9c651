"""Where kombu's Redis transport holds a Celery message that is not done yet: what the chaos audit looks at for the
campaigns still pending after a fault, and for jobs left behind by final ones.

A message is in one of two places (kombu/transport/redis.py): its queue's list, before a worker fetched it (BRPOP,
:1476-1500), or the `unacked` hash, from a worker's fetch until its acknowledgement (QoS.append, :476-491; a retry's
ETA copy waits there too, held on the worker's timer). Between the two there is no place: the fetch pops the message,
and the worker records it as unacknowledged in a second round trip (`_deliver`, then QoS.append). A worker killed
between the two loses the message: the chaos audit says "nowhere" for its campaign.
"""

from __future__ import annotations

import base64
import json
from typing import Any

from redis import Redis

from foundation.redis_replies import text

__all__ = ["celery_job_places"]

UNACKED_KEY = "unacked"  # kombu's Channel.unacked_key (kombu/transport/redis.py:1054)


def celery_job_places(redis: Redis, queue_name: str, job_ids: set[str]) -> dict[str, list[str]]:
    """The task ids among `job_ids` with a message in the queue (`queue`) or unacknowledged (`unacked`)."""
    queued = [_task_id(json.loads(raw)) for raw in redis.lrange(queue_name, 0, -1)]
    unacked = [_task_id(json.loads(raw)[0]) for raw in redis.hvals(UNACKED_KEY)]
    places = {"queue": [t for t in queued if t in job_ids], "unacked": [t for t in unacked if t in job_ids]}
    return {place: found for place, found in places.items() if found}


def _task_id(envelope: dict[str, Any]) -> str:
    headers = envelope.get("headers") or {}
    if "id" in headers:  # Celery's protocol 2: the task id is a header
        return text(headers["id"])
    body = json.loads(base64.b64decode(envelope["body"]))
    return text(body.get("id", ""))
