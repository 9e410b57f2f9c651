"""Knowing, within seconds, that a job's worker died, and never mistaking a slow or unreachable one for dead.

Stock RQ notices a dead SimpleWorker's job only when the job's started-registry entry expires: the entry is scored
now + min(job timeout, job_monitoring_interval) + 60 s when the job starts (Worker.get_heartbeat_ttl,
rq/worker/base.py:1112-1126; Execution.create, rq/executions.py:93-105), a SimpleWorker renews it only between jobs (it
runs the job in its own thread, so its monitoring loop does not run, rq/worker/worker_classes.py:287-291), and
registry maintenance then retries it (StartedJobRegistry.cleanup, rq/registry.py:268-330). That is ~65 s at best and
about two minutes as offpath ran it (issue #13). Two parts make it seconds:

- Pulse: while a worker performs a job, a thread renews the job's execution every PULSE_S with RQ's own
  Execution.heartbeat (rq/executions.py:131-141): it rewrites the execution's `last_heartbeat` and pushes its
  started-registry score (RQ's backstop) forward, whatever the job is doing. A pulse that finds its execution declared
  abandoned while its job still runs records a false abandonment (FALSE_ABANDONMENTS_KEY): the watch below must never
  cause one.
- AbandonmentWatch: one per queue at a time (a lock, so every worker process can run one and a survivor takes over),
  every SWEEP_S it reads each started execution's `last_heartbeat`. An execution whose heartbeat has been seen unchanged
  for ABANDONED_AFTER_S of continuous watching is abandoned: it is taken off the started registry and its job
  requeued at the front, using one of the job's RQ retries, or, with none left, failed in RQ's failed registry and the
  campaign marked `failed` (what RQ's own cleanup does, rq/registry.py:300-318, plus the campaign's visible state).
  The abandonment also clears the campaign's step owner in the same transaction, so the worker, if it was only frozen
  and wakes, can record nothing for the job (the fence: services/campaign/steps.py).

Every moment of a job's life is covered, not only its run (tests/test_windows.py kills a worker at each):
- in RQ's intermediate queue, dequeued (BLMOVE) and not yet prepared: the job is in no registry, and RQ's own
  intermediate-queue cleanup fails it a minute later (rq/intermediate_queue.py:100-118) with the campaign left
  `accepted`. The watch treats a job id seen there, with no execution of it started, like an execution whose pulse is
  gone (a live worker holds it there for a round trip): after GONE_AFTER_S of continuous watching it goes back to the
  front of the queue (no retry spent: it never ran);
- prepared, not started (the execution exists, the job is still `queued` and in the intermediate queue, and no pulse
  ran yet): abandoned like any execution, taken off the intermediate queue too, no retry spent;
- started, before the first pulse: the execution's heartbeat is its creation time, which never changes: abandoned;
- mid-step, and after the outcome's transaction but before RQ recorded the job's end: abandoned and requeued; the
  redelivery finds the outcome recorded, if it was, and does nothing (services/campaign/steps.py).

A dead process is also seen sooner: each pulse talks to Redis over a connection named for its worker (the execution's
`worker_name`), connected from the worker's start; the kernel closes a dead process's sockets, so its pulse's name
leaves Redis's client list at once. An execution whose pulse has been gone from that list for GONE_AFTER_S of
continuous watching is abandoned then (a frozen process keeps its connection: it is left to the heartbeat's
ABANDONED_AFTER_S; a host that vanishes without closing its sockets likewise). When every worker is killed at once,
no survivor holds the watch: the jobs wait for a replacement to start and watch, then GONE_AFTER_S, instead of
ABANDONED_AFTER_S.

Why "continuous watching" and not a timestamp: when Redis is paused (SIGSTOP) or the watch cannot reach it, no
heartbeat can arrive, and every timestamp looks stale the moment Redis answers again. The watch measures staleness only
over time in which Redis answered every sweep: a gap longer than BLIND_AFTER_S between successful sweeps (measured on
Redis's own clock, which a pause makes jump) restarts every clock. A live worker's pulse then has ABANDONED_AFTER_S to
show up, five of its beats.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from redis import Redis
from redis.backoff import NoBackoff
from redis.client import Pipeline
from redis.exceptions import RedisError, WatchError
from redis.retry import Retry
from rq import Queue
from rq.exceptions import NoSuchJobError
from rq.executions import Execution
from rq.job import Job, JobStatus
from rq.job_lifecycle import record_job_failure
from rq.registry import StartedJobRegistry
from rq.serializers import JSONSerializer
from rq.utils import parse_composite_key

from foundation.redis_replies import text
from services.campaign.steps import OWNER_FIELD, StepStore
from services.campaign.store import IllegalTransition, campaign_key
from services.queued.retries import OffpathJob, move_due_retries

log = logging.getLogger("offpath.liveness")

PULSE_S = 1.0
SWEEP_S = 0.5
ABANDONED_AFTER_S = 5.0
BLIND_AFTER_S = 2.5
# An execution whose pulse has had no connection to Redis for this long, while the watch saw Redis answer, is abandoned
# without waiting for ABANDONED_AFTER_S: a process that dies, killed or crashed, has its sockets closed by the kernel,
# so Redis drops its clients at once; a live pulse whose connection broke (a Redis restart, a timeout) reconnects at its
# next beat, within PULSE_S plus one connect timeout.
GONE_AFTER_S = 3.0
# Why an execution was declared abandoned, as its record and the log say.
GONE = "its worker's pulse connection gone"
SILENT = "its worker's heartbeat unchanged"
NEVER_PREPARED = "dequeued and never prepared"
# A pulse's Redis client name: this, then the name of the RQ worker it beats for (an execution's `worker_name`).
PULSE_CLIENT_PREFIX = "offpath-pulse:"
# Every declaration, true or false, is kept for the chaos audit (capped).
ABANDONED_KEY = "offpath:abandoned:{queue}"
FALSE_ABANDONMENTS_KEY = "offpath:false-abandonments:{queue}"
_LOG_CAP = 10_000
_WATCH_LOCK = "offpath:abandonment-watch:{queue}"
_LOCK_TTL_S = 1.5
_MIN_WAIT_S = 0.005  # the retry mover's resolution (services/queued/retries.py)
# What the watch has seen, kept in Redis so that a process taking the watch over (its holder died) goes on from it: for
# each started execution, its last heartbeat and the time (Redis's clock) since which it has not changed; and when the
# last sweep saw Redis. Kept in the watch's memory instead, a worker killed while it held the watch restarted every
# clock (measured: 22 kills a second apart, each new holder killed before it had watched for ABANDONED_AFTER_S, took
# jobs 20-41 s to run again).
_SEEN = "offpath:abandonment-watch:{queue}:seen"
_SWEPT = "offpath:abandonment-watch:{queue}:swept"
# Set by the watch for each execution it declares abandoned, so that a pulse tells "taken from me" from "finished by
# RQ" (both remove the started-registry entry).
_DECLARED = "offpath:abandoned-execution:{execution}"
_DECLARED_TTL_S = 3600
# The watch's name, in _SEEN, for a job id seen in RQ's intermediate queue with no execution of it started.
_DEQUEUED = "dequeued|"
_RENEW_LUA = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) and 1 or 0
"""


