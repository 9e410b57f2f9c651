"""The drain-cost benchmark as a user runs it: a figure only when every job of both sides finished and every campaign
completed, and then `drain_overhead_ratio` last."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from benchmarks import drain_cost
from benchmarks.figure import NO_FIGURE

ROOT = Path(__file__).resolve().parent.parent


def _drain_cost(*args: str, **env: str) -> subprocess.CompletedProcess:
    """With its own embedded Redis (REDIS_URL unset), tiny: 20 campaigns, one round."""
    environ = {k: v for k, v in os.environ.items() if k != "REDIS_URL"} | env
    return subprocess.run([sys.executable, "benchmarks/drain_cost.py", "--campaigns", "20", "--rounds", "1", *args],
                          cwd=ROOT, env=environ, capture_output=True, text=True, timeout=180)


def test_prints_both_sides_and_the_ratio_last():
    result = _drain_cost()
    assert result.returncode == 0, result.stdout + result.stderr[-3000:]
    lines = result.stdout.strip().splitlines()
    assert re.fullmatch(r"drain_overhead_ratio: \d+\.\d\d", lines[-1]), lines[-1]
    for side in ("floor", "offpath"):
        assert any(re.search(rf"{side}: median +\d+ campaigns per worker CPU-second", line) for line in lines), side


def test_refuses_a_figure_when_a_job_failed(profiles):
    # Generation always fails, and without retries its first failure is final: every campaign ends `failed`.
    result = _drain_cost("--profile", profiles["broken"], OFFPATH_RETRIES="0")
    assert result.returncode == NO_FIGURE, result.stdout + result.stderr[-3000:]
    assert "drain_overhead_ratio" not in result.stdout
    assert "no figure: offpath had 40 errors in round 1 (failed job x 20, campaign not completed x 20)" in result.stdout
    assert "floor had" not in result.stdout


@pytest.mark.fast
def test_a_side_with_failures_gets_no_figure_even_if_the_other_is_clean(capsys):
    def drain(side: str, errors: dict[str, int]) -> drain_cost.Drain:
        return drain_cost.Drain(side, 1, 100, 0.3, 0.08, Counter({"hset": 3600}), Counter(errors))

    assert drain_cost.conclude([drain("floor", {}), drain("offpath", {"worker exit code 1": 1})]) == NO_FIGURE
    out = capsys.readouterr().out
    assert "no figure: offpath had 1 error in round 1 (worker exit code 1 x 1)" in out
    assert "drain_overhead_ratio" not in out
    assert drain_cost.conclude([drain("floor", {}), drain("offpath", {})]) == 0
    assert capsys.readouterr().out.strip().splitlines()[-1] == "drain_overhead_ratio: 1.00"
