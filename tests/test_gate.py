"""The regression gate judges generated results: unchanged passes, 30% more work fails, the harness fails apart."""

from __future__ import annotations

import json

import numpy as np
import pytest

from analysis.gate.baseline import (
    BaselineError,
    baseline_from_run,
    baseline_path,
    read_baseline,
    run_facts,
    write_baseline,
)
from analysis.gate.judge import judge
from analysis.gate.rules import RulesError, load_rules, parse_rules
from analysis.stats.load import load_run
from tests.analysis_fixtures import CellSpec, Latency, Queue, write_run

pytestmark = pytest.mark.fast

INLINE = Latency(90_000, 0.5)
QUEUED_ACK = Latency(5_000, 0.5)
COMPLETION = Latency(110_000, 0.5)


def gate_specs(inline: Latency = INLINE, queued: Latency = QUEUED_ACK, completion: Latency = COMPLETION,
               repetitions: int = 2, duration_s: int = 20, rate_per_s: int = 30, queue_growth_per_s: float = 0.0,
               errors_per_s: dict[int, int] | None = None, designs: tuple[str, ...] = ("inline", "queued"),
               ) -> list[CellSpec]:
    """The gate experiment's shape: interleaved repetitions of one steady phase per design."""
    specs = []
    for rep in range(1, repetitions + 1):
        for design in designs:
            queue = Queue(completion=completion, growth_per_s=queue_growth_per_s) if design == "queued" else None
            specs.append(CellSpec(design, "steady", repetition=rep, rate_per_s=rate_per_s, duration_s=duration_s,
                                  latency=inline if design == "inline" else queued, queue=queue,
                                  errors_per_s=dict(errors_per_s or {})))
    return specs


def scaled(latency: Latency, factor: float) -> Latency:
    return Latency(latency.median_us * factor, latency.sigma)


def rules_of(text: str):
    import tomllib

    return parse_rules(tomllib.loads(text), "test rules")


@pytest.fixture(scope="module")
def baseline(tmp_path_factory):
    run_dir, _ = write_run(tmp_path_factory.mktemp("baseline"), gate_specs(), run_id="run-baseline", seed=1)
    return baseline_from_run(load_run(run_dir), "default")


@pytest.fixture(scope="module")
def unchanged(tmp_path_factory):
    run_dir, _ = write_run(tmp_path_factory.mktemp("unchanged"), gate_specs(), run_id="run-unchanged", seed=2)
    return load_run(run_dir)


@pytest.fixture(scope="module")
def regressed(tmp_path_factory):
    specs = gate_specs(inline=scaled(INLINE, 1.3), completion=scaled(COMPLETION, 1.3))
    run_dir, _ = write_run(tmp_path_factory.mktemp("regressed"), specs, run_id="run-regressed", seed=3)
    return load_run(run_dir)


def by_name(verdict):
    return {o.rule.name: o for o in verdict.outcomes}


def test_unchanged_build_passes_every_rule(baseline, unchanged):
    verdict = judge(unchanged, load_rules(), baseline)
    assert verdict.status == "pass" and verdict.exit_code == 0
    assert {o.status for o in verdict.outcomes if o.rule.kind not in ("cost", "count")} == {"pass"}
    # judged only --against
    assert {o.status for o in verdict.outcomes if o.rule.kind in ("cost", "count")} == {"skipped"}
    assert not verdict.errors


def test_thirty_percent_more_work_fails_the_work_latency_rules(baseline, regressed):
    verdict = judge(regressed, load_rules(), baseline)
    assert verdict.status == "regression" and verdict.exit_code == 1
    outcomes = by_name(verdict)
    failed = {name for name, o in outcomes.items() if o.status == "fail"}
    assert "inline POST P50" in failed  # the detector: its limit sits well below +30%
    assert failed <= {"inline POST P50", "inline POST P90", "queued completion P50"}
    for name in failed:
        figures = outcomes[name].figures
        assert figures["ci_low_pct"] > 0 and figures["delta_pct"] > outcomes[name].rule.limit
    median = outcomes["inline POST P50"].figures
    assert median["ci_low_pct"] - 2 <= 30 <= median["ci_high_pct"] + 2  # the injected +30% (HDR rounding aside)
    # what does not depend on the work is untouched
    assert outcomes["queued keeps its P99 advantage"].status == "pass"
    assert all(o.status == "pass" for o in verdict.outcomes if o.rule.kind in ("error_rate", "throughput",
                                                                                "sustainable"))


