"""The HDR recording plugin's writing half: merges every process's interval histograms into the run's `.hlog`
files and `errors.csv`, one interval per second of the run, counts adding up exactly."""

from __future__ import annotations

import csv
import logging
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hdrh.histogram import HdrHistogram

from foundation.format import ERROR_COLUMNS, ERRORS_FILE, SEND_LAG, log_file
from loadtests.hlog_writer import IntervalLog, new_histogram

log = logging.getLogger("offpath.merger")


@dataclass
class MergeSummary:
    """What the merger wrote: intervals per log, value counts per log, error count, sources that never finished."""

    intervals: int
    counts: dict[str, int]
    errors: int
    missing_sources: list[str]
    send_lag_p99_us: int | None = None


class IntervalMerger:
    """Collects interval messages from `sources` and writes intervals as soon as every source is past them.

    Interval k is written once every source has shipped an interval after k: later messages can then only
    belong to later intervals. The run's last interval is held back until `finish`, which folds whatever
    arrived for the time after the stop (the partial second, requests drained at stop) into it, so a run
    of N seconds has N intervals, the last one stretched or shortened to where the load actually stopped.
    """

    def __init__(self, out_dir: Path, epoch_s: float, sources: set[str], always: tuple[str, ...] = ()):
        self.out_dir = out_dir
        self.epoch_s = epoch_s
        self.sources = set(sources)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self._pending: dict[int, dict[str, HdrHistogram]] = {}
        self._errors: Counter[tuple[int, str, int]] = Counter()
        self._progress: dict[str, int] = {}
        self._finished: set[str] = set()
        self._logs: dict[str, IntervalLog] = {}
        self._totals: dict[str, HdrHistogram] = {}
        self._written = 0  # intervals 0 .. _written - 1 are on disk
        self._always = always
        self._closed = False
        self._last: int | None = None  # the last interval's index, known once the load has stopped

    @property
    def all_final(self) -> bool:
        return self.sources <= self._finished

    def add(self, message: dict[str, Any]) -> None:
        """One process's interval (Recorder.take_interval); writes whatever intervals it completes."""
        if self._closed:
            log.warning("interval %s from %s arrived after the logs were closed; it is not counted",
                        message.get("index"), message.get("source"))
            return
        source, index = str(message["source"]), int(message["index"])
        if source not in self.sources:
            # A worker that joined after the start still counts; the merger now waits for its final flush too.
            self.sources.add(source)
        # A message for an interval already on disk (a late tick) goes to the oldest one still open.
        index = max(index, self._written)
        bucket = self._pending.setdefault(index, {})
        for name, encoded in message["histograms"].items():
            histogram = bucket.get(name)
            if histogram is None:
                histogram = bucket[name] = new_histogram()
            histogram.decode_and_add(encoded)
        for endpoint, status, count in message["errors"]:
            self._errors[(index, str(endpoint), int(status))] += int(count)
        self._progress[source] = max(self._progress.get(source, -1), int(message["index"]))
        if message.get("final"):
            self._finished.add(source)
        self._write_completed()

    def stopping(self, stop_s: float) -> None:
        """The load stopped at `stop_s` (epoch seconds): the run has this many intervals, the last held open."""
        self._last = max(round(stop_s - self.epoch_s), self._written + 1, 1) - 1

    def _write_completed(self) -> None:
        if not self.sources or any(s not in self._progress for s in self.sources):
            return
        # A source that sent its final interval holds nothing back any more; the others bound what is done.
        running = [self._progress[s] for s in self.sources if s not in self._finished]
        safe = min(running) if running else None
        if self._last is not None:
            safe = self._last if safe is None else min(safe, self._last)
        if safe is None:
            return
        while self._written < safe:
            self._write_interval(self._written, self.epoch_s + self._written, self.epoch_s + self._written + 1)

    def _write_interval(self, index: int, start_s: float, end_s: float) -> None:
        bucket = self._pending.pop(index, {})
        for name in sorted(set(bucket) | set(self._logs) | set(self._always)):
            histogram = bucket.get(name)
            if histogram is None:
                histogram = new_histogram()
            self._log(name, start_s).write(histogram, start_s, end_s)
            total = self._totals.get(name)
            if total is None:
                total = self._totals[name] = new_histogram()
            total.add(histogram)
        self._written += 1

    def _log(self, name: str, first_start_s: float) -> IntervalLog:
        interval_log = self._logs.get(name)
        if interval_log is None:
            interval_log = self._logs[name] = IntervalLog(self.out_dir / log_file(name), self.epoch_s)
            # A log that first appears now (the first poll, the first success) still starts at second 0.
            empty = new_histogram()
            for k in range(self._written):
                interval_log.write(empty, self.epoch_s + k, self.epoch_s + k + 1)
        return interval_log

    def finish(self, stop_s: float) -> MergeSummary:
        """Write the rest up to the stop at `stop_s` (epoch seconds), errors.csv, and close every log."""
        if self._closed:
            raise RuntimeError("the interval logs are already closed")
        if self._last is None:
            self.stopping(stop_s)
        assert self._last is not None
        last = self._last
        for index in sorted(i for i in self._pending if i > last):
            for name, histogram in self._pending.pop(index).items():
                self._pending.setdefault(last, {}).setdefault(name, new_histogram()).add(histogram)
        while self._written < last:
            self._write_interval(self._written, self.epoch_s + self._written, self.epoch_s + self._written + 1)
        self._write_interval(last, self.epoch_s + last, max(stop_s, self.epoch_s + last))
        for interval_log in self._logs.values():
            interval_log.close()
        self._write_errors(last)
        self._closed = True
        lag = self._totals.get(SEND_LAG)
        return MergeSummary(
            intervals=last + 1,
            counts={name: int(h.get_total_count()) for name, h in self._totals.items()},
            errors=sum(self._errors.values()),
            missing_sources=sorted(self.sources - self._finished),
            send_lag_p99_us=int(lag.get_value_at_percentile(99)) if lag is not None and lag.get_total_count() else None,
        )

    def _write_errors(self, last: int) -> None:
        rows: Counter[tuple[int, str, int]] = Counter()
        for (index, endpoint, status), count in self._errors.items():
            rows[(min(index, last), endpoint, status)] += count
        path = self.out_dir / ERRORS_FILE
        with open(path, "w", newline="") as file:
            writer = csv.writer(file)
            writer.writerow(ERROR_COLUMNS)
            for (index, endpoint, status), count in sorted(rows.items()):
                writer.writerow([index, endpoint, status, count])
