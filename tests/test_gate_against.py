"""`offpath gate --against`: the candidate judged against a base measured in the same job — the judgement on generated
results with known latencies, and the command line on a real repository."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from analysis.gate.against_base import judge_against, load_side, merge_runs
from analysis.gate.rules import load_rules
from analysis.gate.verdict import Commit
from analysis.gate.verdict_formats import junit, markdown, text, to_json
from analysis.stats.load import ResultsFolderError, load_run
from offpath.gate import side_order
from tests.analysis_fixtures import Commands, Cpu, write_run
from tests.conftest import project_root
from tests.test_gate import COMPLETION, INLINE, gate_specs, rules_of, scaled
from tests.test_gate_e2e import EXPERIMENT

BASE = Commit(sha="0f9e8d7c6b5a49382716f0e1d2c3b4a596870123", subject="the base", ref="HEAD~1")
CANDIDATE = Commit(sha="1a2b3c4d5e6f708192a3b4c5d6e7f80912345678", subject="the candidate", dirty=True)


def side_runs(root, side: str, seeds: tuple[int, ...], worker_cpu_per_s: float = 0.3,
              commands: Commands | None = None, **shape) -> list:
    """One run of one repetition per seed, as `--against` runs a side: interleaved, each run on its own; the queued
    cells' workers spend `worker_cpu_per_s` CPU seconds a second (5% noise); every cell's design runs `commands` on
    Redis (by default the fixtures' own)."""
    runs = []
    for n, seed in enumerate(seeds, start=1):
        specs = gate_specs(repetitions=1, **shape)
        for spec in specs:
            spec.cpu = Cpu(workers_per_s=worker_cpu_per_s if spec.design == "queued" else 0.0, noise=0.05)
            spec.commands = commands or Commands()
        runs.append(load_run(write_run(root / side, specs, run_id=f"{side}-{n}", seed=seed)[0]))
    return runs


def by_name(verdict):
    return {o.rule.name: o for o in verdict.outcomes}


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    return merge_runs(side_runs(tmp_path_factory.mktemp("base"), "base", (11, 12)))


@pytest.mark.fast
def test_merged_runs_are_one_run_of_their_repetitions_in_order(tmp_path):
    runs = side_runs(tmp_path, "base", (1, 2, 3))
    merged = merge_runs(runs)
    inline = merged.select(design="inline")
    assert [c.repetition for c in inline] == [1, 2, 3]
    assert [c.dir for c in inline] == [r.select(design="inline")[0].dir for r in runs]
    assert merged.record.experiment.repetitions == 3
    assert sum(c.log("request").total_count for c in inline) == sum(
        r.select(design="inline")[0].log("request").total_count for r in runs)
    assert len({c.id for c in merged.cells}) == len(merged.cells)


@pytest.mark.fast
def test_unchanged_candidate_passes_and_the_verdict_names_both_commits(tmp_path, base):
    candidate = merge_runs(side_runs(tmp_path, "candidate", (21, 22)))
    verdict = judge_against(base, candidate, load_rules(), BASE, CANDIDATE)
    assert verdict.status == "pass", text(verdict)
    assert verdict.base == BASE and verdict.candidate == CANDIDATE and verdict.baseline is None
    last = text(verdict).splitlines()[-1]
    assert BASE.short in last and CANDIDATE.short in last and "the base" in last and "uncommitted" in last
    summary = markdown(verdict)
    assert f"`{BASE.short}`" in summary and f"`{CANDIDATE.short}`" in summary and "interleaved" in summary
    document = to_json(verdict)
    assert document["base"]["sha"] == BASE.sha and document["candidate"]["subject"] == "the candidate"
    assert BASE.sha in junit(verdict) and CANDIDATE.sha in junit(verdict)
    measured = by_name(verdict)["inline POST P50"].measured
    assert " base (" in measured and "baseline" not in measured


@pytest.mark.fast
def test_a_slower_candidate_fails_against_the_base_with_the_against_base_limit(tmp_path, base):
    slower = merge_runs(side_runs(tmp_path, "candidate", (21, 22), inline=scaled(INLINE, 1.2)))
    verdict = judge_against(base, slower, load_rules(), BASE, CANDIDATE)
    outcome = by_name(verdict)["inline POST P50"]
    assert verdict.status == "regression" and outcome.status == "fail"
    assert outcome.rule.limit == outcome.rule.limit_against_base  # the against-base limit, not the stored one's
    assert outcome.figures["ci_low_pct"] > 0
    assert outcome.figures["ci_low_pct"] - 2 <= 20 <= outcome.figures["ci_high_pct"] + 2


@pytest.mark.fast
def test_a_shift_between_the_two_limits_fails_against_the_base_and_passes_against_a_stored_baseline(tmp_path, base):
    from analysis.gate.baseline import baseline_from_run
    from analysis.gate.judge import judge

    rules = rules_of('[[rules]]\nname = "P50"\nkind = "regression"\ndesign = "inline"\nmax_regression_pct = 25\n'
                     'max_regression_pct_against_base = 5\n')
    slower = merge_runs(side_runs(tmp_path, "candidate", (21, 22), inline=scaled(INLINE, 1.15)))
    assert judge_against(base, slower, rules, BASE, CANDIDATE).outcomes[0].status == "fail"
    assert judge(slower, rules, baseline_from_run(base, "stored")).outcomes[0].status == "pass"


COST_RULE = ('[[rules]]\nname = "queued worker CPU"\nkind = "cost"\ndesign = "queued"\ntier = "workers"\n'
             'max_regression_pct_against_base = 10\n')


@pytest.mark.fast
def test_workers_spending_a_fifth_more_cpu_per_campaign_fail_the_cost_rule(tmp_path, base):
    costlier = merge_runs(side_runs(tmp_path, "candidate", (21, 22), worker_cpu_per_s=0.36))
    outcome = judge_against(base, costlier, rules_of(COST_RULE), BASE, CANDIDATE).outcomes[0]
    assert outcome.status == "fail", outcome.measured
    assert outcome.figures["ci_low_pct"] - 3 <= 20 <= outcome.figures["ci_high_pct"] + 3


@pytest.mark.fast
def test_the_same_cpu_per_campaign_passes_the_cost_rule(tmp_path, base):
    same = merge_runs(side_runs(tmp_path, "candidate", (21, 22)))
    outcome = judge_against(base, same, rules_of(COST_RULE), BASE, CANDIDATE).outcomes[0]
    assert outcome.status == "pass" and abs(outcome.figures["delta_pct"]) < 5, outcome.measured


@pytest.mark.fast
def test_a_cost_rule_is_skipped_against_a_stored_baseline_which_keeps_no_cpu(base):
    from analysis.gate.baseline import baseline_from_run
    from analysis.gate.judge import judge

    outcome = judge(base, rules_of(COST_RULE), baseline_from_run(base, "stored")).outcomes[0]
    assert outcome.status == "skipped" and "--against" in outcome.measured


@pytest.mark.fast
def test_the_sides_run_mirrored_so_that_a_steady_drift_moves_both_alike():
    order = side_order(4)
    assert order == [(1, "base"), (1, "candidate"), (2, "candidate"), (2, "base"),
                     (3, "base"), (3, "candidate"), (4, "candidate"), (4, "base")]
    # A machine that gets slower by one unit per run: each side's mean slot is the same over whole pairs.
    for repetitions in (2, 4):
        slots = {side: [slot for slot, (_, s) in enumerate(side_order(repetitions)) if s == side]
                 for side in ("base", "candidate")}
        assert sum(slots["base"]) == sum(slots["candidate"])


@pytest.mark.fast
def test_a_faster_candidate_passes(tmp_path, base):
    faster = merge_runs(side_runs(tmp_path, "candidate", (23, 24), inline=scaled(INLINE, 0.7),
                                  completion=scaled(COMPLETION, 0.7)))
    assert judge_against(base, faster, load_rules(), BASE, CANDIDATE).status == "pass"


@pytest.mark.fast
def test_a_base_that_answered_errors_is_a_harness_error_naming_it(tmp_path):
    failing_base = merge_runs(side_runs(tmp_path, "base", (31, 32), errors_per_s={422: 5}))
    candidate = merge_runs(side_runs(tmp_path, "candidate", (33, 34)))
    verdict = judge_against(failing_base, candidate, load_rules(), BASE, CANDIDATE)
    assert verdict.status == "error" and verdict.exit_code == 2
    assert BASE.short in verdict.errors[0] and "no reference" in verdict.errors[0]


@pytest.mark.fast
def test_an_incomplete_side_is_named_in_the_harness_error(tmp_path):
    run_dir, _ = write_run(tmp_path, gate_specs(repetitions=1), run_id="base-1", complete=False)
    with pytest.raises(ResultsFolderError, match=f"base {BASE.short}.*incomplete"):
        load_side("base", [run_dir], BASE)


@pytest.mark.fast
def test_regression_rules_take_their_against_base_limit_only_against_a_base():
    rules = rules_of('[[rules]]\nname = "P50"\nkind = "regression"\ndesign = "inline"\nmax_regression_pct = 15\n'
                     'max_regression_pct_against_base = 4\n')
    assert rules.rules[0].limit == 15 and rules.rules[0].limit_text() == "≤ +15% vs baseline"
    against = rules.against_base().rules[0]
    assert against.limit == 4 and against.limit_text() == "≤ +4% vs base"


@pytest.mark.fast
def test_a_rule_without_an_against_base_limit_keeps_its_limit():
    rules = rules_of('[[rules]]\nname = "P50"\nkind = "regression"\ndesign = "inline"\nmax_regression_pct = 15\n')
    assert rules.against_base().rules[0].limit == 15


def offpath(*args: str, cwd=None, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "offpath.cli", *args], cwd=cwd or project_root(), capture_output=True,
                          text=True, timeout=timeout)