def test_much_slower_completion_fails_its_wider_limit(tmp_path, baseline):
    run_dir, _ = write_run(tmp_path, gate_specs(completion=scaled(COMPLETION, 1.8)), seed=19)
    outcomes = by_name(judge(load_run(run_dir), load_rules(), baseline))
    assert outcomes["queued completion P50"].status == "fail"
    assert outcomes["inline POST P50"].status == "pass"


def test_shift_inside_the_limit_passes_and_past_it_fails(tmp_path, baseline):
    rules = rules_of('[[rules]]\nname = "P50"\nkind = "regression"\ndesign = "inline"\nmetric = "p50"\n'
                     'max_regression_pct = 10\n')
    small, _ = write_run(tmp_path / "small", gate_specs(inline=scaled(INLINE, 1.05)), run_id="run-small", seed=4)
    large, _ = write_run(tmp_path / "large", gate_specs(inline=scaled(INLINE, 1.15)), run_id="run-large", seed=4)
    small_verdict = judge(load_run(small), rules, baseline)
    assert small_verdict.status == "pass"
    assert small_verdict.outcomes[0].figures["ci_low_pct"] > 0  # significant, yet inside the limit
    assert judge(load_run(large), rules, baseline).status == "regression"


def test_faster_run_never_fails(tmp_path, baseline):
    run_dir, _ = write_run(tmp_path, gate_specs(inline=scaled(INLINE, 0.5), completion=scaled(COMPLETION, 0.5)),
                           seed=5)
    assert judge(load_run(run_dir), load_rules(), baseline).status == "pass"


def test_queued_losing_its_advantage_fails_without_a_baseline(tmp_path):
    run_dir, _ = write_run(tmp_path, gate_specs(queued=INLINE), seed=6)
    verdict = judge(load_run(run_dir), load_rules(), None)
    outcomes = by_name(verdict)
    assert verdict.status == "regression"
    assert outcomes["queued keeps its P99 advantage"].status == "fail"
    assert {o.status for o in verdict.outcomes if o.rule.kind == "regression"} == {"skipped"}


def test_within_run_rules_alone_pass_on_a_healthy_run(unchanged):
    verdict = judge(unchanged, load_rules(), None)
    assert verdict.status == "pass" and verdict.baseline is None
    assert verdict.count("pass") >= 5 and verdict.count("skipped") >= 2


def test_error_rate_over_budget_fails(tmp_path):
    run_dir, _ = write_run(tmp_path, gate_specs(errors_per_s={500: 3}), seed=7)  # 3 of 33 a second
    outcomes = by_name(judge(load_run(run_dir), load_rules(), None))
    assert outcomes["inline POST errors"].status == "fail"
    assert outcomes["inline POST errors"].figures["error_rate"] == pytest.approx(3 / 33)


def test_one_disturbed_repetition_is_outvoted_but_a_slower_build_is_not(tmp_path, baseline):
    specs = gate_specs()
    for spec in specs:
        if spec.design == "inline" and spec.repetition == 2:
            spec.latency = scaled(INLINE, 1.6)  # something else ran on the machine during this repetition
    disturbed, _ = write_run(tmp_path / "disturbed", specs, run_id="run-disturbed", seed=17)
    outcome = by_name(judge(load_run(disturbed), load_rules(), baseline))["inline POST P50"]
    assert outcome.status == "pass"
    first, second = outcome.figures["repetitions_us"]
    assert second > 1.4 * first and outcome.figures["value"] == first


def test_one_repetition_with_a_growing_backlog_is_shown_not_failed(tmp_path):
    specs = gate_specs()
    for spec in specs:
        if spec.design == "queued" and spec.repetition == 1:
            spec.queue = Queue(completion=COMPLETION, growth_per_s=8.0)
    run_dir, _ = write_run(tmp_path, specs, seed=18)
    outcome = by_name(judge(load_run(run_dir), load_rules(), None))["queued backlog sustainable"]
    assert outcome.status == "pass" and "grew in repetition 1 only" in outcome.measured


def test_growing_backlog_fails(tmp_path):
    run_dir, _ = write_run(tmp_path, gate_specs(queue_growth_per_s=8.0), seed=8)
    outcome = by_name(judge(load_run(run_dir), load_rules(), None))["queued backlog sustainable"]
    assert outcome.status == "fail" and "growing" in outcome.measured


def test_throughput_below_the_offered_rate_fails(tmp_path):
    run_dir, _ = write_run(tmp_path, gate_specs(), seed=9)
    manifest = json.loads((run_dir / "manifest.json").read_text())
    for cell in manifest["cells"]:
        cell["offered_rate_per_s"] = 40.0  # 30/s served
    (run_dir / "manifest.json").write_text(json.dumps(manifest))
    outcome = by_name(judge(load_run(run_dir), load_rules(), None))["inline throughput held"]
    assert outcome.status == "fail" and outcome.figures["held_pct"] == pytest.approx(75.0)