def liveness_redis(url: str, client_name: str | None = None) -> Redis:
    """A connection of its own, with short timeouts and no retries: a beat or a sweep that cannot reach Redis fails
    within a second and the next one tries afresh, instead of waiting behind the job's or RQ's connection."""
    return Redis.from_url(url, socket_timeout=1.0, socket_connect_timeout=1.0, retry=Retry(NoBackoff(), 0),
                          client_name=client_name)


class Pulse(threading.Thread):
    """Beats every PULSE_S for the execution its worker process is performing, if any. One thread for the process's
    life, not one per job: starting and joining a thread per job cost more than the beats of a short job."""

    def __init__(self, url: str) -> None:
        super().__init__(name="pulse", daemon=True)  # beats through a warm shutdown's last job; ends with the process
        self.url = url
        self.redis = liveness_redis(url)  # named, and replaced, once its worker has a name (named)
        self._lock = threading.Lock()
        self._current: _Beating | None = None

    @contextmanager
    def beating(self, queue: Queue, execution: Execution, ttl_s: int) -> Iterator[None]:
        """Beat for `execution` while the block (the job) runs."""
        with self._lock:
            self._current = _Beating(queue.started_job_registry, queue.name, execution, ttl_s)
        try:
            yield
        finally:
            with self._lock:
                self._current = None

    def run(self) -> None:
        while True:
            time.sleep(PULSE_S)
            with self._lock:
                current = self._current
            if current is not None:
                try:
                    self._beat(current)
                except RedisError as exc:
                    log.debug("pulse for %s missed a beat: %s", current.execution.job_id, exc)

    def named(self, worker_name: str) -> None:
        """Beat over a connection named for `worker_name`, connected now: the watch looks for it among Redis's clients
        while an execution of that worker is started, from its first moment, before the first beat."""
        client_name = PULSE_CLIENT_PREFIX + worker_name
        fresh = liveness_redis(self.url, client_name)
        try:
            fresh.ping()
        except RedisError as exc:  # Redis away: the next beat connects, under this name
            log.debug("pulse could not connect yet: %s", exc)
        with self._lock:
            old, self.redis = self.redis, fresh
        old.close()

    def _beat(self, current: _Beating) -> None:
        with self.redis.pipeline(transaction=False) as pipe:
            pipe.exists(_DECLARED.format(execution=current.execution.id))
            current.execution.heartbeat(current.registry, current.ttl_s, pipe)  # XX: never re-adds a removed entry
            declared = pipe.execute()[0]
        if declared:
            self._taken(current)

    def taken(self, execution: Execution) -> None:
        """The job's step was refused to this worker (services/campaign/steps.py): its execution was declared
        abandoned while it ran. Recorded now, in case no beat found out first."""
        with self._lock:
            current = self._current
        if current is not None and current.execution.id == execution.id:
            self._taken(current)

    def _taken(self, current: _Beating) -> None:
        with self._lock:
            still_running = self._current is current
            first = still_running and not current.taken
            current.taken = True
        if not first:
            return
        log.error("job %s was declared abandoned while this worker still runs it", current.execution.job_id)
        record = json.dumps({"job": current.execution.job_id, "execution": current.execution.id,
                             "worker": current.execution.worker_name, "at": time.time()})
        key = FALSE_ABANDONMENTS_KEY.format(queue=current.queue_name)
        pipe = self.redis.pipeline(transaction=False)
        pipe.lpush(key, record)
        pipe.ltrim(key, 0, _LOG_CAP - 1)
        pipe.execute()


