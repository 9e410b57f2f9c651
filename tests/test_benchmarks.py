"""The benchmarks print a figure only for what they name: a side with errors gets `no figure: ...` and exit code 1,
and the ack-path benchmark measures acknowledgements, not the shedding of a queue that was never drained."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
from collections import Counter
from pathlib import Path

import pytest
import redis
from hdrh.histogram import HdrHistogram

from benchmarks import ack_path, gate_discrimination, loadgen_overhead
from benchmarks.figure import NO_FIGURE, SideErrors, refused
from offpath.ports import free_port

ROOT = Path(__file__).resolve().parent.parent


def _window(acknowledged: int, errors: dict[str, int], elapsed_s: float = 5.0) -> ack_path.Window:
    histogram = HdrHistogram(1, 3_600_000_000, 3)
    for _ in range(acknowledged):
        histogram.record_value(900)
    return ack_path.Window(histogram, Counter(errors), elapsed_s)


def _ack_path(*args: str, **env: str) -> subprocess.CompletedProcess:
    """The benchmark as a user runs it, with its own embedded Redis (REDIS_URL unset)."""
    environ = {k: v for k, v in os.environ.items() if k != "REDIS_URL"} | env
    return subprocess.run([sys.executable, "benchmarks/ack_path.py", "--connections", "8", *args], cwd=ROOT,
                          env=environ, capture_output=True, text=True, timeout=120)


@pytest.mark.fast
def test_side_errors_name_the_side_the_place_and_the_kinds():
    errors = SideErrors("queued", "round 2", Counter({"503": 19_237, "ClientOSError": 3}))
    assert str(errors) == "queued had 19,240 errors in round 2 (503 x 19,237, ClientOSError x 3)"


@pytest.mark.fast
def test_no_figure_is_printed_for_a_side_with_errors(capsys):
    assert refused([SideErrors("queued", "round 1", Counter()), SideErrors("queued", "round 2", {"503": 2})])
    assert capsys.readouterr().out == "no figure: queued had 2 errors in round 2 (503 x 2)\n"
    assert not refused([SideErrors("queued", "round 1", Counter())])
    assert capsys.readouterr().out == ""


@pytest.mark.fast
def test_ack_path_prints_no_ratio_when_the_queued_side_shed(capsys):
    """The run of issue #16: the queued service passed its backlog bound in round 1 and answered 503 after."""
    windows = {"queued": [_window(5_000, {"503": 900}), _window(0, {"503": 19_237}), _window(0, {"503": 21_004})],
               "persist-only": [_window(5_800, {}), _window(5_700, {}), _window(5_900, {})]}
    assert ack_path.conclude(windows) == NO_FIGURE
    out = capsys.readouterr().out
    assert "ack_path_ratio:" not in out and "per-round throughput ratios" not in out
    assert "no figure: queued had 19,237 errors in round 2 (503 x 19,237)" in out
    assert "no figure: queued had 900 errors in round 1 (503 x 900)" in out


@pytest.mark.fast
def test_ack_path_prints_the_ratio_of_clean_rounds(capsys):
    windows = {"queued": [_window(5_000, {}), _window(6_000, {})],
               "persist-only": [_window(5_000, {}), _window(5_000, {})]}
    assert ack_path.conclude(windows) == 0
    assert capsys.readouterr().out.splitlines()[-1] == "ack_path_ratio: 1.10"


def test_ack_path_refuses_databases_that_hold_data(redis_server):
    url = redis_server.url.rsplit("/", 1)[0] + "/15"
    client = redis.Redis.from_url(url)
    client.set("someone-elses", "data")
    try:
        with pytest.raises(SystemExit, match="holds 1 keys; ack_path empties its databases"):
            ack_path.empty_database(url, "ack_path")
    finally:
        client.flushdb()


