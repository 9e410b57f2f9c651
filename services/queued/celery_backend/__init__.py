"""The queued design on Celery (5.7, Redis transport): the queue-backend protocol of services/queued/backend.py.

application.py: the Celery application, configured for this job, and its two tasks; admission.py: the campaign and its
first message in one transaction (and what Celery adds after it); worker.py: one solo-pool worker process.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from redis import Redis

from services.campaign.settings import Settings
from services.queued.attempts import Chain, no_chain

if TYPE_CHECKING:
    from services.queued.celery_backend.admission import CeleryAdmission

__all__ = ["CELERY", "CeleryBackend"]


class CeleryBackend:
    name = "celery"

    def admission(self, settings: Settings, redis_version: tuple[int, int, int]) -> CeleryAdmission:
        from services.queued.celery_backend.admission import CeleryAdmission

        return CeleryAdmission(settings)

    def chaining(self, settings: Settings, redis: Redis) -> Chain:
        return no_chain  # Celery's chain publishes automation once generation returned (application.py)

    def backlog_key(self, settings: Settings) -> str:
        # kombu keeps a queue's messages of priority 0 in a list named after the queue (kombu/transport/redis.py:
        # 1665-1669); the admission publishes at priority 0 only.
        return settings.queue_name

    def job_places(self, redis: Redis, queue_name: str, job_ids: set[str]) -> dict[str, list[str]]:
        from services.queued.celery_backend.places import celery_job_places

        return celery_job_places(redis, queue_name, job_ids)

    def run_worker(self, settings: Settings, name: str | None, burst: bool,
                   on_ready: Callable[[], None] | None = None) -> int:
        from services.queued.celery_backend.worker import run_celery_worker

        return run_celery_worker(settings, name, burst, on_ready)


CELERY = CeleryBackend()