def test_too_few_samples_for_p99_is_a_harness_error_not_a_pass(tmp_path):
    short, _ = write_run(tmp_path / "a", gate_specs(duration_s=5), run_id="short-a", seed=10)
    run_dir, _ = write_run(tmp_path / "b", gate_specs(duration_s=5), run_id="short-b", seed=11)
    rules = rules_of('[[rules]]\nname = "P99"\nkind = "regression"\ndesign = "inline"\nmetric = "p99"\n'
                     'max_regression_pct = 20\n')
    verdict = judge(load_run(run_dir), rules, baseline_from_run(load_run(short), "short"))
    assert verdict.status == "error" and verdict.exit_code == 2
    assert "few samples" in verdict.outcomes[0].measured


def test_a_failure_outranks_an_unjudged_rule(tmp_path):
    short, _ = write_run(tmp_path / "a", gate_specs(duration_s=5), run_id="short-a", seed=10)
    run_dir, _ = write_run(tmp_path / "b", gate_specs(duration_s=5, errors_per_s={500: 10}), run_id="short-b", seed=11)
    baseline = baseline_from_run(load_run(short), "short")
    rules = rules_of('[[rules]]\nname = "P99"\nkind = "regression"\ndesign = "inline"\nmetric = "p99"\n'
                     'max_regression_pct = 20\n[[rules]]\nname = "errors"\nkind = "error_rate"\ndesign = "inline"\n'
                     'max_error_rate = 0.01\n')
    assert judge(load_run(run_dir), rules, baseline).status == "regression"


def test_incomplete_run_is_never_judged(tmp_path, baseline):
    run_dir, _ = write_run(tmp_path, gate_specs(), complete=False, seed=12)
    verdict = judge(load_run(run_dir, allow_incomplete=True), load_rules(), baseline)
    assert verdict.status == "error" and "incomplete" in verdict.errors[0]
    assert {o.status for o in verdict.outcomes} == {"error"}


def test_missing_design_is_a_harness_error(tmp_path, baseline):
    run_dir, _ = write_run(tmp_path, gate_specs(designs=("inline",)), seed=13)
    verdict = judge(load_run(run_dir), load_rules(), baseline)
    assert verdict.status == "error"
    assert any("no steady queued cells" in e for e in verdict.errors)


def test_baseline_of_another_experiment_is_a_harness_error(tmp_path, baseline):
    run_dir, _ = write_run(tmp_path, gate_specs(rate_per_s=40), seed=14)
    verdict = judge(load_run(run_dir), load_rules(), baseline)
    assert verdict.status == "error" and "does not match" in verdict.errors[0]
    assert "experiment.phases" in verdict.errors[0] and "--update-baseline" in verdict.errors[0]


def test_baseline_of_another_machine_is_a_harness_error(tmp_path, baseline):
    run_dir, _ = write_run(tmp_path, gate_specs(), seed=15)
    manifest = json.loads((run_dir / "manifest.json").read_text())
    manifest["machine"]["cpu_model"] = "Another CPU"
    (run_dir / "manifest.json").write_text(json.dumps(manifest))
    verdict = judge(load_run(run_dir), load_rules(), baseline)
    assert verdict.status == "error" and "machine.cpu_model" in verdict.errors[0]


def test_profile_and_code_may_differ_and_are_noted(tmp_path, baseline):
    run_dir, _ = write_run(tmp_path, gate_specs(), seed=16)
    manifest = json.loads((run_dir / "manifest.json").read_text())
    manifest["experiment"]["profile"] = "default*1.3"
    manifest["git"] = {"sha": "feedfacefeedfacefeedfacefeedfacefeedface", "dirty": True}
    (run_dir / "manifest.json").write_text(json.dumps(manifest))
    verdict = judge(load_run(run_dir), load_rules(), baseline)
    assert verdict.status == "pass"
    assert any("'default*1.3'" in n for n in verdict.notes)
    assert any("feedfacefe" in n and "uncommitted" in n for n in verdict.notes)


