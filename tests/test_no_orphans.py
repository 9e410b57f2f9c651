"""A harness killed with SIGKILL, the one end it cannot clean up after, still leaves no process it
started: every child ends on the kernel's parent-death SIGTERM, RQ workers included, although their
Redis goes down at the same moment, and within the bound the README states even with every CPU busy
(a CPU hog runs through the stop). (Ctrl-C and SIGTERM of `bench`: tests/test_runner.py; every end
of `offpath up`: tests/test_up.py.)"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from services.queued.lifetime import PARENT_CHECK_S, STOP_GRACE_S
from tests.processes import cmdline, cpu_hog, descendants, describe, kill_all, wait_gone

BENCH = """
name = "orphans"
profile = "{profile}"
designs = ["queued"]
repetitions = 1
[slo]
p99_ms = 1000
error_rate = 0.05
[layout]
workers = 2
[[phases]]
name = "steady"
kind = "steady"
rate_per_s = 20
duration_s = 30
"""

CHAOS = """
name = "orphans"
profile = "{profile}"
rate_per_s = 20
duration_s = 30
workers = 2
settle_timeout_s = 30

[[faults]]
name = "calm"
kind = "none"

[[faults]]
name = "kill-worker"
kind = "kill-worker"
at_s = 4
"""

# The README's bound: a worker whose parent is gone has STOP_GRACE_S to stop warm, then ends itself
# (services/queued/lifetime.py); everything else stops on SIGTERM at once.
BOUND_S = STOP_GRACE_S + PARENT_CHECK_S + 1.0


def _run_until_load(command: list[str], runs: Path) -> tuple[subprocess.Popen, set[int]]:
    """Start an offpath command with its own Redis; once its load generator has recorded load, its
    descendants."""
    env = {key: value for key, value in os.environ.items() if key != "REDIS_URL"}
    process = subprocess.Popen([sys.executable, "-m", "offpath.cli", *command], stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL, env=env)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        found = list(runs.glob("*/cells/*/request.hlog"))
        if found and found[0].stat().st_size > 300:
            return process, descendants(process.pid)
        assert process.poll() is None, f"offpath {command[0]} exited with {process.returncode} before its load ran"
        time.sleep(0.2)
    process.kill()
    raise AssertionError(f"offpath {command[0]} recorded no load within 60 s")


def _assert_sigkill_leaves_nothing(process: subprocess.Popen, started: set[int]) -> None:
    workers = {pid for pid in started if "services.queued.worker" in cmdline(pid)}
    assert len(workers) >= 2, describe(started)
    try:
        with cpu_hog():
            process.kill()
            process.wait()
            left = wait_gone(started, BOUND_S)
        assert not left, f"still running {BOUND_S:g} s after the harness was killed: {describe(left)}"
    finally:
        kill_all(started)


@pytest.mark.timeout(120)
def test_a_killed_bench_leaves_no_process(tmp_path, profiles):
    experiment = tmp_path / "orphans.toml"
    experiment.write_text(BENCH.format(profile=profiles["quick"]))
    process, started = _run_until_load(["bench", str(experiment), "--out", str(tmp_path / "runs")], tmp_path / "runs")
    _assert_sigkill_leaves_nothing(process, started)


@pytest.mark.timeout(120)
def test_a_killed_chaos_run_leaves_no_process(tmp_path, profiles):
    experiment = tmp_path / "orphans.toml"
    experiment.write_text(CHAOS.format(profile=profiles["quick"]))
    command = ["chaos", str(experiment), "--fault", "calm", "--out", str(tmp_path / "runs")]
    process, started = _run_until_load(command, tmp_path / "runs")
    _assert_sigkill_leaves_nothing(process, started)
