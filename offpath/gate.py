"""The harness's regression gate: it runs the gate experiment (or the base and the candidate of `--against`,
interleaved) and has analysis/gate/ judge what was measured; `offpath gate` is run_gate() and the verdict's files.

run_gate raises only errors of foundation/errors.py's tree, each with its own message; a crash becomes a HarnessError
that names it, since a gate that crashed must exit 2 (harness error), never 1 (regression). Turning an error into a
harness-error verdict is the caller's one step (VerdictContext.harness_error): CI's verdict files are written
whatever happened, and they name what the gate had established by then — the rules (JUnit lists each as not judged),
the baseline, the run folder, the commits.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from analysis.gate.against_base import SIDES, judge_against, load_side
from analysis.gate.baseline import baseline_from_run, baseline_path, read_baseline, write_baseline
from analysis.gate.judge import judge
from analysis.gate.rules import RuleSet, load_rules
from analysis.gate.verdict import Commit, Verdict, harness_error
from analysis.stats.load import load_run
from foundation.errors import ConfigurationError, HarnessError, OffpathError
from offpath.base_checkout import (
    BaseCheckout,
    base_checkout,
    candidate_commit,
    default_base,
    repository_of,
    resolve_commit,
)
from offpath.experiment import Experiment, load_experiment
from offpath.manifest import PROJECT_ROOT
from offpath.runner import Runner
from offpath.serving import SystemUnderTest, serving_from
from offpath.supervisor import python
from services.campaign.profile import ProfileSpec

__all__ = ["GateOptions", "VerdictContext", "run_gate", "run_interleaved", "side_order"]

log = logging.getLogger("offpath.gate")

Say = Callable[[str], None]


def _stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


@dataclass(frozen=True)
class GateOptions:
    """What `offpath gate` is asked to do, as a typed value; combinations that cannot work are refused when it is
    built (ConfigurationError), before anything is read, installed or run."""

    experiment: str = "gate"  # name or .toml path
    # the profile run instead of the experiment's (with --against, by the candidate only), e.g. 'default*1.3': a
    # regression injected on purpose
    profile: str | None = None
    rules: Path | None = None  # None: analysis/gate/rules.toml
    out: Path = Path("results")  # receives the run folders
    run: Path | None = None  # judge this results folder instead of running the experiment
    baseline: str | None = None  # a name or a .json path; 'none': the within-run rules only; None: 'default'
    update_baseline: bool = False  # write the baseline from this run (only if it passes the within-run rules)
    against: str | None = None  # a git ref to judge against, measured in this job; "": the default base

    def __post_init__(self) -> None:
        if self.against is not None:
            excluded = [option for option, given in (("--baseline", self.baseline is not None),
                                                     ("--run", self.run is not None),
                                                     ("--update-baseline", self.update_baseline)) if given]
            if excluded:
                raise ConfigurationError(f"--against measures base and candidate in this job; it takes no "
                                         f"{', '.join(excluded)} (allowed with it: --profile, --experiment, --rules, "
                                         "--out, --junit, --summary, --json)")
        elif self.update_baseline and self.baseline_name is None:
            raise ConfigurationError("--update-baseline needs a baseline name (--baseline NAME), not 'none'")
        if self.run is not None and self.profile:
            raise ConfigurationError("--profile changes the run the gate starts; a run given with --run keeps the "
                                     "profile it ran with")

    @property
    def baseline_name(self) -> str | None:
        """The stored baseline the run is judged against (a name or a .json path); None: none."""
        if self.against is not None:
            return None
        spec = self.baseline or "default"
        return None if spec.lower() == "none" else spec


@dataclass
class VerdictContext:
    """What a verdict names besides its outcomes, as far as the gate got: run_gate fills it in as it learns each."""

    rules: RuleSet | None = None
    baseline: str | None = None
    run_id: str | None = None
    run_dir: str | None = None
    base: Commit | None = None
    candidate: Commit | None = None

    def harness_error(self, error: OffpathError) -> Verdict:
        """The verdict of a gate stopped by `error`: its message, every known rule not judged, exit code 2."""
        return harness_error(str(error), self.rules, run_id=self.run_id, run_dir=self.run_dir, baseline=self.baseline,
                             base=self.base, candidate=self.candidate)


def run_gate(options: GateOptions, context: VerdictContext | None = None, say: Say = _stderr) -> Verdict:
    """The gate's verdict (pass, regression, or a harness error the judgement itself found, such as an incomplete run or
    a baseline of another machine); raises OffpathError when it cannot get that far, with `context` filled in up to
    where it stopped. `say` receives the progress lines of the runs."""
    context = VerdictContext() if context is None else context
    try:
        if options.against is not None:
            return _against_base(options, context, say)
        return _against_baseline(options, context, say)
    except OffpathError:
        raise
    except Exception as exc:  # noqa: BLE001 - the traceback is logged; the error says what crashed
        log.exception("the gate crashed")
        raise HarnessError(f"the gate crashed: {type(exc).__name__}: {exc}") from exc


def _against_baseline(options: GateOptions, context: VerdictContext, say: Say) -> Verdict:
    """Rules, then the baseline (before any load: a missing one must not cost a run to find out), then the run, judged
    against the baseline (or by the within-run rules only); with --update-baseline, the run becomes the baseline."""
    context.rules = rules = _rules(options)
    context.baseline = options.baseline_name
    path = baseline_path(context.baseline) if context.baseline is not None else None
    baseline = read_baseline(path) if path is not None and not options.update_baseline else None
    run_dir = options.run if options.run is not None else _run_experiment(options, say)
    context.run_dir = str(run_dir)
    run = load_run(run_dir)
    context.run_id = run.id
    verdict = judge(run, rules, baseline)
    if options.update_baseline and path is not None:
        if verdict.status != "pass":
            log.error("baseline not written: run %s does not pass the within-run rules", run.id)
            return verdict
        written = write_baseline(baseline_from_run(run, path.stem), path)
        log.info("baseline %r written to %s from run %s", path.stem, written, run.id)
    return verdict


def _against_base(options: GateOptions, context: VerdictContext, say: Say) -> Verdict:
    """The base (--against REF, or offpath/base_checkout.py's default_base) installed beside this checkout, both run
    interleaved, the candidate judged against the base."""
    # The repository whose commits are compared: the one holding the experiment file (a team's own, gating its own
    # endpoint), or offpath's for its shipped experiments.
    root = repository_of(Path(options.experiment)) if options.experiment.endswith(".toml") else PROJECT_ROOT
    context.base = base = resolve_commit(options.against, root) if options.against else default_base(root)
    context.candidate = candidate = candidate_commit(root)
    context.rules = rules = _rules(options)
    base_experiment, candidate_experiment = _experiments(options)
    say(f"gate --against: candidate {candidate.label} against base {base.label}")
    out = options.out / f"against-{time.strftime('%Y%m%d-%H%M%S')}-{base.short}"
    context.run_dir = str(out)
    with base_checkout(base, say=say, root=root) as checkout:
        runs = run_interleaved(candidate_experiment, base_experiment, checkout, out, say=say)
    commits = {"base": base, "candidate": candidate}
    sides = {side: load_side(side, runs[side], commits[side]) for side in SIDES}
    return judge_against(sides["base"], sides["candidate"], rules, base, candidate)


def _rules(options: GateOptions) -> RuleSet:
    return load_rules(options.rules) if options.rules is not None else load_rules()


def _experiments(options: GateOptions) -> tuple[Experiment, Experiment]:
    """The gate experiment as the base runs it and as the candidate runs it: --profile is the candidate's change (e.g.
    'default*1.1', a regression injected on purpose); the base keeps the experiment's profile."""
    experiment = load_experiment(options.experiment)
    if not options.profile:
        return experiment, experiment
    ProfileSpec.parse(options.profile).load()  # a wrong spec or profile file fails here, before anything starts
    return experiment, experiment.with_profile(options.profile)


