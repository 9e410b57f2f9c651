"""The command line's error policy: bad input is one line naming what was wrong and what is allowed, exit 2,
never a traceback, and nothing is started."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys

import pytest

from foundation.errors import EXIT_CHECK_FAILED, EXIT_ERROR, CheckFailed, ConfigurationError, HarnessError, exit_code

BAD_INPUT = [
    (["up", "inline", "--profile", "nonexistent"], {}, "profile 'nonexistent' not found"),
    (["up", "inline", "--profile", "default*fast"], {}, "scale '*fast' is not allowed; allowed: '*N'"),
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


@pytest.mark.fast
def test_help_lists_every_command(capsys):
    from offpath.cli import build_parser, main

    with pytest.raises(SystemExit) as done:
        main(["--help"])
    assert done.value.code == 0
    shown = capsys.readouterr().out
    commands = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction)).choices
    assert set(commands) == {"up", "bench", "chaos", "report", "compare", "gate"}
    assert all(f"\n    {command} " in shown for command in commands)
