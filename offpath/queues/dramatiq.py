"""Dramatiq's queue on its RedisBroker, read from the keys its dispatch script keeps, never through the broker (whose
every command runs that script, which records a heartbeat and may run maintenance: a probe must not change what it
measures).

The layout relied on (dramatiq 2.2.1; dramatiq/brokers/redis/dispatch.lua unless named):
- `<ns>:<queue>` a list of message ids waiting, `<ns>:<queue>.msgs` the hash id -> message of every message of the
  queue not yet acknowledged (:32-36): enqueue writes both (:149-150), a fetch pops the id and adds it to the worker's
  ack set `<ns>:__acks__.<worker>.<queue>` (:56, :67, :160-166), an ack removes it from both (:194-195). So the hash
  less the list is what workers have taken: running, or prefetched into their memory;
- a delayed message (a `delay`, a retry's backoff) goes to the queue `<queue>.DQ` (dramatiq/brokers/redis.py:172-174),
  the same list and hash; a worker fetches it and holds it until its time, then enqueues it on the queue and acks it
  (dramatiq/worker.py:346-362): every message in `<ns>:<queue>.DQ.msgs` is still waiting for its time;
- a message that failed for good is dead-lettered into the sorted set `<ns>:<queue>.XQ` (:38-43, :208-210), kept for
  `dead_message_ttl` (7 days by default, dramatiq/brokers/redis.py:45);
- `<ns>:__heartbeats__` a sorted set of broker ids by the time of their last command in ms (:28-30, :58), every broker
  that sends a command: the workers' (each fetch and ack) and the web tier's too (each enqueue).

The namespace is 'dramatiq' (dramatiq/brokers/redis.py:96) unless the queue is named '<namespace>:<queue>'. The broker
keeps no count of finished messages: finished_total is None. Workers cannot be told from producers in the heartbeats,
so `workers` is None; readiness counts the brokers that reported since the adapter was made (before any load, when
only the workers starting send commands).
"""

from __future__ import annotations

import time

from offpath.command_count import harness_redis
from offpath.queues.adapter import QueueState

__all__ = ["DramatiqQueue"]

NAMESPACE = "dramatiq"


class DramatiqQueue:
    """A Dramatiq queue's backlog: waiting, taken by workers, delayed, dead-lettered; all read in one MULTI."""

    name = "dramatiq"

    def __init__(self, redis_url: str, queue_name: str):
        self.connection = harness_redis(redis_url)
        namespace, _, queue = queue_name.rpartition(":")
        prefix = f"{namespace or NAMESPACE}:{queue}"
        self.keys = {"queue": prefix, "messages": f"{prefix}.msgs", "delayed": f"{prefix}.DQ.msgs",
                     "dead": f"{prefix}.XQ", "heartbeats": f"{namespace or NAMESPACE}:__heartbeats__"}
        self.since_ms = int(time.time() * 1000)

    def read(self) -> QueueState:
        keys = self.keys
        pipe = self.connection.pipeline(transaction=True)
        pipe.llen(keys["queue"])
        pipe.hlen(keys["messages"])
        pipe.hlen(keys["delayed"])
        pipe.zcard(keys["dead"])
        waiting, unacked, delayed, dead = pipe.execute()
        return QueueState(depth=waiting, scheduled=delayed, started=max(unacked - waiting, 0), failed_total=dead)

    def workers_ready(self, expected: int) -> bool:
        """At least `expected` brokers sent a command since this adapter was made: an idle worker's consumer fetches
        at least once a `worker_timeout` (1 s by default: dramatiq/worker.py:58, :308-312; dramatiq/brokers/redis.py:369),
        so each started worker shows within about a second."""
        return self.connection.zcount(self.keys["heartbeats"], self.since_ms, "+inf") >= expected

    def close(self) -> None:
        self.connection.close()