def _run_experiment(options: GateOptions, say: Say) -> Path:
    """Run the gate experiment (its profile overridden by --profile); the run folder, complete or not."""
    _, experiment = _experiments(options)
    runner = Runner(experiment, options.out, say=say)
    runner.run()  # an incomplete run is marked INCOMPLETE in its folder; load_run turns that into a harness error
    return runner.run_dir


def run_interleaved(candidate: Experiment, base: Experiment, checkout: BaseCheckout, out: Path,
                    say: Say) -> dict[str, list[Path]]:
    """Run the experiment once per repetition and side, in the order base, candidate, candidate, base, base, ... (each
    pair of repetitions mirrored: a machine that drifts steadily through the job, slower or faster, moves both sides
    alike; base first every time would charge the candidate half a slot's drift, +5% measured on a quiet machine
    here) — each run one repetition of every design, on the same CPUs (the experiment's placement), each with fresh
    processes and a fresh Redis. Returns the run folders by side ("base", "candidate"), complete or not (the judgement
    refuses an incomplete one). Stops at the first incomplete run: a side that cannot be measured makes the rest
    pointless."""
    sides = {"base": (base.model_copy(update={"repetitions": 1}), checkout.system),
             "candidate": (candidate.model_copy(update={"repetitions": 1}),
                           SystemUnderTest(python(), None, checkout.home))}
    runs: dict[str, list[Path]] = {side: [] for side in sides}
    for repetition, side in side_order(candidate.repetitions):
        experiment, system = sides[side]
        say(f"--against: repetition {repetition}/{candidate.repetitions}, {side} "
            f"({checkout.commit.label if side == 'base' else 'this checkout'})")
        runner = Runner(experiment, out / side, say=say)
        with serving_from(system):
            complete = runner.run()
        runs[side].append(runner.run_dir)
        if not complete:
            return runs
    return runs


def side_order(repetitions: int) -> list[tuple[int, str]]:
    """(repetition, side) in the order they run: base and candidate in odd repetitions, candidate and base in even
    ones, so that over each pair of repetitions the two sides hold the same positions on average."""
    return [(repetition, side) for repetition in range(1, repetitions + 1)
            for side in (("base", "candidate") if repetition % 2 else ("candidate", "base"))]
