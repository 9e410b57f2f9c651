"""Knowing, within seconds, that a Celery worker holding a message died, and putting its message back on the queue.

kombu's Redis transport takes back an unacknowledged message only once it has been held longer than the visibility
timeout (kombu/transport/redis.py:523-549), which is not a heartbeat: it must stay above the longest a healthy worker
holds a message (134 s here, application.py), so a killed worker's job waited that long (the chaos run of 2026-12-06:
2 of 22 killed jobs still pending after a 150 s settle). Two parts make it seconds, as offpath's watch does on RQ
(services/queued/liveness.py):

- Holding: each worker records which unacknowledged message it holds, by kombu's delivery tag, in HOLDERS_KEY, in the
  same transaction in which kombu records the message as unacknowledged (QoS.append's pipeline), and forgets it in the
  transaction that acknowledges or restores it (QoS._remove_from_indices). No round trip of its own.
- HolderWatch: a thread in every worker process talks to Redis over a connection named for its worker
  (PRESENCE_PREFIX + name), connected from the worker's start. The kernel closes a dead process's sockets, so its name
  leaves Redis's client list at once. A message whose holder's name has been absent from that list for GONE_AFTER_S of
  continuous watching goes back to the queue through kombu's own restore (QoS.restore_by_tag: a WATCHed transaction,
  so two watches restoring one message restore it once), at its head, and the declaration is logged (ABANDONED_KEY).

What it does not see: a frozen worker (SIGSTOP, a swap storm) keeps its connection, and its message waits for the
visibility timeout, as before; a host that vanishes without closing its sockets likewise. A watch that could not sweep
for BLIND_AFTER_S (Redis paused, restarted, unreachable) forgets every absence it was timing: after a Redis restart
every live worker's watch connects again within a sweep, and none of their messages is taken from them. A message
popped from the queue and not yet recorded as unacknowledged (kombu's BRPOP, then QoS.append) has no holder yet:
a worker killed in that window loses it (docs/queue-backends.md).
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from kombu import Connection
from kombu.transport import redis as kombu_redis
from redis import Redis
from redis.exceptions import RedisError

from foundation.redis_replies import text
from services.queued.liveness import ABANDONED_KEY, BLIND_AFTER_S, GONE, GONE_AFTER_S, liveness_redis

__all__ = ["HOLDER_OPTION", "HOLDERS_KEY", "PRESENCE_PREFIX", "HolderWatch", "WorkerTransport"]

log = logging.getLogger("offpath.liveness")

HOLDERS_KEY = "offpath:celery-holders"  # delivery tag -> the name of the worker that holds the message unacknowledged
HOLDER_OPTION = "offpath_holder"  # the broker transport option that names this worker (worker.py sets it)
PRESENCE_PREFIX = "offpath-celery:"
SWEEP_S = 1.0
_LOG_CAP = 10_000


class _HoldingQoS(kombu_redis.QoS):
    """kombu's Redis QoS, which also records the holder of each unacknowledged message, in kombu's own transactions."""

    _holding: str | None = None

    def append(self, message: Any, delivery_tag: str) -> None:
        self._holding = delivery_tag
        try:
            super().append(message, delivery_tag)
        finally:
            self._holding = None

    @contextmanager
    def pipe_or_acquire(self, pipe: Any = None, client: Any = None) -> Iterator[Any]:
        with super().pipe_or_acquire(pipe, client) as opened:
            holder = self.channel.connection.client.transport_options.get(HOLDER_OPTION)
            if self._holding is not None and pipe is None and holder:
                opened.hset(HOLDERS_KEY, self._holding, holder)  # queued with append's ZADD and HSET
            yield opened

    def _remove_from_indices(self, delivery_tag: str, pipe: Any = None) -> Any:
        return super()._remove_from_indices(delivery_tag, pipe).hdel(HOLDERS_KEY, delivery_tag)


class _HoldingChannel(kombu_redis.Channel):
    QoS = _HoldingQoS


class WorkerTransport(kombu_redis.Transport):
    """kombu's Redis transport, whose channels record which worker holds each unacknowledged message."""

    Channel = _HoldingChannel


class HolderWatch(threading.Thread):
    """Puts back on the queue the messages of holders gone from Redis's client list (the module docstring says how)."""

    def __init__(self, url: str, name: str, queue_name: str, transport_options: dict[str, Any],
                 stopping: threading.Event) -> None:
        super().__init__(name="holder-watch", daemon=True)
        self.url = url
        self.name = name
        self.declared_key = ABANDONED_KEY.format(queue=queue_name)
        self.transport_options = transport_options
        self.stopping = stopping
        self.absent_since: dict[str, float] = {}
        self.last_sweep: float | None = None

    def run(self) -> None:
        redis = liveness_redis(self.url, client_name=PRESENCE_PREFIX + self.name)
        try:
            while not self.stopping.wait(SWEEP_S):
                try:
                    self.sweep(redis)
                except RedisError as error:
                    log.debug("holder watch: sweep failed (%s); trying again", error)
        finally:
            redis.close()

    def sweep(self, redis: Redis) -> list[str]:
        """One look: the delivery tags it put back."""
        now = time.monotonic()
        if self.last_sweep is None or now - self.last_sweep > BLIND_AFTER_S:
            self.absent_since.clear()  # blind meanwhile: no absence was seen continuously
        holders = {text(tag): text(holder) for tag, holder in redis.hgetall(HOLDERS_KEY).items()}
        present = {text(client.get("name", "")) for client in redis.client_list()}
        self.last_sweep = time.monotonic()
        gone = {holder for holder in set(holders.values()) if PRESENCE_PREFIX + holder not in present}
        self.absent_since = {holder: self.absent_since.get(holder, now) for holder in gone}
        due = [tag for tag, holder in holders.items()
               if holder in gone and now - self.absent_since[holder] >= GONE_AFTER_S]
        if due:
            self._restore(redis, due, holders, now)
        return due

    def _restore(self, redis: Redis, tags: list[str], holders: dict[str, str], now: float) -> None:
        with Connection(self.url, transport=WorkerTransport, transport_options=self.transport_options) as connection:
            qos = connection.default_channel.qos
            for tag in tags:
                payload = redis.hget(qos.unacked_key, tag)
                qos.restore_by_tag(tag, leftmost=False)  # BRPOP takes from the right: the message runs next
                job = json.loads(payload)[0]["headers"].get("id") if payload else None
                silent_s = round(now - self.absent_since[holders[tag]], 1)
                log.warning("message %s (task %s) held by worker %s, gone for %.1f s: back on its queue", tag, job,
                            holders[tag], silent_s)
                redis.lpush(self.declared_key, json.dumps(
                    {"job": job, "tag": tag, "worker": holders[tag], "how": GONE, "silent_s": silent_s,
                     "what": "requeued", "at": time.time()}))
                redis.ltrim(self.declared_key, 0, _LOG_CAP - 1)