@dataclass(frozen=True)
class _Seen:
    """What the watch saw of an execution: its last heartbeat, since when (Redis's clock) that has not changed, and
    since when its pulse has had no connection to Redis (None: it has one, or none is known)."""

    beat: str
    since: float
    gone_since: float | None = None

    def __str__(self) -> str:
        return f"{self.beat}|{self.since!r}|{'' if self.gone_since is None else repr(self.gone_since)}"

    @classmethod
    def parse(cls, text: str) -> _Seen:
        beat, since, gone = (text.split("|") + [""])[:3]
        return cls(beat, float(since), float(gone) if gone else None)


@dataclass
class _Beating:
    registry: StartedJobRegistry
    queue_name: str
    execution: Execution
    ttl_s: int
    taken: bool = False


class AbandonmentWatch(threading.Thread):
    """Declares abandoned the executions whose pulse stopped (see the module docstring); one per queue at a time. The
    process holding it also moves due retries to the queue (services/queued/retries.py), between sweeps."""

    def __init__(self, url: str, queue_name: str, stopping: threading.Event) -> None:
        super().__init__(name="abandonment-watch", daemon=True)
        self.redis = liveness_redis(url)
        self.queue = Queue(queue_name, connection=self.redis, serializer=JSONSerializer, job_class=OffpathJob)
        self.steps = StepStore(self.redis)
        self.stopping = stopping
        self.token = uuid.uuid4().hex
        self._renew = self.redis.register_script(_RENEW_LUA)
        self._lock = _WATCH_LOCK.format(queue=queue_name)
        self._seen_key = _SEEN.format(queue=queue_name)
        self._swept_key = _SWEPT.format(queue=queue_name)

    def run(self) -> None:
        next_sweep = 0.0
        holding = False
        while not self.stopping.is_set():
            wait_s = SWEEP_S
            try:
                if time.monotonic() >= next_sweep:
                    next_sweep = time.monotonic() + SWEEP_S
                    holding = self.sweep() is not None
                if holding:
                    due_in = move_due_retries(self.redis, self.queue)
                    if due_in is not None:
                        wait_s = min(wait_s, due_in)
            except RedisError as exc:
                log.debug("abandonment watch could not sweep: %s", exc)
            self.stopping.wait(max(_MIN_WAIT_S, min(wait_s, next_sweep - time.monotonic())))
        self.redis.close()

    def sweep(self) -> list[str] | None:
        """One look at the started executions; returns the ones it declared abandoned (None: another process holds the
        watch)."""
        if not self._renew(keys=[self._lock], args=[self.token, int(_LOCK_TTL_S * 1000)]):
            return None
        with self.redis.pipeline(transaction=False) as pipe:
            pipe.time()
            pipe.get(self._swept_key)
            pipe.zrange(self.queue.started_job_registry.key, 0, -1)
            pipe.lrange(self.queue.intermediate_queue_key, 0, -1)
            pipe.hgetall(self._seen_key)
            (seconds, micros), swept, raw_entries, raw_dequeued, stored = pipe.execute()
        now = seconds + micros / 1e6  # Redis's clock: it jumps over a pause, which then reads as blindness
        entries = [entry.decode() for entry in raw_entries]
        held = {parse_composite_key(entry)[0] for entry in entries}
        # A job dequeued by a worker that has not created its execution yet: watched under its own name, as an
        # execution with a heartbeat that never moves.
        dequeued = sorted({_DEQUEUED + job_id.decode() for job_id in raw_dequeued} - {_DEQUEUED + j for j in held})
        with self.redis.pipeline(transaction=False) as pipe:
            for entry in entries:
                pipe.hmget(_execution_key(entry, self.redis), "last_heartbeat", "worker_name")
            beats_and_pulses = [[v.decode() if v is not None else "" for v in pair] for pair in pipe.execute()]
        beats = [beat for beat, _worker in beats_and_pulses] + [""] * len(dequeued)
        pulses = [PULSE_CLIENT_PREFIX + worker if worker else "" for _beat, worker in beats_and_pulses] \
            + [""] * len(dequeued)
        entries += dequeued
        connected = {client.get("name", "") for client in self.redis.client_list()} if any(pulses) else set()
        blind = swept is None or now - float(swept) > BLIND_AFTER_S
        before = {} if blind else {k.decode(): _Seen.parse(v.decode()) for k, v in stored.items()}
        seen: dict[str, _Seen] = {}
        abandoned: list[tuple[str, float, str]] = []
        for entry, beat, pulse in zip(entries, beats, pulses, strict=True):
            previous = before.get(entry)
            # A dequeued job has no execution, so no pulse to look for: a live worker holds one there for the time of
            # a round trip (rq/worker/base.py:1143-1212, then prepare_execution), so its silence counts as gone.
            gone = entry.startswith(_DEQUEUED) or (bool(pulse) and pulse not in connected)
            if previous is None or previous.beat != beat:
                seen[entry] = _Seen(beat, now, now if gone else None)
                continue
            gone_since = (previous.gone_since if previous.gone_since is not None else now) if gone else None
            seen[entry] = _Seen(beat, previous.since, gone_since)
            if gone_since is not None and now - gone_since >= GONE_AFTER_S:
                abandoned.append((entry, now - gone_since, NEVER_PREPARED if entry.startswith(_DEQUEUED) else GONE))
            elif now - previous.since >= ABANDONED_AFTER_S:
                abandoned.append((entry, now - previous.since, SILENT))
        declared = [entry for entry, for_s, how in abandoned if self._abandon(entry, for_s, how)]
        for entry in declared:
            seen.pop(entry)
        with self.redis.pipeline(transaction=True) as pipe:
            pipe.delete(self._seen_key)
            if seen:
                pipe.hset(self._seen_key, mapping={k: str(v) for k, v in seen.items()})
            pipe.set(self._swept_key, repr(now))
            pipe.execute()
        return declared

    def _abandon(self, entry: str, silent_s: float, how: str) -> bool:
        """Take the execution off the started registry and requeue or fail its job, in one transaction that aborts if
        the execution finished (or was taken) meanwhile; or requeue a job left in the intermediate queue."""
        self.queue.get_redis_server_version()  # RQ reads it while enqueueing; not inside the transaction below
        for _ in range(5):  # the registry changes with every job started or finished: a lost race is tried again
            try:
                if entry.startswith(_DEQUEUED):
                    job_id = entry.removeprefix(_DEQUEUED)
                    outcome = self._requeue_dequeued(job_id, silent_s, how)
                else:
                    job_id, execution_id = parse_composite_key(entry)
                    outcome = self._abandon_once(entry, job_id, execution_id, silent_s, how)
            except WatchError:
                continue
            if outcome is None:
                return False
            what, failed_campaign = outcome
            break
        else:
            return False
        log.warning("job %s: %s for %.1f s; declared abandoned, %s", job_id, how, silent_s, what)
        if failed_campaign is not None:
            try:
                self.steps.fail(failed_campaign, RuntimeError("its job was abandoned by its worker, no retry left"))
            except IllegalTransition:
                pass  # final already
        return True

    def _abandon_once(self, entry: str, job_id: str, execution_id: str,
                      silent_s: float, how: str) -> tuple[str, str | None] | None:
        registry_key = self.queue.started_job_registry.key
        with self.redis.pipeline(transaction=True) as pipe:
            pipe.watch(registry_key)
            if pipe.zscore(registry_key, entry) is None:
                return None
            job = OffpathJob.fetch(job_id, connection=self.redis, serializer=JSONSerializer)
            # Prepared, never started (RQ moves a job to `started` as its work begins, rq/worker/base.py:1379-1396): it
            # did not run, so it spends no retry, and it is still in the intermediate queue.
            never_started = job.get_status(refresh=False) == JobStatus.QUEUED
            pipe.multi()
            pipe.zrem(registry_key, entry)
            pipe.delete(_execution_key(entry, self.redis))
            pipe.set(_DECLARED.format(execution=execution_id), job_id, ex=_DECLARED_TTL_S)
            _release(pipe, job)
            failed_campaign = None
            if never_started:
                pipe.lrem(self.queue.intermediate_queue_key, 1, job_id)
                self.queue._enqueue_job(job, pipeline=pipe, at_front=True)
                what = "requeued (it had not started)"
            elif job.retries_left:
                job.retries_left -= 1
                job.started_at = None
                # Queue._enqueue_job is what Job.retry calls with no retry interval (rq/job.py:1800-1801); here at
                # the front, so a recovered job does not wait behind the backlog a second time.
                self.queue._enqueue_job(job, pipeline=pipe, at_front=True)
                what = "requeued"
            else:
                record_job_failure(job, f"abandoned: {how} for {silent_s:.1f} s", pipe)
                failed_campaign = job.args[0] if job.args else None
                what = "failed"
            record = json.dumps({"job": job_id, "execution": execution_id, "silent_s": round(silent_s, 2), "how": how,
                                 "what": what, "at": time.time()})
            key = ABANDONED_KEY.format(queue=self.queue.name)
            pipe.lpush(key, record)
            pipe.ltrim(key, 0, _LOG_CAP - 1)
            pipe.execute()
        return what, failed_campaign


    def _requeue_dequeued(self, job_id: str, silent_s: float, how: str) -> tuple[str, str | None] | None:
        """Put a job that a worker dequeued and never prepared back at the front of the queue, unless an execution of
        it started (or the job left the intermediate queue) meanwhile."""
        registry_key = self.queue.started_job_registry.key
        dequeued_key = self.queue.intermediate_queue_key
        with self.redis.pipeline(transaction=True) as pipe:
            pipe.watch(registry_key, dequeued_key)
            if job_id.encode() not in pipe.lrange(dequeued_key, 0, -1):
                return None
            if any(parse_composite_key(text(entry))[0] == job_id for entry in pipe.zrange(registry_key, 0, -1)):
                return None
            try:
                job = OffpathJob.fetch(job_id, connection=self.redis, serializer=JSONSerializer)
            except NoSuchJobError:
                job = None
            pipe.multi()
            pipe.lrem(dequeued_key, 1, job_id)
            if job is not None:
                self.queue._enqueue_job(job, pipeline=pipe, at_front=True)
            what = "requeued from RQ's intermediate queue" if job is not None else "dropped (no such job)"
            record = json.dumps({"job": job_id, "execution": None, "silent_s": round(silent_s, 2), "how": how, "what": what,
                                 "at": time.time()})
            key = ABANDONED_KEY.format(queue=self.queue.name)
            pipe.lpush(key, record)
            pipe.ltrim(key, 0, _LOG_CAP - 1)
            pipe.execute()
        return what, None


def _release(pipe: Pipeline, job: Job) -> None:
    """Clear the step owner of the job's campaign (services/campaign/steps.py): the worker that held the job, should it
    wake, can no longer record an outcome for it."""
    if job.args:
        pipe.hdel(campaign_key(job.args[0]), OWNER_FIELD)


def _execution_key(entry: str, redis: Redis) -> str:
    """The key of the execution a started-registry entry ("<job id>:<execution id>") names, as RQ spells it."""
    job_id, execution_id = parse_composite_key(entry)
    return Execution(execution_id, job_id, connection=redis).key  # no I/O: RQ builds the key from the ids

