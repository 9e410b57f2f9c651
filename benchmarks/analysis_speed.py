"""How long analysis takes on a run of 10 million recorded requests: load + summarise + compare + capacity, no plots.

A results folder is generated first (not timed): two designs, two interleaved repetitions of a 10-minute steady
phase at 3,700/s, a warmup, and an 8-step capacity search per design, every request in three interval logs
(corrected, raw, send lag) and, for queued, in the completion log, as the runner writes them.
Prints `analysis_seconds_10M: N.N` last, only when the timed analysis covered what was generated: every request
summarised (none dropped, none read as an error), every cell, both designs compared and given a capacity.
Otherwise `no figure: ...` and exit code 1: a faster analysis of less is not the figure (benchmarks/figure.py).
"""

from __future__ import annotations

import argparse
import csv
import json
import shutil
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from analysis.stats.capacity import capacity  # noqa: E402
from analysis.stats.headline import equal_load_comparison  # noqa: E402
from analysis.stats.histogram import histogram_of, to_hdr  # noqa: E402
from analysis.stats.load import load_run  # noqa: E402
from analysis.stats.summary import summarize_run  # noqa: E402
from benchmarks.figure import NO_FIGURE, SideErrors, refused  # noqa: E402
from foundation.format import (  # noqa: E402
    CELLS_DIR,
    COMPLETION,
    CREATE,
    ERROR_COLUMNS,
    ERRORS_FILE,
    MANIFEST_FILE,
    QUEUE_COLUMNS,
    QUEUE_FILE,
    SCHEMA_VERSION,
    SEND_LAG,
    cell_id,
    log_file,
    raw_log,
)
from loadtests.hlog_writer import IntervalLog  # noqa: E402

EPOCH_S = 1_795_917_800.0
STEADY_RATE_PER_S, STEADY_S = 3_700, 600
WARMUP_RATE_PER_S, WARMUP_S = 1_000, 30
CAPACITY_RATES, CAPACITY_STEP_S = [500 * k for k in range(1, 9)], 30
# The two designs as the generator draws them: POST /campaigns median (µs) within capacity, the rate past which
# it overloads, and whether its cells have a queue (completion log and queue.csv, as the probe writes them).
DESIGNS = {"inline": {"median_us": 30_000, "overload_above_per_s": 2000, "queue": False},
           "queued": {"median_us": 6_000, "overload_above_per_s": 3000, "queue": True}}


def plan() -> list[dict]:
    cells = []
    for rep in (1, 2):
        for design in DESIGNS:
            cells.append({"design": design, "phase": "warmup", "kind": "warmup", "repetition": rep,
                          "rate": WARMUP_RATE_PER_S, "duration": WARMUP_S})
            cells.append({"design": design, "phase": "steady", "kind": "steady", "repetition": rep,
                          "rate": STEADY_RATE_PER_S, "duration": STEADY_S})
    for design in DESIGNS:
        for rate in CAPACITY_RATES:
            cells.append({"design": design, "phase": f"capacity-{rate:04d}", "kind": "capacity", "repetition": 1,
                          "rate": rate, "duration": CAPACITY_STEP_S})
    return cells


def write_log(path: Path, start_s: float, rng: np.random.Generator, rate: int, duration: int, median_us: float,
              sigma: float) -> None:
    log = IntervalLog(path, start_s)
    for second in range(duration):
        counts = histogram_of(rng.lognormal(np.log(median_us), sigma, rate))
        log.write(to_hdr(counts), start_s + second, start_s + second + 1)
    log.close()


