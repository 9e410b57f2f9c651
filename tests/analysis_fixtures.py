"""Results folders (foundation/format.py) generated from known distributions, for analysis tests and benchmarks."""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from hdrh.histogram import HdrHistogram

from analysis.stats.histogram import Intervals, index_for
from foundation.format import (
    CELLS_DIR,
    COMMANDS_FILE,
    COMPLETION,
    CPU_COLUMNS,
    CPU_FILE,
    CREATE,
    ERROR_COLUMNS,
    ERRORS_FILE,
    INCOMPLETE_MARKER,
    MANIFEST_FILE,
    QUEUE_COLUMNS,
    QUEUE_FILE,
    SCHEMA_VERSION,
    SEND_LAG,
    SUMMARY_FILE,
    TIERS,
    cell_id,
    log_file,
    raw_log,
)
from loadtests.hlog_writer import IntervalLog, new_histogram
from offpath.designs import built_in_names

EPOCH_S = 1_795_917_800.0  # fixed, so generated folders are byte-for-byte reproducible
# The designs a run declares unless told otherwise: what `offpath bench` resolves for an experiment file that names
# none (every design, in the registry's order), however few of them have cells here.
EXPERIMENT_DESIGNS = tuple(built_in_names())


@dataclass
class Latency:
    """A lognormal latency distribution, in microseconds."""

    median_us: float
    sigma: float = 0.5

    def draw(self, rng: np.random.Generator, n: int) -> np.ndarray:
        values = rng.lognormal(np.log(self.median_us), self.sigma, n) if n else np.zeros(0)
        return np.clip(values, 1, 3_600_000_000).astype(np.int64)


@dataclass
class Queue:
    """The queued design's backlog: starts at `start`, grows by `growth_per_s` jobs/s, noise of `noise` jobs."""

    start: float = 5.0
    growth_per_s: float = 0.0
    noise: float = 2.0
    completion: Latency = field(default_factory=lambda: Latency(120_000, 0.4))
    workers: int = 4
    drain_s: int = 3


@dataclass
class Cpu:
    """What each tier spends, in CPU seconds per second of the cell (cpu.csv), every second alike unless `noise`
    (the relative standard deviation of each second's figure) is given; `unseen_per_s` is machine time no process
    accounts for."""

    web_per_s: float = 0.4
    redis_per_s: float = 0.1
    workers_per_s: float = 0.0
    load_per_s: float = 0.2
    others_per_s: float = 0.02
    unseen_per_s: float = 0.0
    noise: float = 0.0

    def per_s(self, tier: str) -> float:
        return float(getattr(self, f"{tier}_per_s"))


@dataclass
class Commands:
    """The design's Redis commands (commands.json): `per_campaign` of each kind for every campaign the cell serves, and
    `per_s` of each kind every second of the cell and its drain (what comes with time, not with campaigns); or only
    `unmeasured`, the reason a design has no counts."""

    per_campaign: dict[str, int] = field(default_factory=lambda: {"hset": 7, "multi": 2, "exec": 2, "hincrby": 2})
    per_s: dict[str, int] = field(default_factory=dict)
    unmeasured: str | None = None


@dataclass
class CellSpec:
    design: str
    phase: str
    kind: str = "steady"
    repetition: int = 1
    rate_per_s: int = 100
    duration_s: int = 20
    latency: Latency = field(default_factory=lambda: Latency(10_000))
    raw_latency: Latency | None = None
    send_lag: Latency | None = field(default_factory=lambda: Latency(300, 0.6))
    errors_per_s: dict[int, int] = field(default_factory=dict)
    queue: Queue | None = None
    cpu: Cpu | None = None  # None: no cpu.csv, as written before cost accounting
    commands: Commands | None = None  # None: no commands.json, as written before commands were counted
    written: bool = True  # False: in the manifest, but its folder never got written (a crashed cell)

    @property
    def id(self) -> str:
        return cell_id(self.design, self.phase, self.repetition)


def hdr_of(values: np.ndarray) -> HdrHistogram:
    """Values recorded one by one with hdrh itself: the ground truth analysis must agree with."""
    histogram = new_histogram()
    for value in values.tolist():
        histogram.record_value(value)
    return histogram