def test_baseline_round_trip_keeps_every_interval(tmp_path, baseline):
    path = write_baseline(baseline, tmp_path / "default.json")
    again = read_baseline(path)
    assert again.facts == baseline.facts and set(again.series) == set(baseline.series)
    for key, series in baseline.series.items():
        for before, after in zip(series.repetitions, again.series[key].repetitions, strict=True):
            assert np.array_equal(before.merged(), after.merged())
            assert np.array_equal(before.interval_counts(), after.interval_counts())
            assert np.array_equal(before.start_s, after.start_s)
    data = json.loads(path.read_text())
    summary = data["series"]["inline.steady.request"]["summary"]
    assert summary["count"] == 1200 and 80_000 < summary["p50_us"] < 100_000  # readable in a diff


def test_baseline_keeps_the_facts_that_must_match(unchanged):
    facts = run_facts(unchanged)
    assert facts["machine"] == {"cpu_count": 2, "cpus_available": 2, "cpu_model": "Test CPU @ 2.0GHz"}
    assert facts["experiment"]["designs"] == ["inline", "queued"]
    assert "profile" not in facts["experiment"]  # the injected regression is judged against the default's baseline


def test_missing_baseline_says_how_to_make_one(tmp_path):
    with pytest.raises(BaselineError, match="--update-baseline.*--baseline none"):
        read_baseline(tmp_path / "nope.json")


@pytest.mark.parametrize("content", ["not json", '{"format": "something else"}',
                                     '{"format": "offpath-gate-baseline", "format_version": 99}',
                                     '{"format": "offpath-gate-baseline", "format_version": 1, "series": {}}'])
def test_damaged_or_foreign_baseline_is_an_error(tmp_path, content):
    path = tmp_path / "bad.json"
    path.write_text(content)
    with pytest.raises(BaselineError):
        read_baseline(path)


def test_baseline_names_map_to_the_baselines_folder(tmp_path):
    assert str(baseline_path("default")) == "results/baselines/default.json"
    assert baseline_path(str(tmp_path / "x.json")) == tmp_path / "x.json"
    with pytest.raises(BaselineError):
        baseline_path("../elsewhere")


def test_default_rules_cover_the_work_errors_throughput_and_the_advantage():
    rules = load_rules()
    kinds = {r.kind for r in rules.rules}
    assert kinds == {"regression", "advantage", "error_rate", "throughput", "sustainable", "cost", "count"}
    regressed = {(r.design, r.endpoint, r.metric) for r in rules.rules if r.kind == "regression"}
    assert {("inline", "request", "p50"), ("queued", "completion", "p50")} <= regressed
    assert all(r.why for r in rules.rules)


@pytest.mark.parametrize(("text", "message"), [
    ('[[rules]]\nname = "x"\nkind = "fastness"\ndesign = "inline"\n',
     "test rules: key 'rules[0].kind' has value 'fastness'; allowed: one of regression, advantage, error_rate"),
    ('[[rules]]\nname = "x"\nkind = "regression"\ndesign = "inline"\nmetric = "p42"\nmax_regression_pct = 1\n',
     "test rules: key 'rules[0].metric' has value 'p42'; allowed: one of p50, p90, p99, p99.9"),
    ('[[rules]]\nname = "x"\nkind = "regression"\ndesign = "inline"\n',
     "test rules: missing key 'rules[0].max_regression_pct' (a percentage >= 0)"),
    ('[[rules]]\nname = "x"\nkind = "sustainable"\ndesign = "queued"\nmax_error_rate = 1\n',
     "test rules: unknown key 'rules[0].max_error_rate'; allowed: design, kind, name, why"),
    ('[[rules]]\nname = "x"\nkind = "error_rate"\ndesign = "queued"\nmax_error_rate = 1.5\n',
     "test rules: key 'rules[0].max_error_rate' has value 1.5; allowed: a fraction from 0 to 1"),
    ('[[rules]]\nkind = "sustainable"\ndesign = "queued"\n', "test rules: missing key 'rules[0].name'"),
    ('[[rules]]\nname = "x"\nkind = "sustainable"\ndesign = "queued"\n[[rules]]\nname = "x"\nkind = "sustainable"\n'
     'design = "queued"\n', "test rules: key 'rules[1].name' has value 'x'; allowed: a name no other rule has"),
    ('phase = "steady"\n', "test rules: missing key 'rules' (at least one [[rules]] table)"),
])
def test_bad_rules_are_rejected_with_the_key(text, message):
    with pytest.raises(RulesError) as caught:
        rules_of(text)
    assert str(caught.value).startswith(message), str(caught.value)


def test_verdict_is_reproducible(baseline, regressed):
    first, second = judge(regressed, load_rules(), baseline), judge(regressed, load_rules(), baseline)
    assert [o.figures for o in first.outcomes] == [o.figures for o in second.outcomes]
