"""Gate baselines (`results/baselines/<name>.json`): a run's steady-phase histograms, encoded, and the facts that must
match before another run may be judged against them.

A baseline keeps every repetition's 1-second interval histograms (HdrHistogram's compressed base64 encoding, as in
an `.hlog`), not only their merge: the gate bootstraps the baseline exactly as it bootstraps the run it judges
(analysis/stats/bootstrap.py). Each series also carries its merged histogram, encoded, and its headline figures, so that
a baseline's diff in a pull request reads as numbers.

Facts that must match (else judging is a harness error, never a pass): the results schema, the experiment as it
was run (name, designs, repetitions, phases, load layout, payload seed) and the machine (CPU count, CPUs available,
CPU model) — latencies from another machine or another experiment say nothing about a regression. Deliberately
*not* facts: the workload profile (`--profile 'default*1.3'` must be judged against the default's baseline: that
is the injected regression), versions of offpath and its dependencies, and the git SHA — changes there are what
the gate exists to judge. They are kept as context and shown in the summary.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from hdrh.histogram import HdrHistogram

from analysis.stats.histogram import COUNTS_LEN, Intervals, from_hdr, stats, to_hdr
from analysis.stats.load import Run
from foundation.errors import ConfigurationError
from foundation.format import COMPLETION, CREATE

FORMAT = "offpath-gate-baseline"
FORMAT_VERSION = 1
BASELINES_DIR = Path("results") / "baselines"
ENDPOINTS = (CREATE, COMPLETION)  # the logs a baseline keeps, per design and steady phase
MACHINE_FACTS = ("cpu_count", "cpus_available", "cpu_model")
EXPERIMENT_FACTS = ("name", "designs", "repetitions", "payload_seed", "phases", "capacity", "layout")


class BaselineError(ConfigurationError):
    """A baseline that cannot be used as it is; the message says what to do."""


@dataclass(frozen=True)
class Series:
    """One design × steady phase × endpoint: the interval histograms of each repetition, in order."""

    design: str
    phase: str
    endpoint: str
    repetitions: tuple[Intervals, ...]

    @property
    def key(self) -> str:
        return series_key(self.design, self.phase, self.endpoint)


@dataclass(frozen=True)
class Baseline:
    name: str
    run_id: str
    created_at: str
    facts: dict[str, Any]
    context: dict[str, Any]
    series: dict[str, Series]
    # How verdicts call it: "baseline" (stored, same machine), "base" (a base commit measured in the same run).
    label: str = "baseline"

    def logs(self, design: str, phase: str, endpoint: str) -> list[Intervals]:
        found = self.series.get(series_key(design, phase, endpoint))
        return list(found.repetitions) if found is not None else []


def series_key(design: str, phase: str, endpoint: str) -> str:
    return f"{design}.{phase}.{endpoint}"


def baseline_path(spec: str, baselines_dir: Path = BASELINES_DIR) -> Path:
    """A name ('default') means `<baselines_dir>/<name>.json`; a path ending in .json is taken as it is."""
    if spec.endswith(".json"):
        return Path(spec)
    if not spec or "/" in spec or spec.startswith("."):
        raise BaselineError(f"baseline name {spec!r}: use a plain name such as 'default' (stored as "
                            f"{baselines_dir}/<name>.json) or a path to a .json file")
    return baselines_dir / f"{spec}.json"


def run_facts(run: Run) -> dict[str, Any]:
    """What must be equal between a baseline's run and a run judged against it: the experiment's keys as resolved (so
    that a baseline's facts read as the experiment file did), the machine's as recorded."""
    experiment = run.record.experiment.resolved
    return {
        "schema_version": run.record.schema_version,
        "experiment": {key: experiment.get(key) for key in EXPERIMENT_FACTS},
        "machine": {key: getattr(run.record.machine, key) for key in MACHINE_FACTS},
    }


def run_context(run: Run) -> dict[str, Any]:
    """What is shown beside a verdict but may differ: the profile, the code and its dependencies."""
    record = run.record
    return {"profile": record.profile.to_dict() if record.profile is not None else None,
            "experiment_profile": record.experiment.profile, "git": record.git.to_dict(),
            "versions": dict(record.versions), "machine": record.machine.to_dict(), "started_at": record.started_at}


def mismatches(expected: dict[str, Any], found: dict[str, Any], where: str = "") -> list[str]:
    """Every leaf fact that differs, as 'experiment.phases: baseline [...], this run [...]'."""
    out = []
    for key in sorted(set(expected) | set(found), key=str):
        a, b = expected.get(key), found.get(key)
        name = f"{where}{key}"
        if isinstance(a, dict) and isinstance(b, dict):
            out += mismatches(a, b, f"{name}.")
        elif a != b:
            out.append(f"{name}: baseline {json.dumps(a)}, this run {json.dumps(b)}")
    return out


def baseline_from_run(run: Run, name: str) -> Baseline:
    """The steady cells' POST and completion logs of every design, repetitions kept apart."""
    series: dict[str, Series] = {}
    steady = [c for c in run.cells if c.kind == "steady"]
    for design, phase in dict.fromkeys((c.design, c.phase) for c in steady):
        cells = sorted(run.select(kind="steady", design=design, phase=phase), key=lambda c: c.repetition)
        for endpoint in ENDPOINTS:
            logs = tuple(c.log(endpoint) for c in cells)
            if any(log.n_intervals for log in logs):
                series[series_key(design, phase, endpoint)] = Series(design, phase, endpoint, logs)
    if not series:
        raise BaselineError(f"run {run.id} has no steady cells with recorded latencies; a baseline needs a complete "
                            "run of the gate experiment")
    created = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    return Baseline(name=name, run_id=run.id, created_at=created, facts=run_facts(run), context=run_context(run),
                    series=series)


def to_json(baseline: Baseline) -> dict[str, Any]:
    return {
        "format": FORMAT, "format_version": FORMAT_VERSION, "name": baseline.name, "run_id": baseline.run_id,
        "created_at": baseline.created_at, "facts": baseline.facts, "context": baseline.context,
        "series": {key: _series_json(s) for key, s in baseline.series.items()},
    }


def _series_json(series: Series) -> dict[str, Any]:
    merged = Intervals.concat(series.repetitions).merged()
    figures = stats(merged)
    return {
        "design": series.design, "phase": series.phase, "endpoint": series.endpoint,
        "summary": {k: figures[k] for k in ("count", "p50_us", "p90_us", "p99_us", "max_us")},
        "merged": encode(merged),
        "repetitions": [encode_intervals(log) for log in series.repetitions],
    }


def write_baseline(baseline: Baseline, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(to_json(baseline), indent=1) + "\n")
    tmp.replace(path)
    return path


def read_baseline(path: Path) -> Baseline:
    if not path.is_file():
        found = sorted(p.stem for p in path.parent.glob("*.json")) if path.parent.is_dir() else []
        choices = f"baselines there: {', '.join(found)}" if found else "there are none yet"
        raise BaselineError(f"no gate baseline at {path} ({choices}). Record one on this machine with "
                            "`offpath gate --update-baseline`, or judge only the within-run rules with `--baseline none`")
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise BaselineError(f"{path}: not valid JSON ({exc}); restore it from git or record a new one with "
                            "`offpath gate --update-baseline`") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise BaselineError(f"{path} is not an offpath gate baseline (no \"format\": \"{FORMAT}\")")
    if data.get("format_version") != FORMAT_VERSION:
        raise BaselineError(f"{path} is baseline format {data.get('format_version')}; this offpath reads format "
                            f"{FORMAT_VERSION}. Record a new one with `offpath gate --update-baseline`")
    try:
        series = {key: Series(str(s["design"]), str(s["phase"]), str(s["endpoint"]),
                              tuple(decode_intervals(r) for r in s["repetitions"]))
                  for key, s in data["series"].items()}
        return Baseline(name=str(data["name"]), run_id=str(data["run_id"]), created_at=str(data["created_at"]),
                        facts=dict(data["facts"]), context=dict(data.get("context") or {}), series=series)
    except (KeyError, TypeError, ValueError) as exc:
        raise BaselineError(f"{path}: damaged baseline ({type(exc).__name__}: {exc}); restore it from git or record "
                            "a new one with `offpath gate --update-baseline`") from None


def encode(counts: np.ndarray) -> str:
    """Dense counts as HdrHistogram's compressed base64 (readable by any HdrHistogram implementation)."""
    return to_hdr(counts).encode().decode("ascii")


def encode_intervals(intervals: Intervals) -> dict[str, Any]:
    dense = np.zeros((intervals.n_intervals, COUNTS_LEN), dtype=np.int64)
    np.add.at(dense, (intervals.row, intervals.index), intervals.count)
    return {"start_time_s": intervals.start_time_s,
            "intervals": [[round(float(start), 3), round(float(length), 3), encode(row)]
                          for start, length, row in zip(intervals.start_s, intervals.length_s, dense, strict=True)]}


def decode_intervals(data: dict[str, Any]) -> Intervals:
    rows: Sequence[Sequence[Any]] = data["intervals"]
    histograms = [HdrHistogram.decode(str(payload)) for _, _, payload in rows]
    return from_hdr(histograms, [float(r[0]) for r in rows], [float(r[1]) for r in rows],
                    float(data.get("start_time_s") or 0.0))
