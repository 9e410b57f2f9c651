"""The load generator under test, end to end: real Locust processes (local and --processes 2) against the
stall app (tests/stall_app.py) on loopback, checked against Locust's own counts and against latencies the
stall implies analytically."""

from __future__ import annotations

import csv
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from hdrh.histogram import HdrHistogram
from hdrh.log import HistogramLogReader

from loadtests.arrivals import parse_shape
from offpath.ports import free_port
from offpath.process import die_with_parent, new_group_dying_with_parent, signal_group

ROOT = Path(__file__).resolve().parent.parent
LOCUSTFILE = ROOT / "loadtests" / "locustfile.py"

pytestmark = pytest.mark.timeout(120)


@contextmanager
def stall_app(*args: str) -> Iterator[str]:
    """The stall app as a real subprocess on a free loopback port; yields its URL."""
    port = free_port()
    process = subprocess.Popen([sys.executable, "-m", "tests.stall_app", "--port", str(port), *args], cwd=ROOT,
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, preexec_fn=die_with_parent)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 15
        while True:
            try:
                if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"stall app did not start: {process.stderr.read().decode() if process.stderr else ''}")
            time.sleep(0.1)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


@dataclass
class LocustRun:
    returncode: int
    log: str
    cell: Path

    def stats(self) -> dict[str, tuple[int, int]]:
        """Locust's own --csv totals: 'POST /campaigns' -> (requests, failures)."""
        with open(self.cell / "locust_stats.csv", newline="") as file:
            return {f"{row['Type']} {row['Name']}": (int(row["Request Count"]), int(row["Failure Count"]))
                    for row in csv.DictReader(file) if row["Name"] != "Aggregated"}

    def errors(self) -> dict[str, int]:
        totals: dict[str, int] = {}
        with open(self.cell / "errors.csv", newline="") as file:
            for row in csv.DictReader(file):
                totals[row["endpoint"]] = totals.get(row["endpoint"], 0) + int(row["count"])
        return totals


def run_locust(url: str, cell: Path, *args: str, timeout_s: float = 90) -> LocustRun:
    cell.mkdir(parents=True, exist_ok=True)
    argv = [sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "--headless", "--host", url,
            "--hdr-dir", str(cell), "--csv", str(cell / "locust"), "--only-summary", "--stop-timeout", "5", *args]
    # Its own process group, so that a hung run's forked workers go too (signal_group), not only the master.
    process = subprocess.Popen(argv, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               preexec_fn=new_group_dying_with_parent)
    try:
        _, stderr = process.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        signal_group(process.pid, signal.SIGKILL)
        process.communicate()
        raise
    return LocustRun(process.returncode, stderr, cell)


@dataclass
class Log:
    """An .hlog read back with HdrHistogram's own reader."""

    intervals: list[HdrHistogram]
    starts_s: list[float]
    lengths_s: list[float]

    @property
    def total(self) -> HdrHistogram:
        merged = HdrHistogram(1, 3_600_000_000, 3)
        for histogram in self.intervals:
            merged.add(histogram)
        return merged

    @property
    def count(self) -> int:
        return int(sum(h.get_total_count() for h in self.intervals))

    @property
    def duration_s(self) -> float:
        return sum(self.lengths_s)


def read_log(path: Path) -> Log:
    reader = HistogramLogReader(str(path), HdrHistogram(1, 3_600_000_000, 3))
    intervals, starts, lengths = [], [], []
    while (histogram := reader.get_next_interval_histogram()) is not None:
        intervals.append(histogram)
        starts.append(histogram.get_start_time_stamp() / 1000 - reader.get_start_time_sec())
        lengths.append((histogram.get_end_time_stamp() - histogram.get_start_time_stamp()) / 1000)
    reader.close()
    return Log(intervals, starts, lengths)


def assert_one_interval_per_second(log: Log, run_s: float) -> None:
    assert len(log.intervals) == round(run_s), f"{len(log.intervals)} intervals for a {run_s} s run"
    assert [round(s, 3) for s in log.starts_s] == [float(k) for k in range(len(log.intervals))]
    assert all(abs(length - 1.0) < 1e-6 for length in log.lengths_s[:-1])
    assert 0.4 < log.lengths_s[-1] < 1.6


def worker_counts(run_log: str, name: str) -> list[int]:
    """What each worker says it recorded (Recorder.finish's log line)."""
    return [int(m.group(1)) for m in re.finditer(rf"offpath.recorder: \S+ recorded .*?\b{re.escape(name)} (\d+)",
                                                 run_log)]


