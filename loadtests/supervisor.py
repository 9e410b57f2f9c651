"""Starts and stops the processes of an experiment (services, RQ workers, Locust), checks they are
ready and still alive, and guarantees that nothing it started outlives it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from loadtests.ports import free_port
from loadtests.process import new_group_dying_with_parent, pin, signal_group


class ProcessDied(RuntimeError):
    pass


class NotReady(RuntimeError):
    pass


@dataclass
class Managed:
    name: str
    role: str
    argv: list[str]
    process: subprocess.Popen
    cpus: list[int] = field(default_factory=list)
    log_path: Path | None = None
    expect_exit: bool = False

    @property
    def pid(self) -> int:
        return self.process.pid

    def alive(self) -> bool:
        return self.process.poll() is None

    def tail(self, lines: int = 20) -> str:
        if self.log_path is None or not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])


def http_ok(url: str, timeout_s: float = 1.0) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as response:
            return 200 <= response.status < 300
    except (urllib.error.URLError, OSError):
        return False


class Supervisor:
    """Owns child processes. Each child leads its own process group (so stopping it stops what it
    forked) and gets SIGTERM from the kernel if this process dies."""

    def __init__(self, log_dir: Path | None = None, env: dict[str, str] | None = None):
        self.log_dir = log_dir
        self.env = {**os.environ, **(env or {})}
        self.children: list[Managed] = []
        self._logs: list[IO[bytes]] = []

    def __enter__(self) -> Supervisor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop_all()

    def start(
        self,
        name: str,
        argv: list[str],
        role: str = "",
        env: dict[str, str] | None = None,
        cpus: list[int] | None = None,
        ready: Callable[[], bool] | None = None,
        ready_timeout_s: float = 30.0,
        expect_exit: bool = False,
    ) -> Managed:
        log_path = None
        if self.log_dir is not None:
            self.log_dir.mkdir(parents=True, exist_ok=True)
            log_path = self.log_dir / f"{name}.log"
            out: IO[bytes] | None = open(log_path, "ab")
            self._logs.append(out)
        else:
            out = None  # inherit: `offpath up` shows the children's logs in the foreground
        process = subprocess.Popen(
            argv,
            env={**self.env, **(env or {})},
            stdout=out,
            stderr=subprocess.STDOUT if out else None,
            stdin=subprocess.DEVNULL,
            preexec_fn=new_group_dying_with_parent,
        )
        managed = Managed(name, role or name, argv, process, log_path=log_path, expect_exit=expect_exit)
        self.children.append(managed)
        if cpus and pin(process.pid, cpus):
            managed.cpus = list(cpus)
        if ready is not None:
            self.wait_ready(managed, ready, ready_timeout_s)
        return managed

    def wait_ready(self, managed: Managed, ready: Callable[[], bool], timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if not managed.alive():
                raise ProcessDied(
                    f"{managed.name} exited with code {managed.process.returncode} before it was ready"
                    + (f":\n{managed.tail()}" if managed.tail() else "")
                )
            if ready():
                return
            time.sleep(0.05)
        tail = managed.tail()
        raise NotReady(f"{managed.name} was not ready within {timeout_s:.0f} s" + (f":\n{tail}" if tail else ""))

    def check(self) -> None:
        """Raise ProcessDied if a child that should be running has exited."""
        for managed in self.children:
            if not managed.expect_exit and not managed.alive():
                raise ProcessDied(
                    f"{managed.name} (pid {managed.pid}) died with code {managed.process.returncode}"
                    + (f":\n{managed.tail()}" if managed.tail() else "")
                )

    def stop(self, managed: Managed, timeout_s: float = 5.0, sig: int = signal.SIGTERM) -> None:
        if managed.alive():
            signal_group(managed.pid, sig)
            try:
                managed.process.wait(timeout_s)
            except subprocess.TimeoutExpired:
                pass
        signal_group(managed.pid, signal.SIGKILL)  # whatever the leader left behind in its group
        if managed.alive():
            managed.process.wait()

    def stop_all(self, timeout_s: float = 5.0) -> None:
        # Reverse start order: load first, then workers, then services.
        for managed in reversed(self.children):
            if managed.alive():
                signal_group(managed.pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout_s
        for managed in reversed(self.children):
            remaining = max(0.0, deadline - time.monotonic())
            try:
                managed.process.wait(remaining)
            except subprocess.TimeoutExpired:
                pass
            signal_group(managed.pid, signal.SIGKILL)
            if managed.alive():
                managed.process.wait()
        for log in self._logs:
            log.close()
        self._logs.clear()

    def layout(self) -> list[dict]:
        return [
            {"name": m.name, "role": m.role, "pid": m.pid, "cpus": m.cpus, "argv": m.argv}
            for m in self.children
        ]


def python() -> str:
    return sys.executable


def start_service(
    supervisor: Supervisor,
    design: str,
    redis_url: str,
    profile: str,
    port: int | None = None,
    processes: int = 1,
    cpus: list[int] | None = None,
    env: dict[str, str] | None = None,
    log_level: str = "warning",
) -> tuple[Managed, str]:
    """Start the inline or queued service under uvicorn on 127.0.0.1 and wait for /healthz."""
    if design not in ("inline", "queued"):
        raise ValueError(f"design must be 'inline' or 'queued', not {design!r}")
    port = port or free_port()
    base_url = f"http://127.0.0.1:{port}"
    argv = [
        python(), "-m", "uvicorn", f"services.{design}.app:app",
        "--host", "127.0.0.1", "--port", str(port),
        "--log-level", log_level, "--no-access-log",
        "--workers", str(processes),
    ]
    managed = supervisor.start(
        f"{design}-service",
        argv,
        role="service",
        env={"REDIS_URL": redis_url, "OFFPATH_PROFILE": profile, **(env or {})},
        cpus=cpus,
        ready=lambda: http_ok(f"{base_url}/healthz"),
    )
    return managed, base_url


def start_workers(
    supervisor: Supervisor,
    count: int,
    redis_url: str,
    profile: str,
    cpus: list[int] | None = None,
    env: dict[str, str] | None = None,
) -> list[Managed]:
    """Start `count` RQ worker processes and wait until each has registered with Redis."""
    import redis as redis_py
    from rq import Worker

    connection = redis_py.Redis.from_url(redis_url)
    before = {w.name for w in Worker.all(connection=connection)}
    started = []
    for index in range(count):
        name = f"offpath-worker-{os.getpid()}-{index}-{time.monotonic_ns() % 1_000_000}"
        started.append(
            supervisor.start(
                f"worker-{index}",
                [python(), "-m", "services.queued.worker", "--name", name],
                role="worker",
                env={"REDIS_URL": redis_url, "OFFPATH_PROFILE": profile, **(env or {})},
                cpus=cpus,
            )
        )
    names = {m.argv[-1] for m in started}

    def all_registered() -> bool:
        return names <= {w.name for w in Worker.all(connection=connection)} - before

    deadline = time.monotonic() + 30
    while not all_registered():
        for managed in started:
            if not managed.alive():
                raise ProcessDied(f"{managed.name} exited with code {managed.process.returncode}:\n{managed.tail()}")
        if time.monotonic() > deadline:
            raise NotReady(f"{count} RQ workers did not all register within 30 s")
        time.sleep(0.05)
    connection.close()
    return started
