"""The queued design on Dramatiq (2.2, Redis broker): the queue-backend protocol of services/queued/backend.py.

broker.py: the broker, configured for this job, and its two actors; admission.py: the campaign and its first message
in one transaction (and what Dramatiq adds after it); worker.py: one worker process with one worker thread.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from redis import Redis

from services.campaign.settings import Settings
from services.queued.attempts import Chain, no_chain

if TYPE_CHECKING:
    from services.queued.dramatiq_backend.admission import DramatiqAdmission

__all__ = ["DRAMATIQ", "DramatiqBackend"]


class DramatiqBackend:
    name = "dramatiq"

    def admission(self, settings: Settings, redis_version: tuple[int, int, int]) -> DramatiqAdmission:
        from services.queued.dramatiq_backend.admission import DramatiqAdmission

        return DramatiqAdmission(settings)

    def chaining(self, settings: Settings, redis: Redis) -> Chain:
        return no_chain  # Dramatiq's pipeline enqueues automation once generation returned (broker.py)

    def backlog_key(self, settings: Settings) -> str:
        from services.queued.dramatiq_backend.admission import queue_key

        return queue_key(settings.queue_name)

    def job_places(self, redis: Redis, queue_name: str, job_ids: set[str]) -> dict[str, list[str]]:
        from services.queued.dramatiq_backend.places import dramatiq_job_places

        return dramatiq_job_places(redis, queue_name, job_ids)

    def run_worker(self, settings: Settings, name: str | None, burst: bool,
                   on_ready: Callable[[], None] | None = None) -> int:
        from services.queued.dramatiq_backend.worker import run_dramatiq_worker

        return run_dramatiq_worker(settings, name, burst, on_ready)


DRAMATIQ = DramatiqBackend()
