"""Runs that go on until they know: looks at the headline rows after each repetition, at a confidence corrected for
the looks, keep the chance of a wrong verdict at the stated level (simulated A/A comparisons), and a look on a run
folder says whether to add a repetition and why."""

from __future__ import annotations

import json
import math
from dataclasses import replace

import numpy as np
import pytest

from analysis.stats.bootstrap import new_rng
from analysis.stats.compare import compare_designs, compare_logs
from analysis.stats.equivalence import BETTER, WORSE, decided
from analysis.stats.load import load_run
from analysis.stats.sequential import look, looks_text, run_so_far
from analysis.stats.verdict_settings import Sequential
from foundation.format import CREATE, MANIFEST_FILE
from foundation.manifest_format import RunRecord, SequentialRecord
from tests.analysis_fixtures import CellSpec, Latency, Queue, intervals_of, write_run

pytestmark = pytest.mark.fast

TRIALS = 300
FIRST, MOST = 2, 4  # repetitions: the first look after 2, at most 3 looks
SEQUENTIAL = Sequential(max_repetitions=MOST, budget_s=3600)
LATENCY = Latency(20_000, 0.3)
RATE_PER_S, PHASE_S = 25, 20  # 500 values a repetition: 10 beyond P99 at the first look


def binomial_quantile(q: float, n: int, p: float) -> int:
    """The smallest k with P(Binomial(n, p) <= k) >= q."""
    total = 0.0
    for k in range(n + 1):
        total += math.comb(n, k) * p ** k * (1 - p) ** (n - k)
        if total >= q:
            return k
    return n


def repetition(rng: np.random.Generator):
    return intervals_of([LATENCY.draw(rng, RATE_PER_S) for _ in range(PHASE_S)])


def p99_row(a, b, seed: int, confidence: float):
    rows = compare_logs(a, b, "steady", CREATE, new_rng(seed), confidence=confidence, metrics=("p99_us",))
    return next(r for r in rows if r.metric == "p99_us")


def wrong_verdicts(confidence: float) -> tuple[int, int]:
    """(wrong, decided) over TRIALS simulated A/A comparisons of P99, each looking after FIRST..MOST repetitions and
    stopping at its first decided look: better or worse is wrong (the two sides are drawn alike), equivalent right."""
    rng = np.random.default_rng(20261206)
    wrong = settled = 0
    for trial in range(TRIALS):
        a = [repetition(rng) for _ in range(MOST)]
        b = [repetition(rng) for _ in range(MOST)]
        for repetitions in range(FIRST, MOST + 1):
            verdict = p99_row(a[:repetitions], b[:repetitions], trial * 10 + repetitions, confidence).verdict
            if decided(verdict):
                wrong += verdict in (BETTER, WORSE)
                settled += 1
                break
    return wrong, settled


def test_looks_corrected_for_their_number_keep_wrong_verdicts_at_the_stated_level():
    level = SEQUENTIAL.level(FIRST)
    assert SEQUENTIAL.looks(FIRST) == 3 and level == pytest.approx(1 - 0.05 / 3)
    wrong, settled = wrong_verdicts(level)
    # At most 5% wrong, as far as 300 trials can tell: no more than a 5% rate would give 19 in 20 times (the 95th
    # percentile of Binomial(300, 0.05)). Measured (benchmarks/sequential_aa.py, 2 x 1,000 trials): 4.3% wrong with
    # the correction, 10.4% looking three times at 95% intervals, 5.7% for a single look at 95%.
    assert wrong <= binomial_quantile(0.95, TRIALS, 1 - SEQUENTIAL.confidence), (wrong, settled)
    assert settled >= TRIALS / 4  # the looks do decide: most of those that settle are `equivalent`


