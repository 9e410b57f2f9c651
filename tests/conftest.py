"""Real parts for the tests: an embedded Redis for the session, services as uvicorn subprocesses on
free ports, workers (RQ, Celery or Dramatiq) as real processes. Nothing that is measured is mocked. A test marked
`fast` gets none of them: tests/fast_guard.py fails it if it starts a process or connects a socket."""

from __future__ import annotations

import itertools
import os
import signal
import time
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

pytest.register_assert_rewrite("tests.queue_backend_contract")

from offpath.redis_server import RedisServer, connect_redis, start_redis  # noqa: E402
from offpath.serving import start_service, start_workers  # noqa: E402
from offpath.supervisor import Managed, Supervisor, python  # noqa: E402
from services.campaign.profile import ProfileSpec  # noqa: E402
from services.queued.lifetime import READY  # noqa: E402
from tests.fast_guard import kept  # noqa: E402

pytest_plugins = ["pytester"]  # tests/test_fast_guard.py runs small sessions of its own

QUICK_PROFILE = """
name = "quick"
description = "Small, fast work for tests."
seed = 3
[generation]
cpu_ms = 1.0
wait_median_ms = 5.0
wait_p99_ms = 20.0
failure_probability = 0.0
[automation]
cpu_ms = 0.5
wait_median_ms = 2.0
wait_p99_ms = 10.0
failure_probability = 0.0
"""

def profile_file(tmp_path: Path, name: str, generation_wait_ms: float | None = None,
                 generation_failure_probability: float | None = None) -> str:
    """QUICK_PROFILE under another name, in a file of the test's own, its generation's provider wait (median and P99)
    and failure probability set where given."""
    def replaced(text: str, old: str, new: str) -> str:
        assert old in text, f"QUICK_PROFILE no longer holds {old!r}: profile_file would leave it unchanged"
        return text.replace(old, new, 1)  # the first: generation's

    text = replaced(QUICK_PROFILE, 'name = "quick"', f'name = "{name}"')
    if generation_wait_ms is not None:
        text = replaced(text, "wait_median_ms = 5.0\nwait_p99_ms = 20.0",
                        f"wait_median_ms = {generation_wait_ms}\nwait_p99_ms = {generation_wait_ms}")
    if generation_failure_probability is not None:
        text = replaced(text, "failure_probability = 0.0", f"failure_probability = {generation_failure_probability}")
    path = tmp_path / f"{name}.toml"
    path.write_text(text)
    return str(path)


SLOW_PROFILE = QUICK_PROFILE.replace('name = "quick"', 'name = "slow"').replace(
    "wait_median_ms = 5.0\nwait_p99_ms = 20.0", "wait_median_ms = 1000.0\nwait_p99_ms = 1000.0"
)

BROKEN_PROFILE = QUICK_PROFILE.replace('name = "quick"', 'name = "broken"').replace(
    "failure_probability = 0.0", "failure_probability = 1.0", 1
)

# Fast retries keep the failure tests short; the policy's shape (max, backoff) is what is tested.
TEST_ENV = {"OFFPATH_RETRIES": "2", "OFFPATH_RETRY_BACKOFF_S": "1", "OFFPATH_LOG_LEVEL": "WARNING"}

_databases = itertools.count(1)
_returned_databases: list[int] = []  # emptied by launch_for_test's cleanup, reused before a new number is taken


@pytest.hookimpl(wrapper=True)
def pytest_runtest_setup(item: pytest.Item) -> Generator[None, None, None]:
    with kept(item):
        return (yield)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Generator[None, None, None]:
    with kept(item):
        return (yield)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_teardown(item: pytest.Item, nextitem: pytest.Item | None) -> Generator[None, None, None]:
    if nextitem is None or nextitem.parent is not item.parent:
        # Leaving its module (or class, or the session), the teardown also stops what unmarked tests started there.
        return (yield)
    with kept(item):
        return (yield)


@dataclass
class Running:
    """A service under test: its URL, its Redis database, and its processes."""

    url: str
    redis_url: str
    service: Managed
    workers: list[Managed]

    def client(self, **kwargs) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=30, **kwargs)

    def redis(self) -> redis.Redis:
        return redis.Redis.from_url(self.redis_url)

    def data_keys(self) -> set[bytes]:
        """Every key but RQ's worker bookkeeping, which changes on its own."""
        return {k for k in self.redis().scan_iter() if not k.startswith((b"rq:worker", b"rq:workers", b"rq:scheduler"))}


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    url = os.environ.get("REDIS_URL")
    server = connect_redis(url) if url else start_redis(aof="everysec")
    yield server
    server.stop()


