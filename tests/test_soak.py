"""A soak end to end (`offpath bench` of an experiment with [soak]): each design's capacity search, then its soak at a
share of the rate it held, with every process's memory, Redis's memory and keys recorded, and the soak's report."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from analysis.stats.load import load_run
from foundation.errors import HarnessError
from foundation.manifest_format import CapacitySearchRecord
from offpath.experiment import ExperimentError, load_experiment, parse_experiment
from offpath.runner import plan, planned_duration_s
from offpath.soak import soak_rate

SOAK = """
name = "short-soak"
profile = "{profile}"
designs = ["inline", "queued"]
[slo]
p99_ms = 1500
error_rate = 0.05
[layout]
workers = 2
drain_timeout_s = 10
[capacity]
start_per_s = 10
step_per_s = 10
max_per_s = 20
step_duration_s = 3
[soak]
duration_s = 16
load_fraction = 0.7
sample_interval_s = 2
warmup_s = 3
bin_s = 3
drift_bins = 2
"""


BASE = {"name": "s", "designs": ["inline", "queued"], "slo": {"p99_ms": 1000, "error_rate": 0.01}}
SEARCH = {"start_per_s": 10, "step_per_s": 10, "max_per_s": 20, "step_duration_s": 3}
SHORT = {"duration_s": 60, "warmup_s": 0, "bin_s": 5, "drift_bins": 2}


@pytest.mark.fast
def test_the_shipped_soak_measures_each_designs_capacity_then_soaks_it_for_30_minutes():
    experiment = load_experiment("soak")
    assert experiment.soak is not None and experiment.soak.duration_s == 1800 and experiment.soak.load_fraction == 0.7
    assert [b.label for b in plan(experiment)] == ["inline.capacity", "inline.soak", "queued.capacity", "queued.soak"]
    least, most = planned_duration_s(experiment)
    assert 60 * 60 < least < most < 80 * 60  # two 30-minute soaks, two searches, the overheads
    assert experiment.resolved()["soak"]["drift_bins"] == 10


@pytest.mark.fast
@pytest.mark.parametrize("soak, extra, says", [
    ({"load_fraction": 0.7}, {}, "[capacity] search measures first"),
    ({"rate_per_s": {"inline": 5}}, {}, "a rate for each design, and only those"),
    ({"rate_per_s": {"inline": 5, "queued": 5}}, {"capacity": SEARCH}, "runs no capacity search"),
    ({"load_fraction": 0.7, "rate_per_s": {"inline": 5, "queued": 5}}, {}, "exactly one of"),
    ({"load_fraction": 0.7, "bin_s": 60, "drift_bins": 10}, {"capacity": SEARCH}, "the first and last bins compared"),
    ({"load_fraction": 1.5}, {"capacity": SEARCH}, "a fraction of each design's capacity"),
    ({"load_fraction": 0.7}, {"capacity": SEARCH, "phases": [{"name": "steady", "rate_per_s": 5, "duration_s": 4}]},
     "not allowed beside"),
])
def test_a_soak_that_cannot_run_is_refused_in_one_line(soak, extra, says):
    with pytest.raises(ExperimentError) as refused:
        parse_experiment({**BASE, **extra, "soak": {**SHORT, **soak}}, "soak.toml")
    assert says in str(refused.value) and "\n" not in str(refused.value)


@pytest.mark.fast
def test_a_designs_soak_rate_is_the_fraction_of_what_its_search_held_or_the_rate_declared():
    derived = parse_experiment({**BASE, "capacity": SEARCH, "soak": {**SHORT, "load_fraction": 0.7}}, "soak.toml").soak
    assert derived is not None
    searches = {"inline": CapacitySearchRecord("found", held_per_s=255.0, broke_per_s=268.0),
                "queued": CapacitySearchRecord("below", held_per_s=None, broke_per_s=7.5)}
    assert soak_rate(derived, "inline", searches) == 178.5
    with pytest.raises(HarnessError, match="no rate held"):
        soak_rate(derived, "queued", searches)
    declared = parse_experiment({**BASE, "soak": {**SHORT, "rate_per_s": {"inline": 150, "queued": 40}}},
                                "soak.toml").soak
    assert declared is not None and soak_rate(declared, "queued", {}) == 40


def test_a_short_soak_records_memory_keys_and_latency_of_each_design(tmp_path, profiles):
    experiment = tmp_path / "soak.toml"
    experiment.write_text(SOAK.format(profile=profiles["quick"]))
    process = subprocess.run([sys.executable, "-m", "offpath.cli", "bench", str(experiment), "--out",
                              str(tmp_path / "runs")], capture_output=True, text=True, timeout=420)
    assert process.returncode == 0, process.stderr[-3000:]
    run_dir = Path(process.stdout.strip().splitlines()[-1])
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["kind"] == "soak" and manifest["status"] == "complete"
    soaks = [cell for cell in manifest["cells"] if cell["kind"] == "soak"]
    assert [cell["id"] for cell in soaks] == ["inline.soak.r1", "queued.soak.r1"]
    # Each design's soak ran after its own search, at 70% of the highest rate that search held.
    order = [cell["design"] + ("" if cell["kind"] == "soak" else ".search") for cell in manifest["cells"]]
    assert order.index("inline") < order.index("queued.search")
    for cell in soaks:
        held = manifest["capacity_searches"][cell["design"]]["held_per_s"]
        assert cell["offered_rate_per_s"] == round(0.7 * held, 2)

    layout = manifest["layout"]
    for cell in soaks:
        cell_dir = run_dir / "cells" / cell["id"]
        memory = pd.read_csv(cell_dir / "memory.csv")
        samples = memory["t_s"].nunique()
        assert samples >= 16 / 2  # one every 2 s, and one at the end
        started = {p["name"] for p in layout[f"{cell['design']}.soak"]}
        for name in started | {"redis-server"}:
            rows = memory[memory["process"] == name]
            assert len(rows) == samples and (rows["rss_bytes"] > 2**20).all(), name  # in every sample, resident
        load = memory[memory["tier"] == "load"]
        # Locust, in every sample from the first after it started to the last before it ended (a loaded machine starts
        # it a few seconds late; the sample at the end comes after it left).
        times, seen = sorted(memory["t_s"].unique()), list(load["t_s"])
        assert len(seen) >= samples - 5 and (load["rss_bytes"] > 0).all()
        assert seen == times[times.index(seen[0]):times.index(seen[-1]) + 1]
        assert (memory.loc[memory["tier"] == "machine", "rss_bytes"] > 0).sum() == samples
        redis = pd.read_csv(cell_dir / "redis_memory.csv")
        assert len(redis) == samples and redis["keys"].iloc[-1] > redis["keys"].iloc[0]

        keys = json.loads((cell_dir / "keys.json").read_text())
        kinds = {kind["pattern"]: kind for kind in keys["patterns"]}
        campaigns = kinds["offpath:campaign:{id}"]
        assert campaigns["with_ttl"] == 0 and campaigns["mean_bytes"] > 0
        assert keys["keys"] == sum(kind["count"] for kind in keys["patterns"])
        if cell["design"] == "queued":
            accepted = json.loads((cell_dir / "completion.json").read_text())["accepted"]
            assert campaigns["count"] == accepted + 1  # and the one the contract check sent before the cell
            for job in ("rq:job:{id}-generation", "rq:job:{id}-automation"):
                assert kinds[job]["count"] == accepted + 1 and kinds[job]["with_ttl"] == kinds[job]["count"]

    run = load_run(run_dir)
    assert {c.design for c in run.select(kind="soak")} == {"inline", "queued"}
    report = (run_dir / "report.md").read_text()
    assert "## inline" in report and "## queued" in report and "Keys at the end" in report
    figures = json.loads((run_dir / "soak.json").read_text())
    queued = next(d for d in figures["designs"] if d["design"] == "queued")
    assert queued["outcome_log"] == "completion" and queued["request_drift"]["row"] is not None
    assert {p["name"] for p in queued["processes"]} >= {"queued-service", "worker-0", "worker-1", "redis-server"}
    assert process.stdout.strip().splitlines()[-2] == f"report: {run_dir / 'report.html'}"
