"""The drain-cost benchmark as a user runs it: for each queue backend, a figure only when every job of both sides
finished and every campaign (floor chain) completed, and then one `drain_overhead_ratio <backend>` line each, last."""

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
                          cwd=ROOT, env=environ, capture_output=True, text=True, timeout=300)


def test_prints_each_backends_sides_and_its_ratio_last():
    result = _drain_cost()
    assert result.returncode == 0, result.stdout + result.stderr[-3000:]
    lines = result.stdout.strip().splitlines()
    for line, backend in zip(lines[-3:], ("rq", "celery", "dramatiq"), strict=True):
        assert re.fullmatch(rf"drain_overhead_ratio {backend}: \d+\.\d\d", line), line
        for side in ("floor", "offpath"):
            assert any(re.search(rf"{backend} {side}: median +\d+ campaigns per worker CPU-second", line)
                       for line in lines), (backend, side)
    assert any(line.startswith("offpath's two steps alone, no queue library: per campaign worker") for line in lines)


def test_refuses_a_figure_when_a_job_failed(profiles):
    # Generation always fails, and without retries its first failure is final: every campaign ends `failed`.
    result = _drain_cost("--profile", profiles["broken"], "--backends", "rq,celery,dramatiq", OFFPATH_RETRIES="0")
    assert result.returncode == NO_FIGURE, result.stdout + result.stderr[-3000:]
    assert "drain_overhead_ratio" not in result.stdout
    out = result.stdout
    assert "no figure: rq offpath had 40 errors in round 1 (failed job x 20, campaign not completed x 20)" in out
    assert "no figure: celery offpath had 20 errors in round 1 (campaign not completed x 20)" in out
    assert "no figure: dramatiq offpath had 40 errors in round 1 (failed job x 20, campaign not completed x 20)" in out
    assert "no figure: steps alone had 40 errors in round 1 (failed job x 20, campaign not completed x 20)" in out
    assert "floor had" not in out


@pytest.mark.fast
def test_a_side_with_failures_gets_no_figure_even_if_the_other_is_clean(capsys):
    def drain(side: str, errors: dict[str, int], backend: str = "rq") -> drain_cost.Drain:
        return drain_cost.Drain(side, 1, 100, 0.3, 0.08, Counter({"hset": 3600}), Counter(errors), backend)

    assert drain_cost.conclude([drain("floor", {}), drain("offpath", {"worker exit code 1": 1})]) == NO_FIGURE
    out = capsys.readouterr().out
    assert "no figure: rq offpath had 1 error in round 1 (worker exit code 1 x 1)" in out
    assert "drain_overhead_ratio" not in out
    # One backend's failure costs only its own figure.
    drains = [drain("floor", {}, "celery"), drain("offpath", {"worker exit code 1": 1}, "celery"),
              drain("floor", {}, "dramatiq"), drain("offpath", {}, "dramatiq")]
    assert drain_cost.conclude(drains) == NO_FIGURE
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[-1] == "drain_overhead_ratio dramatiq: 1.00"
    assert not any(line.startswith("drain_overhead_ratio celery") for line in lines)
    assert drain_cost.conclude([drain("floor", {}), drain("offpath", {})]) == 0
    assert capsys.readouterr().out.strip().splitlines()[-1] == "drain_overhead_ratio rq: 1.00"
