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

- Lost track: a live worker can hold, in Redis's records, a message none of its channels holds any more. Celery drops
  its channel when the connection breaks, and kombu restores that channel's unacknowledged messages as it closes it
  (QoS.restore_unacked_once) — once, and if Redis is away just then the restore fails and the messages stay recorded
  as this live worker's, so no absence ever frees them: the visibility timeout did (`redis-crash-aof-always` on Celery,
  chaos run 20261207-043647-chaos-efbdf9: one campaign completed 136 s after the crash). Likewise a fetch (BLMOVE)
  that Redis ran as it crashed, its reply lost, leaves the message on a live worker's fetching list. So each watch
  also compares its own worker's records with what its open channels hold (the delivery tags of their QoS, the
  message being fetched): a record none of them holds for GONE_AFTER_S of continuous watching goes back to the queue
  the same way, declared as lost track.

What it does not see: a frozen worker (SIGSTOP, a swap storm) keeps its connection, and its message waits for the
visibility timeout, as before; a host that vanishes without closing its sockets likewise. A watch that could not sweep
for BLIND_AFTER_S (Redis paused, restarted, unreachable) forgets every absence it was timing: after a Redis restart
every live worker's watch connects again within a sweep, and none of their messages is taken from them.

One window is closed on the way: kombu pops a message from the queue (BRPOP) and records it as unacknowledged in a
second round trip (QoS.append), so a worker killed between the two lost it, and so did one whose warm shutdown dropped
a reply still unread (celery/celery#7950). Here a worker fetches with BLMOVE into a list of its own
(FETCHING_KEY), and QoS.append's transaction takes the message off that list as it records it unacknowledged; the
watch puts a gone holder's fetched messages back on the queue too (each worker names itself in WORKERS_KEY as it
starts, so that a worker that died holding nothing but a fetched message is looked at). A worker fetches from its
queue's priority-0 list only: offpath publishes at no other priority.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from queue import Empty
from time import monotonic
from typing import Any

from kombu import Connection
from kombu.transport import redis as kombu_redis
from kombu.utils.encoding import bytes_to_str
from kombu.utils.json import loads
from redis import Redis
from redis.exceptions import RedisError

from foundation.redis_replies import text
from services.queued.attempts import REDIS_AWAY
from services.queued.halting import halt_at
from services.queued.liveness import ABANDONED_KEY, BLIND_AFTER_S, GONE, GONE_AFTER_S, liveness_redis

__all__ = ["FETCHING_KEY", "HOLDERS_KEY", "HOLDER_OPTION", "LOST_TRACK", "PRESENCE_PREFIX", "WORKERS_KEY",
           "HolderWatch", "WorkerTransport", "held_here"]

log = logging.getLogger("offpath.liveness")

HOLDERS_KEY = "offpath:celery-holders"  # delivery tag -> the name of the worker that holds the message unacknowledged
FETCHING_KEY = "offpath:celery-fetching:{holder}"  # messages a worker fetched and has not yet recorded as unacknowledged
WORKERS_KEY = "offpath:celery-workers"  # every worker that started and was not yet found gone with nothing left
HOLDER_OPTION = "offpath_holder"  # the broker transport option that names this worker (worker.py sets it)
PRESENCE_PREFIX = "offpath-celery:"
SWEEP_S = 1.0
RETRY_WRITE_S = 0.5
_LOG_CAP = 10_000
LOST_TRACK = "held in Redis for its live worker, by none of its channels"

_channels: weakref.WeakSet[Any] = weakref.WeakSet()  # this process's worker channels, open or closed
_channels_lock = threading.Lock()


def held_here() -> set[str]:
    """What this process's open worker channels hold: the delivery tags of their unacknowledged messages, and the raw
    text of a message fetched and not yet recorded as unacknowledged. Read from the watch's thread: copies taken under
    the GIL (dict.copy is one step), never iterated while the consumer's thread changes them."""
    with _channels_lock:
        channels = list(_channels)
    held: set[str] = set()
    for channel in channels:
        if channel.closed:
            continue
        qos = channel.__dict__.get("_qos")  # kombu makes it on first use
        if qos is not None:
            held.update(text(tag) for tag in qos._delivered.copy())
        if channel.fetched is not None:
            held.add(text(channel.fetched))
    return held


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
            holder = _holder(self.channel)
            if self._holding is not None and pipe is None and holder:
                # queued with append's ZADD and HSET: recorded as held, and off the worker's fetching list, at once
                opened.hset(HOLDERS_KEY, self._holding, holder)
                fetched, self.channel.fetched = self.channel.fetched, None
                if fetched is not None:
                    opened.lrem(FETCHING_KEY.format(holder=holder), 1, fetched)
            yield opened

    def _remove_from_indices(self, delivery_tag: str, pipe: Any = None) -> Any:
        return super()._remove_from_indices(delivery_tag, pipe).hdel(HOLDERS_KEY, delivery_tag)

    # An acknowledgement or a rejection that meets Redis away is made again until Redis answers. kombu gives it up
    # (logged, "Couldn't reject"), and the message then stays counted as delivered in this worker's prefetch window,
    # which, one message wide, takes no other one: the worker stops fetching for good (the chaos run of 2026-12-07,
    # `redis-crash-aof-always` on Celery: 328 campaigns left in the queue with every worker alive). The worker can do
    # nothing without Redis meanwhile; the writes are idempotent (kombu's ZREM and HDEL, a WATCHed restore).
    def ack(self, delivery_tag: str) -> None:
        _until_redis_answers(lambda: super(_HoldingQoS, self).ack(delivery_tag), "acknowledge", delivery_tag)

    def reject(self, delivery_tag: str, requeue: bool = False) -> None:
        _until_redis_answers(lambda: super(_HoldingQoS, self).reject(delivery_tag, requeue=requeue),
                             "requeue" if requeue else "reject", delivery_tag)