def test_the_simulated_row_is_the_comparisons_own():
    rng = np.random.default_rng(5)
    a, b = [repetition(rng) for _ in range(2)], [repetition(rng) for _ in range(2)]
    full = compare_logs(a, b, "steady", CREATE, new_rng(7), confidence=0.99)
    assert p99_row(a, b, 7, 0.99) == next(r for r in full if r.metric == "p99_us")


# -- a look on a run folder ------------------------------------------------------------------------------------------


def sequential_run(tmp_path, queued_latency: Latency, repetitions: int, rate: int = 100, duration: int = 10,
                   max_repetitions: int = 4, budget_s: float = 3600.0):
    specs = [CellSpec(d, "steady", repetition=rep, rate_per_s=rate, duration_s=duration, send_lag=None,
                      latency=Latency(20_000, 0.4) if d == "inline" else queued_latency,
                      queue=Queue(completion=Latency(20_000, 0.4)) if d == "queued" else None)
             for rep in range(1, repetitions + 1) for d in ("inline", "queued")]
    run_dir, _ = write_run(tmp_path, specs)
    manifest = json.loads((run_dir / MANIFEST_FILE).read_text())
    manifest["experiment"] |= {"repetitions": 2, "sequential": {"max_repetitions": max_repetitions,
                                                                "budget_s": budget_s, "rows": ["p99"]}}
    (run_dir / MANIFEST_FILE).write_text(json.dumps(manifest))
    return run_dir


def test_a_clear_difference_is_decided_at_the_first_look(tmp_path):
    run_dir = sequential_run(tmp_path, Latency(40_000, 0.4), repetitions=2, duration=20)
    found = look(load_run(run_dir))
    assert found.number == 1 and found.looks == 3 and found.confidence == pytest.approx(1 - 0.05 / 3)
    assert found.verdicts == {"p99": "worse"} and not found.go_on and found.why == "every row decided"
    assert found.caveat == ""


def test_phases_too_short_for_the_bootstrap_are_said_to_be(tmp_path):
    found = look(load_run(sequential_run(tmp_path, Latency(40_000, 0.4), repetitions=2, duration=10)))
    assert found.caveat.startswith("its phases give 10 1-second intervals a repetition, fewer than the 20")
    assert found.text().endswith(f"({found.caveat})")


def test_an_undecided_row_asks_for_another_repetition_while_there_is_time(tmp_path):
    run_dir = sequential_run(tmp_path, Latency(21_500, 0.4), repetitions=2, rate=20)
    run = load_run(run_dir)
    found = look(run)
    assert found.verdicts == {"p99": "undecided"} and found.go_on and found.why == "go on"
    assert "more repetition" in found.needs["p99"]
    assert found.text().startswith("look 1 of 3 (2 repetitions, 98.3% intervals): p99 undecided; one more")
    # The comparison of a sequential run states the corrected level, and how it was corrected.
    comparison = compare_designs(run)
    assert comparison.confidence == pytest.approx(1 - 0.05 / 3)
    assert "Sequential: up to 3 looks" in comparison.method and "union bound" in comparison.method


def test_the_last_repetition_or_the_budget_ends_the_looks(tmp_path):
    at_most = sequential_run(tmp_path / "most", Latency(21_500, 0.4), repetitions=4, rate=20)
    found = look(load_run(at_most))
    assert found.number == 3 and not found.go_on and found.why == "max repetitions"
    over = sequential_run(tmp_path / "budget", Latency(21_500, 0.4), repetitions=3, rate=10, duration=20, budget_s=5)
    found = look(load_run(over))
    # The fixture's repetition 3 spans 120 s of timestamps: one more would take as long, past 5 s.
    assert not found.go_on and found.why == "time budget" and found.spent_s > 5
    record = SequentialRecord(looks=(found.record(),), stopped=found.why)
    assert looks_text(record).startswith("1 look(s) of at most 3, each on 98.3% intervals; it ended at 3 "
                                         "repetitions of each design: time budget; still undecided: p99 (~")


