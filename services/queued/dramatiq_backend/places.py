"""Where Dramatiq's Redis broker holds a message that is not done yet: what the chaos audit looks at for the
campaigns still pending after a fault, and for jobs left behind by final ones.

Every message is stored under its Redis id in its queue's hash (`<queue>.msgs`, or `<queue>.DQ.msgs` while delayed)
and listed in one place (dramatiq/brokers/redis/dispatch.lua): its queue's list, waiting (`queue`); the delay queue's
list, a retry waiting for its fetch (`delayed`); a worker's ack set, fetched and not yet acknowledged (`held`, which
includes a retry held in a worker's memory until its time). A message stored and listed nowhere is `unlisted`: no
consumer will ever fetch it. (A dead-lettered message, in `<queue>.XQ`, is done: its campaign failed visibly.)
"""

from __future__ import annotations

import json

from redis import Redis

from foundation.redis_replies import text
from services.queued.dramatiq_backend.admission import queue_key

__all__ = ["dramatiq_job_places"]


def dramatiq_job_places(redis: Redis, queue_name: str, job_ids: set[str]) -> dict[str, list[str]]:
    """The message ids among `job_ids` with a message stored, by where it is listed."""
    queue = queue_key(queue_name)
    delayed = f"{queue}.DQ"
    namespace = queue.rsplit(":", 1)[0]
    held: set[str] = set()
    for pattern in (f"{namespace}:__acks__.*.{queue_name}", f"{namespace}:__acks__.*.{queue_name}.DQ"):
        for key in redis.scan_iter(match=pattern, count=1000):
            held |= {text(member) for member in redis.smembers(key)}
    listed = {"queue": {text(i) for i in redis.lrange(queue, 0, -1)},
              "delayed": {text(i) for i in redis.lrange(delayed, 0, -1)},
              "held": held}
    places: dict[str, list[str]] = {}
    for hash_key in (f"{queue}.msgs", f"{delayed}.msgs"):
        for redis_id, raw in redis.hgetall(hash_key).items():
            message_id = text(json.loads(raw).get("message_id", ""))
            if message_id not in job_ids:
                continue
            where = next((place for place, ids in listed.items() if text(redis_id) in ids), "unlisted")
            places.setdefault(where, []).append(message_id)
    return places