def _until_redis_answers(write: Any, what: str, delivery_tag: str) -> None:
    said = False
    while True:
        try:
            write()
            return
        except REDIS_AWAY as error:
            if not said:
                log.warning("could not %s message %s (%s: %s); trying again until Redis answers", what, delivery_tag,
                            type(error).__name__, error)
                said = True
            time.sleep(RETRY_WRITE_S)


def _holder(channel: Any) -> str | None:
    holder: str | None = channel.connection.client.transport_options.get(HOLDER_OPTION)
    return holder


class _HoldingChannel(kombu_redis.Channel):
    """A worker's channel: fetches with BLMOVE into its own fetching list (the module docstring says why)."""

    QoS = _HoldingQoS
    fetched: bytes | None = None  # the raw message fetched last, until QoS.append takes it off the fetching list

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        with _channels_lock:
            _channels.add(self)

    def _brpop_start(self, timeout: float | None = None) -> None:
        holder = _holder(self)
        if not holder:
            return super()._brpop_start(timeout)  # type: ignore[no-any-return]
        queues = self._queue_cycle.consume(len(self.active_queues))
        if not queues:
            return None
        self._in_poll = self.client.connection
        self._brpop_sent_at = monotonic()  # type: ignore[assignment]  # kombu's read timeout check
        self._fetching_from = queues[0]
        self.client.connection.send_command("BLMOVE", queues[0], FETCHING_KEY.format(holder=holder), "RIGHT", "LEFT",
                                            self.brpop_timeout if timeout is None else timeout)
        return None

    def _brpop_read(self, **options: Any) -> bool:
        if not _holder(self):
            return super()._brpop_read(**options)  # type: ignore[no-any-return]
        try:
            try:
                item = self.client.parse_response(self.client.connection, "BLMOVE", **options)
            except self.connection_errors:
                self.client.connection.disconnect()  # the next poll connects again, as kombu's own read does
                raise
            if item is None:
                raise Empty()
            halt_at("dequeued")
            self._queue_cycle.rotate(self._fetching_from)
            self.fetched = item
            self.connection._deliver(loads(bytes_to_str(item)), self._fetching_from)
            return True
        finally:
            self._in_poll = None  # type: ignore[assignment]  # kombu's own idle mark


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
        self.queue_name = queue_name
        self.declared_key = ABANDONED_KEY.format(queue=queue_name)
        self.transport_options = transport_options
        self.stopping = stopping
        self.absent_since: dict[str, float] = {}
        self.untracked_since: dict[str, float] = {}  # this worker's records none of its channels holds, since when
        self.last_sweep: float | None = None
        # redis-py names every connection it opens for the client (CLIENT SETNAME), reconnections included.
        self.redis = liveness_redis(url, client_name=PRESENCE_PREFIX + name)

    def register(self) -> None:
        """Connect the watch's named connection (this worker's presence), then name this worker among those a watch
        looks at: both before the worker fetches anything (its start fails without Redis)."""
        self.redis.sadd(WORKERS_KEY, self.name)

    def run(self) -> None:
        try:
            while not self.stopping.wait(SWEEP_S):
                try:
                    self.sweep(self.redis)
                except RedisError as error:
                    log.debug("holder watch: sweep failed (%s); trying again", error)
        finally:
            self.redis.close()

    def sweep(self, redis: Redis) -> list[str]:
        """One look: the delivery tags it put back (a fetched message goes back with its raw text as its tag)."""
        now = time.monotonic()
        if self.last_sweep is None or now - self.last_sweep > BLIND_AFTER_S:
            self.absent_since.clear()  # blind meanwhile: no absence was seen continuously
            self.untracked_since.clear()
        held = held_here()  # before Redis's records: a message held now was recorded before (kombu's order)
        fetching = [text(raw) for raw in redis.lrange(FETCHING_KEY.format(holder=self.name), 0, -1)]
        holders = {text(tag): text(holder) for tag, holder in redis.hgetall(HOLDERS_KEY).items()}
        workers = {text(worker) for worker in redis.smembers(WORKERS_KEY)}
        present = {text(client.get("name", "")) for client in redis.client_list()}
        self.last_sweep = time.monotonic()
        gone = {holder for holder in set(holders.values()) | workers if PRESENCE_PREFIX + holder not in present}
        self.absent_since = {holder: self.absent_since.get(holder, now) for holder in gone}
        due = {holder for holder in gone if now - self.absent_since[holder] >= GONE_AFTER_S}
        put_back: list[str] = []
        for holder in sorted(due):
            silent_s = now - self.absent_since[holder]
            put_back += self._unfetch(redis, holder, silent_s)
            tags = [tag for tag, held_by in holders.items() if held_by == holder]
            if tags:
                put_back += self._restore(redis, tags, holders, {tag: silent_s for tag in tags}, GONE)
            redis.srem(WORKERS_KEY, holder)
        return put_back + self._reclaim_untracked(redis, held, fetching, holders, now)

    def _reclaim_untracked(self, redis: Redis, held: set[str], fetching: list[str], holders: dict[str, str],
                           now: float) -> list[str]:
        """This worker's records that none of its open channels held, at this sweep and every sweep of the last
        GONE_AFTER_S, back on the queue (the module docstring says when a live worker loses track of a message)."""
        untracked = {tag for tag, holder in holders.items() if holder == self.name and tag not in held}
        untracked |= {raw for raw in fetching if raw not in held}
        self.untracked_since = {item: self.untracked_since.get(item, now) for item in untracked}
        due = {item: now - self.untracked_since.pop(item) for item in sorted(untracked)
               if now - self.untracked_since[item] >= GONE_AFTER_S}
        tags = [item for item in due if item in holders]
        put_back = self._restore(redis, tags, holders, due, LOST_TRACK) if tags else []
        for raw in (item for item in due if item not in holders):
            if self._unfetch_one(redis, raw):
                self._declare(redis, json.loads(raw), None, self.name, due[raw], LOST_TRACK,
                              "requeued from its fetching list")
                put_back.append(raw)
        return put_back

    def _unfetch_one(self, redis: Redis, raw: str) -> bool:
        """One message of this worker's fetching list back on the queue's head, unless it left the list meanwhile (its
        record as unacknowledged takes it off: WATCHed)."""
        key = FETCHING_KEY.format(holder=self.name)
        moved = False

        def move(pipe: Any) -> None:
            nonlocal moved
            moved = raw in {text(item) for item in pipe.lrange(key, 0, -1)}
            if moved:
                pipe.multi()
                pipe.lrem(key, 1, raw)
                pipe.rpush(self.queue_name, raw)

        redis.transaction(move, key)
        return moved

    def _unfetch(self, redis: Redis, holder: str, silent_s: float) -> list[str]:
        """A gone holder's fetched messages, back on the queue's head (BRPOP's end)."""
        moved = []
        while (raw := redis.lmove(FETCHING_KEY.format(holder=holder), self.queue_name, "RIGHT", "RIGHT")) is not None:
            moved.append(text(raw))
            self._declare(redis, json.loads(raw), None, holder, silent_s, GONE, "requeued from its fetching list")
        return moved

    def _restore(self, redis: Redis, tags: list[str], holders: dict[str, str], silent_s: dict[str, float],
                 how: str) -> list[str]:
        """The held messages of `tags` back on the queue through kombu's restore, each declared; the tags that went
        back (one acknowledged or restored meanwhile has no record left, and nothing goes back)."""
        restored = []
        with Connection(self.url, transport=WorkerTransport, transport_options=self.transport_options) as connection:
            qos = connection.default_channel.qos
            for tag in tags:
                payload = redis.hget(qos.unacked_key, tag)
                qos.restore_by_tag(tag, leftmost=False)  # BRPOP's end: the message runs next
                if payload:
                    self._declare(redis, json.loads(payload)[0], tag, holders[tag], silent_s[tag], how, "requeued")
                    restored.append(tag)
        return restored

    def _declare(self, redis: Redis, message: dict[str, Any] | None, tag: str | None, holder: str, silent_s: float,
                 how: str, what: str) -> None:
        job = (message or {}).get("headers", {}).get("id")
        silent_s = round(silent_s, 1)
        log.warning("task %s held by worker %s (%s) for %.1f s: %s", job, holder, how, silent_s, what)
        redis.lpush(self.declared_key, json.dumps({"job": job, "tag": tag, "worker": holder, "how": how,
                                                   "silent_s": silent_s, "what": what, "at": time.time()}))
        redis.ltrim(self.declared_key, 0, _LOG_CAP - 1)
