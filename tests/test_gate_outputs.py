"""`offpath gate` on generated results: exit codes 0/1/2 never confused, and well-formed JUnit, Markdown and JSON."""

from __future__ import annotations

import json
import shutil
import xml.etree.ElementTree as ET

import pytest

from analysis.gate.rules import load_rules
from foundation.errors import HarnessError
from offpath.cli import main
from offpath.experiment import ExperimentError, load_experiment
from tests.analysis_fixtures import write_run
from tests.test_gate import COMPLETION, INLINE, gate_specs, scaled

pytestmark = pytest.mark.fast

RULES = len(load_rules().rules)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("gate-cli")
    base, _ = write_run(root / "base", gate_specs(), run_id="run-base", seed=1)
    same, _ = write_run(root / "same", gate_specs(), run_id="run-same", seed=2)
    slow, _ = write_run(root / "slow", gate_specs(inline=scaled(INLINE, 1.3), completion=scaled(COMPLETION, 1.3)),
                        run_id="run-slow", seed=3)
    return {"base": base, "same": same, "slow": slow}


@pytest.fixture()
def project(tmp_path, monkeypatch, runs):
    """A working directory with results/baselines/default.json recorded from the base run."""
    monkeypatch.chdir(tmp_path)
    assert main(["gate", "--run", str(runs["base"]), "--update-baseline"]) == 0
    return tmp_path


def gate(*args: str, tmp_path) -> tuple[int, dict, ET.Element, str]:
    code = main(["gate", *args, "--junit", str(tmp_path / "junit.xml"), "--summary", str(tmp_path / "summary.md"),
                 "--json", str(tmp_path / "verdict.json")])
    return (code, json.loads((tmp_path / "verdict.json").read_text()), ET.parse(tmp_path / "junit.xml").getroot(),
            (tmp_path / "summary.md").read_text())


def test_update_baseline_writes_the_named_baseline(project, runs):
    data = json.loads((project / "results" / "baselines" / "default.json").read_text())
    assert data["name"] == "default" and data["run_id"] == "run-base"
    assert set(data["series"]) == {"inline.steady.request", "queued.steady.request",
                                   "queued.steady.completion"}


def test_unchanged_run_exits_0(project, runs, capsys):
    code, verdict, suite, summary = gate("--run", str(runs["same"]), tmp_path=project)
    assert code == 0 and verdict["status"] == "pass" and verdict["exit_code"] == 0
    assert capsys.readouterr().out.rstrip().splitlines()[-1].startswith("gate: PASS (exit 0)")
    assert suite.get("failures") == "0" and suite.get("errors") == "0"
    assert summary.startswith("## offpath gate: ✅ PASS")


def test_regressed_run_exits_1_with_a_failure_per_failing_rule(project, runs, capsys):
    code, verdict, root, summary = gate("--run", str(runs["slow"]), tmp_path=project)
    failing = [r["name"] for r in verdict["rules"] if r["status"] == "fail"]
    assert code == 1 and verdict["status"] == "regression" and "inline POST P50" in failing
    cases = root.findall("./testsuite/testcase")
    assert len(cases) == RULES + 1  # one per rule, plus the harness
    failed_cases = [c.get("name") for c in cases if c.find("failure") is not None]
    assert failed_cases == failing and root.get("failures") == str(len(failing)) and root.get("errors") == "0"
    assert "❌ **fail**" in summary and "REGRESSION" in capsys.readouterr().out


def test_missing_baseline_exits_2_and_says_so_everywhere(tmp_path, monkeypatch, runs, capsys):
    monkeypatch.chdir(tmp_path)
    code, verdict, root, summary = gate("--run", str(runs["same"]), "--baseline", "nightly", tmp_path=tmp_path)
    assert code == 2 and verdict["status"] == "error" and verdict["exit_code"] == 2
    assert "results/baselines/nightly.json" in verdict["errors"][0] and "--update-baseline" in verdict["errors"][0]
    harness = root.find("./testsuite/testcase[@name='harness: run complete, baseline matches']")
    assert harness is not None and harness.find("error") is not None
    assert root.get("failures") == "0"  # a harness error is never reported as a regression
    assert "HARNESS ERROR" in summary and "not a pass" in summary
    assert "HARNESS ERROR" in capsys.readouterr().out


def test_incomplete_run_exits_2(project, runs, tmp_path_factory):
    broken = tmp_path_factory.mktemp("broken") / "run-same"
    shutil.copytree(runs["same"], broken)
    (broken / "INCOMPLETE").write_text("Locust exited with code 1\n")
    code, verdict, _, _ = gate("--run", str(broken), tmp_path=project)
    assert code == 2 and "incomplete" in verdict["errors"][0] and "Locust exited" in verdict["errors"][0]


def test_not_a_results_folder_exits_2(project):
    code, verdict, _, _ = gate("--run", str(project), tmp_path=project)
    assert code == 2 and "not an offpath results folder" in verdict["errors"][0]


