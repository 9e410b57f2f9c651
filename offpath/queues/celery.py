"""Celery's queue on a Redis broker, read from the keys kombu's Redis transport keeps, never through Celery (whose
inspection broadcasts to the workers: a probe must not change what it measures).

The layout relied on (kombu 5.7.0, the transport Celery 5.7 uses; kombu/transport/redis.py unless named):
- a queue is a Redis list of messages, LPUSHed and BRPOPed (:1704, :1656-1663); a message of priority p > 0 goes to
  the sub-list `<queue>\\x06\\x16<step>` (`sep` :1049, `_q_for_pri` :1665-1669), steps 0, 3, 6, 9 by default
  (`PRIORITY_STEPS` :212) and any of 0-9 when configured (the priority is clamped there:
  kombu/transport/virtual/base.py:869);
- a message a worker has taken and not acknowledged is in the hash `unacked` (delivery tag -> JSON
  [message, exchange, routing key]) and its index `unacked_index` (`unacked_key` :1055-1056, written by QoS.append
  :476-491), one pair for the whole broker database, every queue's messages in it. With late acks (the way a careful
  engineer runs Celery here) that is every task running or prefetched; a task with an ETA in the future (a countdown,
  a retry's backoff) is held there by the worker until its time (its message's `headers.eta`);
- a worker's control mailbox is bound as the member `\\x06\\x16\\x06\\x16<hostname>.celery.pidbox` of the set
  `_kombu.binding.celery.pidbox` (`keyprefix_queue` :1045, the member :1739, kombu/pidbox.py:165 and :269, Celery's
  `control_exchange` 'celery': celery/app/defaults.py:158), added when the worker starts consuming and removed when it
  stops warmly (:1854-1858); a worker killed outright stays listed until its binding table is swept (an hour at
  least, :178).

Not covered: a transport option `global_keyprefix` (every key prefixed), custom `unacked_key` or `sep`, a queue whose
messages are routed to it under another routing key than its name (the unacked entries are attributed to a queue by
routing key, which is the queue's name under Celery's default direct routing), and a Redis Cluster. The broker keeps
no count of finished or failed tasks (those are in a result backend, if any): finished_total and failed_total are None.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable
from datetime import datetime

from foundation.redis_replies import text
from offpath.command_count import harness_redis
from offpath.queues.adapter import QueueState

__all__ = ["CeleryQueue"]

SEP = "\x06\x16"
PRIORITIES = range(1, 10)  # every sub-list a configured priority_steps can name; an absent list reads as 0
UNACKED = "unacked"
MAILBOX_SUFFIX = ".celery.pidbox"


class CeleryQueue:
    """A Celery queue's backlog: waiting (its lists), started and scheduled (its unacknowledged messages, split by ETA),
    and the workers whose control mailbox is bound; all read in one MULTI."""

    name = "celery"

    def __init__(self, redis_url: str, queue_name: str, control_exchange: str = "celery"):
        self.connection = harness_redis(redis_url)
        self.queue_name = queue_name
        self.lists = [queue_name] + [f"{queue_name}{SEP}{step}" for step in PRIORITIES]
        self.mailboxes = f"_kombu.binding.{control_exchange}.pidbox"
        # Workers are counted as ready once their mailbox is bound after this adapter was made: a worker killed earlier
        # stays bound for an hour (see above).
        self._bound_before = self._mailboxes(self.connection.smembers(self.mailboxes))

    def read(self) -> QueueState:
        pipe = self.connection.pipeline(transaction=True)
        for key in self.lists:
            pipe.llen(key)
        pipe.hvals(UNACKED)
        pipe.smembers(self.mailboxes)
        values = pipe.execute()
        depth = sum(values[:len(self.lists)])
        started, scheduled = self._taken(values[len(self.lists)], time.time())
        return QueueState(depth=depth, scheduled=scheduled, started=started,
                          workers=len(self._mailboxes(values[len(self.lists) + 1])))

    def _taken(self, entries: list[bytes], now_s: float) -> tuple[int, int]:
        """(started, scheduled) among the broker's unacknowledged messages routed to this queue: scheduled while the
        worker holds one for an ETA still to come."""
        started = scheduled = 0
        for raw in entries:
            try:
                message, _exchange, routing_key = json.loads(raw)
            except (ValueError, TypeError):
                continue  # not kombu's [message, exchange, routing key]: not a task this adapter can place
            if routing_key != self.queue_name:
                continue
            eta = _eta_s((message.get("headers") or {}).get("eta")) if isinstance(message, dict) else None
            if eta is not None and eta > now_s:
                scheduled += 1
            else:
                started += 1
        return started, scheduled

    @staticmethod
    def _mailboxes(members: Iterable[bytes | str]) -> set[str]:
        """The workers' mailbox queues among a binding table's members (routing key, pattern, queue)."""
        queues = {text(m).rsplit(SEP, 1)[-1] for m in members}
        return {queue for queue in queues if queue.endswith(MAILBOX_SUFFIX)}

    def workers_ready(self, expected: int) -> bool:
        """At least `expected` workers bound their control mailbox since this adapter was made (a worker with remote
        control disabled binds none: declare its readiness by its log instead)."""
        bound = self._mailboxes(self.connection.smembers(self.mailboxes))
        return len(bound - self._bound_before) >= expected

    def close(self) -> None:
        self.connection.close()


def _eta_s(value: object) -> float | None:
    """Seconds since the epoch of a Celery message's `eta` header (ISO 8601 with its offset), None without one."""
    if not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(value).timestamp()
    except ValueError:
        return None
