"""Starts and stops the processes of an experiment (services, RQ workers, Locust), checks they are
ready and still alive, replaces the ones whose policy says so, and guarantees that nothing it
started outlives it."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from foundation.errors import HarnessError
from offpath.placement import Placer, cpus_allowed
from offpath.process import new_group_dying_with_parent, pin, signal_group

log = logging.getLogger("offpath.supervisor")


class ProcessDied(HarnessError):
    """A process the harness started exited when it should be running."""


class NotReady(HarnessError):
    """A process the harness started did not become ready in time."""


@dataclass(frozen=True)
class Restart:
    """Replace a child that exits on its own, as `rq worker-pool` and process managers do: after a
    pause that starts at first_delay_s and doubles up to max_delay_s while the child keeps dying,
    back to first_delay_s once a child has run stable_after_s."""

    first_delay_s: float = 0.5
    max_delay_s: float = 30.0
    stable_after_s: float = 30.0

    def delay_s(self, previous_s: float | None, ran_s: float) -> float:
        """The pause before the next start, given the last pause and how long the child ran."""
        if previous_s is None or ran_s >= self.stable_after_s:
            return self.first_delay_s
        return min(previous_s * 2, self.max_delay_s)


# The placement tier each supervised role runs in (offpath/placement.py); Redis is placed by whoever starts it.
ROLE_TIERS = {"service": "web", "worker": "workers", "load": "load"}


@dataclass
class Managed:
    name: str
    role: str
    argv: list[str]
    process: subprocess.Popen
    cpus: list[int] = field(default_factory=list)
    log_path: Path | None = None
    # Where this process's output begins in log_path: a log is named by its process's name and appended to, so a name
    # started again (a later cell's, a later test's) finds the earlier ones' lines before it.
    log_start: int = 0
    expect_exit: bool = False
    restart: Restart | None = None  # None: its death is a fault (check() raises ProcessDied)
    # The command of a replacement, e.g. with a new RQ worker name; None: argv again.
    fresh_argv: Callable[[], list[str]] | None = None
    env: dict[str, str] = field(default_factory=dict)
    cwd: Path | None = None  # where it starts (and a replacement starts again); None: this process's folder
    started_at: float = field(default_factory=time.monotonic)
    restarts: int = 0
    restart_at: float | None = None  # when a replacement is due, while the child is down
    last_delay_s: float | None = None

    @property
    def pid(self) -> int:
        return self.process.pid

    def alive(self) -> bool:
        return self.process.poll() is None

    def log_text(self) -> str:
        """What this process (and any replacement of it) has written to its log, or "" without one."""
        if self.log_path is None:
            return ""
        try:
            with open(self.log_path, "rb") as log:
                log.seek(self.log_start)
                return log.read().decode(errors="replace")
        except OSError:
            return ""

    def tail(self, lines: int = 20) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:])


def http_ok(url: str, timeout_s: float = 1.0) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as response:
            return 200 <= response.status < 300
    except (urllib.error.URLError, OSError):
        return False


class Supervisor:
    """Owns child processes. Each child leads its own process group (so stopping it stops what it
    forked) and gets SIGTERM from the kernel if this process dies."""

    def __init__(self, log_dir: Path | None = None, env: dict[str, str] | None = None, placer: Placer | None = None,
                 echo: IO[str] | None = None):
        self.log_dir = log_dir
        self.env = {**os.environ, **(env or {})}
        self.children: list[Managed] = []
        self._logs: dict[Path, IO[bytes]] = {}
        # With a placer, every child runs in its role's tier (CPU set, budget, CPU accounting) from its first
        # instruction: it is placed between fork and exec, and a replacement is placed again.
        self.placer = placer
        # With echo (`offpath up`), the children's logs are also followed onto it as they grow: in the foreground for
        # the person watching, and still in files, which readiness checks read (a worker's "ready" line).
        self._echo = LogEcho(echo) if echo is not None and log_dir is not None else None

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
        restart: Restart | None = None,
        fresh_argv: Callable[[], list[str]] | None = None,
        cwd: Path | None = None,
    ) -> Managed:
        log_path = self.log_dir / f"{name}.log" if self.log_dir is not None else None
        log_start = log_path.stat().st_size if log_path is not None and log_path.exists() else 0
        process = self._spawn(argv, env or {}, log_path, role or name, cwd)
        managed = Managed(name, role or name, argv, process, log_path=log_path, log_start=log_start,
                          expect_exit=expect_exit,
                          restart=restart, fresh_argv=fresh_argv, env=dict(env or {}), cwd=cwd)
        self.children.append(managed)
        if cpus and pin(process.pid, cpus):
            managed.cpus = list(cpus)
        if ready is not None:
            self.wait_ready(managed, ready, ready_timeout_s)
        return managed

    def _spawn(self, argv: list[str], env: dict[str, str], log_path: Path | None, role: str,
               cwd: Path | None = None) -> subprocess.Popen:
        out: IO[bytes] | None = None  # inherit: `offpath up` shows the children's logs in the foreground
        if log_path is not None:
            log_path.parent.mkdir(parents=True, exist_ok=True)
            if log_path not in self._logs:
                self._logs[log_path] = open(log_path, "ab")
                if self._echo is not None:
                    self._echo.follow(log_path)
            out = self._logs[log_path]
        tier = ROLE_TIERS.get(role) if self.placer is not None else None
        setup = self.placer.preexec(tier, then=new_group_dying_with_parent) if self.placer and tier \
            else new_group_dying_with_parent
        process = subprocess.Popen(
            argv,
            env={**self.env, **env},
            stdout=out,
            stderr=subprocess.STDOUT if out else None,
            stdin=subprocess.DEVNULL,
            preexec_fn=setup,
            cwd=cwd,
        )
        if self.placer is not None and tier is not None:
            self.placer.add(tier, process.pid)  # tracked for the manifest and the /proc CPU fallback
        return process

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
        """Raise ProcessDied if a child that should be running has exited, unless its restart policy
        says to replace it: then replace it once its pause is over (call check() periodically)."""
        for managed in self.children:
            if managed.expect_exit or managed.alive():
                continue
            if managed.restart is None:
                raise ProcessDied(
                    f"{managed.name} (pid {managed.pid}) died with code {managed.process.returncode}"
                    + (f":\n{managed.tail()}" if managed.tail() else "")
                )
            self._replace(managed)

    def _replace(self, managed: Managed) -> None:
        assert managed.restart is not None
        now = time.monotonic()
        if managed.restart_at is None:
            # Its group may hold what it forked (RQ's scheduler process): gone with it, as in stop().
            signal_group(managed.pid, signal.SIGKILL)
            delay_s = managed.restart.delay_s(managed.last_delay_s, now - managed.started_at)
            managed.last_delay_s, managed.restart_at = delay_s, now + delay_s
            log.warning("%s (pid %d) died with code %s; restarting it in %.1f s",
                        managed.name, managed.pid, managed.process.returncode, delay_s)
            return
        if now < managed.restart_at:
            return
        if managed.fresh_argv is not None:
            managed.argv = managed.fresh_argv()
        managed.process = self._spawn(managed.argv, managed.env, managed.log_path, managed.role, managed.cwd)
        if managed.cpus:
            pin(managed.pid, managed.cpus)
        managed.started_at, managed.restart_at = time.monotonic(), None
        managed.restarts += 1
        log.warning("restarted %s as pid %d (restart %d)", managed.name, managed.pid, managed.restarts)

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
        for out in self._logs.values():
            out.close()
        self._logs.clear()
        if self._echo is not None:
            self._echo.stop()

    def layout(self) -> list[dict]:
        return [
            # Placed children run where their tier was put: read back from the kernel, not what was asked for.
            {"name": m.name, "role": m.role, "pid": m.pid,
             "cpus": cpus_allowed(m.pid) if self.placer is not None and m.alive() else m.cpus, "argv": m.argv}
            for m in self.children
        ]


class LogEcho:
    """Follows log files onto a stream (each line prefixed with the file's name), from a thread, every 0.2 s."""

    def __init__(self, stream: IO[str]):
        self.stream = stream
        self._offsets: dict[Path, int] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="log-echo", daemon=True)

    def follow(self, path: Path) -> None:
        self._offsets.setdefault(path, 0)
        if not self._thread.is_alive() and not self._stop.is_set():
            self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(0.2):
            self._drain()

    def _drain(self) -> None:
        for path, offset in list(self._offsets.items()):
            try:
                with open(path, "rb") as f:
                    f.seek(offset)
                    data = f.read()
            except OSError:
                continue
            cut = data.rfind(b"\n") + 1  # whole lines only: the rest waits for its end
            if not cut:
                continue
            self._offsets[path] = offset + cut
            for line in data[:cut].decode(errors="replace").splitlines():
                print(f"{path.stem} | {line}", file=self.stream, flush=True)

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=2)
        self._drain()


def python() -> str:
    return sys.executable
