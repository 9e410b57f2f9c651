"""The queue probe: samples the queued design's backlog every second while a cell runs, and at the cell's
end takes a census of the campaigns it accepted — completion latency (accepted → completed) of each one
as an HDR interval log, and how many completed, failed or were still pending.

Completion latency comes from each campaign's own state (accepted_at, completed_at), read once at the
end, not from RQ's finished registry while it runs: the registry's scores are whole seconds and its
writes land out of order, so any cursor over it drops jobs, and it cannot see campaigns that finish
after the probe stops. The census can: each of those is counted as pending.

Registries are read without side effects (ZCARD/LLEN/ZRANGEBYSCORE, never a registry's cleanup), so
probing does not change what it measures.
"""

from __future__ import annotations

import csv
import json
import math
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis
from hdrh.histogram import HdrHistogram
from rq import Queue
from rq.serializers import JSONSerializer

from foundation.format import COMPLETION, COMPLETION_FILE, QUEUE_COLUMNS, QUEUE_FILE, CompletionCensus, log_file
from loadtests.hlog_writer import IntervalLog, clamp_us, new_histogram
from services.campaign.store import campaign_key
from services.queued.enqueue import FAILURE_TTL_S, RESULT_TTL_S
from services.queued.retries import retrying_key

# RQ scores its registries in whole seconds (rq.utils.current_timestamp) and a worker's registry write can
# land after a later-finishing job's: the live counts re-read this many seconds behind the newest score
# seen and count each job id once.
LOOKBACK_S = 3
CENSUS_BATCH = 500  # HMGETs per pipeline round trip


@dataclass
class QueueSample:
    t_s: float
    depth: int
    deferred: int
    scheduled: int
    started: int
    finished_total: int
    failed_total: int
    completed_total: int
    campaigns_failed_total: int
    workers: int

    @property
    def backlog(self) -> int:
        return self.depth + self.deferred + self.scheduled + self.started


@dataclass
class Census:
    """The campaigns accepted in [started_at, stopped_at) and where each stood at stopped_at."""

    started_at: float
    stopped_at: float
    accepted: int = 0
    completed: int = 0
    failed: int = 0
    pending: int = 0
    # (completed_at, accepted → completed in µs) of every completed campaign
    completions: list[tuple[float, int]] = field(default_factory=list, repr=False)

    def record(self) -> CompletionCensus:
        """What completion.json holds of it."""
        return CompletionCensus(started_at=self.started_at, stopped_at=self.stopped_at, accepted=self.accepted,
                                completed=self.completed, failed=self.failed, pending=self.pending)

    def counts(self) -> dict[str, Any]:
        return self.record().to_dict()


def take_census(connection: redis.Redis, started_at: float, stopped_at: float) -> Census:
    """Every campaign in the database whose accepted_at falls in the window (a block's cells share one
    database; the window tells them apart), read with SCAN and pipelined HMGETs."""
    census = Census(started_at, stopped_at)
    keys = list(dict.fromkeys(connection.scan_iter(match=campaign_key("*"), count=1000)))  # SCAN may repeat a key
    for first in range(0, len(keys), CENSUS_BATCH):
        pipe = connection.pipeline(transaction=False)
        for key in keys[first:first + CENSUS_BATCH]:
            pipe.hmget(key, "accepted_at", "completed_at", "failed_at")
        for accepted_at, completed_at, failed_at in pipe.execute():
            if accepted_at is None or not started_at <= float(accepted_at) < stopped_at:
                continue
            census.accepted += 1
            if completed_at is not None and float(completed_at) < stopped_at:
                census.completed += 1
                latency_us = clamp_us((float(completed_at) - float(accepted_at)) * 1_000_000)
                census.completions.append((float(completed_at), latency_us))
            elif failed_at is not None and float(failed_at) < stopped_at:
                census.failed += 1
            else:
                census.pending += 1
    return census


