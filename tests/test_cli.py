"""The command line's error policy: bad input is one line naming what was wrong and what is allowed, exit 2,
never a traceback, and nothing is started."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from foundation.errors import EXIT_CHECK_FAILED, EXIT_ERROR, CheckFailed, ConfigurationError, HarnessError, exit_code

BAD_INPUT = [
    (["up", "inline", "--profile", "nonexistent"], {}, "profile 'nonexistent' not found"),
    (["up", "queued"], {"OFFPATH_MAX_BACKLOG": "abc"}, "OFFPATH_MAX_BACKLOG has value 'abc'"),
    (["up", "queued"], {"OFFPATH_RETRY_BACKOFF_S": "1,two"}, "OFFPATH_RETRY_BACKOFF_S has value '1,two'"),
    (["bench", "smoke"], {"OFFPATH_REQUEST_DEADLINE_S": "-3"}, "OFFPATH_REQUEST_DEADLINE_S has value '-3'"),
    (["up", "queued", "--workers", "0"], {}, "--workers: '0' is not allowed; allowed: a whole number >= 1"),
    (["up", "inline", "--port", "70000"], {}, "--port: '70000' is not allowed"),
    (["up", "sideways"], {}, "invalid choice: 'sideways'"),
    (["bench", "nonexistent"], {}, "experiment 'nonexistent' not found; use one of"),
    (["chaos", "nonexistent"], {}, "nonexistent"),
    (["chaos", "--fault", "meteor"], {}, "--fault meteor: not a fault of experiment 'chaos'; allowed: kill-worker"),
    (["report", "/nonexistent/run"], {}, "no such folder"),
    (["compare", "/nonexistent/a", "/nonexistent/b"], {}, "no such folder"),
    (["report", "results"], {"OFFPATH_LOG_LEVEL": "loud"}, "OFFPATH_LOG_LEVEL has value 'LOUD'; allowed: DEBUG"),
]


@pytest.mark.parametrize(("argv", "env", "message"), BAD_INPUT, ids=[" ".join(a) + str(e) for a, e, _ in BAD_INPUT])
def test_bad_input_is_one_line_and_exit_2(argv, env, message):
    result = subprocess.run([sys.executable, "-m", "offpath.cli", *argv], capture_output=True, text=True,
                            env={**os.environ, **env}, timeout=60)
    assert result.returncode == 2, result.stderr
    lines = [line for line in result.stderr.splitlines() if "fontManager" not in line]  # matplotlib's first-use note
    assert len(lines) == 1, result.stderr
    assert message in lines[0] and "Traceback" not in result.stderr


@pytest.mark.fast
def test_exit_codes_follow_one_policy():
    assert exit_code(ConfigurationError("x")) == exit_code(HarnessError("x")) == EXIT_ERROR == 2
    assert exit_code(CheckFailed("x")) == EXIT_CHECK_FAILED == 1
    assert exit_code(ValueError("from a layer below")) == 2


@pytest.mark.parametrize("line, message", [
    ('kills = "many"', "faults[0].kills is 'many'; allowed: a whole number >= 1"),
    ("abort_after_ms = 5", "faults[0].abort_after_ms is 5; allowed: [low, high] milliseconds"),
    ("for_s = -1", "faults[0].for_s is -1; allowed: a number >= 0"),
])
def test_a_chaos_fault_of_the_wrong_type_is_one_line_and_exit_2(tmp_path, line, message):
    experiment = tmp_path / "bad.toml"
    experiment.write_text(f'name = "bad"\nrate_per_s = 10\nduration_s = 5\n[[faults]]\nname = "k"\n'
                          f'kind = "kill-worker"\n{line}\n')
    done = subprocess.run([sys.executable, "-m", "offpath.cli", "chaos", str(experiment), "--out", str(tmp_path)],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and done.stderr.count("\n") == 1 and message in done.stderr, done.stderr
    assert not list(tmp_path.glob("*-bad-*")), "nothing was started"
