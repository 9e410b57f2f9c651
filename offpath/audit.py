"""The audit after a fault: every campaign a client saw acknowledged (201/202) must end `completed` or
visibly `failed`; none may be missing; no side effect may have run twice; and once they are final, none of their jobs
may be left where their queue library keeps what is not done yet (stuck: RQ's queue and registries, kombu's queue and
unacked messages, Dramatiq's queues and ack sets; each backend's `job_places`, services/queued/backend.py). For a
campaign still pending, the same places say where its job waits, or that it is nowhere."""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field

import redis

from services.campaign.store import campaign_key, executions_key
from services.queued.attempts import automation_job_id, generation_job_id
from services.queued.backend import QueueBackend

_BATCH = 500


@dataclass
class Audit:
    acknowledged: int = 0
    completed: int = 0
    failed: int = 0
    pending: int = 0  # still accepted/generating/automating when the audit gave up waiting
    pending_ids: list[str] = field(default_factory=list)
    pending_jobs_by_place: dict[str, int] = field(default_factory=dict)  # where their jobs were ("nowhere": none)
    lost: int = 0  # acknowledged, but no state at all: the promise was broken
    duplicated: int = 0  # campaigns where a recorded side effect ran more than once
    lost_ids: list[str] = field(default_factory=list)
    duplicated_ids: list[str] = field(default_factory=list)
    stuck: int = 0  # jobs of final campaigns still where their library keeps what is not done yet
    stuck_by_registry: dict[str, int] = field(default_factory=dict)
    stuck_ids: list[str] = field(default_factory=list)
    settled_after_s: float | None = None  # from the audit's start until nothing was pending

    @property
    def ok(self) -> bool:
        return self.lost == 0 and self.duplicated == 0 and self.pending == 0 and self.stuck == 0

    def to_dict(self) -> dict:
        data = asdict(self)
        data["lost_ids"] = self.lost_ids[:20]
        data["duplicated_ids"] = self.duplicated_ids[:20]
        data["stuck_ids"] = self.stuck_ids[:20]
        data["pending_ids"] = self.pending_ids[:20]
        data["ok"] = self.ok
        return data


@dataclass(frozen=True)
class Queued:
    """Where the audited design's jobs are: its queue backend and queue."""

    backend: QueueBackend
    queue_name: str

    def places(self, connection: redis.Redis, campaign_ids: list[str]) -> dict[str, list[str]]:
        jobs = {job_id for campaign_id in campaign_ids
                for job_id in (generation_job_id(campaign_id), automation_job_id(campaign_id))}
        return self.backend.job_places(connection, self.queue_name, jobs)


def audit(redis_url: str, acknowledged_ids: Iterable[str], settle_timeout_s: float = 0.0,
          queued: Queued | None = None) -> Audit:
    """Check the acknowledged campaigns, waiting up to settle_timeout_s for pending ones to finish; with `queued` (a
    design with a queue), then look for their jobs left behind by its library."""
    ids = list(dict.fromkeys(acknowledged_ids))
    connection = redis.Redis.from_url(redis_url, socket_timeout=5, socket_connect_timeout=5)
    started = time.monotonic()
    try:
        while True:
            result = _check(connection, ids)
            if result.pending == 0:
                result.settled_after_s = round(time.monotonic() - started, 1)
                if queued is not None:
                    _find_stuck(connection, queued, ids, result)
                return result
            if time.monotonic() - started >= settle_timeout_s:
                if queued is not None:
                    places = queued.places(connection, result.pending_ids)
                    result.pending_jobs_by_place = {place: len(ids) for place, ids in places.items()}
                    with_job = {job_id.rsplit("-", 1)[0] for ids in places.values() for job_id in ids}
                    if len(with_job) < result.pending:
                        result.pending_jobs_by_place["nowhere"] = result.pending - len(with_job)
                return result
            time.sleep(0.5)
    finally:
        connection.close()


def _check(connection: redis.Redis, ids: list[str]) -> Audit:
    result = Audit(acknowledged=len(ids))
    for start in range(0, len(ids), _BATCH):
        batch = ids[start:start + _BATCH]
        pipe = connection.pipeline(transaction=False)
        for campaign_id in batch:
            pipe.hget(campaign_key(campaign_id), "status")
            pipe.hgetall(executions_key(campaign_id))
        replies = pipe.execute()
        for campaign_id, status, executions in zip(batch, replies[0::2], replies[1::2], strict=True):
            if status is None:
                result.lost += 1
                result.lost_ids.append(campaign_id)
                continue
            if status == b"completed":
                result.completed += 1
            elif status == b"failed":
                result.failed += 1
            else:
                result.pending += 1
                result.pending_ids.append(campaign_id)
            if any(int(count) > 1 for count in executions.values()):
                result.duplicated += 1
                result.duplicated_ids.append(campaign_id)
    return result


def _find_stuck(connection: redis.Redis, queued: Queued, ids: list[str], result: Audit) -> None:
    """Jobs of these campaigns (all final now) that their library still holds as to-do or in progress, by where."""
    for place, found in queued.places(connection, ids).items():
        result.stuck_by_registry[place] = len(found)
        result.stuck += len(found)
        result.stuck_ids += found
