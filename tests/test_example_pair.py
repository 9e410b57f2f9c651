"""The example pair a user copies (examples/flask-celery/), run as a user runs it: `offpath bench` on its experiment file
in a subprocess, shortened, then its results folder read. And the contract-mismatch path: a copy whose contract the
service does not keep stops within seconds, exit 2, one line quoting what the service answered."""

from __future__ import annotations

import csv
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from analysis.stats.capacity import capacity
from analysis.stats.histogram import stats
from analysis.stats.load import read_interval_log
from foundation.format import (
    COMPLETION,
    CPU_FILE,
    OUTCOME_SEEN,
    QUEUE_FILE,
    QUEUE_WAIT,
    REQUEST,
    RUN_TIME,
    log_file,
)
from tests.conftest import project_root

EXAMPLE = project_root() / "examples" / "flask-celery"

# The example's load, shortened to a test's length: one steady phase, and a capacity search of two steps that the
# first passes and the second breaks for both designs (10/s and 90/s against ~40/s for each here).
SHORT_LOAD = """
[[phases]]
name = "steady"
rate_per_s = 10
duration_s = 5

[capacity]
start_per_s = 10
step_factor = 9
max_per_s = 90
step_duration_s = 5
"""


def variant(tmp_path: Path, replace: dict[str, str] | None = None, load: str | None = None,
            designs: tuple[str, ...] = ("inline", "queued")) -> Path:
    """A copy of the example's experiment in tmp_path, its processes still started in the example's folder: each
    `replace` made (each text must be found exactly once, so the test notices when the example changes), its phases and
    capacity search replaced by `load`, only `designs` kept."""
    text = (EXAMPLE / "experiment.toml").read_text()
    for old, new in (replace or {}).items():
        assert text.count(old) == 1, f"the example's experiment.toml no longer holds exactly one {old!r}"
        text = text.replace(old, new)
    head, _, rest = text.partition("[[phases]]")
    loads, _, declarations = rest.partition("# -- inline")
    assert "[capacity]" in loads and "[designs.inline" in declarations
    sections = [s for s in re.split(r"(?m)^(?=# -- )", "# -- inline" + declarations) if s]
    kept = [s for s in sections if re.match(r"# -- (\w+)", s).group(1) in designs]  # type: ignore[union-attr]
    text = head + (load if load is not None else "[[phases]]" + loads) + "".join(kept)
    for design in designs:
        for tier in ("web", "workers"):
            header = f"[designs.{design}.{tier}]\n"
            if header in text:
                text = text.replace(header, f'{header}cwd = "{EXAMPLE}"\n')
    shutil.copy(EXAMPLE / "payloads.py", tmp_path / "payloads.py")  # the payload function beside the experiment
    path = tmp_path / "experiment.toml"
    path.write_text(text)
    return path


def bench(experiment: Path, out: Path, timeout_s: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "offpath.cli", "bench", str(experiment), "--out", str(out)],
                          capture_output=True, text=True, timeout=timeout_s, cwd=project_root(),
                          env={**os.environ, "OFFPATH_LOG_LEVEL": "WARNING"})


def count(path: Path) -> int:
    return int(read_interval_log(path).merged().sum())


def mean_us(path: Path) -> float:
    return float(stats(read_interval_log(path).merged())["mean_us"] or 0.0)


def test_the_example_pair_runs_end_to_end_into_a_report_of_both_designs(tmp_path):
    experiment = variant(tmp_path, load=SHORT_LOAD, replace={"drain_timeout_s = 20": "drain_timeout_s = 5"})
    done = bench(experiment, tmp_path / "results", timeout_s=240)
    assert done.returncode == 0, done.stderr[-3000:]
    run = Path(done.stdout.strip().splitlines()[-1])
    assert (run / "report.html").is_file() and (run / "report.md").is_file()
    cells = run / "cells"
    for design in ("inline", "queued"):
        cell = cells / f"{design}.steady.r1"
        requests = count(cell / log_file(REQUEST))
        assert requests >= 40, design
        # Every request's outcome as the client saw it: the answer itself (inline), the first final state (queued).
        assert count(cell / log_file(OUTCOME_SEEN)) >= requests - 5, design
        with open(cell / CPU_FILE) as f:
            last = list(csv.DictReader(f))[-1]
        assert float(last["web"]) > 0, design
        assert (float(last["workers"]) > 0) == (design == "queued")

    queued = cells / "queued.steady.r1"
    # The service's own timestamps split each completion into the time it waited and the time it ran: the means add up.
    completed = count(queued / log_file(COMPLETION))
    assert completed >= 40 and count(queued / log_file(QUEUE_WAIT)) == count(queued / log_file(RUN_TIME)) == completed
    split = mean_us(queued / log_file(QUEUE_WAIT)) + mean_us(queued / log_file(RUN_TIME))
    assert split == pytest.approx(mean_us(queued / log_file(COMPLETION)), rel=0.01)
    with open(queued / QUEUE_FILE) as f:
        rows = list(csv.DictReader(f))
    assert len(rows) >= 5 and {row["workers"] for row in rows} == {"4"}  # the Celery adapter saw every worker
    assert not (cells / "inline.steady.r1" / QUEUE_FILE).exists()

    found = capacity(run)
    assert set(found.designs) == {"inline", "queued"}
    assert not found.designs["inline"].queued and found.designs["queued"].queued
    for design in found.designs.values():
        # 10/s holds and 90/s breaks for both: a limit found, not censored at the search's end.
        assert design.capacity_per_s == 10 and not design.censored, design


@pytest.mark.parametrize("replace, quoted", [
    ({'state = "/state"': 'state = "/status"'}, "nothing at the state pointer '/status'"),
    ({"acknowledged = [202]": "acknowledged = [201]"}, "answered 202, which its contract declares neither way"),
], ids=["state-pointer", "acknowledgement-status"])
def test_a_contract_the_service_does_not_keep_stops_the_run_within_seconds(tmp_path, replace, quoted):
    experiment = variant(tmp_path, replace=replace, designs=("queued",))
    started = time.monotonic()
    done = bench(experiment, tmp_path / "results", timeout_s=120)
    elapsed_s = time.monotonic() - started
    assert done.returncode == 2, done.stderr[-3000:]
    assert elapsed_s < 30, f"took {elapsed_s:.0f} s"
    lines = [line for line in done.stderr.splitlines() if quoted in line]
    assert len(lines) == 1, done.stderr
    # The line quotes the service's own answer, as the service wrote it: its acknowledgement, or its task's record.
    assert '\'{"task_id":"' in lines[0] or '\'{"finished_at":"' in lines[0], lines[0]
