"""Knowing, within seconds, that a job's worker died, and never mistaking a slow or unreachable one for dead.

Stock RQ notices a dead SimpleWorker's job only when the job's started-registry entry expires: the entry is scored
now + min(job timeout, job_monitoring_interval) + 60 s when the job starts (Worker.get_heartbeat_ttl,
rq/worker/base.py:1112-1126; Execution.create, rq/executions.py:93-105), a SimpleWorker renews it only between jobs (it
runs the job in its own thread, so its monitoring loop does not run, rq/worker/worker_classes.py:287-291), and
registry maintenance then retries it (StartedJobRegistry.cleanup, rq/registry.py:268-330). That is ~65 s at best and
about two minutes as offpath ran it (issue #13). Two parts make it seconds:

- JobPulse: while a worker performs a job, a thread renews the job's execution every PULSE_S with RQ's own
  Execution.heartbeat (rq/executions.py:131-141): it rewrites the execution's `last_heartbeat` and pushes its
  started-registry score (RQ's backstop) forward, whatever the job is doing. A pulse that finds its execution declared
  abandoned while its job still runs records a false abandonment (FALSE_ABANDONMENTS_KEY): the watch below must never
  cause one.
- AbandonmentWatch: one per queue at a time (a lock, so every worker process can run one and a survivor takes over),
  every SWEEP_S it reads each started execution's `last_heartbeat`. An execution whose heartbeat it has seen unchanged
  for ABANDONED_AFTER_S of its own continuous watching is abandoned: it is taken off the started registry and its job
  requeued at the front, using one of the job's RQ retries, or, with none left, failed in RQ's failed registry and the
  campaign marked `failed` (what RQ's own cleanup does, rq/registry.py:300-318, plus the campaign's visible state).

Why "its own continuous watching" and not a timestamp: when Redis is paused (SIGSTOP) or the watch cannot reach it, no
heartbeat can arrive, and every timestamp looks stale the moment Redis answers again. The watch measures staleness only
over time in which it saw Redis answer every sweep: a gap longer than BLIND_AFTER_S between its successful sweeps
restarts every clock. A live worker's pulse then has ABANDONED_AFTER_S to show up, five of its beats.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from dataclasses import dataclass

from redis import Redis
from redis.backoff import NoBackoff
from redis.exceptions import RedisError, WatchError
from redis.retry import Retry
from rq import Queue
from rq.executions import Execution
from rq.job import Job, JobStatus
from rq.job_lifecycle import record_job_failure
from rq.serializers import JSONSerializer
from rq.utils import parse_composite_key

from services.campaign.steps import StepStore
from services.campaign.store import IllegalTransition

log = logging.getLogger("offpath.liveness")

PULSE_S = 1.0
SWEEP_S = 0.5
ABANDONED_AFTER_S = 5.0
BLIND_AFTER_S = 2.0
# Every declaration, true or false, is kept for the chaos audit (capped).
ABANDONED_KEY = "offpath:abandoned:{queue}"
FALSE_ABANDONMENTS_KEY = "offpath:false-abandonments:{queue}"
_LOG_CAP = 10_000
_WATCH_LOCK = "offpath:abandonment-watch:{queue}"
# Set by the watch for each execution it declares abandoned, so that a pulse tells "taken from me" from "finished by
# RQ" (both remove the started-registry entry).
_DECLARED = "offpath:abandoned-execution:{execution}"
_DECLARED_TTL_S = 3600
_RENEW_LUA = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) and 1 or 0
"""


def liveness_redis(url: str) -> Redis:
    """A connection of its own, with short timeouts and no retries: a beat or a sweep that cannot reach Redis fails
    within a second and the next one tries afresh, instead of waiting behind the job's or RQ's connection."""
    return Redis.from_url(url, socket_timeout=1.0, socket_connect_timeout=1.0, retry=Retry(NoBackoff(), 0))


class JobPulse:
    """Beats for one execution while its job runs (a context manager around the job)."""

    def __init__(self, redis: Redis, queue: Queue, execution: Execution, ttl_s: int) -> None:
        self.redis = redis
        self.registry = queue.started_job_registry
        self.queue_name = queue.name
        self.execution = execution
        self.ttl_s = ttl_s
        self._stop = threading.Event()
        self._taken = False
        self._thread = threading.Thread(target=self._run, name=f"pulse-{execution.job_id}", daemon=True)

    def __enter__(self) -> JobPulse:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=2 * PULSE_S)

    def _run(self) -> None:
        while not self._stop.wait(PULSE_S):
            try:
                self._beat()
            except RedisError as exc:
                log.debug("pulse for %s missed a beat: %s", self.execution.job_id, exc)

    def _beat(self) -> None:
        with self.redis.pipeline(transaction=False) as pipe:
            pipe.exists(_DECLARED.format(execution=self.execution.id))
            self.execution.heartbeat(self.registry, self.ttl_s, pipe)  # XX: never re-adds a removed entry
            declared = pipe.execute()[0]
        if declared and not self._stop.is_set() and not self._taken:
            self._taken = True
            log.error("job %s was declared abandoned while this worker still runs it", self.execution.job_id)
            record = json.dumps({"job": self.execution.job_id, "execution": self.execution.id,
                                 "worker": self.execution.worker_name, "at": time.time()})
            key = FALSE_ABANDONMENTS_KEY.format(queue=self.queue_name)
            self.redis.pipeline(transaction=False).lpush(key, record).ltrim(key, 0, _LOG_CAP - 1).execute()


