"""Faults the chaos experiment injects into a running queued (or inline) system, at a set time."""

from __future__ import annotations

import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import redis as redis_py
from rq import Worker

from offpath.redis_server import RedisServer
from offpath.supervisor import Managed, Supervisor

FAULT_KINDS = ("none", "kill-worker", "restart-redis", "slow-redis")


@dataclass
class FaultLog:
    """What was done, when (seconds since the cell started), and what it hit."""

    events: list[dict] = field(default_factory=list)

    def add(self, t_s: float, what: str, **details: object) -> None:
        self.events.append({"t_s": round(t_s, 3), "what": what, **details})


def kill_worker_mid_job(
    supervisor: Supervisor, workers: list[Managed], redis_url: str, log: FaultLog, t0: float,
    replace: Callable[[], Managed],
) -> None:
    """SIGKILL a worker that is running a job right now (waiting up to 5 s for one to be busy), then
    start a replacement, as a process manager would. The killed job is left to RQ to recover."""
    connection = redis_py.Redis.from_url(redis_url)
    deadline = time.monotonic() + 5
    victim, job_id = None, None
    while time.monotonic() < deadline and victim is None:
        by_name = {w.name: w for w in Worker.all(connection=connection)}
        for managed in workers:
            name = managed.argv[managed.argv.index("--name") + 1]
            worker = by_name.get(name)
            current = worker.get_current_job_id() if worker else None
            if managed.alive() and current:
                victim, job_id = managed, current
                break
        else:
            time.sleep(0.01)
    if victim is None:
        victim = next(m for m in workers if m.alive())
    victim.process.send_signal(signal.SIGKILL)
    victim.process.wait()
    victim.expect_exit = True
    log.add(time.time() - t0, "SIGKILL worker", worker=victim.name, pid=victim.pid, job=job_id)
    workers.append(replace())
    log.add(time.time() - t0, "started replacement worker")


def restart_redis(server: RedisServer, down_s: float, log: FaultLog, t0: float) -> None:
    """SIGKILL Redis (a crash, not a clean shutdown), keep it down for down_s, restart it from its AOF."""
    server.kill()
    log.add(time.time() - t0, "SIGKILL redis-server", aof=server.aof)
    time.sleep(down_s)
    server.restart()
    log.add(time.time() - t0, "redis-server restarted from its AOF")


def slow_redis(redis_url: str, stall_ms: int, for_s: float, log: FaultLog, t0: float) -> None:
    """Stall Redis for stall_ms once a second for for_s seconds (DEBUG SLEEP blocks the server)."""
    connection = redis_py.Redis.from_url(redis_url, socket_timeout=stall_ms / 1000 + 5)
    log.add(time.time() - t0, "slow redis: start", stall_ms=stall_ms, for_s=for_s)
    end = time.monotonic() + for_s
    while time.monotonic() < end:
        connection.execute_command("DEBUG", "SLEEP", f"{stall_ms / 1000:.3f}")
        time.sleep(max(0.0, 1.0 - stall_ms / 1000))
    log.add(time.time() - t0, "slow redis: end")
