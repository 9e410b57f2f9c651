"""The `fast` mark tells the truth: a test marked fast that starts a process or connects a socket fails, saying it is
not fast, even when it swallows the refusal; an unmarked test may do both."""

from __future__ import annotations

import pytest

# The sessions below run in this process; their conftest wires the same guard tests/conftest.py does.
CONFTEST = "from tests.conftest import pytest_runtest_call, pytest_runtest_setup, pytest_runtest_teardown  # noqa: F401\n"

MARKED = """
import multiprocessing
import os
import socket
import subprocess

import pytest

pytestmark = pytest.mark.fast


def test_runs_a_command():
    subprocess.run(["true"])


def test_swallows_the_refusal():
    try:
        subprocess.run(["true"])
    except Exception:
        pass


def test_forks():
    if os.fork() == 0:
        os._exit(0)


def test_starts_a_multiprocessing_process():
    process = multiprocessing.get_context("spawn").Process(target=print)
    process.start()
    process.join()


def test_connects_a_socket():
    with socket.socket() as sock:
        sock.connect_ex(("127.0.0.1", 9))


@pytest.fixture
def server():
    return socket.create_connection(("127.0.0.1", 9), timeout=1)


def test_uses_a_fixture_that_connects(server):
    pass


def test_computes():
    assert sum(range(10)) == 45
"""


@pytest.mark.fast
def test_a_fast_test_that_starts_a_process_or_connects_fails_saying_it_is_not_fast(pytester: pytest.Pytester):
    pytester.makeconftest(CONFTEST)
    pytester.makepyfile(test_marked=MARKED)
    result = pytester.runpytest_inprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1, failed=5, errors=1)
    report = result.stdout.str()
    for test, what in [("test_runs_a_command", "started a process (true)"),
                       ("test_swallows_the_refusal", "started a process (true)"),
                       ("test_forks", "forked a process"),
                       ("test_starts_a_multiprocessing_process", "started a process"),
                       ("test_connects_a_socket", "connected a socket (to ('127.0.0.1', 9))"),
                       ("test_uses_a_fixture_that_connects", "connected a socket (to ('127.0.0.1', 9))")]:
        assert f"test_marked.py::{test} is not fast: it {what}" in report, test
    assert "take its `fast` mark off" in report


def test_an_unmarked_test_may_start_processes_and_connect(pytester: pytest.Pytester):
    pytester.makeconftest(CONFTEST)
    pytester.makepyfile(test_unmarked=MARKED.replace("pytestmark = pytest.mark.fast", ""))
    result = pytester.runpytest_inprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=6, errors=1)  # nothing listens on port 9: the fixture's own error, not the guard's
    assert "is not fast" not in result.stdout.str()
