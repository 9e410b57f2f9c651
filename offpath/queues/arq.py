"""arq's queue on Redis, read from the keys arq keeps, with offpath's own redis-py: arq 0.28 pins redis-py < 6, so it
cannot be imported beside offpath (which runs 8), and a probe needs none of it.

The layout relied on (arq 0.28.0; arq/constants.py:1-9 for the names):
- the queue `arq:queue` (or the worker's `queue_name`) is a sorted set of job ids scored by the time in ms they are
  due: enqueue time, or later when deferred (arq/connections.py:163-175);
- a worker takes a due job by setting `arq:in-progress:<id>` (arq/worker.py:449-465) and leaves the id in the queue
  while it runs; when it finishes, the id leaves the queue and the key is deleted in one transaction
  (arq/worker.py:692-712, failed jobs :714-721); a job retried is pushed back to a later score, its key deleted in
  the same transaction (arq/worker.py:707-708). A worker killed mid-job leaves its key until the key's TTL, the
  longest job timeout + 10 s (arq/worker.py:277): arq runs the job again only then, and so it counts as started until
  then;
- `<queue>:health-check` is written by a worker on its first poll and then every `health_check_interval` (1 h by
  default), with a TTL of that interval + 1 s (arq/worker.py:773-786), and deleted when a worker closes
  (arq/worker.py:874): one key for all of a queue's workers.

So: waiting = due ids without an in-progress key, started = due ids with one, scheduled = ids due later (deferred
jobs and retries), counted in one read-only Lua script (atomic, as a MULTI would be, but the in-progress keys to look
at depend on the queue's members). arq keeps no counts of finished or failed jobs (their results are per-job keys, in
pickle by default, which offpath will not unpickle), and no per-worker record: finished_total, failed_total and
workers are None, and readiness can tell one worker, never how many.
"""

from __future__ import annotations

import time

from offpath.command_count import harness_redis
from offpath.queues.adapter import QueueState

__all__ = ["ArqQueue"]

IN_PROGRESS_PREFIX = "arq:in-progress:"
HEALTH_CHECK_SUFFIX = ":health-check"

# KEYS[1] the queue; ARGV[1] now in ms, ARGV[2] the in-progress prefix. Reads only.
_COUNT = """
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])
local running = 0
for _, id in ipairs(due) do
    running = running + redis.call('EXISTS', ARGV[2] .. id)
end
local later = redis.call('ZCOUNT', KEYS[1], '(' .. ARGV[1], '+inf')
return {#due - running, running, later}
"""


class ArqQueue:
    """An arq queue's backlog: due and waiting, started, due later."""

    name = "arq"

    def __init__(self, redis_url: str, queue_name: str):
        self.connection = harness_redis(redis_url)
        self.queue_name = queue_name
        self.health_key = queue_name + HEALTH_CHECK_SUFFIX
        self._count = self.connection.register_script(_COUNT)
        # The health-check key as this adapter found it: a worker that starts afterwards rewrites it (a fresh TTL).
        self._health_ttl_ms = int(self.connection.pttl(self.health_key))
        self._made = time.monotonic()

    def read(self) -> QueueState:
        waiting, started, later = self._count(keys=[self.queue_name],
                                              args=[int(time.time() * 1000), IN_PROGRESS_PREFIX])
        return QueueState(depth=int(waiting), scheduled=int(later), started=int(started))

    def workers_ready(self, expected: int) -> bool:
        """A worker polled since this adapter was made (it wrote the health-check key, or gave it a fresh TTL); arq
        keeps one key for all of a queue's workers, so for `expected` > 1 this cannot tell and says False: declare
        the workers' readiness by their log instead (`ready = { log = "Starting worker" }`)."""
        if expected > 1:
            return False
        ttl_ms = int(self.connection.pttl(self.health_key))
        if ttl_ms < 0:  # -2: absent; -1: set without a TTL, which arq never does
            return False
        if self._health_ttl_ms < 0:
            return True
        elapsed_ms = (time.monotonic() - self._made) * 1000
        return ttl_ms > self._health_ttl_ms - elapsed_ms + 1000  # it only decays, unless written again

    def close(self) -> None:
        self.connection.close()
