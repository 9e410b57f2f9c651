"""Composes RQ's own writes for a campaign's two jobs onto the caller's transaction.

The queued service admits a campaign in one MULTI/EXEC: its state plus both jobs. RQ builds the
jobs (ids, JSON payloads, registries, the dependency of automation on generation) and buffers its
writes on the pipeline we hand it; nothing here talks to Redis. Handing RQ the service's asyncio
pipeline works because, inside MULTI, a pipeline only buffers commands: RQ's calls return at once
and the single `await pipe.execute()` in the store ships them with the state write.
"""

from __future__ import annotations

from redis import Redis as SyncRedis
from redis.asyncio.client import Pipeline
from rq import Queue, Retry
from rq.job import JobStatus
from rq.serializers import JSONSerializer

from services.campaign.settings import Settings

GENERATE = "services.queued.jobs.generate"
AUTOMATE = "services.queued.jobs.automate"

JOB_TIMEOUT_S = 60
RESULT_TTL_S = 3600
FAILURE_TTL_S = 7 * 24 * 3600


def generation_job_id(campaign_id: str) -> str:
    return f"{campaign_id}-generation"


def automation_job_id(campaign_id: str) -> str:
    return f"{campaign_id}-automation"


def campaign_queue(settings: Settings, connection: SyncRedis | None = None) -> Queue:
    connection = connection if connection is not None else SyncRedis.from_url(settings.redis_url)
    return Queue(settings.queue_name, connection=connection, serializer=JSONSerializer)


class JobPlanner:
    def __init__(self, queue: Queue, settings: Settings, redis_version: tuple[int, int, int]):
        # RQ would otherwise ask the server for its version on first enqueue, over the sync
        # connection, inside our request; we read it once at startup with the async client.
        queue.redis_server_version = redis_version
        self.queue = queue
        self.retry = Retry(max=settings.retries, interval=settings.retry_backoff_s) if settings.retries else None

    def buffer(self, pipe: Pipeline, campaign_id: str) -> None:
        generation = self.queue.create_job(
            GENERATE,
            args=[campaign_id],
            job_id=generation_job_id(campaign_id),
            retry=self.retry,
            timeout=JOB_TIMEOUT_S,
            result_ttl=RESULT_TTL_S,
            failure_ttl=FAILURE_TTL_S,
            description=f"generate campaign {campaign_id}",
        )
        self.queue.enqueue_job(generation, pipeline=pipe)  # type: ignore[arg-type]

        # The automation job waits, deferred, until generation finishes; RQ's worker enqueues it
        # then. These are the writes Queue.setup_dependencies makes, minus its WATCH/read of the
        # dependency, which we know is unfinished: it is being created in this same transaction.
        automation = self.queue.create_job(
            AUTOMATE,
            args=[campaign_id],
            job_id=automation_job_id(campaign_id),
            depends_on=generation.id,
            status=JobStatus.DEFERRED,
            retry=self.retry,
            timeout=JOB_TIMEOUT_S,
            result_ttl=RESULT_TTL_S,
            failure_ttl=FAILURE_TTL_S,
            description=f"automate campaign {campaign_id}",
        )
        automation.set_status(JobStatus.DEFERRED, pipeline=pipe)  # type: ignore[arg-type]
        automation.register_dependency(pipeline=pipe)  # type: ignore[arg-type]
        automation.save(pipeline=pipe)  # type: ignore[arg-type]


def parse_redis_version(text: str) -> tuple[int, int, int]:
    major, minor, patch = (text.split(".") + ["0", "0"])[:3]
    return int(major), int(minor), int(patch)
