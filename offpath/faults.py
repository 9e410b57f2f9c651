"""Faults the chaos experiment injects into a running queued (or inline) system, at a set time."""

from __future__ import annotations

import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC

import redis as redis_py
from rq import Worker
from rq.exceptions import NoSuchJobError
from rq.job import Job
from rq.serializers import JSONSerializer

from offpath.redis_server import RedisServer
from offpath.relay import TcpRelay
from offpath.supervisor import Managed

FAULT_KINDS = ("none", "kill-worker", "stop-worker", "restart-redis", "pause-redis", "slow-redis", "partition",
               "maxmemory", "client-disconnect")


@dataclass
class FaultLog:
    """What was done, when (seconds since the cell started), and what it hit."""

    events: list[dict] = field(default_factory=list)

    def add(self, t_s: float, what: str, **details: object) -> None:
        self.events.append({"t_s": round(t_s, 3), "what": what, **details})


def busy_worker(workers: list[Managed], redis_url: str, avoid: set[str], wait_s: float = 5.0) -> tuple[Managed, str | None]:
    """A live worker that is running a job right now, one not in `avoid` (waiting up to wait_s for one), or, with
    none busy, any live worker."""
    connection = redis_py.Redis.from_url(redis_url)
    deadline = time.monotonic() + wait_s
    try:
        while time.monotonic() < deadline:
            by_name = {w.name: w for w in Worker.all(connection=connection)}
            for managed in workers:
                worker = by_name.get(managed.argv[managed.argv.index("--name") + 1])
                current = worker.get_current_job_id() if worker else None
                if managed.alive() and current and current not in avoid:
                    return managed, current
            time.sleep(0.01)
    finally:
        connection.close()
    return next(m for m in workers if m.alive()), None


def kill_workers_mid_job(
    workers: list[Managed], redis_url: str, log: FaultLog, t0: float, replace: Callable[[], Managed],
    kills: int, every_s: float,
) -> None:
    """SIGKILL a worker that is running a job, `kills` times, every_s apart, each time starting a replacement, as a
    process manager would. The killed jobs are left to the queued design to recover; each kill's job is one no earlier
    kill hit, so each recovery is measured once (recovery_times)."""
    hit: set[str] = set()
    for number in range(kills):
        if number:
            time.sleep(every_s)
        victim, job_id = busy_worker(workers, redis_url, avoid=hit)
        victim.process.send_signal(signal.SIGKILL)
        killed_at = time.time()
        victim.process.wait()
        victim.expect_exit = True
        if job_id:
            hit.add(job_id)
        log.add(killed_at - t0, "SIGKILL worker", worker=victim.name, pid=victim.pid, job=job_id, at=killed_at)
        workers.append(replace())


def recovery_times(redis_url: str, events: list[dict]) -> list[float | None]:
    """For each SIGKILL that hit a job: seconds from the kill until the job started again (RQ's `started_at` of its
    latest delivery), None if it never did."""
    connection = redis_py.Redis.from_url(redis_url)
    times: list[float | None] = []
    try:
        for event in events:
            if event["what"] != "SIGKILL worker" or not event.get("job"):
                continue
            try:
                started = Job.fetch(event["job"], connection=connection, serializer=JSONSerializer).started_at
            except NoSuchJobError:
                started = None
            if started is not None and started.tzinfo is None:
                started = started.replace(tzinfo=UTC)
            again = started.timestamp() - event["at"] if started is not None else None
            times.append(round(again, 3) if again is not None and again > 0 else None)
    finally:
        connection.close()
    return times


