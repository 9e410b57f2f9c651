"""The queue adapters for Celery, Dramatiq and arq, each against its real library and a real Redis: work enqueued
with the library's own producer and no worker is the depth; a real worker drains it to 0 and shows ready; work held
for its time is scheduled; failures are counted where the broker keeps them; reading changes nothing."""

from __future__ import annotations

import itertools
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis

from offpath.queues.adapter import QueueAdapter, QueueState
from offpath.queues.arq import ArqQueue
from offpath.queues.celery import CeleryQueue
from offpath.queues.dramatiq import DramatiqQueue
from offpath.redis_server import RedisServer
from offpath.supervisor import Managed, Supervisor
from tests.conftest import project_root

ROOT = project_root()
ARQ_VENV = ROOT / ".arq-venv"
ARQ_REQUIREMENT = "arq==0.28.0"
_databases = itertools.count(40)  # clear of conftest's databases, which count up from 1


@pytest.fixture
def broker_url(redis_server: RedisServer) -> str:
    url = f"{redis_server.url.rsplit('/', 1)[0]}/{next(_databases) % 64}"
    redis.Redis.from_url(url).flushdb()
    return url


@pytest.fixture
def workers(tmp_path: Path) -> Iterator[Supervisor]:
    with Supervisor(log_dir=tmp_path / "logs") as supervisor:
        yield supervisor


def start(supervisor: Supervisor, name: str, argv: list[str], broker_url: str) -> Managed:
    return supervisor.start(name, argv, role="worker", env={"BROKER_URL": broker_url}, cwd=ROOT)


def wait_for(what: str, check: Callable[[], bool], timeout_s: float = 30.0, worker: Managed | None = None) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if check():
            return
        if worker is not None and not worker.alive():
            pytest.fail(f"{worker.name} exited with {worker.process.returncode}:\n{worker.tail()}")
        time.sleep(0.1)
    pytest.fail(f"{what} did not happen within {timeout_s:g} s" + (f"; worker log:\n{worker.tail()}" if worker else ""))


def drain(adapter: QueueAdapter, worker: Managed, until: Callable[[QueueState], bool],
          timeout_s: float = 30.0) -> list[QueueState]:
    """Read the queue every 0.1 s until `until` holds; every reading taken."""
    seen: list[QueueState] = []

    def done() -> bool:
        seen.append(adapter.read())
        return until(seen[-1])

    wait_for("the drain", done, timeout_s, worker)
    return seen


def snapshot(url: str) -> dict[bytes, bytes | None]:
    """Every key's serialized value: what a read must leave as it found it."""
    connection = redis.Redis.from_url(url)
    return {key: connection.dump(key) for key in sorted(connection.scan_iter())}


# -- Celery ------------------------------------------------------------------------------------------------------

CELERY_WORKER = [sys.executable, "-m", "celery", "-A", "tests.queue_apps.celery_tasks", "worker", "--pool", "solo",
                 "--without-gossip", "--without-mingle", "--loglevel", "WARNING", "-n", "adapter-test@%h"]


def celery_producer(url: str):  # type: ignore[no-untyped-def]
    from celery import Celery

    return Celery("producer", broker=url, set_as_current=False)


def test_celery_backlog_is_its_lists_until_a_worker_drains_it(broker_url, workers):
    producer = celery_producer(broker_url)
    adapter = CeleryQueue(broker_url, "jobs")
    for number in range(10):
        # Some with a priority: kombu keeps those in sub-lists of the queue.
        producer.send_task("nap", args=[0.2], queue="jobs", priority=6 if number % 3 == 0 else None)
    producer.send_task("fail", queue="jobs")
    before = snapshot(broker_url)
    state = adapter.read()
    assert (state.depth, state.started, state.scheduled, state.workers) == (11, 0, 0, 0)
    assert snapshot(broker_url) == before
    assert not adapter.workers_ready(1)

    worker = start(workers, "celery-worker", CELERY_WORKER, broker_url)
    wait_for("the worker's readiness", lambda: adapter.workers_ready(1), worker=worker)
    seen = drain(adapter, worker, lambda s: s.backlog == 0)
    assert max(s.started for s in seen) == 1  # one task at a time on the solo pool, late-acked while it runs
    assert [s.depth for s in seen] == sorted((s.depth for s in seen), reverse=True)
    # A failed task is acknowledged like any other: the broker keeps no count of failures.
    assert seen[-1].workers == 1 and seen[-1].failed_total is None
    producer.close()
    adapter.close()


def test_celery_task_held_for_its_eta_is_scheduled_and_returns_to_the_list_when_the_worker_stops(broker_url, workers):
    producer = celery_producer(broker_url)
    adapter = CeleryQueue(broker_url, "jobs")
    worker = start(workers, "celery-worker", CELERY_WORKER, broker_url)
    wait_for("the worker's readiness", lambda: adapter.workers_ready(1), worker=worker)
    producer.send_task("nap", args=[0.0], queue="jobs", countdown=60)
    drain(adapter, worker, lambda s: s.scheduled == 1 and s.depth == 0 and s.started == 0)
    workers.stop(worker)  # a warm stop: the worker hands back what it held and unbinds its mailbox
    state = adapter.read()
    assert (state.depth, state.scheduled, state.started, state.workers) == (1, 0, 0, 0)
    producer.close()
    adapter.close()


