"""`offpath up` as a user runs it: an RQ worker that crashes is replaced while the service keeps
serving, and however offpath ends (Ctrl-C, SIGTERM, SIGKILL) nothing it started keeps running."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import redis
from rq import Worker

from offpath.ports import free_port
from offpath.supervisor import Restart, http_ok
from services.queued.lifetime import PARENT_CHECK_S, STOP_GRACE_S
from tests.conftest import valid_body
from tests.processes import children, cmdline, cpu_hog, descendants, describe, kill_all, wait_gone


@dataclass
class Up:
    process: subprocess.Popen
    log_path: Path
    url: str
    redis_url: str = ""

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_for(self, pattern: str, timeout_s: float) -> re.Match:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            found = re.search(pattern, self.log())
            if found:
                return found
            assert self.process.poll() is None, f"offpath up exited with {self.process.returncode}:\n{self.log()[-3000:]}"
            time.sleep(0.1)
        raise AssertionError(f"no {pattern!r} in the log within {timeout_s:g} s:\n{self.log()[-3000:]}")

    def workers(self) -> dict[int, str]:
        """The RQ worker processes offpath started, by pid, with their RQ names."""
        found = {}
        for pid in children(self.process.pid):
            argv = cmdline(pid)
            if "services.queued.worker" in argv and "--name" in argv:
                found[pid] = argv[argv.index("--name") + 1]
        return found


@pytest.fixture
def up(tmp_path: Path, profiles: dict[str, str]) -> Iterator[Up]:
    """`offpath up queued --workers 2` with its own embedded Redis, ready to serve."""
    port = free_port()
    env = {key: value for key, value in os.environ.items() if key not in ("REDIS_URL", "OFFPATH_LOG_LEVEL")}
    log_path = tmp_path / "up.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "offpath.cli", "up", "queued", "--workers", "2", "--port", str(port),
             "--profile", profiles["quick"], "--aof", "off"],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
        )
    running = Up(process, log_path, f"http://127.0.0.1:{port}")
    started: set[int] = set()
    try:
        running.redis_url = running.wait_for(r"redis (redis://\S+) \(embedded", 30).group(1)
        running.wait_for(r"serving on", 60)
        started = descendants(process.pid)
        yield running
    finally:
        started |= descendants(process.pid)
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        kill_all(started)


def _completed(client: httpx.Client, location: str, timeout_s: float) -> dict:
    deadline = time.monotonic() + timeout_s
    state: dict = {}
    while time.monotonic() < deadline:
        state = client.get(location).json()
        if state["status"] in ("completed", "failed"):
            return state
        time.sleep(0.1)
    raise AssertionError(f"campaign not final within {timeout_s:g} s: {state}")


@pytest.mark.fast
def test_restart_pause_doubles_to_its_cap_and_resets_after_a_stable_run():
    policy = Restart(first_delay_s=0.5, max_delay_s=4.0, stable_after_s=30.0)
    pauses, previous = [], None
    for _ in range(6):  # a child that dies again at once
        previous = policy.delay_s(previous, ran_s=0.1)
        pauses.append(previous)
    assert pauses == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]
    assert policy.delay_s(4.0, ran_s=30.0) == 0.5


def test_a_killed_worker_is_replaced_and_the_service_keeps_serving(up: Up):
    workers = up.workers()
    assert len(workers) == 2, workers
    victim = min(workers)
    os.kill(victim, signal.SIGKILL)

    deadline = time.monotonic() + 20
    replacement: dict[int, str] = {}
    while not replacement and time.monotonic() < deadline:
        assert up.process.poll() is None, f"offpath up stopped:\n{up.log()[-3000:]}"
        replacement = {pid: name for pid, name in up.workers().items() if pid not in workers}
        time.sleep(0.1)
    assert replacement, f"no replacement worker within 20 s:\n{up.log()[-3000:]}"
    (new_name,) = replacement.values()
    assert new_name not in workers.values()  # RQ refuses a second live worker under a registered name

    connection = redis.Redis.from_url(up.redis_url)
    deadline = time.monotonic() + 20
    while new_name not in {w.name for w in Worker.all(connection=connection)}:
        assert time.monotonic() < deadline, f"the replacement {new_name} did not register:\n{up.log()[-3000:]}"
        time.sleep(0.1)

    with httpx.Client(base_url=up.url, timeout=10) as client:
        accepted = client.post("/campaigns", json=valid_body())
        assert accepted.status_code == 202, accepted.text
        assert _completed(client, accepted.headers["Location"], 30)["status"] == "completed"
    assert up.process.poll() is None
    assert re.search(rf"worker-\d \(pid {victim}\) died with code -9; restarting it in", up.log()), up.log()[-3000:]
    assert re.search(r"restarted worker-\d as pid \d+", up.log()), up.log()[-3000:]


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM, signal.SIGKILL], ids=lambda s: s.name)
def test_however_up_ends_nothing_it_started_is_left(up: Up, sig: signal.Signals):
    started = descendants(up.process.pid)
    assert len(up.workers()) == 2 and len(started) >= 4, describe(started)  # redis, service, 2 workers
    with httpx.Client(base_url=up.url, timeout=10) as client:  # the workers have held a job
        assert client.post("/campaigns", json=valid_body()).status_code == 202
    # The README's bound, with every CPU busy: a worker whose parent is gone (SIGKILL) has STOP_GRACE_S to stop warm.
    bound_s = STOP_GRACE_S + PARENT_CHECK_S + 1.0
    with cpu_hog():
        up.process.send_signal(sig)
        left = wait_gone(started, timeout_s=bound_s)
    assert not left, f"still running {bound_s:g} s after {sig.name}: {describe(left)}"
    assert up.process.wait(5) == (-signal.SIGKILL if sig == signal.SIGKILL else 0)


def test_up_serves_the_queued_design_on_celery_and_echoes_its_processes_logs(tmp_path):
    """`offpath up queued --queue celery`: the workers are ready when they say so in their log, which `up` keeps in a
    file (readiness reads it) and follows in the foreground, each line named by its process."""
    port = free_port()
    process = subprocess.Popen([sys.executable, "-m", "offpath.cli", "up", "queued", "--queue", "celery", "--workers",
                                "1", "--port", str(port)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not http_ok(f"http://127.0.0.1:{port}/healthz"):
            assert process.poll() is None, process.communicate(timeout=10)
            time.sleep(0.2)
        body = json.dumps(valid_body(name="on celery")).encode()
        request = urllib.request.Request(f"http://127.0.0.1:{port}/campaigns", data=body, method="POST",
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=10) as answer:
            assert answer.status == 202
            location = answer.headers["Location"]
        state = None
        while time.monotonic() < deadline and state != "completed":
            with urllib.request.urlopen(f"http://127.0.0.1:{port}{location}", timeout=10) as answer:
                state = json.loads(answer.read())["status"]
            time.sleep(0.2)
        assert state == "completed"
    finally:
        process.send_signal(signal.SIGTERM)
        _, err = process.communicate(timeout=30)
    assert "worker-0 | offpath worker ready: backend=celery" in err and process.returncode == 0