def test_closed_model_counts_equal_locusts_and_correction_adds_the_omitted(tmp_path: Path) -> None:
    # Every 20th POST fails; every 2 s the app stalls 0.5 s, which a closed-model user waits out.
    with stall_app("--stall-period", "2", "--stall-s", "0.5", "--fail-every", "20") as url:
        run = run_locust(url, tmp_path / "cell", "-u", "2", "-r", "2", "--wait-s", "0.05", "-t", "6s",
                         "--exit-code-on-error", "0")
    assert run.returncode == 0, run.log
    requests, failures = run.stats()["POST /campaigns"]
    raw = read_log(tmp_path / "cell" / "request.raw.hlog")
    corrected = read_log(tmp_path / "cell" / "request.hlog")
    assert failures > 0 and raw.count == requests - failures, run.log
    assert run.errors() == {"request": failures}
    assert not (tmp_path / "cell" / "send_lag.hlog").exists()  # closed model: no intended send times
    assert_one_interval_per_second(raw, 6)
    assert_one_interval_per_second(corrected, 6)
    # The correction adds the requests the users would have sent during each stall had they not waited
    # (about 0.5 s / 50 ms each): the stall then weighs in the P95, which the raw times hide.
    assert corrected.count > raw.count
    raw_p95, corrected_p95 = raw.total.get_value_at_percentile(95), corrected.total.get_value_at_percentile(95)
    assert corrected_p95 > 100_000 > raw_p95, (raw_p95, corrected_p95)


def test_distributed_merged_counts_equal_the_workers_sum_and_locusts(tmp_path: Path) -> None:
    rate, shape, run_s = 120.0, "steps:0.5,1@3s", 6
    with stall_app("--design", "queued", "--complete-after", "0.3") as url:
        run = run_locust(url, tmp_path / "cell", "--processes", "2", "-u", "2", "-r", "2", "--arrival-rate",
                         f"{rate:g}", "--rate-shape", shape, "--poll-interval", "0.2", "-t", f"{run_s}s")
    assert run.returncode == 0, run.log
    stats = run.stats()
    for endpoint, name in (("POST /campaigns", "request"), ("GET /campaigns/{id}", "status")):
        merged = read_log(tmp_path / "cell" / f"{name}.raw.hlog")
        per_worker = worker_counts(run.log, f"{name}.raw")
        assert len(per_worker) == 2 and merged.count == sum(per_worker) == stats[endpoint][0], (per_worker, stats)
        assert_one_interval_per_second(merged, run_s - 0.4)  # the open model's clock starts 0.4 s in
    send_lag = read_log(tmp_path / "cell" / "send_lag.hlog")
    assert send_lag.count == sum(n for n, _ in stats.values())
    # The two workers' shards add up to the shape: R * f(t) integrated over each interval.
    post = read_log(tmp_path / "cell" / "request.hlog")
    expected = [rate * _area(shape, s, s + length) for s, length in zip(post.starts_s, post.lengths_s, strict=True)]
    counts = [int(h.get_total_count()) for h in post.intervals]
    assert all(abs(c - e) <= max(0.1 * e, 3) for c, e in zip(counts, expected, strict=True)), (counts, expected)


def test_open_model_percentiles_show_the_stall(tmp_path: Path) -> None:
    rate, period_s, stall_s, run_s = 100.0, 5.0, 1.0, 20
    with stall_app("--stall-period", f"{period_s:g}", "--stall-s", f"{stall_s:g}") as url:
        run = run_locust(url, tmp_path / "cell", "--arrival-rate", f"{rate:g}", "-t", f"{run_s}s")
    assert run.returncode == 0, run.log
    log = read_log(tmp_path / "cell" / "request.hlog")
    assert_one_interval_per_second(log, run_s)
    # Arrivals are uniform in time; a fraction stall/period of them lands in a stall, uniformly within
    # it, and waits for its end: P(latency > x) = (stall - x) / period for 0 < x < stall. So the p-th
    # percentile is stall - (1 - p) * period, whatever the phase of the stalls (the run is 4 periods).
    for percentile in (95.0, 99.0):
        expected_us = (stall_s - (1 - percentile / 100) * period_s) * 1e6
        measured_us = log.total.get_value_at_percentile(percentile)
        assert abs(measured_us - expected_us) <= 0.1 * expected_us, (
            f"P{percentile:g}: measured {measured_us / 1000:.0f} ms, the stall implies {expected_us / 1000:.0f} ms "
            f"(rate {rate:g}/s, {stall_s:g} s stall every {period_s:g} s)")


def test_open_model_holds_its_offered_rate(tmp_path: Path) -> None:
    rate, run_s = 300.0, 8
    with stall_app() as url:
        run = run_locust(url, tmp_path / "cell", "--arrival-rate", f"{rate:g}", "-t", f"{run_s}s")
    assert run.returncode == 0, run.log
    log = read_log(tmp_path / "cell" / "request.hlog")
    assert_one_interval_per_second(log, run_s)
    achieved = log.count / log.duration_s
    assert abs(achieved - rate) <= 0.05 * rate, f"offered {rate:g}/s, achieved {achieved:.1f}/s"
    full_seconds = [int(h.get_total_count()) for h in log.intervals[:-1]]
    assert all(abs(c - rate) <= 0.05 * rate for c in full_seconds), full_seconds
    assert run.stats()["POST /campaigns"] == (log.count, 0)


def _area(spec: str, start_s: float, end_s: float, steps: int = 200) -> float:
    shape = parse_shape(spec)
    width = (end_s - start_s) / steps
    return sum(shape.factor_at(start_s + (k + 0.5) * width) for k in range(steps)) * width