def test_a_ref_git_does_not_know_is_one_line_and_exit_2(tmp_path):
    done = offpath("gate", "--against", "no-such-ref-xyz", "--json", str(tmp_path / "v.json"), "--out",
                   str(tmp_path / "runs"))
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr
    assert "no-such-ref-xyz" in done.stderr and "allowed:" in done.stderr
    assert json.loads((tmp_path / "v.json").read_text())["status"] == "error"  # CI still gets its verdict
    assert not (tmp_path / "runs").exists()  # nothing was run


@pytest.mark.parametrize("extra", [["--baseline", "default"], ["--run", "results/x"], ["--update-baseline"]])
def test_options_against_excludes_are_one_line_and_exit_2(extra):
    done = offpath("gate", "--against", "HEAD", *extra)
    assert done.returncode == 2 and done.stderr.count("\n") == 1 and extra[0] in done.stderr


# EXPERIMENT: the gate experiment's shape, as small as a test allows (test_gate_e2e's: 6 s steady a side).
# ~60 requests a design: P50s only. The limit is wide: this test checks the machinery, not the sensitivity
# (benchmarks/gate_discrimination.py --against measures that).
RULES = """
phase = "steady"
[[rules]]
name = "inline POST P50"
kind = "regression"
design = "inline"
metric = "p50"
max_regression_pct = 100
[[rules]]
name = "queued POST errors"
kind = "error_rate"
design = "queued"
max_error_rate = 0.05
"""


