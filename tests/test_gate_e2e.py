"""`offpath gate` end to end: one small real run (Redis, both services, RQ workers, Locust), judged for real."""

from __future__ import annotations

import json
import subprocess
import sys

from tests.conftest import project_root

EXPERIMENT = """
name = "gate-tiny"
description = "The gate experiment's shape, as small as a test allows."
profile = "default"
designs = ["inline", "queued"]
repetitions = 1
[slo]
p99_ms = 2000.0
error_rate = 0.05
[layout]
workers = 4
poll_interval_s = 0.0
drain_timeout_s = 10.0
[[phases]]
name = "steady"
kind = "steady"
rate_per_s = 10
duration_s = 6
"""

# A run this short has ~60 requests a design: P50s only (no tail has 10 values beyond P99).
RULES = """
phase = "steady"
[[rules]]
name = "inline POST P50"
kind = "regression"
design = "inline"
metric = "p50"
max_regression_pct = 10
[[rules]]
name = "queued keeps its P50 advantage"
kind = "advantage"
design = "queued"
metric = "p50"
min_advantage_pct = 50
[[rules]]
name = "queued POST errors"
kind = "error_rate"
design = "queued"
max_error_rate = 0.05
[[rules]]
name = "queued backlog sustainable"
kind = "sustainable"
design = "queued"
"""


def offpath(*args: str, cwd) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "offpath.cli", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=240)


def test_gate_runs_the_experiment_then_judges_it_against_a_baseline(tmp_path):
    (tmp_path / "tiny.toml").write_text(EXPERIMENT)
    (tmp_path / "rules.toml").write_text(RULES)
    common = ["--rules", str(tmp_path / "rules.toml"), "--out", str(tmp_path / "runs")]
    first = offpath("gate", "--experiment", str(tmp_path / "tiny.toml"), "--baseline", "none", *common,
                    "--json", str(tmp_path / "first.json"), cwd=project_root())
    verdict = json.loads((tmp_path / "first.json").read_text())
    assert first.returncode in (0, 1), first.stdout + first.stderr  # a judged run, never a harness error
    assert verdict["status"] in ("pass", "regression") and verdict["counts"]["skipped"] == 1
    run_dir = verdict["run_dir"]
    assert (tmp_path / "runs").resolve() == (project_root() / run_dir).resolve().parent

    baseline = str(tmp_path / "baseline.json")
    recorded = offpath("gate", "--run", run_dir, "--baseline", baseline, "--update-baseline", *common,
                       cwd=project_root())
    assert recorded.returncode == first.returncode, recorded.stdout + recorded.stderr
    if first.returncode == 0:
        again = offpath("gate", "--run", run_dir, "--baseline", baseline, *common, "--junit",
                        str(tmp_path / "junit.xml"), cwd=project_root())
        assert again.returncode == 0, again.stdout
        assert "0.0%" in again.stdout  # a run judged against its own baseline moved by exactly nothing
        assert (tmp_path / "junit.xml").read_text().count("<testcase") == 5


def _kept_round(out, regression_profile="default*1.3"):
    """Round 1 of an earlier invocation as it leaves it: a verdict per side, naming its run folder and baseline."""
    (out / "verdicts").mkdir()
    for side, status, code, profile in (("unchanged", "pass", 0, "default"),
                                         ("regressed", "regression", 1, regression_profile)):
        run_dir = out / side / f"20261129-000000-gate-{side}"
        run_dir.mkdir(parents=True)
        (run_dir / "manifest.json").write_text(json.dumps({"profile": {"name": profile}}))
        rule = {"name": "inline POST P50", "status": "fail" if code else "pass", "measured": "x",
                "figures": {"delta_pct": 31.0 if code else 2.0}}
        verdict = {"status": status, "exit_code": code, "run_dir": str(run_dir), "baseline": "default",
                   "rules": [rule]}
        (out / "verdicts" / f"{side}-01.json").write_text(json.dumps(verdict))


def _benchmark(*args):
    return subprocess.run([sys.executable, "benchmarks/gate_discrimination.py", *args], cwd=project_root(),
                          capture_output=True, text=True, timeout=60)


def test_discrimination_benchmark_resumes_from_kept_verdicts(tmp_path):
    """A 70-minute benchmark cut short goes on where it stopped: kept verdicts are counted, not run again."""
    _kept_round(tmp_path)
    completed = _benchmark("--runs", "1", "--out", str(tmp_path), "--resume")
    assert completed.returncode == 0, completed.stderr
    assert "false_alarms: 0/1" in completed.stdout and "detections: 1/1" in completed.stdout
    assert completed.stdout.count(" kept ") == 2
    assert "0 gate runs in" in completed.stdout and "(2 kept from the earlier invocation)" in completed.stdout
    for side in ("unchanged", "regressed"):  # no gate ran: only the kept run folders are there
        assert [run.name for run in (tmp_path / side).iterdir()] == [f"20261129-000000-gate-{side}"]


def test_discrimination_benchmark_refuses_to_resume_verdicts_judged_otherwise(tmp_path):
    """Kept verdicts of another regression profile (or baseline) would mix two experiments in one count."""
    _kept_round(tmp_path, regression_profile="default*1.5")
    completed = _benchmark("--runs", "1", "--out", str(tmp_path), "--resume")
    assert completed.returncode != 0
    assert "'default*1.5'" in completed.stderr and "--regression 'default*1.3'" in completed.stderr
    completed = _benchmark("--runs", "1", "--out", str(tmp_path), "--resume", "--baseline", "other",
                           "--regression", "default*1.5")
    assert completed.returncode != 0 and "this invocation uses 'other'" in completed.stderr


def test_discrimination_benchmark_resume_needs_the_folder():
    completed = _benchmark("--resume")
    assert completed.returncode == 2 and "--resume needs --out" in completed.stderr