@dataclass
class _Seen:
    heartbeat: bytes | None
    since: float  # monotonic time from which the watch has seen this heartbeat unchanged


class AbandonmentWatch(threading.Thread):
    """Declares abandoned the executions whose pulse stopped (see the module docstring); one per queue at a time."""

    def __init__(self, url: str, queue_name: str, stopping: threading.Event) -> None:
        super().__init__(name="abandonment-watch", daemon=True)
        self.redis = liveness_redis(url)
        self.queue = Queue(queue_name, connection=self.redis, serializer=JSONSerializer)
        self.steps = StepStore(self.redis)
        self.stopping = stopping
        self.token = uuid.uuid4().hex
        self._renew = self.redis.register_script(_RENEW_LUA)
        self._seen: dict[str, _Seen] = {}
        self._last_sweep: float | None = None

    def run(self) -> None:
        while not self.stopping.wait(SWEEP_S):
            try:
                self.sweep()
            except RedisError as exc:
                log.debug("abandonment watch could not sweep: %s", exc)
        self.redis.close()

    def sweep(self) -> list[str]:
        """One look at the started executions; returns the ones it declared abandoned."""
        if not self._renew(keys=[_WATCH_LOCK.format(queue=self.queue.name)],
                           args=[self.token, int(BLIND_AFTER_S * 1000)]):
            self._forget()  # another process watches; should this one take over, it starts from nothing
            return []
        entries = [e.decode() for e in self.redis.zrange(self.queue.started_job_registry.key, 0, -1)]
        with self.redis.pipeline(transaction=False) as pipe:
            for entry in entries:
                pipe.hget(f"rq:execution:{entry}", "last_heartbeat")
            beats = pipe.execute()
        now = time.monotonic()
        blind = self._last_sweep is None or now - self._last_sweep > BLIND_AFTER_S
        self._last_sweep = now
        seen: dict[str, _Seen] = {}
        abandoned = []
        for entry, beat in zip(entries, beats, strict=True):
            before = self._seen.get(entry)
            if blind or before is None or before.heartbeat != beat:
                seen[entry] = _Seen(beat, now)
            else:
                seen[entry] = before
                if now - before.since >= ABANDONED_AFTER_S:
                    abandoned.append(entry)
        self._seen = seen
        declared = [entry for entry in abandoned if self._abandon(entry, now - seen[entry].since)]
        for entry in declared:
            self._seen.pop(entry, None)
        return declared

    def _forget(self) -> None:
        self._seen.clear()
        self._last_sweep = None

    def _abandon(self, entry: str, silent_s: float) -> bool:
        """Take the execution off the started registry and requeue or fail its job, in one transaction that aborts if
        the execution finished (or was taken) meanwhile."""
        job_id, execution_id = parse_composite_key(entry)
        self.queue.get_redis_server_version()  # RQ reads it while enqueueing; not inside the transaction below
        for _ in range(5):  # the registry changes with every job started or finished: a lost race is tried again
            try:
                outcome = self._abandon_once(entry, job_id, execution_id, silent_s)
            except WatchError:
                continue
            if outcome is None:
                return False
            what, failed_campaign = outcome
            break
        else:
            return False
        log.warning("job %s: worker silent for %.1f s; declared abandoned, %s", job_id, silent_s, what)
        if failed_campaign is not None:
            try:
                self.steps.fail(failed_campaign, RuntimeError("its job was abandoned by its worker, no retry left"))
            except IllegalTransition:
                pass  # final already
        return True

    def _abandon_once(self, entry: str, job_id: str, execution_id: str,
                      silent_s: float) -> tuple[str, str | None] | None:
        registry_key = self.queue.started_job_registry.key
        with self.redis.pipeline(transaction=True) as pipe:
            pipe.watch(registry_key)
            if pipe.zscore(registry_key, entry) is None:
                return None
            job = Job.fetch(job_id, connection=self.redis, serializer=JSONSerializer)
            if job.get_status(refresh=False) != JobStatus.STARTED:
                return None
            pipe.multi()
            pipe.zrem(registry_key, entry)
            pipe.delete(f"rq:execution:{entry}")
            pipe.set(_DECLARED.format(execution=execution_id), job_id, ex=_DECLARED_TTL_S)
            failed_campaign = None
            if job.retries_left:
                job.retries_left -= 1
                job.started_at = None
                # Queue._enqueue_job is what Job.retry calls with no retry interval (rq/job.py:1800-1801); here at
                # the front, so a recovered job does not wait behind the backlog a second time.
                self.queue._enqueue_job(job, pipeline=pipe, at_front=True)
                what = "requeued"
            else:
                record_job_failure(job, f"abandoned: its worker's pulse stopped {silent_s:.1f} s ago", pipe)
                failed_campaign = job.args[0] if job.args else None
                what = "failed"
            record = json.dumps({"job": job_id, "execution": execution_id, "silent_s": round(silent_s, 2),
                                 "what": what, "at": time.time()})
            key = ABANDONED_KEY.format(queue=self.queue.name)
            pipe.lpush(key, record)
            pipe.ltrim(key, 0, _LOG_CAP - 1)
            pipe.execute()
        return what, failed_campaign
