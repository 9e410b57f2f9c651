"""The queue probe: while a cell runs, samples a design's queue every second through its adapter (queue.csv); at the
cell's end, for a design that keeps its campaigns' state where offpath can read it (offpath's own, `census =
"campaigns"`), takes a census of the campaigns it accepted — completion latency (accepted → completed) of each one as
an HDR interval log, and how many completed, failed or were still pending.

Completion latency comes from each campaign's own state (accepted_at, started_at, completed_at), read once at the end,
not from a broker's registry while it runs: RQ's registry scores are whole seconds and its writes land out of order, so
any cursor over them drops jobs, and no registry sees campaigns that finish after the probe stops. The census can: each
of those is counted as pending. Adapters read without side effects, so probing does not change what it measures.
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

from foundation.format import (
    COMPLETION,
    COMPLETION_FILE,
    QUEUE_COLUMNS,
    QUEUE_FILE,
    QUEUE_WAIT,
    RUN_TIME,
    CompletionCensus,
    log_file,
)
from loadtests.hlog_writer import IntervalLog, clamp_us, new_histogram
from offpath.command_count import harness_redis
from offpath.queues import QueueAdapter, QueueState
from offpath.queues.rq import RqQueue
from services.campaign.store import campaign_key
from services.queued.enqueue import FAILURE_TTL_S, RESULT_TTL_S

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
    finished_total: int | None
    failed_total: int | None
    completed_total: int | None
    campaigns_failed_total: int | None
    workers: int | None

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
    # (completed_at, accepted → completed, accepted → started or None, started → completed or None), in µs, of every
    # completed campaign
    completions: list[tuple[float, int, int | None, int | None]] = field(default_factory=list, repr=False)

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
            pipe.hmget(key, "accepted_at", "started_at", "completed_at", "failed_at")
        for accepted_at, started_at_, completed_at, failed_at in pipe.execute():
            if accepted_at is None or not started_at <= float(accepted_at) < stopped_at:
                continue
            census.accepted += 1
            if completed_at is not None and float(completed_at) < stopped_at:
                census.completed += 1
                accepted, completed = float(accepted_at), float(completed_at)
                began = float(started_at_) if started_at_ is not None else None
                wait_us = clamp_us((began - accepted) * 1_000_000) if began is not None and began >= accepted else None
                ran_us = clamp_us((completed - began) * 1_000_000) if began is not None and completed >= began else None
                census.completions.append((completed, clamp_us((completed - accepted) * 1_000_000), wait_us, ran_us))
            elif failed_at is not None and float(failed_at) < stopped_at:
                census.failed += 1
            else:
                census.pending += 1
    return census


def write_census_logs(cell_dir: Path, census: Census, interval_s: float) -> HdrHistogram:
    """completion.hlog, queue_wait.hlog and run.hlog: intervals of interval_s from the census' start (the last one
    shorter), each holding the campaigns that completed in it; returns the completion histogram of them all."""
    span_s = census.stopped_at - census.started_at
    n_intervals = max(1, math.ceil(span_s / interval_s))
    logs = {name: [new_histogram() for _ in range(n_intervals)] for name in (COMPLETION, QUEUE_WAIT, RUN_TIME)}
    total = new_histogram()
    for completed_at, latency_us, wait_us, ran_us in census.completions:
        index = min(int((completed_at - census.started_at) // interval_s), n_intervals - 1)
        logs[COMPLETION][index].record_value(latency_us)
        total.record_value(latency_us)
        if wait_us is not None:
            logs[QUEUE_WAIT][index].record_value(wait_us)
        if ran_us is not None:
            logs[RUN_TIME][index].record_value(ran_us)
    for name, intervals in logs.items():
        log = IntervalLog(cell_dir / log_file(name), census.started_at)
        try:
            for index, histogram in enumerate(intervals):
                start = census.started_at + index * interval_s
                log.write(histogram, start, min(start + interval_s, census.stopped_at))
        finally:
            log.close()
    return total


class CampaignCounts:
    """Live counts of offpath's own campaigns from RQ's registries, for queue.csv's completed_total and
    campaigns_failed_total while a cell runs (the census at its end has the final figures): a campaign completed when
    its automation job finished, failed when any of its jobs failed. Job ids are offpath's (services/queued/enqueue.py)."""

    def __init__(self, queue: RqQueue, start_time_s: float):
        self.queue = queue
        self._seen: dict[str, dict[str, float]] = {"finished": {}, "failed": {}}
        self._floor: dict[str, float] = {"finished": math.floor(start_time_s) + RESULT_TTL_S - LOOKBACK_S,
                                         "failed": math.floor(start_time_s) + FAILURE_TTL_S - LOOKBACK_S}
        self.completed = 0
        self._failed: set[str] = set()

    def buffer(self, pipe: Any) -> None:
        pipe.zrangebyscore(self.queue.keys["finished"], self._floor["finished"], "+inf", withscores=True)
        pipe.zrangebyscore(self.queue.keys["failed"], self._floor["failed"], "+inf", withscores=True)

    def take(self, finished: list[tuple[bytes, float]], failed: list[tuple[bytes, float]], count: bool = True) -> None:
        new_finished, new_failed = self._new_ids("finished", finished), self._new_ids("failed", failed)
        if count:
            self.completed += sum(1 for job_id in new_finished if job_id.endswith("-automation"))
            self._failed.update(job_id.rsplit("-", 1)[0] for job_id in new_failed)

    @property
    def failed(self) -> int:
        return len(self._failed)

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