def write_completion_log(path: Path, census: Census, interval_s: float) -> HdrHistogram:
    """completion.hlog: intervals of interval_s from the census' start (the last one shorter), each holding
    the campaigns that completed in it; returns the histogram of them all."""
    span_s = census.stopped_at - census.started_at
    n_intervals = max(1, math.ceil(span_s / interval_s))
    intervals = [new_histogram() for _ in range(n_intervals)]
    total = new_histogram()
    for completed_at, latency_us in census.completions:
        index = min(int((completed_at - census.started_at) // interval_s), n_intervals - 1)
        intervals[index].record_value(latency_us)
        total.record_value(latency_us)
    log = IntervalLog(path, census.started_at)
    try:
        for index, histogram in enumerate(intervals):
            start = census.started_at + index * interval_s
            log.write(histogram, start, min(start + interval_s, census.stopped_at))
    finally:
        log.close()
    return total


class QueueProbe:
    """Run as a context manager around a cell: a background thread samples once a second; leaving it takes
    the census and writes completion.hlog and completion.json (foundation/format.py names every file)."""

    def __init__(self, redis_url: str, queue_name: str, cell_dir: Path, interval_s: float = 1.0):
        self.connection = redis.Redis.from_url(redis_url, socket_timeout=2, socket_connect_timeout=2)
        self.queue = Queue(queue_name, connection=self.connection, serializer=JSONSerializer)
        self.cell_dir = cell_dir
        self.interval_s = interval_s
        self.samples: list[QueueSample] = []
        self.errors: list[str] = []
        self.census: Census | None = None
        self.completion_total = new_histogram()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="queue-probe", daemon=True)
        self._seen: dict[str, dict[str, float]] = {"finished": {}, "failed": {}}
        self._floor: dict[str, float] = {}
        self._completed = 0
        self._campaigns_failed: set[str] = set()

    # Registry keys, read directly: the registries' .count would run cleanup, which moves jobs.
    def _keys(self) -> dict[str, str]:
        q = self.queue
        return {
            "queue": q.key,
            "ready": q.ready_job_registry.key,
            "intermediate": q.intermediate_queue_key,
            "deferred": q.deferred_job_registry.key,
            "scheduled": q.scheduled_job_registry.key,
            # retries waiting for their time (services/queued/retries.py): scheduled, on a set of offpath's own
            "retrying": retrying_key(q.name),
            "started": q.started_job_registry.key,
            "finished": q.finished_job_registry.key,
            "failed": q.failed_job_registry.key,
            "workers": f"rq:workers:{q.name}",
        }

    def __enter__(self) -> QueueProbe:
        self.start_time_s = time.time()
        keys = self._keys()
        pipe = self.connection.pipeline(transaction=True)
        pipe.zcard(keys["finished"])
        pipe.zcard(keys["failed"])
        # Jobs already in the registries near the start are not this cell's finishes.
        pipe.zrangebyscore(keys["finished"], math.floor(self.start_time_s) + RESULT_TTL_S - LOOKBACK_S, "+inf",
                           withscores=True)
        pipe.zrangebyscore(keys["failed"], math.floor(self.start_time_s) + FAILURE_TTL_S - LOOKBACK_S, "+inf",
                           withscores=True)
        self._base_finished, self._base_failed, finished, failed = pipe.execute()
        self._floor = {"finished": math.floor(self.start_time_s) + RESULT_TTL_S - LOOKBACK_S,
                       "failed": math.floor(self.start_time_s) + FAILURE_TTL_S - LOOKBACK_S}
        self._new_ids("finished", finished)
        self._new_ids("failed", failed)
        self._csv_file = open(self.cell_dir / QUEUE_FILE, "w", newline="")
        self._csv = csv.writer(self._csv_file)
        self._csv.writerow(QUEUE_COLUMNS)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._thread.ident is None:  # __enter__ failed (Redis did not answer): nothing was measured
            self.connection.close()
            return
        self._stop.set()
        self._thread.join(timeout=10)
        stopped_at = time.time()
        try:
            self.census = take_census(self.connection, self.start_time_s, stopped_at)
            self.completion_total = write_completion_log(self.cell_dir / log_file(COMPLETION), self.census,
                                                         self.interval_s)
            outcome = self.census.record()
        except redis.RedisError as exc:
            self.errors.append(f"census: {exc}")
            outcome = CompletionCensus(started_at=self.start_time_s, stopped_at=stopped_at, error=str(exc))
        (self.cell_dir / COMPLETION_FILE).write_text(json.dumps(outcome.to_dict(), indent=2) + "\n")
        try:
            self._sample(stopped_at, self.census)
        except redis.RedisError as exc:
            self.errors.append(f"final: {exc}")
        self._csv_file.close()
        self.connection.close()

    def backlog(self) -> int:
        """Jobs not finished yet, read now in one snapshot (the last sample's figure if Redis does not answer)."""
        try:
            pipe = self.connection.pipeline(transaction=True)
            self._buffer_backlog(pipe, self._keys())
            depth, ready, deferred, scheduled, retrying, started, intermediate = pipe.execute()
        except redis.RedisError:
            return self.samples[-1].backlog if self.samples else 0
        return int(depth + ready + deferred + scheduled + retrying + started + intermediate)

    @staticmethod
    def _buffer_backlog(pipe: Any, keys: dict[str, str]) -> None:
        pipe.llen(keys["queue"])
        pipe.zcard(keys["ready"])
        pipe.zcard(keys["deferred"])
        pipe.zcard(keys["scheduled"])
        pipe.zcard(keys["retrying"])
        pipe.zcard(keys["started"])
        pipe.llen(keys["intermediate"])

    def _run(self) -> None:
        next_tick = self.start_time_s + self.interval_s
        while not self._stop.wait(max(0.0, next_tick - time.time())):
            tick_end = next_tick
            try:
                self._sample(tick_end)
            except redis.RedisError as exc:  # a Redis fault mid-run is data, not a probe crash
                self.errors.append(f"{tick_end - self.start_time_s:.0f}s: {exc}")
            next_tick += self.interval_s

    def _sample(self, now: float, census: Census | None = None) -> None:
        keys = self._keys()
        # One MULTI: a job moving between lists while we read (queue → a worker, deferred → ready → queue)
        # is counted exactly once, so an empty backlog means every job is done.
        pipe = self.connection.pipeline(transaction=True)
        self._buffer_backlog(pipe, keys)
        pipe.zcard(keys["finished"])
        pipe.zcard(keys["failed"])
        pipe.scard(keys["workers"])
        pipe.zrangebyscore(keys["finished"], self._floor["finished"], "+inf", withscores=True)
        pipe.zrangebyscore(keys["failed"], self._floor["failed"], "+inf", withscores=True)
        (depth, ready, deferred, scheduled, retrying, started, intermediate, finished, failed, workers,
         recent_finished, recent_failed) = pipe.execute()
        self._completed += sum(1 for job_id in self._new_ids("finished", recent_finished)
                               if job_id.endswith("-automation"))
        self._campaigns_failed.update(job_id.rsplit("-", 1)[0] for job_id in self._new_ids("failed", recent_failed))
        sample = QueueSample(
            t_s=round(now - self.start_time_s, 3), depth=depth + ready, deferred=deferred, scheduled=scheduled + retrying,
            # a job being handed to a worker sits on RQ's intermediate list until its execution has started
            started=started + intermediate,
            finished_total=finished - self._base_finished, failed_total=failed - self._base_failed,
            # the last row, written after the census, holds the campaigns' own final figures
            completed_total=census.completed if census else self._completed,
            campaigns_failed_total=census.failed if census else len(self._campaigns_failed),
            workers=workers,
        )
        self.samples.append(sample)
        self._csv.writerow([getattr(sample, c) for c in QUEUE_COLUMNS])
        self._csv_file.flush()

    def _new_ids(self, registry: str, rows: list[tuple[bytes, float]]) -> list[str]:
        """Job ids of `rows` not seen before in `registry`; forgets ids that fell below the re-read window."""
        seen = self._seen[registry]
        new = []
        for raw_id, score in rows:
            job_id = raw_id.decode()
            if job_id not in seen:
                new.append(job_id)
            seen[job_id] = score
        if seen:
            floor = max(self._floor[registry], max(seen.values()) - LOOKBACK_S)
            if floor > self._floor[registry]:
                self._floor[registry] = floor
                self._seen[registry] = {j: s for j, s in seen.items() if s >= floor}
        return new
