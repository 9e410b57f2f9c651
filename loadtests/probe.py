"""The queue probe: samples the queued design's backlog every second and records completion latency
(accepted → completed, read from the campaign state) as an HDR interval log.

It reads RQ's own registries without side effects (ZCARD/LLEN/ZRANGEBYSCORE, never a registry's
cleanup), so probing does not change what it measures.
"""

from __future__ import annotations

import csv
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import redis
from rq import Queue
from rq.serializers import JSONSerializer

from loadtests.hlog import IntervalLog, clamp_us, new_histogram
from services.campaign.store import campaign_key
from services.queued.enqueue import FAILURE_TTL_S, RESULT_TTL_S

QUEUE_COLUMNS = ["t_s", "depth", "deferred", "scheduled", "started", "finished_total", "failed_total",
                 "completed_total", "campaigns_failed_total", "workers"]


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


class QueueProbe:
    """Run as a context manager around a cell: a background thread samples once a second."""

    def __init__(self, redis_url: str, queue_name: str, cell_dir: Path, interval_s: float = 1.0):
        self.connection = redis.Redis.from_url(redis_url, socket_timeout=2, socket_connect_timeout=2)
        self.queue = Queue(queue_name, connection=self.connection, serializer=JSONSerializer)
        self.cell_dir = cell_dir
        self.interval_s = interval_s
        self.samples: list[QueueSample] = []
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="queue-probe", daemon=True)
        self._completion = new_histogram()
        self.completion_total = new_histogram()

    # Registry keys, read directly: the registries' .count would run cleanup, which moves jobs.
    def _keys(self) -> dict[str, str]:
        q = self.queue
        return {
            "deferred": q.deferred_job_registry.key,
            "scheduled": q.scheduled_job_registry.key,
            "started": q.started_job_registry.key,
            "finished": q.finished_job_registry.key,
            "failed": q.failed_job_registry.key,
            "workers": f"rq:workers:{q.name}",
        }

    def __enter__(self) -> QueueProbe:
        self.start_time_s = time.time()
        keys = self._keys()
        self._base_finished = self.connection.zcard(keys["finished"])
        self._base_failed = self.connection.zcard(keys["failed"])
        # Finished-registry scores are finish time + result TTL: scanning by score finds new finishes.
        self._finished_cursor = self.start_time_s + RESULT_TTL_S
        self._failed_cursor = self.start_time_s + FAILURE_TTL_S
        self._completed = 0
        self._interval_start = self.start_time_s
        self._campaigns_failed = 0
        self._log = IntervalLog(self.cell_dir / "completion.hlog", self.start_time_s)
        self._csv_file = open(self.cell_dir / "queue.csv", "w", newline="")
        self._csv = csv.writer(self._csv_file)
        self._csv.writerow(QUEUE_COLUMNS)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
        self._csv_file.close()
        self._log.close()
        self.connection.close()

    def backlog(self) -> int:
        return self.samples[-1].backlog if self.samples else 0

    def _run(self) -> None:
        next_tick = self.start_time_s + self.interval_s
        while not self._stop.wait(max(0.0, next_tick - time.time())):
            tick_end = next_tick
            try:
                self._sample(tick_end)
            except redis.RedisError as exc:  # a Redis fault mid-run is data, not a probe crash
                self.errors.append(f"{tick_end - self.start_time_s:.0f}s: {exc}")
            next_tick += self.interval_s
        try:
            self._sample(time.time())
        except redis.RedisError as exc:
            self.errors.append(f"final: {exc}")

    def _sample(self, now: float) -> None:
        keys = self._keys()
        pipe = self.connection.pipeline(transaction=False)
        pipe.llen(self.queue.key)
        for name in ("deferred", "scheduled", "started", "finished", "failed"):
            pipe.zcard(keys[name])
        pipe.scard(keys["workers"])
        pipe.zrangebyscore(keys["finished"], f"({self._finished_cursor}", now + RESULT_TTL_S, withscores=True)
        pipe.zrangebyscore(keys["failed"], f"({self._failed_cursor}", now + FAILURE_TTL_S, withscores=True)
        depth, deferred, scheduled, started, finished, failed, workers, new_finished, new_failed = pipe.execute()
        if new_finished:
            self._finished_cursor = max(score for _, score in new_finished)
        if new_failed:
            self._failed_cursor = max(score for _, score in new_failed)
        self._record_completions([job_id.decode() for job_id, _ in new_finished if job_id.endswith(b"-automation")])
        self._campaigns_failed += len({job_id.decode().rsplit("-", 1)[0] for job_id, _ in new_failed})
        sample = QueueSample(
            t_s=round(now - self.start_time_s, 3), depth=depth, deferred=deferred, scheduled=scheduled,
            started=started, finished_total=finished - self._base_finished, failed_total=failed - self._base_failed,
            completed_total=self._completed, campaigns_failed_total=self._campaigns_failed, workers=workers,
        )
        self.samples.append(sample)
        self._csv.writerow([getattr(sample, c) for c in QUEUE_COLUMNS])
        self._csv_file.flush()
        self._log.write(self._completion, self._interval_start, now)
        self._interval_start = now
        self._completion = new_histogram()

    def _record_completions(self, automation_job_ids: list[str]) -> None:
        if not automation_job_ids:
            return
        pipe = self.connection.pipeline(transaction=False)
        for job_id in automation_job_ids:
            pipe.hmget(campaign_key(job_id.removesuffix("-automation")), "accepted_at", "completed_at")
        for accepted_at, completed_at in pipe.execute():
            if accepted_at is None or completed_at is None:
                continue
            latency_us = clamp_us((float(completed_at) - float(accepted_at)) * 1_000_000)
            self._completion.record_value(latency_us)
            self.completion_total.record_value(latency_us)
            self._completed += 1