def write_log(path: Path, start_s: float, per_interval: list[np.ndarray]) -> None:
    log = IntervalLog(path, start_s)
    for second, values in enumerate(per_interval):
        log.write(hdr_of(values), start_s + second, start_s + second + 1)
    log.close()


def write_cell(cell_dir: Path, spec: CellSpec, start_s: float, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Write the cell's files; returns the raw values drawn, by log name (for ground-truth assertions)."""
    cell_dir.mkdir(parents=True)
    seconds = range(spec.duration_s)
    post = [spec.latency.draw(rng, spec.rate_per_s) for _ in seconds]
    write_log(cell_dir / log_file(CREATE), start_s, post)
    raw_spec = spec.raw_latency or spec.latency
    write_log(cell_dir / log_file(raw_log(CREATE)), start_s, [raw_spec.draw(rng, spec.rate_per_s) for _ in seconds])
    truth = {CREATE: np.concatenate(post)}
    if spec.send_lag is not None:
        lag = [spec.send_lag.draw(rng, spec.rate_per_s) for _ in seconds]
        write_log(cell_dir / log_file(SEND_LAG), start_s, lag)
        truth[SEND_LAG] = np.concatenate(lag)
    with open(cell_dir / ERRORS_FILE, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(ERROR_COLUMNS)
        for second in seconds:
            for status, count in spec.errors_per_s.items():
                writer.writerow([second + 1, CREATE, status, count])
    if spec.queue is not None:
        truth.update(_write_queue(cell_dir, spec, start_s, rng))
    if spec.cpu is not None:  # drawn last, so a spec without it draws everything else as before
        truth.update(_write_cpu(cell_dir, spec, rng))
    if spec.commands is not None:
        _write_commands(cell_dir, spec, start_s)
    (cell_dir / SUMMARY_FILE).write_text("{}\n")
    return truth


def _write_cpu(cell_dir: Path, spec: CellSpec, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """cpu.csv: cumulative CPU seconds per tier from 0 at the cell's start, one row a second, through the drain of a
    cell with a queue; returns each column's per-second CPU as drawn (`cpu.<column>`)."""
    cpu = spec.cpu
    assert cpu is not None
    seconds = spec.duration_s + (spec.queue.drain_s if spec.queue is not None else 0)
    drawn = {}
    for tier in (*TIERS, "others", "unseen"):
        per_s = cpu.per_s(tier) * (1 + cpu.noise * rng.standard_normal(seconds)) if cpu.noise else \
            np.full(seconds, cpu.per_s(tier))
        drawn[tier] = np.clip(per_s, 0, None)
    drawn["machine"] = sum(drawn[tier] for tier in (*TIERS, "others", "unseen"))
    cumulative = {column: np.concatenate(([0.0], np.cumsum(drawn[column]))) for column in CPU_COLUMNS[1:]}
    with open(cell_dir / CPU_FILE, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(CPU_COLUMNS)
        for second in range(seconds + 1):
            writer.writerow([f"{second:.3f}", *(repr(float(cumulative[c][second])) for c in CPU_COLUMNS[1:])])
    return {f"cpu.{column}": drawn[column] for column in CPU_COLUMNS[1:]}


def _write_commands(cell_dir: Path, spec: CellSpec, start_s: float) -> None:
    """commands.json: every campaign the cell serves (one a request: rate x duration) runs `per_campaign`, every second
    of the cell and its drain `per_s`; the harness's own INFO beside them."""
    commands = spec.commands
    assert commands is not None
    seconds = spec.duration_s + (spec.queue.drain_s if spec.queue is not None else 0)
    data: dict[str, Any] = {"started_at": start_s, "stopped_at": start_s + seconds}
    if commands.unmeasured is not None:
        data["unmeasured"] = commands.unmeasured
    else:
        campaigns = spec.rate_per_s * spec.duration_s
        by_kind = {kind: n * campaigns for kind, n in commands.per_campaign.items()}
        for kind, n in commands.per_s.items():
            by_kind[kind] = by_kind.get(kind, 0) + n * seconds
        total = sum(by_kind.values())
        data |= {"commands": total, "by_kind": by_kind, "harness_commands": 1, "harness_by_kind": {"info": 1},
                 "processed": total + 1}
    (cell_dir / COMMANDS_FILE).write_text(json.dumps(data, indent=2) + "\n")


def _write_queue(cell_dir: Path, spec: CellSpec, start_s: float, rng: np.random.Generator) -> dict[str, np.ndarray]:
    queue = spec.queue
    assert queue is not None
    total_s = spec.duration_s + queue.drain_s
    completions = [queue.completion.draw(rng, spec.rate_per_s if s < spec.duration_s else 0) for s in range(total_s)]
    write_log(cell_dir / log_file(COMPLETION), start_s, completions)
    with open(cell_dir / QUEUE_FILE, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(QUEUE_COLUMNS)
        completed = 0
        for second in range(1, total_s + 1):
            t = min(second, spec.duration_s)
            backlog = queue.start + queue.growth_per_s * t + rng.normal(0, queue.noise)
            if second > spec.duration_s:
                backlog = 0
            depth = max(int(round(backlog * 0.6)), 0)
            deferred = max(int(round(backlog)) - depth, 0)
            completed += len(completions[second - 1])
            writer.writerow([f"{second:.3f}", depth, deferred, 0, min(queue.workers, depth), 2 * completed, 0, completed,
                             0, queue.workers])
    return {COMPLETION: np.concatenate(completions)}


def manifest_for(run_id: str, specs: list[CellSpec], slo: dict[str, float], complete: bool,
                 designs: tuple[str, ...] = EXPERIMENT_DESIGNS) -> dict[str, Any]:
    """The manifest of a run of `specs` whose experiment declares `designs` (then any other design of the specs)."""
    declared = list(dict.fromkeys([*designs, *(s.design for s in specs)]))
    cells = []
    for number, spec in enumerate(specs):
        started = EPOCH_S + number * 100
        cells.append({"id": spec.id, "design": spec.design, "phase": spec.phase, "kind": spec.kind,
                      "repetition": spec.repetition, "model": "open", "offered_rate_per_s": float(spec.rate_per_s),
                      "users": None, "duration_s": float(spec.duration_s), "started_at": started,
                      "ended_at": started + spec.duration_s, "status": "complete" if spec.written else "incomplete"})
    phases = [{"name": s.phase, "kind": s.kind, "rate_per_s": float(s.rate_per_s), "duration_s": float(s.duration_s),
               "users": None, "wait_s": 1.0} for s in {s.phase: s for s in specs if s.kind != "capacity"}.values()]
    return {
        "schema_version": SCHEMA_VERSION, "run_id": run_id, "status": "complete" if complete else "incomplete",
        "error": None if complete else "interrupted by SIGINT",
        "started_at": "2026-11-29T10:15:00+00:00", "finished_at": "2026-11-29T10:25:00+00:00",
        "git": {"sha": "0123456789abcdef0123456789abcdef01234567", "dirty": False},
        "versions": {"python": "3.11.7", "offpath": "0.1.0", "locust": "2.31.0", "rq": "2.0.0", "redis_py": "5.2.0",
                     "redis_server": "6.2.14", "fastapi": "0.115.0", "uvicorn": "0.30.0", "hdrhistogram": "0.10.8"},
        "machine": {"cpu_count": 2, "cpus_available": 2, "cpu_model": "Test CPU @ 2.0GHz", "platform": "Linux-test",
                    "hostname": "fixture", "memory_gib": 24.0},
        "experiment": {"name": "fixture", "description": "generated from known distributions", "profile": "default",
                       "designs": declared, "repetitions": max(s.repetition for s in specs), "payload_seed": 1,
                       "slo": slo, "layout": {"service_processes": 1, "workers": 4, "locust_processes": 1,
                                              "poll_interval_s": 1.0, "drain_timeout_s": 5.0, "redis_aof": "everysec"},
                       "phases": phases, "capacity": _search(specs)},
        "profile": {"name": "default", "description": "fixture profile", "seed": 20261129},
        "seeds": {"profile": 20261129, "payload": 1},
        "cpus": {"load": [1], "system_under_test": [0]},
        "redis": {"embedded": True, "aof": "everysec"},
        "layout": {},
        "cells": cells,
    }


def _search(specs: list[CellSpec]) -> dict[str, float] | None:
    rates = sorted({s.rate_per_s for s in specs if s.kind == "capacity"})
    if not rates:
        return None
    return {"start_per_s": float(rates[0]), "step_per_s": float(rates[1] - rates[0]) if len(rates) > 1 else 1.0,
            "max_per_s": float(rates[-1]), "step_duration_s": float(next(s for s in specs if s.kind == "capacity")
                                                                     .duration_s)}


def write_run(root: Path, specs: list[CellSpec], *, run_id: str = "20261129-101500-fixture-abcdef", seed: int = 1,
              slo: dict[str, float] | None = None, complete: bool = True,
              designs: tuple[str, ...] = EXPERIMENT_DESIGNS) -> tuple[Path, dict[str, dict[str, np.ndarray]]]:
    """A results folder of the given cells, its experiment declaring `designs`; returns its path and every cell's
    raw values by log name."""
    run_dir = root / run_id
    run_dir.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    slo = slo or {"p99_ms": 500.0, "error_rate": 0.01}
    manifest = manifest_for(run_id, specs, slo, complete, designs)
    truth = {}
    for spec, meta in zip(specs, manifest["cells"], strict=True):
        if spec.written:
            truth[spec.id] = write_cell(run_dir / CELLS_DIR / spec.id, spec, meta["started_at"], rng)
    (run_dir / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2) + "\n")
    if not complete:
        (run_dir / INCOMPLETE_MARKER).write_text("interrupted by SIGINT\n")
    return run_dir, truth


INLINE_STEADY = Latency(40_000, 0.6)
QUEUED_STEADY = Latency(8_000, 0.5)


def capacity_specs(design: str, rates: list[int], p99_budget_rate: int, drain_limit_rate: int | None = None,
                   duration_s: int = 8) -> list[CellSpec]:
    """Capacity cells: latency stays low up to p99_budget_rate and explodes past it; for queued, the backlog
    grows past drain_limit_rate."""
    specs = []
    for rate in rates:
        within = rate <= p99_budget_rate
        latency = Latency(30_000 if design == "inline" else 6_000, 0.5) if within else Latency(900_000, 0.5)
        queue = None
        if design == "queued":
            grows = drain_limit_rate is not None and rate > drain_limit_rate
            queue = Queue(growth_per_s=rate * 0.5 if grows else 0.0, noise=1.0)
        specs.append(CellSpec(design, f"capacity-{rate:04d}", kind="capacity", rate_per_s=rate, duration_s=duration_s,
                              latency=latency, queue=queue))
    return specs


def reference_specs(repetitions: int = 2, duration_s: int = 20, rate_per_s: int = 100,
                    drain_limit_rate: int | None = None, designs: tuple[str, ...] = ("inline", "queued"),
                    capacity: bool = True) -> list[CellSpec]:
    """The reference case: queued answers faster at equal load and sustains more throughput within the SLO."""
    specs: list[CellSpec] = []
    for rep in range(1, repetitions + 1):
        for design in designs:
            queued = design == "queued"
            specs.append(CellSpec(design, "warmup", kind="warmup", repetition=rep, rate_per_s=20, duration_s=3,
                                  latency=QUEUED_STEADY if queued else INLINE_STEADY, queue=Queue() if queued else None))
            specs.append(CellSpec(design, "steady", repetition=rep, rate_per_s=rate_per_s, duration_s=duration_s,
                                  latency=QUEUED_STEADY if queued else INLINE_STEADY, queue=Queue() if queued else None))
    if capacity:
        rates = [40, 80, 120, 160, 200]
        if "inline" in designs:
            specs += capacity_specs("inline", rates, p99_budget_rate=120)
        if "queued" in designs:
            specs += capacity_specs("queued", rates, p99_budget_rate=160, drain_limit_rate=drain_limit_rate)
    return specs


def intervals_of(per_second: list[np.ndarray]) -> Intervals:
    """1-second interval histograms of the given values, in memory (no file): for simulations that need many."""
    rows, indexes, counts = [], [], []
    for second, values in enumerate(per_second):
        index, count = np.unique(index_for(np.clip(values, 1, 3_600_000_000)), return_counts=True)
        rows.append(np.full(len(index), second, dtype=np.int64))
        indexes.append(index.astype(np.int64))
        counts.append(count.astype(np.int64))
    n = len(per_second)
    return Intervals(np.arange(n, dtype=float), np.ones(n), np.concatenate(rows), np.concatenate(indexes),
                     np.concatenate(counts))