# -- Dramatiq ----------------------------------------------------------------------------------------------------

DRAMATIQ_WORKER = [sys.executable, "-m", "dramatiq", "tests.queue_apps.dramatiq_tasks", "--processes", "1",
                   "--threads", "2"]


def dramatiq_send(url: str, actor: str, *args: object, delay_ms: int | None = None) -> None:
    from dramatiq import Message
    from dramatiq.brokers.redis import RedisBroker

    broker = RedisBroker(url=url)
    broker.enqueue(Message(queue_name="jobs", actor_name=actor, args=args, kwargs={}, options={}), delay=delay_ms)
    broker.close()


def test_dramatiq_backlog_delays_and_dead_letters(broker_url, workers):
    adapter = DramatiqQueue(broker_url, "jobs")
    for _ in range(8):
        dramatiq_send(broker_url, "nap", 0.2)
    dramatiq_send(broker_url, "fail")
    dramatiq_send(broker_url, "nap", 0.0, delay_ms=1500)
    before = snapshot(broker_url)
    state = adapter.read()
    assert (state.depth, state.started, state.scheduled, state.failed_total, state.workers) == (9, 0, 1, 0, None)
    assert snapshot(broker_url) == before

    worker = start(workers, "dramatiq-worker", DRAMATIQ_WORKER, broker_url)
    wait_for("the worker's readiness", lambda: adapter.workers_ready(1), worker=worker)
    seen = drain(adapter, worker, lambda s: s.backlog == 0)
    assert max(s.started for s in seen) >= 2  # two threads, and messages prefetched beside them
    # The delayed message ran once its time came; the failing one was dead-lettered, the broker's count of failures.
    assert seen[-1].failed_total == 1
    adapter.close()


def test_dramatiq_namespace_is_read_from_the_queue_name(broker_url):
    redis.Redis.from_url(broker_url).rpush("shop:orders", "a", "b")
    adapter = DramatiqQueue(broker_url, "shop:orders")
    assert adapter.read().depth == 2
    adapter.close()


# -- arq ---------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def arq_python() -> str:
    """The interpreter of a venv with arq 0.28 (it pins redis-py < 6, offpath runs 8): made once at .arq-venv."""
    python = ARQ_VENV / "bin" / "python"
    if not _has_arq(python):
        try:
            subprocess.run([sys.executable, "-m", "venv", "--clear", str(ARQ_VENV)], check=True, capture_output=True,
                           timeout=120)
            subprocess.run([str(python), "-m", "pip", "install", "-q", ARQ_REQUIREMENT], check=True,
                           capture_output=True, timeout=300)
        except (OSError, subprocess.SubprocessError) as exc:
            detail = getattr(exc, "stderr", b"") or b""
            pytest.skip(f"cannot make a venv with {ARQ_REQUIREMENT} at {ARQ_VENV}: {exc} "
                        f"{detail.decode(errors='replace').strip()[-300:]}")
        if not _has_arq(python):
            pytest.skip(f"the venv at {ARQ_VENV} has no importable arq after installing {ARQ_REQUIREMENT}")
    return str(python)


def _has_arq(python: Path) -> bool:
    if not python.is_file():
        return False
    return subprocess.run([str(python), "-c", "import arq"], capture_output=True, timeout=60).returncode == 0


def arq_enqueue(arq_python: str, url: str, job: str, count: int, defer_s: float = 0.0) -> None:
    subprocess.run([arq_python, "-m", "tests.queue_apps.arq_tasks", job, str(count), str(defer_s)], check=True,
                   cwd=ROOT, env={"BROKER_URL": url, "PATH": "/usr/bin:/bin"}, timeout=60)


def test_arq_backlog_started_and_retries_waiting_for_their_time(arq_python, broker_url, workers):
    adapter = ArqQueue(broker_url, "arq:queue")
    arq_enqueue(arq_python, broker_url, "nap", 6)
    arq_enqueue(arq_python, broker_url, "nap", 1, defer_s=60)
    arq_enqueue(arq_python, broker_url, "postpone", 1)
    before = snapshot(broker_url)
    state = adapter.read()
    assert (state.depth, state.started, state.scheduled) == (7, 0, 1)
    assert state.failed_total is None and state.workers is None
    assert snapshot(broker_url) == before
    assert not adapter.workers_ready(1)

    worker = start(workers, "arq-worker", [arq_python, "-m", "arq", "tests.queue_apps.arq_tasks.WorkerSettings"],
                   broker_url)
    wait_for("the worker's readiness", lambda: adapter.workers_ready(1), worker=worker)
    assert not adapter.workers_ready(2)  # one health-check key for all workers: arq cannot say how many
    # The deferred job waits for its time; the postponed one asked to run again in a minute.
    seen = drain(adapter, worker, lambda s: s.depth == 0 and s.started == 0 and s.scheduled == 2)
    assert max(s.started for s in seen) == 2  # the worker's max_jobs
    adapter.close()
