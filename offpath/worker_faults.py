"""What the chaos experiment does to a design's workers: SIGKILL one busy worker at a time or every worker at once,
SIGTERM one mid-job, freeze one (SIGSTOP) past the abandonment threshold; and, on RQ, which jobs each kill hit and how
soon each ran again. The fault kinds that call these, and their keys, are in offpath/faults.py."""

from __future__ import annotations

import signal
import subprocess
import time
from collections.abc import Callable
from datetime import UTC

import redis as redis_py
from rq import Worker
from rq.exceptions import NoSuchJobError
from rq.executions import WORKER_EXECUTIONS_KEY_TEMPLATE
from rq.job import Job
from rq.serializers import JSONSerializer
from rq.utils import parse_composite_key

from foundation.redis_replies import text
from offpath.fault_log import FaultLog
from offpath.supervisor import Managed

__all__ = ["busy_worker", "freeze_worker_mid_job", "kill_all_workers", "kill_workers_mid_job", "recovery_times",
           "stop_worker_mid_job"]


def busy_worker(workers: list[Managed], redis_url: str | None, avoid: set[str],
                wait_s: float = 5.0) -> tuple[Managed, str | None]:
    """A live worker that is running a job right now, one not in `avoid` (waiting up to wait_s for one), or, with
    none busy — or no RQ registry to tell (`redis_url` None) — the live worker started longest ago."""
    if redis_url is None:
        return next(m for m in workers if m.alive()), None
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
    workers: list[Managed], redis_url: str | None, log: FaultLog, t0: float, replace: Callable[[], Managed],
    kills: int, every_s: float,
) -> None:
    """SIGKILL a worker that is running a job, `kills` times, every_s apart, each time starting a replacement, as a
    process manager would. The killed jobs are left to the queued design to recover; each kill's job is one no earlier
    kill hit, so each recovery is measured once (recovery_times).

    The job a kill hit is read after the kill, from the dead worker's own record of what it was running (RQ's
    execution index of the worker, which nothing changes once it is dead): the job seen before the kill may have
    finished in the meantime, and a short one often has, which read as "a killed job never ran again". A kill that
    found its worker between jobs is logged as a miss, and another worker is killed in its place (up to
    _KILL_TRIES times)."""
    hit: set[str] = set()
    for number in range(kills):
        if number:
            time.sleep(every_s)
        for _ in range(_KILL_TRIES):
            victim, seen = busy_worker(workers, redis_url, avoid=hit)
            victim.process.send_signal(signal.SIGKILL)
            killed_at = time.time()
            victim.process.wait()
            victim.expect_exit = True
            job_id = _held_at_death(redis_url, victim) if redis_url is not None and seen else seen
            if job_id:
                hit.add(job_id)
            what = "SIGKILL worker" if job_id or redis_url is None else "SIGKILL worker (between jobs: a miss)"
            log.add(killed_at - t0, what, worker=victim.name, pid=victim.pid, job=job_id, at=killed_at)
            workers.append(replace())
            if job_id or redis_url is None:
                break


_KILL_TRIES = 5


def _held_at_death(redis_url: str, victim: Managed) -> str | None:
    """The job a dead RQ worker was running when it died, from its execution index."""
    name = victim.argv[victim.argv.index("--name") + 1]
    connection = redis_py.Redis.from_url(redis_url)
    try:
        entries = connection.smembers(WORKER_EXECUTIONS_KEY_TEMPLATE.format(name))
    finally:
        connection.close()
    jobs = sorted(parse_composite_key(text(entry))[0] for entry in entries)
    return jobs[0] if jobs else None


def kill_all_workers(
    workers: list[Managed], redis_url: str | None, log: FaultLog, t0: float, replace: Callable[[], Managed],
    kills: int, every_s: float,
) -> list[float | None]:
    """SIGKILL every live worker at once, `kills` times, every_s apart, replacing each at once. With RQ's registries to
    read (`redis_url`), the jobs in flight at each kill (started, or dequeued into RQ's intermediate queue) and, for
    each, the seconds until it started again, measured before the next round (None: not within every_s)."""
    times: list[float | None] = []
    connection = redis_py.Redis.from_url(redis_url) if redis_url is not None else None
    try:
        for _ in range(kills):
            victims = [m for m in workers if m.alive()]
            for victim in victims:
                victim.process.send_signal(signal.SIGKILL)
            killed_at = time.time()
            for victim in victims:
                victim.process.wait()
                victim.expect_exit = True
            # Read once every worker is dead and before any replacement starts: nothing moves a job meanwhile.
            in_flight = _jobs_in_flight(connection) if connection is not None else []
            log.add(killed_at - t0, "SIGKILL all workers", workers=len(victims), jobs=in_flight, at=killed_at)
            workers.extend(replace() for _ in victims)
            time.sleep(max(0.0, killed_at + every_s - time.time()))
            if connection is not None:
                times += [_started_again(connection, job_id, killed_at) for job_id in in_flight]
    finally:
        if connection is not None:
            connection.close()
    return times


def _jobs_in_flight(connection: redis_py.Redis) -> list[str]:
    """The ids of the jobs RQ's workers hold: in the started registry of any queue, or in its intermediate queue."""
    held: set[str] = set()
    for key in connection.scan_iter("rq:wip:*", count=10_000):
        held |= {parse_composite_key(text(entry))[0] for entry in connection.zrange(key, 0, -1)}
    for key in connection.scan_iter("rq:queue:*:intermediate", count=10_000):
        held |= {text(job_id) for job_id in connection.lrange(key, 0, -1)}
    return sorted(held)


def _started_again(connection: redis_py.Redis, job_id: str, after: float) -> float | None:
    try:
        started = Job.fetch(job_id, connection=connection, serializer=JSONSerializer).started_at
    except NoSuchJobError:
        return None
    if started is None:
        return None
    again = (started if started.tzinfo is not None else started.replace(tzinfo=UTC)).timestamp() - after
    return round(again, 3) if again > 0 else None


def freeze_worker_mid_job(workers: list[Managed], redis_url: str | None, for_s: float, log: FaultLog,
                          t0: float) -> None:
    """SIGSTOP a worker that is running a job, keep it frozen for for_s, then SIGCONT it."""
    victim, job_id = busy_worker(workers, redis_url, avoid=set())
    victim.process.send_signal(signal.SIGSTOP)
    log.add(time.time() - t0, "SIGSTOP worker", worker=victim.name, pid=victim.pid, job=job_id, for_s=for_s)
    try:
        time.sleep(for_s)
    finally:
        victim.process.send_signal(signal.SIGCONT)
    log.add(time.time() - t0, "SIGCONT worker", worker=victim.name, pid=victim.pid)


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
    workers: list[Managed], redis_url: str | None, log: FaultLog, t0: float, replace: Callable[[], Managed], grace_s: float,
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


def _job_status(redis_url: str | None, job_id: str | None) -> str | None:
    if job_id is None or redis_url is None:
        return None
    connection = redis_py.Redis.from_url(redis_url)
    try:
        return Job.fetch(job_id, connection=connection, serializer=JSONSerializer).get_status().value
    except NoSuchJobError:
        return None
    finally:
        connection.close()