def test_a_look_reads_the_folder_as_the_runner_holds_it(tmp_path):
    run_dir = sequential_run(tmp_path, Latency(40_000, 0.4), repetitions=2)
    manifest = json.loads((run_dir / MANIFEST_FILE).read_text())
    manifest["cells"][-1]["status"] = "running"  # the runner's manifest mid-cell: that cell is not judged yet
    run = run_so_far(run_dir, RunRecord.from_dict(manifest))
    assert len(run.cells) == 3
    assert look(run).repetitions == 1


# -- the runner's hook -----------------------------------------------------------------------------------------------


def runner_with_fake_blocks(tmp_path, queued_latency: Latency, max_repetitions: int = 4):
    """A Runner whose blocks write fixture cells instead of starting processes (what the hook decides from is the
    folder, and the folder is all a fixture needs to be), after the declared two repetitions."""
    from foundation.experiment_facts import ExperimentFacts
    from foundation.manifest_format import CellRecord, RunRecord
    from offpath.experiment import load_experiment
    from offpath.manifest import Manifest
    from offpath.runner import Block, Runner, Stage
    from tests.analysis_fixtures import write_cell

    experiment = load_experiment("seed")
    runner = Runner(experiment, tmp_path, say=lambda line: None)
    resolved = json.loads(json.dumps(experiment.resolved(), default=str))
    resolved["sequential"] = {"max_repetitions": max_repetitions, "budget_s": 3600, "rows": ["p99"]}
    runner.session._manifest = Manifest(runner.run_dir, RunRecord(run_id=runner.run_dir.name,
                                                                  experiment=ExperimentFacts(resolved)))
    stage = Stage(experiment, runner.run_dir)
    rng = np.random.default_rng(3)
    ran: list[str] = []

    def run_block(block: Block, stage_: Stage) -> None:
        spec = CellSpec(block.design, "steady", repetition=block.repetition, rate_per_s=50, duration_s=20,
                        send_lag=None, latency=Latency(20_000, 0.4) if block.design == "inline" else queued_latency)
        started = 1_795_917_800.0 + 100 * len(runner.manifest.record.cells)
        write_cell(stage_.dir / "cells" / spec.id, spec, started, rng)
        record = CellRecord.start(spec.design, "steady", "steady", spec.repetition, rate_per_s=50.0, users=None,
                                  duration_s=20.0, at=started)
        runner.manifest.put_cell(None, replace(record, ended_at=started + 20, status="complete"))
        ran.append(block.label)

    runner._run_block = run_block  # type: ignore[method-assign]
    for repetition in (1, 2):
        for design in experiment.designs:
            run_block(Block(design, repetition, experiment.phases), stage)
    return runner, stage, ran


def test_the_runner_adds_interleaved_repetitions_until_the_looks_stop(tmp_path):
    runner, stage, ran = runner_with_fake_blocks(tmp_path, Latency(21_000, 0.4))
    runner._repeat_until_decided(stage)
    sequential = runner.manifest.record.sequential
    looks = [look.to_dict() for look in sequential.looks]
    added = ran[4:]
    rounds = range(3, 3 + len(added) // 2)
    assert added and added == [label for rep in rounds for label in (f"inline.r{rep}", f"queued.r{rep}")]
    assert len(looks) == len(added) // 2 + 1 and [look["number"] for look in looks] == list(range(1, len(looks) + 1))
    assert all(look["go_on"] for look in looks[:-1]) and not looks[-1]["go_on"]
    assert sequential.stopped == looks[-1]["why"] in ("every row decided", "max repetitions")
    saved = json.loads((runner.run_dir / MANIFEST_FILE).read_text())
    assert saved["sequential"] == sequential.to_dict()


def test_a_decided_first_look_adds_nothing(tmp_path):
    runner, stage, ran = runner_with_fake_blocks(tmp_path, Latency(40_000, 0.4))
    runner._repeat_until_decided(stage)
    assert len(ran) == 4 and runner.manifest.record.sequential.stopped == "every row decided"
