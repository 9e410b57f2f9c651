"""What the chaos experiment does to a design's workers: SIGKILL one busy worker at a time or every worker at once,
SIGTERM one mid-job, freeze one (SIGSTOP) past the abandonment threshold; and, on RQ, which jobs each kill hit and how
soon each ran again. The fault kinds that call these, and their keys, are in offpath/faults.py."""

from __future__ import annotations

import signal
import subprocess
import threading
import time
from collections.abc import Callable

import redis as redis_py
from rq import Worker
from rq.exceptions import NoSuchJobError
from rq.executions import WORKER_EXECUTIONS_KEY_TEMPLATE
from rq.job import Job
from rq.serializers import JSONSerializer
from rq.utils import parse_composite_key, utcparse

from foundation.redis_replies import text
from offpath.fault_log import FaultLog
from offpath.supervisor import Managed

__all__ = ["RESTART_PATIENCE_S", "FirstStarts", "busy_worker", "freeze_worker_mid_job", "kill_all_workers",
           "kill_workers_mid_job", "stop_worker_mid_job"]

# How long after its kill a job is watched for its first start again: past RQ's own backstop (a started-registry entry
# expires 60 s after the job started, services/queued/enqueue.py), so a job only that backstop recovered still reads
# as a time (~60-65 s), not as "never".
RESTART_PATIENCE_S = 90.0


class FirstStarts:
    """Each killed RQ job's first start after its kill, watched as it happens: a thread reads the job's `started_at`
    every `every_s` and keeps the first one later than the kill.

    RQ's record holds only a job's *latest* start. Read once, some time after the kill, it misses a job that ran again
    at once and then again (a retry after a failure): run `20261207-102453-chaos-902875` read 11.0 s for a job that had
    run again 4.8 s after its kill. Watched every 50 ms, the start read is RQ's own timestamp of the first one; it can
    be a later one (by under 50 ms) only if the job started twice between two reads."""

    def __init__(self, redis_url: str, every_s: float = 0.05) -> None:
        self._connection = redis_py.Redis.from_url(redis_url, socket_timeout=5.0)
        self._every_s = every_s
        self._kills: list[tuple[str, float]] = []  # (job id, when the kill that hit it was sent), in the order added
        self._started: dict[tuple[str, float], float] = {}  # each kill -> its job's first start after it
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="first-starts", daemon=True)

    def __enter__(self) -> FirstStarts:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self._connection.close()

    def add(self, job_id: str, killed_at: float) -> None:
        """Watch job_id for its first start after killed_at (epoch seconds)."""
        with self._lock:
            self._kills.append((job_id, killed_at))

    def wait(self, until: float) -> None:
        """Until every job added has started again since its kill, or the epoch time `until`."""
        while time.time() < until:
            with self._lock:
                if len(self._started) == len(set(self._kills)):
                    return
            time.sleep(self._every_s)

    def seconds(self) -> list[float | None]:
        """For each kill added, in order: the seconds until its job first started again; None if it has not (yet)."""
        with self._lock:
            return [round(self._started[kill] - kill[1], 3) if kill in self._started else None
                    for kill in self._kills]

    def _watch(self) -> None:
        while not self._stop.wait(self._every_s):
            with self._lock:
                waiting = [kill for kill in self._kills if kill not in self._started]
            if not waiting:
                continue
            try:
                with self._connection.pipeline(transaction=False) as pipe:
                    for job_id, _ in waiting:
                        pipe.hget(Job.key_for(job_id), "started_at")
                    replies = pipe.execute()
            except redis_py.RedisError:
                continue  # Redis slow or away: read again next time (a worker needs Redis to start a job too)
            with self._lock:
                for (job_id, killed_at), reply in zip(waiting, replies, strict=True):
                    started = utcparse(text(reply)).timestamp() if reply else None
                    if started is not None and started > killed_at:
                        self._started[(job_id, killed_at)] = started