@pytest.fixture(scope="session")
def profiles(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    folder = tmp_path_factory.mktemp("profiles")
    paths = {}
    for name, text in {"quick": QUICK_PROFILE, "broken": BROKEN_PROFILE, "slow": SLOW_PROFILE}.items():
        path = folder / f"{name}.toml"
        path.write_text(text)
        paths[name] = str(path)
    paths["none"] = "none"
    return paths


@pytest.fixture(scope="session")
def supervisor(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Supervisor]:
    with Supervisor(log_dir=tmp_path_factory.mktemp("logs"), env=TEST_ENV) as sup:
        yield sup


@pytest.fixture(scope="session")
def launch(redis_server: RedisServer, supervisor: Supervisor) -> Callable[..., Running]:
    """Start a design on a free port, on a fresh Redis database, with `workers` workers of the queue backend
    `backend` (RQ's: started and awaited by the harness; another's: awaited by its ready line)."""

    def _launch(
        design: str, profile: str, workers: int = 0, redis_url: str | None = None, env: dict[str, str] | None = None,
        backend: str = "rq",
    ) -> Running:
        db_url = redis_url or _with_db(
            redis_server.url, _returned_databases.pop() if _returned_databases else next(_databases))
        redis.Redis.from_url(db_url).flushdb()
        spec = ProfileSpec.parse(profile)
        env = {**(env or {}), "OFFPATH_QUEUE_BACKEND": backend}
        service, url = start_service(supervisor, design, db_url, spec, env=env)
        if backend == "rq":
            started = start_workers(supervisor, workers, db_url, spec, env=env) if workers else []
        else:
            started = start_queue_workers(supervisor, workers, db_url, str(spec), env)
        return Running(url=url, redis_url=db_url, service=service, workers=started)

    return _launch


@pytest.fixture
def own_redis() -> Iterator[RedisServer]:
    """A Redis of the test's own, every write on disk before it answers (AOF always): the test may crash it (kill,
    restart) or stop it (SIGSTOP); it is let go on (SIGCONT) and stopped at the end."""
    server = start_redis(aof="always")
    yield server
    if server.process is not None:
        server.process.send_signal(signal.SIGCONT)
    server.stop()


@pytest.fixture
def launch_for_test(launch: Callable[..., Running], supervisor: Supervisor, redis_server: RedisServer
                    ) -> Iterator[Callable[..., Running]]:
    """`launch`, for tests that start many deployments (the queue-backend contract): what a test launched stops when
    it ends, and its Redis database, emptied, is reused, so that idle workers do not pile up in the session (they poll)
    nor use up the server's databases."""
    launched: list[Running] = []

    def _launch(*args, **kwargs) -> Running:
        running = launch(*args, **kwargs)
        launched.append(running)
        return running

    yield _launch
    for running in launched:
        stop_launched(supervisor, redis_server, running)


def stop_launched(supervisor: Supervisor, redis_server: RedisServer, running: Running) -> None:
    """Stop a launched deployment's processes, empty its database and give the database back for reuse."""
    for managed in [*running.workers, running.service]:
        supervisor.stop(managed)
    base, _, db = running.redis_url.rpartition("/")
    if base == redis_server.url.rpartition("/")[0] and db.isdigit():
        running.redis().flushdb()
        _returned_databases.append(int(db))


def start_queue_workers(supervisor: Supervisor, count: int, redis_url: str, profile: str,
                        env: dict[str, str]) -> list[Managed]:
    """Start `count` workers (`python -m services.queued.worker`, the backend OFFPATH_QUEUE_BACKEND in `env` names)
    and wait until each has written its ready line."""
    started = []
    for _ in range(count):
        name = f"worker-{os.getpid()}-{time.monotonic_ns() % 10_000_000}"
        started.append(supervisor.start(
            name, [python(), "-m", "services.queued.worker", "--name", name], role="worker",
            env={"REDIS_URL": redis_url, "OFFPATH_PROFILE": profile, **env}))
    for managed in started:
        supervisor.wait_ready(managed, lambda managed=managed: READY in managed.tail(1000), 30)  # type: ignore[misc]
    return started


def _with_db(url: str, db: int) -> str:
    base = url.rsplit("/", 1)[0] if url.count("/") > 2 else url
    return f"{base}/{db}"


def valid_body(**overrides) -> dict:
    body = {
        "name": "Spring launch",
        "audience": {"segment": "trial-users", "size": 1200},
        "channels": ["email", "push"],
        "follow_ups": 2,
    }
    body.update(overrides)
    return body


def project_root() -> Path:
    return Path(__file__).resolve().parent.parent


def until(predicate: Callable[[], Any], timeout_s: float, every_s: float = 0.02) -> Any:
    """The first true value `predicate` returns, polled every `every_s`; an AssertionError after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(every_s)
    raise AssertionError(f"not within {timeout_s} s")


def stored_campaign(connection: redis.Redis, campaign_id: str) -> dict[str, str]:
    """A campaign's state hash as the services keep it in Redis, decoded."""
    return {k.decode(): v.decode() for k, v in connection.hgetall(f"offpath:campaign:{campaign_id}").items()}
