# offpath's front door. Every recipe is one `offpath` command, so CI and people run the same thing.
export PATH := justfile_directory() + "/.venv/bin:" + env_var("PATH")

# The inline-vs-queued comparison with its report.
default: bench

# Run an experiment (offpath/experiments/<name>.toml) and write results/<run-id>/.
bench experiment="seed" *args="":
    offpath bench {{experiment}} {{args}}

# The test suite (real Redis, services, workers and Locust on loopback): the fast tests spread over the CPUs, then the
# ones that start processes one at a time (their timings are measured, so they do not share the CPUs), the slowest
# named at the end.
test *args="":
    #!/usr/bin/env bash
    set -uo pipefail
    pytest -q -m fast -n auto --dist loadfile {{args}}; fast=$?
    pytest -q -m "not fast" --durations=25 {{args}}; slow=$?
    for code in $fast $slow; do  # 5: no test of that kind selected (a file holding only the other kind)
        [ "$code" -eq 0 ] || [ "$code" -eq 5 ] || exit "$code"
    done

# The inner loop: the tests marked fast (no process started, no socket opened; tests/conftest.py holds them to it),
# a module per pytest-xdist worker, one worker per CPU.
test-fast *args="":
    pytest -q -m fast -n auto --dist loadfile {{args}}

# Lint and type checks (ruff over the tree; mypy over every package, see pyproject.toml).
lint:
    ruff check . && mypy

# Serve one design on 127.0.0.1 with its Redis (and RQ workers); Ctrl-C stops everything.
up design="queued" *args="":
    offpath up {{design}} {{args}}

# Re-render a run's report.
report run *args="":
    offpath report {{run}} {{args}}

# Compare any two runs.
compare a b:
    offpath compare {{a}} {{b}}

# The performance regression gate.
gate *args="":
    offpath gate {{args}}

# Each design for 30 minutes at 70% of its capacity: does memory or latency drift? (about 70 minutes)
soak *args="":
    offpath bench soak {{args}}

# Fault experiments: acknowledged work is never lost.
chaos *args="":
    offpath chaos {{args}}
