"""A queue backend: the queue library the queued design runs on, chosen per deployment by OFFPATH_QUEUE_BACKEND.

One small protocol, with RQ its first user (services/queued/rq_backend.py), then Celery and Dramatiq, each in a
subpackage (services/queued/celery_backend/, services/queued/dramatiq_backend/). A backend says:
- how the service admits a campaign with its first job (`admission`): what it buffers onto the admission's MULTI/EXEC,
  so that the campaign's state and its generation job are written together or not at all (each backend's admission
  module says how its library allows that, and what a crash can do);
- how generation chains automation (`chaining`): what generation buffers onto the transaction that records its
  outcome; nothing, for a library that publishes the next step itself once generation returned;
- how a worker runs (`run_worker`): one process, one job at a time, no fork per job, until SIGTERM (warm);
- how the backlog is counted (`backlog_key`): the Redis list of jobs ready to run, whose length the service sheds at
  (services/queued/backpressure.py);
- where its jobs are while not done yet (`job_places`): what the chaos audit reports for a campaign still pending after
  a fault, and for a job a final campaign left behind (offpath/audit.py).

The step bodies and the campaign's state are the same on every backend (services/queued/attempts.py,
services/campaign/steps.py): only the queue differs.

arq is not one of them, for now. arq 0.28 requires redis-py < 6 (its wheel's metadata: `redis[hiredis]<6,>=4.2.0`),
while kombu's Redis transport refuses redis-py < 6.1 and offpath runs redis-py 8: its tiers (the queued service and
its workers) cannot share this environment, and would need one of their own, started by the harness from another
interpreter. That is the harness's seam (how a design's tiers are declared and started, being rewritten), not this
package's. Once a design's tiers can name their interpreter, arq fits this protocol without a new idea: its enqueue is
two writes (PSETEX of the job, ZADD on the queue: arq/connections.py:173-175 in 0.28.0) that an admission can buffer
onto its MULTI, with a JSON serializer (arq pickles by default, :94); automation enqueued in generation's outcome
transaction, as on RQ (arq has no chain of its own); a worker with max_jobs=1 and a poll_delay well under its default
0.5 s (arq/worker.py:207), which otherwise puts up to half a second between a job and the next.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Protocol

from redis import Redis
from redis.asyncio.client import Pipeline as AsyncPipeline
from redis.client import Pipeline

from services.campaign.settings import Settings

__all__ = ["Admission", "QueueBackend", "queue_backend"]


class Admission(Protocol):
    """The service's side of a backend, built once at startup."""

    def buffer(self, pipe: AsyncPipeline, campaign_id: str) -> None:
        """Buffer the campaign's first job onto the admission's transaction (open, executed by the caller)."""

    def close(self) -> None:
        """Release what the admission holds (connections made at startup)."""


class QueueBackend(Protocol):
    name: str

    def admission(self, settings: Settings, redis_version: tuple[int, int, int]) -> Admission:
        """What the service buffers onto each admission, given the Redis server's version (read once at startup)."""

    def chaining(self, settings: Settings, redis: Redis) -> Callable[[Pipeline, str], None]:
        """What generation buffers onto its outcome's transaction, over a worker's Redis connection."""

    def backlog_key(self, settings: Settings) -> str:
        """The Redis list whose length is the backlog of jobs ready to run."""

    def job_places(self, redis: Redis, queue_name: str, job_ids: set[str]) -> dict[str, list[str]]:
        """The ids among `job_ids` whose job the library holds as not done yet, by place (a queue, a registry, a
        worker's unacknowledged set; "unlisted" for one stored where nothing will fetch it). Places with none are left
        out."""

    def run_worker(self, settings: Settings, name: str | None, burst: bool,
                   on_ready: Callable[[], None] | None = None) -> int:
        """Run one worker in this process until it is stopped (burst: until no job is left); its exit code. Once it
        consumes it writes its ready line (services/queued/lifetime.py), then calls `on_ready`."""


# Each backend by the object that implements it, imported only when chosen: a deployment on RQ never imports Celery.
# A name, not an import, as Celery names its pools (celery/concurrency/__init__.py: ALIASES, 'solo':
# 'celery.concurrency.solo:TaskPool') and kombu its transports (kombu/transport/__init__.py: TRANSPORT_ALIASES): RQ's
# worker is the entry point's own module (services/queued/worker.py), which looks its backend up here.
_IMPLEMENTATIONS = {
    "rq": "services.queued.rq_backend:RQ",
    "celery": "services.queued.celery_backend:CELERY",
    "dramatiq": "services.queued.dramatiq_backend:DRAMATIQ",
}


def queue_backend(name: str) -> QueueBackend:
    """The backend named `name`, one of services.campaign.settings.QUEUE_BACKENDS (Settings validated it)."""
    module, _, attribute = _IMPLEMENTATIONS[name].partition(":")
    backend: QueueBackend = getattr(importlib.import_module(module), attribute)
    return backend
