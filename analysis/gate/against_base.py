"""The gate's judgement of a candidate against its base commit, both measured in one job (`offpath gate --against`).

Input: the run folders of each side, one repetition each, in the order they ran interleaved (base, candidate,
candidate, base ...; offpath/gate.py). Each side's runs are merged into one run of as many repetitions, the base's
turned into a Baseline, and the candidate judged against it by analysis/gate/judge.py's judge() — the same rules, the same
fastest-repetition statistic and the same bootstrap CIs as against a stored baseline. The drift between runs that a
stored baseline's limits must absorb cancels here (both sides ran minutes apart on the same CPUs), which is why the
regression rules have a tighter limit against a base (`max_regression_pct_against_base`, analysis/gate/rules.toml).

The base must itself be judgeable: its errors are checked with the candidate's error-rate rules, since latencies of a
base that answered errors (the harness could start its services but not drive them) are no reference; that is a
harness error naming the base, never a pass or a regression.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from analysis.gate.baseline import baseline_from_run, mismatches, run_facts
from analysis.gate.judge import judge
from analysis.gate.rules import RuleSet
from analysis.gate.verdict import Commit, Verdict, harness_error
from analysis.stats.load import Cell, ResultsFolderError, Run, load_run
from foundation.experiment_facts import ExperimentFacts
from foundation.format import cell_id

__all__ = ["SIDES", "judge_against", "load_side", "merge_runs"]

SIDES = ("base", "candidate")


def merge_runs(runs: Sequence[Run]) -> Run:
    """Runs of the same experiment, one repetition each, as one run of len(runs) repetitions in their order."""
    if not runs:
        raise ValueError("no runs to merge")
    cells = []
    for number, run in enumerate(runs, start=1):
        for cell in run.cells:
            renumbered = replace(cell.record, repetition=number, id=cell_id(cell.design, cell.phase, number))
            cells.append(Cell(record=renumbered, dir=cell.dir))
    first = runs[0].record
    record = replace(first, run_id="+".join(run.id for run in runs), cells=tuple(cell.record for cell in cells),
                     experiment=ExperimentFacts({**first.experiment.resolved, "repetitions": len(runs)}))
    return Run(dir=runs[0].dir.parent, record=record, cells=cells)


def load_side(side: str, run_dirs: Sequence[Path], commit: Commit) -> Run:
    """A side's runs, loaded and merged; ResultsFolderError naming the side and its commit for one that cannot be
    judged (incomplete: a service of that side did not start, died, or the run was interrupted)."""
    if not run_dirs:
        raise ResultsFolderError(f"{side} {commit.label}: no run was measured")
    runs = []
    for run_dir in run_dirs:
        try:
            runs.append(load_run(run_dir))
        except ResultsFolderError as exc:
            raise ResultsFolderError(f"{side} {commit.label}: {exc}") from None
    return merge_runs(runs)


def judge_against(base: Run, candidate: Run, rules: RuleSet, base_commit: Commit, candidate_commit: Commit) -> Verdict:
    """The candidate judged against the base (both merged runs of the same experiment, measured interleaved)."""
    def refused(errors: str | list[str]) -> Verdict:
        return harness_error(errors, rules, run_id=candidate.id, run_dir=str(candidate.dir), base=base_commit,
                             candidate=candidate_commit)

    differences = mismatches(run_facts(base), run_facts(candidate))
    if differences:  # the same harness ran both: only a harness fault gets here
        return refused(f"base and candidate runs differ in what must be equal: {'; '.join(differences)}")
    problems = _base_errors(base, rules, base_commit)
    if problems:
        return refused(problems)
    reference = replace(baseline_from_run(base, f"base {base_commit.short}"), label="base")
    verdict = judge(candidate, rules.against_base(), reference, base_run=base)
    return replace(verdict, baseline=None, base=base_commit, candidate=candidate_commit)


def _base_errors(base: Run, rules: RuleSet, commit: Commit) -> list[str]:
    """Why the base's latencies are no reference: a design the rules judge that errored beyond the error-rate rules."""
    checks = replace(rules, rules=tuple(r for r in rules.rules if r.kind == "error_rate"))
    verdict = judge(base, checks, None)
    if verdict.errors:
        return [f"base {commit.label}: {error}" for error in verdict.errors]
    return [f"base {commit.label} could not be measured by this harness: {o.rule.name}: {o.measured}; its latencies "
            "are no reference (this harness may not drive that base's services: judge against a later base or a "
            "stored baseline)" for o in verdict.outcomes if o.status != "pass"]
