"""Composes RQ's own writes for a campaign's jobs onto the caller's transaction: the generation job onto the
admission's, the automation job onto the transaction in which generation records its outcome.

RQ builds the jobs (ids, JSON payloads, registries) with `Queue.prepare_data` / `enqueue_many` and buffers its writes
on the pipeline we hand it; nothing here talks to Redis (but RQ's one read of the server version, see JobPlanner). The
service hands RQ an asyncio pipeline, which works because, inside MULTI, a pipeline only buffers commands: RQ's calls
return at once and the single `await pipe.execute()` in the store ships them with the campaign's own writes. A worker
hands it a sync pipeline (services/campaign/steps.py).

Why generation enqueues automation itself instead of RQ's dependencies (`depends_on`): RQ 3 enqueues a dependent in
two steps. The worker that finished the dependency moves it to the queue's ready registry in its success transaction
(rq/worker/base.py:1509-1510, `Queue.move_dependents_to_ready`, rq/queue.py:1510), then, after that commit
(rq/worker/base.py:1553), `ReadyJobRegistry.enqueue_jobs` moves it onto the queue under a WATCH of the whole registry
key (rq/registry.py:595). Any other worker adding or removing any ready job between that WATCH and its EXEC aborts it,
and the loser *skips* the job (rq/registry.py:617-619: "skipping for now") until registry maintenance runs
`ReadyJobRegistry.cleanup` (rq/registry.py:535-538, from clean_registries, rq/registry.py:735), every maintenance
interval. With 12 workers under the `none` profile that left a share of campaigns waiting 0-5 s, and up to 9 s when
arrivals come a few at a time (issue #17). Enqueueing automation in the transaction that records generation's outcome
has no such race and keeps every guarantee the dependency gave:
- automation never runs before generation succeeded: its job does not exist until generation's outcome is recorded,
  and it is created in that same MULTI/EXEC, so it exists exactly when the outcome does;
- a failed generation never creates it: the campaign is marked `failed` by the last attempt (jobs.py) and no
  automation job, deferred or otherwise, is left behind;
- a generation delivered again (a worker crash after the EXEC, before RQ recorded the job's success) finds its outcome
  recorded and returns before doing anything (StepStore.begin with `done`), so it cannot chain a second automation;
  the automation job's id is deterministic besides, so even a second enqueue would rewrite the one job, not create
  another (and its second run would find the follow-ups recorded and do nothing). With no retry left, RQ moves such an
  abandoned generation to its failed registry instead (rq/registry.py:312-324) while the campaign still completes
  through the automation job already queued; under `depends_on` that automation stayed deferred for good.
"""

from __future__ import annotations

from redis import Redis as SyncRedis
from redis.asyncio.client import Pipeline as AsyncPipeline
from redis.client import Pipeline
from rq import Queue, Retry
from rq.queue import EnqueueData
from rq.serializers import JSONSerializer

from services.campaign.settings import Settings
from services.queued.attempts import JOB_TIMEOUT_S, automation_job_id, generation_job_id
from services.queued.retries import OffpathJob

GENERATE = "services.queued.jobs.generate"
AUTOMATE = "services.queued.jobs.automate"

# A job running longer than JOB_TIMEOUT_S is killed (RQ's death penalty) and counts as a failed attempt. With a
# SimpleWorker it also bounds how long RQ takes to notice a worker that died mid-job: the job's started-registry entry
# expires min(timeout, job_monitoring_interval) + 60 s after it started (rq/worker/base.py:1112-1126).
# Finished jobs stay in RQ's finished registry this long: the queue probe counts completions from it (offpath/probe.py,
# seconds behind). Nothing reads them later: a campaign's state is its own hash (services/campaign/store.py), and the
# chaos faults watch a killed job's starts as they happen (offpath/worker_faults.py, FirstStarts).
# Ten minutes, not an hour: at 32 campaigns/s an hour of finished jobs held 1.47 GiB of Redis (13.7 kB a campaign;
# the soaks of 2026-12-07, docs/findings.md), ten minutes a sixth of it.
# Not 0, RQ's "keep no result": RQ 3 then deletes each finished job and its keys at once (rq/job.py:1595-1596) instead
# of letting them expire, which costs more, not less (benchmarks/drain_cost.py: +12 Redis commands per campaign, more
# CPU on both sides), and leaves the finished registry empty (rq/worker/base.py:1522-1532).
RESULT_TTL_S = 600
# Failed jobs, with their tracebacks, stay in RQ's failed registry for a week: the visible record of a failure.
FAILURE_TTL_S = 7 * 24 * 3600


def campaign_queue(settings: Settings, connection: SyncRedis | None = None) -> Queue:
    connection = connection if connection is not None else SyncRedis.from_url(settings.redis_url)
    return Queue(settings.queue_name, connection=connection, serializer=JSONSerializer, job_class=OffpathJob)


class JobPlanner:
    """Buffers a campaign's jobs onto a transaction the caller opened and will execute."""

    def __init__(self, queue: Queue, settings: Settings, redis_version: tuple[int, int, int] | None = None):
        # Without a version RQ asks the server on first enqueue, over the queue's own sync connection (rq/queue.py:
        # 243-251): fine for a worker, whose pipelines are sync too. The service, which hands RQ its asyncio pipeline
        # inside a request, reads the version once at startup with its async client and gives it here.
        if redis_version is not None:
            queue.redis_server_version = redis_version
        self.queue = queue
        # A failed attempt is retried after the settings' backoff, on time (services/queued/retries.py); a job whose
        # worker died is retried at once (services/queued/liveness.py). Both count against the same retries.
        self.retry = Retry(max=settings.retries, interval=settings.retry_backoff_s) if settings.retries else None

    def close(self) -> None:
        self.queue.connection.close()

    def buffer(self, pipe: AsyncPipeline, campaign_id: str) -> None:
        """Admission (the service's transaction): the generation job, queued."""
        self._enqueue(pipe, GENERATE, campaign_id, generation_job_id(campaign_id), "generate")

    def buffer_automation(self, pipe: Pipeline, campaign_id: str) -> None:
        """Generation's outcome (a worker's transaction): the automation job, queued (the module docstring says why not
        `depends_on`)."""
        self._enqueue(pipe, AUTOMATE, campaign_id, automation_job_id(campaign_id), "automate")

    def _enqueue(self, pipe: Pipeline | AsyncPipeline, func: str, campaign_id: str, job_id: str, verb: str) -> None:
        job = self._data(func, campaign_id, job_id, f"{verb} campaign {campaign_id}")
        self.queue.enqueue_many([job], pipeline=pipe)  # type: ignore[arg-type]

    def _data(self, func: str, campaign_id: str, job_id: str, description: str) -> EnqueueData:
        return Queue.prepare_data(
            func,
            args=[campaign_id],
            job_id=job_id,
            retry=self.retry,
            timeout=JOB_TIMEOUT_S,
            result_ttl=RESULT_TTL_S,
            failure_ttl=FAILURE_TTL_S,
            description=description,
        )


def parse_redis_version(text: str) -> tuple[int, int, int]:
    major, minor, patch = (text.split(".") + ["0", "0"])[:3]
    return int(major), int(minor), int(patch)