class QueueProbe:
    """Run as a context manager around a cell: a background thread samples the queue once a second; leaving it takes
    the census (when asked for) and writes completion.json and the census' logs (foundation/format.py names them)."""

    def __init__(self, adapter: QueueAdapter, cell_dir: Path, census_redis_url: str | None = None,
                 interval_s: float = 1.0):
        self.adapter = adapter
        self.census_url = census_redis_url
        self.cell_dir = cell_dir
        self.interval_s = interval_s
        self.samples: list[QueueSample] = []
        self.errors: list[str] = []
        self.census: Census | None = None
        self.completion_total = new_histogram()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="queue-probe", daemon=True)
        self._base: QueueState | None = None
        self._counts: CampaignCounts | None = None

    def __enter__(self) -> QueueProbe:
        self.start_time_s = time.time()
        if isinstance(self.adapter, RqQueue) and self.census_url is not None:
            self._counts = CampaignCounts(self.adapter, self.start_time_s)
            base, finished, failed = self._read()
            self._counts.take(finished, failed, count=False)  # jobs already there at the start are not this cell's
        else:
            base = self.adapter.read()
        self._base = base
        self._csv_file = open(self.cell_dir / QUEUE_FILE, "w", newline="")
        self._csv = csv.writer(self._csv_file)
        self._csv.writerow(QUEUE_COLUMNS)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._thread.ident is None:  # __enter__ failed (the queue did not answer): nothing was measured
            return
        self._stop.set()
        self._thread.join(timeout=10)
        stopped_at = time.time()
        if self.census_url is not None:
            self._take_census(stopped_at)
        try:
            self._sample(stopped_at, self.census)
        except Exception as exc:  # noqa: BLE001 - a queue that does not answer is data for that second
            self.errors.append(f"final: {exc}")
        self._csv_file.close()  # the adapter is its owner's (the design being served), not the probe's

    def _take_census(self, stopped_at: float) -> None:
        assert self.census_url is not None
        connection = harness_redis(self.census_url)
        try:
            self.census = take_census(connection, self.start_time_s, stopped_at)
            self.completion_total = write_census_logs(self.cell_dir, self.census, self.interval_s)
            outcome = self.census.record()
        except redis.RedisError as exc:
            self.errors.append(f"census: {exc}")
            outcome = CompletionCensus(started_at=self.start_time_s, stopped_at=stopped_at, error=str(exc))
        finally:
            connection.close()
        (self.cell_dir / COMPLETION_FILE).write_text(json.dumps(outcome.to_dict(), indent=2) + "\n")

    def backlog(self) -> int:
        """Work not finished yet, read now (the last sample's figure if the queue does not answer)."""
        try:
            return self.adapter.read().backlog
        except Exception:  # noqa: BLE001 - see above
            return self.samples[-1].backlog if self.samples else 0

    def _run(self) -> None:
        next_tick = self.start_time_s + self.interval_s
        while not self._stop.wait(max(0.0, next_tick - time.time())):
            tick_end = next_tick
            try:
                self._sample(tick_end)
            except Exception as exc:  # noqa: BLE001 - a broker fault mid-run is data, not a probe crash
                self.errors.append(f"{tick_end - self.start_time_s:.0f}s: {exc}")
            next_tick += self.interval_s

    def _read(self) -> tuple[QueueState, list[tuple[bytes, float]], list[tuple[bytes, float]]]:
        """One MULTI for the RQ queue and offpath's campaign counts together."""
        assert isinstance(self.adapter, RqQueue) and self._counts is not None
        pipe = self.adapter.connection.pipeline(transaction=True)
        self.adapter.buffer(pipe)
        self._counts.buffer(pipe)
        values = pipe.execute()
        reads = RqQueue.READS
        return RqQueue.state(values[:reads]), values[reads], values[reads + 1]

    def _sample(self, now: float, census: Census | None = None) -> None:
        completed: int | None
        campaigns_failed: int | None
        if self._counts is not None:
            state, finished, failed = self._read()
            self._counts.take(finished, failed)
            completed, campaigns_failed = self._counts.completed, self._counts.failed
        else:
            state = self.adapter.read()
            completed = campaigns_failed = None
        if census is not None:  # the last row, written after the census, holds the campaigns' own final figures
            completed, campaigns_failed = census.completed, census.failed
        base = self._base
        sample = QueueSample(
            t_s=round(now - self.start_time_s, 3), depth=state.depth, deferred=state.deferred,
            scheduled=state.scheduled, started=state.started,
            finished_total=_since(state.finished_total, base.finished_total if base else None),
            failed_total=_since(state.failed_total, base.failed_total if base else None),
            completed_total=completed, campaigns_failed_total=campaigns_failed, workers=state.workers,
        )
        self.samples.append(sample)
        self._csv.writerow(["" if getattr(sample, c) is None else getattr(sample, c) for c in QUEUE_COLUMNS])
        self._csv_file.flush()


def _since(now: int | None, then: int | None) -> int | None:
    return None if now is None else now - (then or 0)
