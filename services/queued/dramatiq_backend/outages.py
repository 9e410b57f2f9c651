"""What Dramatiq's Redis broker does not survive of a Redis outage, and the little offpath adds so that every message
is run or visibly fails once Redis answers again, while the workers go on running.

Read in Dramatiq 2.2's sources, and seen in offpath's chaos run of 2026-12-06 (3 campaigns pending after a Redis crash,
3 after a pause; tests/test_dramatiq_outages.py replays both):
- The broker maps only redis-py's ConnectionError to its own ConnectionClosed (dramatiq/brokers/redis.py:306-324,
  373), on which a worker retries an ack until Redis answers (dramatiq/worker.py:404-448). A Redis that does not
  answer in time (a pause, a stall) raises TimeoutError instead: the ack is given up as "a bug in Dramatiq"
  (dramatiq/worker.py:440-448) and its message stays in this live worker's ack set for good.
- An enqueue after an actor returned (the pipeline's next message, dramatiq/middleware/pipelines.py:41-58; a retry's
  delayed copy, dramatiq/middleware/retries.py:152) that fails is logged and dropped by the broker's emit_after
  (dramatiq/broker.py:123-129), and the message is then acknowledged: its campaign waits for a next message or a retry
  that does not exist.
- A delay-queue consumer that loses its connection drops the delayed retries it held in memory (dramatiq/worker.py:
  322-324), which stay in its ack set, where only this worker's death would free them; and a fetch that Redis runs
  after the client gave up on its reply (a pause longer than the socket timeout) leaves its messages in the ack set
  with nobody holding them.

So here: every Redis error that means "Redis is away" (ConnectionError, TimeoutError) is the broker's ConnectionClosed;
a message whose run or post-processing met one is *requeued* (its original message, without counting an attempt)
instead of acknowledged, by an ack that Dramatiq retries until Redis answers; and a delay queue's consumer that starts
again first puts back on its queue what its predecessor held. A message may so run twice (a requeued one whose first
run had recorded its outcome); the steps' own check and fence make the second do nothing (services/campaign/steps.py).
"""

from __future__ import annotations

import logging
from typing import Any

from dramatiq.brokers.redis import RedisBroker, _RedisConsumer
from dramatiq.errors import ConnectionClosed
from dramatiq.message import Message
from dramatiq.middleware import Pipelines, Retries

from services.queued.attempts import REDIS_AWAY as ATTEMPTS_REDIS_AWAY
from services.queued.attempts import redis_away as attempts_redis_away

__all__ = ["OutageSafePipelines", "OutageSafeRedisBroker", "OutageSafeRetries", "REQUEUE_OPTION", "redis_away"]

log = logging.getLogger("offpath.jobs")

REDIS_AWAY: tuple[type[BaseException], ...] = (*ATTEMPTS_REDIS_AWAY, ConnectionClosed)
# Set on a message (in the worker's memory only) whose ack should put it back on its queue instead.
REQUEUE_OPTION = "offpath_requeue"


def redis_away(error: BaseException | None) -> BaseException | None:
    """The error in `error`'s chain that says Redis is away, Dramatiq's ConnectionClosed included."""
    return attempts_redis_away(error, also=(ConnectionClosed,))


class OutageSafeRedisBroker(RedisBroker):
    """Dramatiq's Redis broker, whose enqueue and consumers say ConnectionClosed for every way Redis can be away."""

    consumed: set[str]  # the queues this process made a consumer for

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.consumed = set()

    @property
    def consumer_class(self) -> type[_RedisConsumer]:
        return _OutageSafeConsumer

    def enqueue(self, message: Message, *, delay: int | None = None) -> Message:
        try:
            return super().enqueue(message, delay=delay)
        except REDIS_AWAY as error:
            raise ConnectionClosed(error) from None

    def acks_key(self, queue_name: str) -> str:
        """This process's ack set on `queue_name` (dispatch.lua: $namespace:__acks__.$worker_id.$queue_name)."""
        return f"{self.namespace}:__acks__.{self.broker_id}.{queue_name}"


class _OutageSafeConsumer(_RedisConsumer):
    broker: OutageSafeRedisBroker

    def __init__(self, broker: OutageSafeRedisBroker, queue_name: str, prefetch: int, timeout: int) -> None:
        super().__init__(broker, queue_name, prefetch, timeout)
        # A consumer made again (its predecessor lost its connection) first puts back on the queue what this process's
        # ack set on it holds: a delay queue's consumer dropped its delayed retries with its predecessor, and a fetch
        # that Redis ran after the client had given up on its reply (a pause) left messages there that nobody holds.
        # Some may still be in this worker's memory: they then run twice, and the steps' fence lets one record.
        self.orphans_to_requeue = queue_name in broker.consumed
        broker.consumed.add(queue_name)

    def ack(self, message: Any) -> None:
        if message.options.get(REQUEUE_OPTION):
            self._away_is_closed(self.broker.do_requeue, message)
        else:
            self._away_is_closed(self.broker.do_ack, message)

    def nack(self, message: Any) -> None:
        self._away_is_closed(self.broker.do_nack, message)

    def _away_is_closed(self, command: Any, message: Any) -> None:
        try:
            command(self.queue_name, message.options["redis_message_id"])
        except REDIS_AWAY as error:
            raise ConnectionClosed(error) from None
        finally:
            self.queued_message_ids.discard(message.message_id)

    def requeue(self, messages: Any) -> None:
        try:
            super().requeue(messages)
        except REDIS_AWAY as error:
            raise ConnectionClosed(error) from None

    def __next__(self) -> Any:
        try:
            if self.orphans_to_requeue:
                orphans = self.broker.client.smembers(self.broker.acks_key(self.queue_name))
                if orphans:
                    self.broker.do_requeue(self.queue_name, *orphans)
                    log.warning("%d message(s) held before a lost connection put back on %s", len(orphans),
                                self.queue_name)
                self.orphans_to_requeue = False
            return super().__next__()
        except REDIS_AWAY as error:
            raise ConnectionClosed(error) from None


def _requeue(message: Any, away: BaseException) -> None:
    message.options[REQUEUE_OPTION] = True
    log.warning("message %s (%s): Redis is away (%s: %s); it goes back to its queue once Redis answers",
                message.message_id, message.actor_name, type(away).__name__, away)


class OutageSafePipelines(Pipelines):
    """Dramatiq's Pipelines, except that a next message whose enqueue met Redis away sends this one back to its queue
    (once Redis answers): delivered again, it finds its outcome recorded and returns, and the pipeline goes on."""

    def after_process_message(self, broker: Any, message: Any, *, result: Any = None,
                              exception: BaseException | None = None) -> None:
        try:
            super().after_process_message(broker, message, result=result, exception=exception)
        except ConnectionClosed as away:
            _requeue(message, away)


class OutageSafeRetries(Retries):
    """Dramatiq's Retries, except for a message that met Redis away: requeued once Redis answers, no attempt counted
    (its step did not fail; its store was away), instead of a retry whose enqueue would need Redis too."""

    def after_process_message(self, broker: Any, message: Any, *, result: Any = None,
                              exception: BaseException | None = None) -> None:
        away = redis_away(exception)
        if away is None:
            try:
                super().after_process_message(broker, message, result=result, exception=exception)
                return
            except ConnectionClosed as error:  # the retry's enqueue
                away = error
        _requeue(message, away)
