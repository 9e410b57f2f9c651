"""Sweep specs in experiment files: what a sweep may vary, the points it makes, the plain experiment each point
runs, and the one-line errors (exit 2, no traceback) for specs offpath cannot use or runs it cannot resume."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from foundation.format import SCHEMA_VERSION
from offpath.experiment import ExperimentError, load_experiment, parse_experiment
from offpath.runner import planned_duration_s
from services.campaign.profile import load_profile

BASE = """
name = "sweepy"
profile = "default"
designs = ["inline", "queued"]
repetitions = 2
[slo]
p99_ms = 1000
error_rate = 0.01
[layout]
workers = 4
{layout}
[[phases]]
name = "steady"
kind = "steady"
rate_per_s = 20
duration_s = 10
[capacity]
start_per_s = 10
step_factor = 2
max_per_s = 80
step_duration_s = 5
{sweep}
"""


def _experiment(tmp_path: Path, sweep: str, layout: str = "") -> Path:
    path = tmp_path / "sweepy.toml"
    path.write_text(BASE.format(sweep=sweep, layout=layout))
    return path


@pytest.mark.fast
def test_one_parameter_makes_a_point_per_value_each_a_plain_experiment(tmp_path):
    experiment = load_experiment(str(_experiment(tmp_path, "[sweep]\nprovider_wait_scale = [0.25, 1, 4]")))
    points = experiment.sweep.points()
    assert [p.id for p in points] == ["01-provider_wait_scale=0.25", "02-provider_wait_scale=1",
                                      "03-provider_wait_scale=4"]
    at = experiment.at(points[2])
    assert at.sweep is None and str(at.profile) == "default*wait=4"
    base, scaled = load_profile("default"), at.profile.load()
    assert scaled.generation.wait_median_ms == 4 * base.generation.wait_median_ms
    assert scaled.automation.wait_p99_ms == 4 * base.automation.wait_p99_ms
    assert scaled.generation.cpu_ms == base.generation.cpu_ms  # waits only: the CPU work is as it was
    assert experiment.resolved()["sweep"] == {"provider_wait_scale": [0.25, 1.0, 4.0]}
    assert "sweep" not in at.resolved()


@pytest.mark.fast
def test_two_parameters_make_the_grid_first_varying_slowest(tmp_path):
    experiment = load_experiment(str(_experiment(tmp_path, "[sweep]\nconcurrency = [4, 8]\nrate_per_s = [10, 30]")))
    points = experiment.sweep.points()
    assert [p.as_dict() for p in points] == [{"concurrency": 4, "rate_per_s": 10}, {"concurrency": 4, "rate_per_s": 30},
                                             {"concurrency": 8, "rate_per_s": 10}, {"concurrency": 8, "rate_per_s": 30}]
    at = experiment.at(points[3])
    assert at.layout.concurrency == 8 and isinstance(at.layout.concurrency, int)
    assert [p.rate_per_s for p in at.phases] == [30.0]


@pytest.mark.fast
def test_cpu_work_and_workers_are_set_per_point(tmp_path):
    experiment = load_experiment(str(_experiment(tmp_path, "[sweep]\ncpu_work_scale = [0.5, 2]\nworkers = [2, 6]")))
    at = experiment.at(experiment.sweep.points()[1])
    assert str(at.profile) == "default*cpu=0.5" and at.layout.workers == 6
    assert at.profile.load().generation.cpu_ms == 0.5 * load_profile("default").generation.cpu_ms
    assert at.profile.load().generation.wait_median_ms == load_profile("default").generation.wait_median_ms


@pytest.mark.fast
@pytest.mark.parametrize(("sweep", "layout", "says"), [
    ("[sweep]", "", "allowed: one or two of provider_wait_scale, cpu_work_scale, concurrency, workers, rate_per_s, "
                    "backend (this sweep varies 0)"),
    ("[sweep]\nprovider_wait_scale = [1, 2]\nworkers = [1, 2]\nconcurrency = [1, 2]", "", "(this sweep varies 3)"),
    ("[sweep]\nwait_scale = [1, 2]", "", "unknown key 'sweep.wait_scale'; allowed: backend, concurrency, cpu_work_scale"),
    ("[sweep]\nprovider_wait_scale = 2", "", "key 'sweep.provider_wait_scale' has value 2; allowed: a list of numbers"),
    ("[sweep]\nprovider_wait_scale = [2]", "", "has value [2]; allowed: a list of at least 2 values"),
    ("[sweep]\nprovider_wait_scale = [1, 0]", "", "key 'sweep.provider_wait_scale[1]' has value 0; allowed: a number > 0"),
    ("[sweep]\nprovider_wait_scale = [1, \"2\"]", "", "has value '2'; allowed: a number"),
    ("[sweep]\nconcurrency = [2, 2.5]", "", "key 'sweep.concurrency[1]' has value 2.5; allowed: a whole number"),
    ("[sweep]\nworkers = [0, 2]", "", "key 'sweep.workers[0]' has value 0; allowed: a whole number >= 1"),
    ("[sweep]\nworkers = [true, 2]", "", "key 'sweep.workers[0]' has value True"),
    ("[sweep]\ncpu_work_scale = [1, 2, 1]", "", "allowed: distinct values"),
    ("[sweep]\nconcurrency = [0, 4]", 'poll = "wait"', "bounds the server while layout.poll is 'wait'"),
])
def test_bad_sweep_specs_name_the_key_and_what_is_allowed(tmp_path, sweep, layout, says):
    with pytest.raises(ExperimentError) as error:
        load_experiment(str(_experiment(tmp_path, sweep, layout)))
    assert says in str(error.value) and str(tmp_path) in str(error.value)


@pytest.mark.fast
def test_an_offered_rate_sweep_needs_an_open_model_steady_phase():
    data = {"name": "x", "slo": {"p99_ms": 100, "error_rate": 0.01},
            "capacity": {"start_per_s": 1, "step_per_s": 1, "max_per_s": 3, "step_duration_s": 1},
            "sweep": {"rate_per_s": [10, 20]}}
    with pytest.raises(ExperimentError, match="no open-model steady phase"):
        parse_experiment(data, "x.toml")
    with pytest.raises(ExperimentError, match="key 'sweep' has value 3; allowed: a table"):
        parse_experiment(data | {"sweep": 3}, "x.toml")


@pytest.mark.fast
def test_a_capacity_search_steps_by_a_rate_or_by_a_factor_not_both(tmp_path):
    text = BASE.format(sweep="", layout="").replace("step_factor = 2", "step_factor = 2\nstep_per_s = 5")
    (tmp_path / "both.toml").write_text(text)
    with pytest.raises(ExperimentError, match="exactly one of step_per_s"):
        load_experiment(str(tmp_path / "both.toml"))
    (tmp_path / "flat.toml").write_text(BASE.format(sweep="", layout="").replace("step_factor = 2", "step_factor = 1"))
    with pytest.raises(ExperimentError, match="'capacity.step_factor' has value 1; allowed: a number > 1"):
        load_experiment(str(tmp_path / "flat.toml"))
    geometric = load_experiment(str(_experiment(tmp_path, "")))
    assert geometric.capacity.rates() == [10, 20, 40, 80]


@pytest.mark.fast
def test_the_shipped_crossover_sweep_is_sized_to_finish_within_35_minutes():
    # Its phases and every search's steps up to the ceiling fit in 35 minutes; the narrowing probes come on top, spent
    # only where a capacity ratio is still undecided (narrow = "until-decided"): at most 3 per design and point, but
    # a run narrows at the points near the crossover (docs/findings.md gives the measured run's time).
    crossover = load_experiment("crossover")
    scales = crossover.sweep.as_dict()["provider_wait_scale"]
    assert len(scales) >= 5 and min(scales) == 0.25 and max(scales) == 4
    assert crossover.layout.concurrency > 0  # a bounded server, the condition the map is drawn under
    assert crossover.capacity.narrow == "until-decided" and crossover.capacity.refine_steps > 0
    stepping = crossover.model_copy(update={"capacity": crossover.capacity.model_copy(update={"refine_steps": 0})})
    least, most = planned_duration_s(stepping)
    assert least < most <= 35 * 60, f"planned {least / 60:.1f} to {most / 60:.1f} min"


def _offpath(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "offpath.cli", *args], capture_output=True, text=True, timeout=60)


def test_a_bad_sweep_exits_2_with_one_line(tmp_path):
    result = _offpath("bench", str(_experiment(tmp_path, "[sweep]\nworkers = [0, 2]")), "--out", str(tmp_path))
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "sweep.workers" in lines[0] and "Traceback" not in result.stderr
    assert not list(tmp_path.glob("*/manifest.json"))  # nothing was started


def _sweep_folder(tmp_path: Path, experiment: dict, kind: str = "sweep") -> Path:
    run = tmp_path / "runs" / "20261130-000000-sweepy-abcdef"
    run.mkdir(parents=True)
    (run / "manifest.json").write_text(json.dumps({"schema_version": SCHEMA_VERSION, "kind": kind, "experiment": experiment,
                                                   "points": [], "status": "incomplete"}))
    return run


def test_resume_refuses_a_run_of_other_settings_a_plain_experiment_and_a_missing_folder(tmp_path):
    path = _experiment(tmp_path, "[sweep]\nprovider_wait_scale = [0.5, 2]")
    resolved = load_experiment(str(path)).resolved()
    other = _sweep_folder(tmp_path, resolved | {"repetitions": 3})
    result = _offpath("bench", str(path), "--resume", str(other))
    assert result.returncode == 2 and "repetitions differ" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert not (other / "INCOMPLETE").exists()  # refused before anything touched the folder
    result = _offpath("bench", "smoke", "--resume", str(other))
    assert result.returncode == 2 and "has no [sweep]; only a sweep resumes" in result.stderr
    result = _offpath("bench", str(path), "--resume", str(tmp_path / "nowhere"))
    assert result.returncode == 2 and "no readable manifest.json" in result.stderr
    plain = tmp_path / "plain"
    plain.mkdir()
    (plain / "manifest.json").write_text(json.dumps({"schema_version": SCHEMA_VERSION, "experiment": resolved, "cells": []}))
    result = _offpath("bench", str(path), "--resume", str(plain))
    assert result.returncode == 2 and "not a sweep's run folder" in result.stderr