def clone(tmp_path):
    """A clone of this repository's committed history, where a test may commit (never in the project itself)."""
    repo = tmp_path / "repo"
    subprocess.run(["git", "clone", "--quiet", "--no-hardlinks", str(project_root()), str(repo)], check=True)
    for key, value in (("user.email", "test@offpath.invalid"), ("user.name", "offpath test")):
        subprocess.run(["git", "config", key, value], cwd=repo, check=True)
    return repo


def test_against_head_measures_both_sides_interleaved_and_names_both_commits(tmp_path):
    repo = clone(tmp_path)
    (tmp_path / "tiny.toml").write_text(EXPERIMENT)
    (tmp_path / "rules.toml").write_text(RULES)
    done = offpath("gate", "--against", "HEAD", "--experiment", str(tmp_path / "tiny.toml"), "--rules",
                   str(tmp_path / "rules.toml"), "--out", str(tmp_path / "runs"), "--json", str(tmp_path / "v.json"),
                   "--summary", str(tmp_path / "s.md"), cwd=repo, timeout=280)
    verdict = json.loads((tmp_path / "v.json").read_text())
    assert done.returncode == 0 and verdict["status"] == "pass", done.stdout + done.stderr[-3000:]
    assert "it declares this checkout's dependencies, so it runs on this interpreter" in done.stderr
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True).stdout.strip()
    assert verdict["base"]["sha"] == verdict["candidate"]["sha"] == head
    assert head[:10] in done.stdout.splitlines()[-1]
    assert f"`{head[:10]}`" in (tmp_path / "s.md").read_text()
    # interleaved: base, candidate, each its own run, both of the same experiment
    sides = [p.parent.parent.name for p in sorted((tmp_path / "runs").glob("against-*/*/*/manifest.json"),
                                           key=lambda p: json.loads(p.read_text())["started_at"])]
    assert sides == ["base", "candidate"]
    assert not list(tmp_path.glob("offpath-base-*"))