def _times_to_run_again(redis_url: str | None, kill: Callable[[FirstStarts | None], None]) -> list[float | None]:
    """Run `kill`, which gives each job it hits to the FirstStarts it is passed (None: RQ's registries cannot be read,
    nothing is measured); then wait up to RESTART_PATIENCE_S for each to start again, and return its times."""
    if redis_url is None:
        kill(None)
        return []
    with FirstStarts(redis_url) as starts:
        kill(starts)
        starts.wait(until=time.time() + RESTART_PATIENCE_S)
        return starts.seconds()


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
) -> list[float | None]:
    """SIGKILL a worker that is running a job, `kills` times, every_s apart, each time starting a replacement, as a
    process manager would. The killed jobs are left to the queued design to recover. With RQ's registries to read
    (`redis_url`): for each kill that hit a job, the seconds until that job first started again (FirstStarts; None: not
    within RESTART_PATIENCE_S), waited for after the last kill. Each kill's job is one no earlier kill hit, so each
    recovery is measured once.

    The job a kill hit is read after the kill, from the dead worker's own record of what it was running (RQ's
    execution index of the worker, which nothing changes once it is dead): the job seen before the kill may have
    finished in the meantime, and a short one often has, which read as "a killed job never ran again". A kill that
    found its worker between jobs is logged as a miss, and another worker is killed in its place (up to
    _KILL_TRIES times)."""
    return _times_to_run_again(redis_url, lambda starts: _kill_busy_workers(workers, redis_url, log, t0, replace,
                                                                             kills, every_s, starts))


def _kill_busy_workers(
    workers: list[Managed], redis_url: str | None, log: FaultLog, t0: float, replace: Callable[[], Managed],
    kills: int, every_s: float, starts: FirstStarts | None,
) -> None:
    """The kills of kill_workers_mid_job, each job hit given to `starts` to watch."""
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
                if starts is not None:
                    starts.add(job_id, killed_at)
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
    each, the seconds until it first started again (FirstStarts; None: not within RESTART_PATIENCE_S of the last kill),
    waited for after the last round."""
    return _times_to_run_again(redis_url, lambda starts: _kill_all_rounds(workers, redis_url, log, t0, replace,
                                                                           kills, every_s, starts))


def _kill_all_rounds(
    workers: list[Managed], redis_url: str | None, log: FaultLog, t0: float, replace: Callable[[], Managed],
    kills: int, every_s: float, starts: FirstStarts | None,
) -> None:
    """The rounds of kill_all_workers, each job in flight given to `starts` to watch."""
    connection = redis_py.Redis.from_url(redis_url) if redis_url is not None else None
    try:
        for number in range(kills):
            victims = [m for m in workers if m.alive()]
            for victim in victims:
                victim.process.send_signal(signal.SIGKILL)
            killed_at = time.time()
            for victim in victims:
                victim.process.wait()
                victim.expect_exit = True
            # Read once every worker is dead and before any replacement starts: nothing moves a job meanwhile.
            in_flight = _jobs_in_flight(connection) if connection is not None else []
            if starts is not None:
                for job_id in in_flight:
                    starts.add(job_id, killed_at)
            log.add(killed_at - t0, "SIGKILL all workers", workers=len(victims), jobs=in_flight, at=killed_at)
            workers.extend(replace() for _ in victims)
            if number < kills - 1:
                time.sleep(max(0.0, killed_at + every_s - time.time()))
    finally:
        if connection is not None:
            connection.close()


def _jobs_in_flight(connection: redis_py.Redis) -> list[str]:
    """The ids of the jobs RQ's workers hold: in the started registry of any queue, or in its intermediate queue."""
    held: set[str] = set()
    for key in connection.scan_iter("rq:wip:*", count=10_000):
        held |= {parse_composite_key(text(entry))[0] for entry in connection.zrange(key, 0, -1)}
    for key in connection.scan_iter("rq:queue:*:intermediate", count=10_000):
        held |= {text(job_id) for job_id in connection.lrange(key, 0, -1)}
    return sorted(held)


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