def test_ack_path_measures_acknowledgements_whatever_backlog_bound_the_environment_sets():
    """A bound of 5 jobs would shed nearly every request of a queue no worker drains; the benchmark lifts it."""
    completed = _ack_path("--rounds", "2", "--seconds", "1", OFFPATH_MAX_BACKLOG="5")
    assert completed.returncode == 0, completed.stdout + completed.stderr
    rounds = [line for line in completed.stdout.splitlines() if line.lstrip().startswith("round ")]
    assert len(rounds) == 4 and all(line.endswith("errors=0") for line in rounds), completed.stdout
    assert completed.stdout.splitlines()[-1].startswith("ack_path_ratio: ")


def test_ack_path_prints_no_figure_when_a_side_answers_errors():
    """Inline allowed one request in flight sheds most of 8 connections' requests with 503."""
    completed = _ack_path("--rounds", "1", "--seconds", "1", OFFPATH_MAX_IN_FLIGHT="1")
    assert completed.returncode == NO_FIGURE, completed.stdout + completed.stderr
    assert "ack_path_ratio:" not in completed.stdout
    assert "no figure: persist-only had " in completed.stdout and "errors in round 1 (503 x " in completed.stdout


def test_loadgen_driver_that_ends_inside_its_window_gets_errors_not_a_figure():
    """A dead driver's process tree reads 0 s of CPU: the window's figure would be nonsense (negative)."""
    port = free_port()
    server = subprocess.Popen([sys.executable, "benchmarks/loadgen_overhead.py", "--serve", str(port)], cwd=ROOT,
                              stdout=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    dies = textwrap.dedent(f"""
        import sys, time, urllib.request
        end = time.monotonic() + {loadgen_overhead.WARM_S} + 1.0
        while time.monotonic() < end:
            urllib.request.urlopen(urllib.request.Request(sys.argv[1] + "/campaigns", data=b"{{}}")).read()
        sys.exit(5)
    """)
    variant = loadgen_overhead.Variant("dies", lambda url, run_s: [sys.executable, "-c", dies, url])
    try:
        loadgen_overhead.wait_until_up(url)
        window = loadgen_overhead.measure(variant, url, 3.0, [])
    finally:
        server.terminate()
        server.wait(timeout=10)
    assert window.errors == Counter({"ended during the window (exit code 5)": 1})


@pytest.mark.fast
def test_loadgen_counts_locust_failures_by_error():
    output = textwrap.dedent("""
        Error report
        # occurrences      Error
        ------------------|-----------------------------------------------------
        70                 POST /campaigns: ConnectionRefusedError(111, 'Connection refused')
        2                  POST /campaigns: RemoteDisconnected('closed')
        ------------------|-----------------------------------------------------
    """)
    assert loadgen_overhead.locust_errors(output, 1) == Counter({
        "POST /campaigns: ConnectionRefusedError(111, 'Connection refused')": 70,
        "POST /campaigns: RemoteDisconnected('closed')": 2})
    assert loadgen_overhead.locust_errors("", 2) == Counter({"locust exit code 2": 1})
    assert loadgen_overhead.locust_errors("", loadgen_overhead.PLUGIN_CUT_SHORT) == Counter()


def _verdict(status: str, errors: list[str] | None = None) -> dict:
    return {"status": status, "exit_code": {"pass": 0, "regression": 1, "error": 2}[status], "errors": errors or [],
            "rules": [{"name": "inline POST P50", "status": "fail" if status == "regression" else "pass",
                       "measured": "x", "figures": {"delta_pct": 2.0}}]}


@pytest.mark.fast
def test_gate_discrimination_prints_no_false_alarm_figure_over_runs_it_could_not_judge(capsys):
    """0/3 false alarms would count a run the gate never judged as a pass."""
    results = {"unchanged": [_verdict("pass"), _verdict("error", ["Redis did not answer"]), _verdict("pass")],
               "regressed": [_verdict("regression")] * 3}
    assert gate_discrimination.report(results, 3) == NO_FIGURE
    out = capsys.readouterr().out
    assert "false_alarms:" not in out
    assert "no false_alarms figure: unchanged had 1 error in run 2 (harness error: Redis did not answer x 1)" in out
    assert "detections: 3/3" in out


@pytest.mark.fast
def test_gate_discrimination_against_reports_per_kind_and_no_figure_for_a_kind_with_an_error(capsys):
    results = {"unchanged": [_verdict("pass"), _verdict("regression")],
               "profile": [_verdict("regression"), _verdict("regression")],
               "ack-roundtrip": [_verdict("pass"), _verdict("error", ["base 0123456789: pip install -e failed"])]}
    assert gate_discrimination.report_against(results) == NO_FIGURE
    out = capsys.readouterr().out
    assert "false_alarms: 1/2" in out and "detections[profile]: 2/2" in out
    assert "detections[ack-roundtrip]:" not in out
    assert "no detections[ack-roundtrip] figure: ack-roundtrip had 1 error in run 2" in out


@pytest.mark.fast
@pytest.mark.parametrize("kind", [k for k, patches in gate_discrimination.PATCHES.items() if patches])
def test_every_injected_regression_still_applies_to_the_services(kind):
    """A patch whose anchor moved would stop the benchmark hours in; the services must still hold each anchor once."""
    for relative, anchor, replacement in gate_discrimination.PATCHES[kind]:
        source = (ROOT / relative).read_text()
        assert source.count(anchor) == 1, f"{kind}: anchor not once in {relative}"
        patched = source.replace(anchor, replacement)
        compile(patched, relative, "exec")
        assert patched != source


@pytest.mark.fast
def test_gate_discrimination_against_resume_keeps_pairs_of_the_same_base_and_refuses_another(tmp_path, capsys):
    (tmp_path / "verdicts").mkdir()
    judged = _verdict("pass") | {"base": {"sha": "a" * 40}}
    gate_discrimination.verdict_file(tmp_path, "unchanged", 1).write_text(json.dumps(judged))
    gate_discrimination.verdict_file(tmp_path, "profile", 1).write_text(json.dumps(_verdict("error", ["no Redis"])))
    assert gate_discrimination.kept_against(tmp_path, "unchanged", 1, "a" * 40) == judged
    assert gate_discrimination.kept_against(tmp_path, "profile", 1, "b" * 40)["status"] == "error"  # kept as it was
    assert gate_discrimination.kept_against(tmp_path, "unchanged", 2, "a" * 40) is None  # not run yet
    with pytest.raises(SystemExit) as refused_resume:
        gate_discrimination.kept_against(tmp_path, "unchanged", 1, "b" * 40)
    assert refused_resume.value.code == 2
    assert "judged against base aaaaaaaaaa; this invocation's base is bbbbbbbbbb" in capsys.readouterr().err


@pytest.mark.parametrize("args, message", [
    (["--against", "--kinds", "foo"], "--kinds 'foo': foo; allowed: unchanged, profile, ack-roundtrip, worker-cpu"),
    (["--against", "--pairs", "0"], "--pairs 0: allowed: a whole number >= 1"),
    (["--against", "--base", "no-such-ref"], "--base 'no-such-ref': no such commit"),
    (["--against", "--judge", "no-such-folder"], "--judge no-such-folder: no kept verdicts in it"),
    (["--against", "--rules", "no-such.toml", "--pairs", "1"], "--rules: no-such.toml: cannot read it"),
    (["--against", "--resume"], "--resume needs --out"),
])
def test_gate_discrimination_bad_input_is_one_line_and_exit_2_before_any_gate(args, message, tmp_path):
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "gate_discrimination.py"), *args], cwd=tmp_path,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and done.stderr.count("\n") == 1 and message in done.stderr, done.stderr
    assert done.stdout == "" and not list(tmp_path.iterdir()), "no gate ran, nothing was written"


def test_worker_idle_prints_a_line_per_backend():
    environ = {k: v for k, v in os.environ.items() if k != "REDIS_URL"}
    result = subprocess.run([sys.executable, "benchmarks/worker_idle.py", "--seconds", "1"], cwd=ROOT, env=environ,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr[-3000:]
    for backend in ("rq", "celery", "dramatiq"):
        assert re.search(rf"^idle {backend}: worker +\d+\.\d\d ms CPU/s, Redis +\d+\.\d\d ms CPU/s, +\d+\.\d "
                         r"commands/s", result.stdout, re.M), result.stdout