def test_within_run_rules_only_need_no_baseline(tmp_path, monkeypatch, runs):
    monkeypatch.chdir(tmp_path)
    code, verdict, root, _ = gate("--run", str(runs["slow"]), "--baseline", "none", tmp_path=tmp_path)
    assert code == 0 and verdict["baseline"] is None
    assert verdict["counts"]["skipped"] == sum(r.needs_baseline for r in load_rules().rules)
    assert len(root.findall("./testsuite/testcase/skipped")) == verdict["counts"]["skipped"]


def test_profile_cannot_be_changed_for_an_existing_run(project, runs):
    code, verdict, _, _ = gate("--run", str(runs["same"]), "--profile", "default*1.3", tmp_path=project)
    assert code == 2 and "--profile" in verdict["errors"][0]


def test_update_baseline_refuses_a_run_failing_the_within_run_rules(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    run_dir, _ = write_run(tmp_path / "runs", gate_specs(queued=INLINE), run_id="run-no-advantage", seed=4)
    assert main(["gate", "--run", str(run_dir), "--update-baseline"]) == 1
    assert not (tmp_path / "results" / "baselines" / "default.json").exists()


def test_bad_rules_file_exits_2(project, runs):
    bad = project / "rules.toml"
    bad.write_text('[[rules]]\nname = "x"\nkind = "speed"\n')
    code, verdict, _, _ = gate("--run", str(runs["same"]), "--rules", str(bad), tmp_path=project)
    assert code == 2 and "key 'rules[0].kind' has value 'speed'; allowed: one of regression" in verdict["errors"][0]


def test_markdown_summary_has_one_row_per_rule_and_the_method(project, runs):
    _, verdict, _, summary = gate("--run", str(runs["slow"]), tmp_path=project)
    rows = [line for line in summary.splitlines() if line.startswith("| ") and not line.startswith("| rule |")]
    assert len(rows) == RULES
    assert all(line.count(" | ") == 3 for line in rows)  # no cell breaks the table
    assert "95% confidence intervals by bootstrap" in summary and "Exit codes: 0 pass, 1 regression" in summary
    assert summary.count("<details>") == summary.count("</details>") == 1
    assert len(summary.encode()) < 64 * 1024


def test_junit_names_each_rule_once_and_carries_the_measurement(project, runs):
    _, verdict, root, _ = gate("--run", str(runs["same"]), tmp_path=project)
    assert root.tag == "testsuites"
    names = [c.get("name") for c in root.iter("testcase")]
    assert len(names) == len(set(names)) == RULES + 1
    for rule, case in zip(verdict["rules"], list(root.iter("testcase"))[1:], strict=True):
        assert case.get("name") == rule["name"] and rule["measured"] in case.findtext("system-out")


def test_a_crash_inside_the_gate_exits_2_not_1(project, runs, monkeypatch):
    def explode(*args, **kwargs):
        raise KeyError("surprise")

    monkeypatch.setattr("offpath.gate.judge", explode)
    code, verdict, _, summary = gate("--run", str(runs["same"]), tmp_path=project)
    assert code == 2 and "the gate crashed: KeyError" in verdict["errors"][0] and "HARNESS ERROR" in summary


def test_a_harness_error_inside_the_gate_reaches_the_verdict_files_with_its_own_message(project, runs, monkeypatch,
                                                                                         capsys):
    message = "redis-server (redis://127.0.0.1:6390) died with code -9 mid-run"

    def redis_died(*args, **kwargs):
        raise HarnessError(message)

    monkeypatch.setattr("offpath.gate.judge", redis_died)
    code, verdict, root, summary = gate("--run", str(runs["same"]), tmp_path=project)
    assert code == 2 and verdict["status"] == "error" and verdict["errors"] == [message]
    harness = root.find("./testsuite/testcase[@name='harness: run complete, baseline matches']/error")
    assert harness is not None and harness.get("message") == message
    assert f"> **Harness error:** {message}" in summary
    # what the gate had established when it stopped: the rules (each not judged), the baseline, the run
    assert verdict["counts"]["error"] == RULES and verdict["baseline"] == "default"
    assert verdict["run_id"] == "run-same" and verdict["run_dir"] == str(runs["same"])
    out, err = capsys.readouterr()
    assert f"harness error: {message}" in out and err == f"offpath gate: {message}\n"


def test_an_experiment_that_cannot_be_loaded_reaches_the_verdict_files_with_its_own_message(project, capsys):
    experiment = project / "typo.toml"
    experiment.write_text('name = "typo"\nrepetitionz = 2\n')
    with pytest.raises(ExperimentError) as raised:
        load_experiment(str(experiment))
    code, verdict, root, _ = gate("--experiment", str(experiment), "--out", str(project / "runs"), tmp_path=project)
    assert code == 2 and verdict["errors"] == [str(raised.value)] and "repetitionz" in verdict["errors"][0]
    assert len(root.findall("./testsuite/testcase")) == RULES + 1  # each rule listed, not judged
    assert not (project / "runs").exists()  # nothing was run
    out, err = capsys.readouterr()
    assert "see above" not in out and err.count("\n") == 1 and str(raised.value) in err