def test_a_base_whose_services_this_harness_cannot_start_is_a_harness_error_naming_it(tmp_path):
    repo = clone(tmp_path)
    subprocess.run(["git", "checkout", "--quiet", "-b", "renamed"], cwd=repo, check=True)
    app = repo / "services" / "inline" / "app.py"
    app.write_text(app.read_text().replace("def create_app(", "def make_app("))
    pyproject = repo / "pyproject.toml"  # a dependency of its own: this base is installed into a venv of its own
    pyproject.write_text(pyproject.read_text().replace("test = [", 'unused = []\ntest = ['))
    subprocess.run(["git", "commit", "--quiet", "-am", "inline: create_app renamed"], cwd=repo, check=True)
    subprocess.run(["git", "checkout", "--quiet", "-"], cwd=repo, check=True)
    done = offpath("gate", "--against", "renamed", "--json", str(tmp_path / "v.json"), "--out",
                   str(tmp_path / "runs"), cwd=repo, timeout=280)
    verdict = json.loads((tmp_path / "v.json").read_text())
    assert done.returncode == 2 and verdict["status"] == "error"
    assert "its dependencies differ: installing it into its own venv" in done.stderr
    assert "create_app renamed" in verdict["errors"][0] and "create_app" in verdict["errors"][0].split(":", 2)[-1]
    assert "\n" not in verdict["errors"][0]
    assert not list((tmp_path / "runs").glob("against-*/*/*"))  # refused before any load was run
    worktrees = subprocess.run(["git", "worktree", "list"], cwd=repo, capture_output=True, text=True).stdout
    assert len(worktrees.strip().splitlines()) == 1  # the base's worktree is gone again


def repository(tmp_path, commits: int):
    """A git repository of `commits` commits on main (what default_base reads; no offpath inside)."""
    repo = tmp_path / "history"
    repo.mkdir()
    for args in (["init", "--quiet", "-b", "main"], ["config", "user.email", "t@offpath.invalid"],
                 ["config", "user.name", "t"]):
        subprocess.run(["git", *args], cwd=repo, check=True)
    for number in range(1, commits + 1):
        (repo / "file").write_text(str(number))
        subprocess.run(["git", "add", "file"], cwd=repo, check=True)
        subprocess.run(["git", "commit", "--quiet", "-m", f"commit {number}"], cwd=repo, check=True)
    return repo


def test_the_default_base_on_main_is_the_last_change(tmp_path):
    from offpath.base_checkout import default_base

    base = default_base(repository(tmp_path, 3))
    assert base.subject == "commit 2" and base.ref == "HEAD~1"


def test_the_default_base_of_a_branch_is_its_merge_base_with_main(tmp_path):
    from offpath.base_checkout import default_base

    repo = repository(tmp_path, 2)
    subprocess.run(["git", "checkout", "--quiet", "-b", "change"], cwd=repo, check=True)
    for number in (3, 4):
        (repo / "file").write_text(str(number))
        subprocess.run(["git", "commit", "--quiet", "-am", f"change {number}"], cwd=repo, check=True)
    base = default_base(repo)
    assert base.subject == "commit 2" and base.ref == "merge base with main"


def test_a_first_commit_has_no_base_and_says_what_to_do(tmp_path):
    from offpath.base_checkout import BaseError, default_base

    with pytest.raises(BaseError, match="no parent commit.*--baseline none"):
        default_base(repository(tmp_path, 1))


@pytest.mark.fast
def test_a_base_runs_on_this_interpreter_only_when_it_declares_the_same_dependencies(tmp_path):
    from offpath.base_checkout import _requirements

    here = _requirements(project_root())
    assert here is not None and here["dependencies"] and here["optional-dependencies"]
    base = tmp_path / "base"
    base.mkdir()
    text = (project_root() / "pyproject.toml").read_text()
    (base / "pyproject.toml").write_text(text.replace('version = "0.1.0"', 'version = "0.0.9"') + "\n# a comment\n")
    assert _requirements(base) == here  # the version, comments, tools: not what the environment must hold
    for changed in (text.replace("test = [", 'test = [\n    "six",'), text.replace('requires-python = ">=3.11"',
                                                                                  'requires-python = ">=3.12"')):
        assert changed != text
        (base / "pyproject.toml").write_text(changed)
        assert _requirements(base) != here
    (base / "pyproject.toml").write_text("[project\n")
    assert _requirements(base) is None
