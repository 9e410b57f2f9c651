"""Every configuration file is refused the same way by the command that reads it: an unknown key, a wrong type, a
value out of range and a TOML syntax error are each one line naming the file, the key, the value and what is allowed,
exit 2, no traceback, and nothing is started (the experiment file's own cases live beside its reader's tests)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import QUICK_PROFILE

CHAOS = """name = "bad"
rate_per_s = 10
duration_s = 5
[[faults]]
name = "k"
kind = "kill-worker"
kills = 2
"""

RULES = """phase = "steady"
[[rules]]
name = "errors"
kind = "error_rate"
design = "queued"
endpoint = "completion"
max_error_rate = 0.01
"""

# (the file's text, what the command's one line says after "<file>: ")
PROFILE_CASES = {
    "unknown key": (QUICK_PROFILE.replace("[automation]", "speed = 2\n[automation]"),
                    "unknown key 'generation.speed'; allowed: cpu_ms, failure_probability, wait_median_ms, wait_p99_ms"),
    "wrong type": (QUICK_PROFILE.replace("seed = 3", 'seed = "3"'), "key 'seed' has value '3'; allowed: a whole number"),
    "out of range": (QUICK_PROFILE.replace("cpu_ms = 0.5", "cpu_ms = -0.5"),
                     "key 'automation.cpu_ms' has value -0.5; allowed: milliseconds of CPU >= 0"),
    "bad TOML": (QUICK_PROFILE.replace("seed = 3", "seed = "), "not valid TOML: "),
}
CHAOS_CASES = {
    "unknown key": (CHAOS + "for_s = 3\n", "unknown key 'faults[0].for_s'; allowed: aof, at_s, backends, design, "
                                           "duration_s, every_s, kills, kind, name, profile, rate_per_s"),
    "wrong type": (CHAOS.replace("kills = 2", 'kills = "many"'),
                   "key 'faults[0].kills' has value 'many'; allowed: a whole number of SIGKILLs >= 1"),
    "out of range": (CHAOS.replace("kills = 2", "every_s = -1"),
                     "key 'faults[0].every_s' has value -1; allowed: seconds >= 0 between kills"),
    "unknown kind": (CHAOS.replace('"kill-worker"', '"meteor"'),
                     "key 'faults[0].kind' has value 'meteor'; allowed: one of none, kill-worker, "),
    "bad TOML": (CHAOS.replace("kills = 2", "kills = [2"), "not valid TOML: "),
}
RULES_CASES = {
    "unknown key": (RULES + "metric = \"p99\"\n",
                    "unknown key 'rules[0].metric'; allowed: design, endpoint, kind, max_error_rate, name, why"),
    "wrong type": (RULES.replace("max_error_rate = 0.01", 'max_error_rate = "1%"'),
                   "key 'rules[0].max_error_rate' has value '1%'; allowed: a fraction from 0 to 1"),
    "out of range": (RULES.replace("max_error_rate = 0.01", "max_error_rate = 2"),
                     "key 'rules[0].max_error_rate' has value 2; allowed: a fraction from 0 to 1"),
    "bad TOML": (RULES.replace('kind = "error_rate"', "kind = error_rate"), "not valid TOML: "),
}


def _offpath(*argv: str) -> subprocess.CompletedProcess[str]:
    """The command run from this checkout's root (its code, not an installed one's)."""
    env = {key: value for key, value in os.environ.items() if key not in ("REDIS_URL", "OFFPATH_PROFILE")}
    return subprocess.run([sys.executable, "-m", "offpath.cli", *argv], capture_output=True, text=True, env=env,
                          timeout=60, cwd=Path(__file__).parent.parent)


def _one_line(output: str) -> list[str]:
    return [line for line in output.splitlines() if "fontManager" not in line]  # matplotlib's first-use note


@pytest.mark.parametrize("case", PROFILE_CASES)
def test_a_bad_profile_file_stops_offpath_up_in_one_line(tmp_path, case):
    text, says = PROFILE_CASES[case]
    path = tmp_path / "profile.toml"
    path.write_text(text)
    done = _offpath("up", "queued", "--profile", str(path), "--aof", "off")
    lines = _one_line(done.stderr)
    assert done.returncode == 2 and len(lines) == 1, done.stderr
    assert lines[0].startswith(f"offpath up: {path}: {says}") and "Traceback" not in done.stderr + done.stdout


@pytest.mark.parametrize("case", CHAOS_CASES)
def test_a_bad_chaos_file_stops_offpath_chaos_in_one_line(tmp_path, case):
    text, says = CHAOS_CASES[case]
    path = tmp_path / "chaos.toml"
    path.write_text(text)
    done = _offpath("chaos", str(path), "--out", str(tmp_path / "runs"))
    lines = _one_line(done.stderr)
    assert done.returncode == 2 and len(lines) == 1, done.stderr
    assert lines[0].startswith(f"offpath chaos: {path}: {says}") and "Traceback" not in done.stderr + done.stdout
    assert not (tmp_path / "runs").exists(), "nothing was started"


@pytest.mark.parametrize("case", RULES_CASES)
def test_a_bad_rules_file_is_a_harness_error_in_one_line(tmp_path, case):
    text, says = RULES_CASES[case]
    path = tmp_path / "rules.toml"
    path.write_text(text)
    done = _offpath("gate", "--rules", str(path), "--run", str(tmp_path / "run"))
    lines = _one_line(done.stderr)
    assert done.returncode == 2 and len(lines) == 1, done.stderr
    assert lines[0].startswith(f"offpath gate: {path}: {says}") and "Traceback" not in done.stderr + done.stdout
    assert f"harness error: {path}: {says}" in done.stdout, "the verdict CI reads says why too"


@pytest.mark.parametrize("command", ["bench", "chaos"])
def test_an_out_folder_offpath_cannot_create_is_one_line_and_exit_2(tmp_path, command):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    done = _offpath(command, "--out", str(blocker / "runs"))
    lines = _one_line(done.stderr)
    assert done.returncode == 2 and len(lines) == 1, done.stderr
    assert lines[0].startswith(f"offpath {command}: --out '{blocker / 'runs'}': cannot create a run folder in it")
    assert "Traceback" not in done.stderr + done.stdout