def stop_worker_mid_job(
    workers: list[Managed], redis_url: str, log: FaultLog, t0: float, replace: Callable[[], Managed], grace_s: float,
) -> None:
    """SIGTERM a worker that is running a job (a warm shutdown: RQ finishes the job, then exits) and see it go within
    grace_s; then start a replacement. A worker still there after the grace period is killed, and that is logged."""
    victim, job_id = busy_worker(workers, redis_url, avoid=set())
    victim.process.send_signal(signal.SIGTERM)
    stopped_at = time.time()
    log.add(stopped_at - t0, "SIGTERM worker", worker=victim.name, pid=victim.pid, job=job_id, at=stopped_at)
    victim.expect_exit = True
    try:
        victim.process.wait(grace_s)
        exited = "exited"
    except subprocess.TimeoutExpired:
        victim.process.kill()
        victim.process.wait()
        exited = "killed after the grace period"
    status = _job_status(redis_url, job_id)
    log.add(time.time() - t0, f"worker {exited}", after_s=round(time.time() - stopped_at, 2), grace_s=grace_s,
            job=job_id, job_status=status, exit_code=victim.process.returncode)
    workers.append(replace())


def _job_status(redis_url: str, job_id: str | None) -> str | None:
    if job_id is None:
        return None
    connection = redis_py.Redis.from_url(redis_url)
    try:
        return Job.fetch(job_id, connection=connection, serializer=JSONSerializer).get_status().value
    except NoSuchJobError:
        return None
    finally:
        connection.close()


def restart_redis(server: RedisServer, down_s: float, log: FaultLog, t0: float) -> None:
    """SIGKILL Redis (a crash, not a clean shutdown), keep it down for down_s, restart it from its AOF."""
    server.kill()
    log.add(time.time() - t0, "SIGKILL redis-server", aof=server.aof)
    time.sleep(down_s)
    server.restart()
    log.add(time.time() - t0, "redis-server restarted from its AOF")


def pause_redis(server: RedisServer, for_s: float, log: FaultLog, t0: float) -> None:
    """Freeze redis-server (SIGSTOP) for for_s, then let it go on (SIGCONT): a stall no client can tell from a dead
    server while it lasts, and after which every timestamp written before it looks stale."""
    if server.process is None:
        raise RuntimeError("pause-redis needs a redis-server offpath started (not one from REDIS_URL)")
    server.process.send_signal(signal.SIGSTOP)
    log.add(time.time() - t0, "SIGSTOP redis-server", for_s=for_s)
    try:
        time.sleep(for_s)
    finally:
        server.process.send_signal(signal.SIGCONT)
    log.add(time.time() - t0, "SIGCONT redis-server")


def partition(relay: TcpRelay, for_s: float, log: FaultLog, t0: float) -> None:
    """Cut the connection between the workers and Redis (the relay they reach it through) for for_s, then restore it."""
    relay.cut()
    log.add(time.time() - t0, "partition: workers cut off from Redis", for_s=for_s)
    try:
        time.sleep(for_s)
    finally:
        relay.restore()
    log.add(time.time() - t0, "partition healed", **asdict(relay.stats()))


def fill_memory(redis_url: str, for_s: float, log: FaultLog, t0: float) -> None:
    """Put Redis at its memory limit (`maxmemory` just above what it uses, `noeviction`: every write that would grow
    it is refused) for for_s, then lift the limit, as an operator freeing memory would."""
    connection = redis_py.Redis.from_url(redis_url)
    try:
        used = int(connection.info("memory")["used_memory"])
        connection.config_set("maxmemory-policy", "noeviction")
        connection.config_set("maxmemory", str(used + 64 * 1024))
        log.add(time.time() - t0, "maxmemory reached (noeviction)", maxmemory=used + 64 * 1024)
        try:
            time.sleep(for_s)
        finally:
            connection.config_set("maxmemory", "0")
        log.add(time.time() - t0, "maxmemory lifted")
    finally:
        connection.close()


def slow_redis(redis_url: str, stall_ms: int, for_s: float, log: FaultLog, t0: float) -> None:
    """Stall Redis for stall_ms once a second for for_s seconds (DEBUG SLEEP blocks the server)."""
    connection = redis_py.Redis.from_url(redis_url, socket_timeout=stall_ms / 1000 + 5)
    log.add(time.time() - t0, "slow redis: start", stall_ms=stall_ms, for_s=for_s)
    end = time.monotonic() + for_s
    while time.monotonic() < end:
        connection.execute_command("DEBUG", "SLEEP", f"{stall_ms / 1000:.3f}")
        time.sleep(max(0.0, 1.0 - stall_ms / 1000))
    log.add(time.time() - t0, "slow redis: end")