def generate(root: Path) -> tuple[Path, int]:
    rng = np.random.default_rng(1)
    run_dir = root / "20261129-101500-speed-000000"
    metas, requests = [], 0
    for number, cell in enumerate(plan()):
        name = cell_id(cell["design"], cell["phase"], cell["repetition"])
        cell_dir = run_dir / CELLS_DIR / name
        cell_dir.mkdir(parents=True)
        start = EPOCH_S + number * 1000
        design = DESIGNS[cell["design"]]
        rate, duration = cell["rate"], cell["duration"]
        overloaded = cell["kind"] == "capacity" and rate > design["overload_above_per_s"]
        median = 900_000 if overloaded else design["median_us"]
        write_log(cell_dir / log_file(CREATE), start, rng, rate, duration, median, 0.6)
        write_log(cell_dir / log_file(raw_log(CREATE)), start, rng, rate, duration, median * 0.9, 0.6)
        write_log(cell_dir / log_file(SEND_LAG), start, rng, rate, duration, 300, 0.6)
        (cell_dir / ERRORS_FILE).write_text(",".join(ERROR_COLUMNS) + "\n")
        if design["queue"]:
            write_log(cell_dir / log_file(COMPLETION), start, rng, rate, duration, 200_000, 0.5)
            with open(cell_dir / QUEUE_FILE, "w", newline="") as f:
                writer = csv.writer(f)
                writer.writerow(QUEUE_COLUMNS)
                for second in range(1, duration + 1):
                    depth = int(rng.integers(0, 40))
                    writer.writerow([second, depth, depth // 2, 0, 12, 2 * rate * second, 0, rate * second, 0, 12])
        requests += rate * duration
        metas.append({"id": name, "design": cell["design"], "phase": cell["phase"], "kind": cell["kind"],
                      "repetition": cell["repetition"], "model": "open", "offered_rate_per_s": float(rate),
                      "users": None, "duration_s": float(duration), "started_at": start,
                      "ended_at": start + duration, "status": "complete"})
    manifest = {"schema_version": SCHEMA_VERSION, "run_id": run_dir.name, "status": "complete", "error": None,
                "experiment": {"name": "speed", "designs": list(DESIGNS), "repetitions": 2,
                               "slo": {"p99_ms": 500.0, "error_rate": 0.01}},
                "cells": metas}
    (run_dir / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2))
    return run_dir, requests


def analyse(run_dir: Path, requests: int) -> tuple[dict[str, float], SideErrors]:
    """The timings of each step, and what the timed analysis missed of the `requests` generated, by kind."""
    timings = {}
    started = time.perf_counter()
    run = load_run(run_dir)
    summaries = summarize_run(run)
    timings["load_and_summarise_s"] = time.perf_counter() - started
    mark = time.perf_counter()
    comparison = equal_load_comparison(run)
    timings["compare_s"] = time.perf_counter() - mark
    mark = time.perf_counter()
    cap = capacity(run)
    timings["capacity_s"] = time.perf_counter() - mark
    timings["total_s"] = time.perf_counter() - started
    counted = [s.endpoint(CREATE) for s in summaries]
    missed = Counter({
        "requests not summarised, or summarised twice": abs(requests - sum(e.count for e in counted)),
        "requests read as errors": sum(e.errors for e in counted),
        "cells not summarised": len(plan()) - len(summaries),
        "designs not compared": 0 if comparison.rows else 2,
        "designs without a capacity": 2 - len(cap.designs),
    })
    return timings, SideErrors("analysis", "the timed run", +missed)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keep", type=Path, help="generate into this folder and keep it (default: a temp folder)")
    args = parser.parse_args()
    root = args.keep or Path(tempfile.mkdtemp(prefix="offpath-speed-"))
    try:
        started = time.perf_counter()
        run_dir, requests = generate(root)
        print(f"generated {requests:,} requests in {len(plan())} cells ({time.perf_counter() - started:.1f} s, "
              f"not timed): {run_dir}")
        timings, missed = analyse(run_dir, requests)
        for name, seconds in timings.items():
            print(f"{name}: {seconds:.2f}")
        if refused([missed]):
            return NO_FIGURE
        print(f"requests_per_analysis_second: {requests / timings['total_s']:,.0f}")
        print(f"analysis_seconds_10M: {timings['total_s']:.1f}")  # {requests:,} >= 10M requests, not rescaled
    finally:
        if args.keep is None:
            shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
