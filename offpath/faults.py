"""Faults the chaos experiment injects into a running queued (or inline) system, at a set time: one model per kind,
with exactly the keys of its kind in offpath/experiments/chaos.toml, and the way that kind injects itself.

Each kind is a class (`KillWorker`, `PauseRedis`, ...) rather than a registry from kind to a function, as starlette's
`BaseRoute` has `Route` and `Mount`: the keys a kind reads and the code that reads them are one thing, so a new kind is
one class (and its line in `FaultKind`), and the runner calls `fault.run(target)` without asking what it is.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Annotated, Any, ClassVar, Literal

import redis as redis_py
from pydantic import Field, field_validator

from foundation.config import ConfigModel, distinct
from offpath.disconnect import disconnect_mid_request
from offpath.fault_log import FaultLog
from offpath.redis_server import RedisServer
from offpath.relay import TcpRelay
from offpath.supervisor import Managed
from offpath.worker_faults import freeze_worker_mid_job, kill_all_workers, kill_workers_mid_job, stop_worker_mid_job
from services.campaign.profile import ProfileSpec


@dataclass
class FaultTarget:
    """What a fault acts on in its cell: the workers (a replacement started by `replace`, as a process manager
    would), Redis, the relay the workers reach it through (partition only), the service, and the log of what was
    done, in seconds since the load started at t0."""

    workers: list[Managed]
    server: RedisServer
    relay: TcpRelay | None
    service_url: str
    log: FaultLog
    t0: float
    replace: Callable[[], Managed]
    # The workers' jobs can be read (offpath's own design on RQ): a kill picks a worker running a job, and the time
    # until that job runs again is measured. Otherwise a kill picks a live worker in turn.
    jobs_visible: bool = True


class Fault(ConfigModel):
    """What every fault declares: its name, the design it runs against, that run's Redis persistence, profile and
    load (the experiment's unless set here). A kind adds its own keys and how it runs."""

    name: Annotated[str, Field(min_length=1, description="a non-empty name"),
                    distinct("fault names", "a name no other fault has (it names the fault's cell)")]
    kind: str  # each kind's own Literal, which FaultKind tells the kinds apart by
    design: str = Field("queued", description="one of the chaos experiment's designs")
    aof: Literal["off", "everysec", "always"] = "everysec"
    profile: ProfileSpec | None = None
    rate_per_s: float | None = Field(None, gt=0, description="requests per second > 0")
    duration_s: float | None = Field(None, gt=0, description="seconds > 0")
    # Run the fault once per queue backend (a design that takes one: offpath's queued design); empty: its own.
    backends: list[Literal["rq", "celery", "dramatiq"]] = []
    # The workers reach Redis through a relay offpath controls (which the fault cuts), not directly.
    relayed: ClassVar[bool] = False
    # The fault acts on the design's workers: only a design that has them.
    on_workers: ClassVar[bool] = False
    # The fault makes a live worker look dead (a freeze): a false abandonment is its expected effect, not a failure.
    takes_for_dead: ClassVar[bool] = False

    def run(self, target: FaultTarget) -> dict[str, Any]:
        """Inject the fault into the running cell; what it measured beyond the audit, for the fault's row."""
        return {}


class NoFault(Fault):
    """No fault: the load alone, e.g. under a profile whose providers fail or take long."""

    kind: Literal["none"]


class TimedFault(Fault):
    """A fault injected `at_s` seconds after the load starts."""

    at_s: float = Field(5.0, ge=0, description="seconds >= 0 after the load starts")

    def run(self, target: FaultTarget) -> dict[str, Any]:
        time.sleep(max(0.0, target.t0 + self.at_s - time.time()))
        return self.inject(target)

    def inject(self, target: FaultTarget) -> dict[str, Any]:
        raise NotImplementedError


class WorkerFault(TimedFault):
    """A fault done to the workers: only a design that has them (chaos.py checks)."""

    on_workers: ClassVar[bool] = True


class KillWorker(WorkerFault):
    kind: Literal["kill-worker"]
    kills: int = Field(1, ge=1, description="a whole number of SIGKILLs >= 1")
    every_s: float = Field(1.5, ge=0, description="seconds >= 0 between kills")

    def inject(self, target: FaultTarget) -> dict[str, Any]:
        times = kill_workers_mid_job(target.workers, target.server.url if target.jobs_visible else None, target.log,
                                     target.t0, target.replace, self.kills, self.every_s)
        return {"recovery_s": times} if target.jobs_visible else {}


class KillAllWorkers(WorkerFault):
    """Every worker SIGKILLed at the same moment, `kills` times, every_s apart, each replaced at once as a process
    manager would: no survivor holds the abandonment watch, so the jobs in flight wait for the replacements' watch."""

    kind: Literal["kill-all-workers"]
    kills: int = Field(20, ge=1, description="a whole number of rounds >= 1")
    every_s: float = Field(12.0, gt=0, description="seconds > 0 between rounds")

    def inject(self, target: FaultTarget) -> dict[str, Any]:
        times = kill_all_workers(target.workers, target.server.url if target.jobs_visible else None, target.log,
                                 target.t0, target.replace, self.kills, self.every_s)
        return {"recovery_s": times} if target.jobs_visible else {}


class FreezeWorker(WorkerFault):
    """A busy worker frozen (SIGSTOP) for for_s, longer than the abandonment threshold, then thawed (SIGCONT): a swap
    storm or a VM stall. Its job is taken for dead and runs again; when it wakes it must record nothing (the fence,
    services/campaign/steps.py). The false abandonment is expected here: counted and shown, not a failure."""

    kind: Literal["freeze-worker"]
    for_s: float = Field(8.0, gt=0, description="seconds > 0")
    takes_for_dead: ClassVar[bool] = True

    def inject(self, target: FaultTarget) -> dict[str, Any]:
        freeze_worker_mid_job(target.workers, target.server.url if target.jobs_visible else None, self.for_s,
                              target.log, target.t0)
        return {}


class StopWorker(WorkerFault):
    kind: Literal["stop-worker"]
    # How long a worker asked to stop may take to finish its job: past the job timeout.
    grace_s: float = Field(70.0, gt=0, description="seconds > 0")

    def inject(self, target: FaultTarget) -> dict[str, Any]:
        stop_worker_mid_job(target.workers, target.server.url if target.jobs_visible else None, target.log,
                            target.t0, target.replace, self.grace_s)
        return {}


class Partition(WorkerFault):
    kind: Literal["partition"]
    for_s: float = Field(5.0, gt=0, description="seconds > 0")
    relayed: ClassVar[bool] = True

    def inject(self, target: FaultTarget) -> dict[str, Any]:
        assert target.relay is not None, "a partition's workers are started behind the relay (Partition.relayed)"
        partition(target.relay, self.for_s, target.log, target.t0)
        return {}


class RestartRedis(TimedFault):
    kind: Literal["restart-redis"]
    down_s: float = Field(2.0, ge=0, description="seconds >= 0 that Redis stays down")

    def inject(self, target: FaultTarget) -> dict[str, Any]:
        restart_redis(target.server, self.down_s, target.log, target.t0)
        return {}


class PauseRedis(TimedFault):
    kind: Literal["pause-redis"]
    for_s: float = Field(5.0, gt=0, description="seconds > 0")

    def inject(self, target: FaultTarget) -> dict[str, Any]:
        pause_redis(target.server, self.for_s, target.log, target.t0)
        return {}


class SlowRedis(TimedFault):
    kind: Literal["slow-redis"]
    # Redis stalls this long once a second: up to the whole second.
    stall_ms: int = Field(300, ge=1, le=1000, description="a whole number of milliseconds from 1 to 1000")
    for_s: float = Field(5.0, gt=0, description="seconds > 0")

    def inject(self, target: FaultTarget) -> dict[str, Any]:
        slow_redis(target.server.url, self.stall_ms, self.for_s, target.log, target.t0)
        return {}


class MaxMemory(TimedFault):
    kind: Literal["maxmemory"]
    for_s: float = Field(5.0, gt=0, description="seconds > 0")

    def inject(self, target: FaultTarget) -> dict[str, Any]:
        fill_memory(target.server.url, self.for_s, target.log, target.t0)
        return {}


class ClientDisconnect(TimedFault):
    kind: Literal["client-disconnect"]
    count: int = Field(20, ge=1, description="a whole number of campaigns >= 1")
    abort_after_ms: tuple[float, float] = Field(
        (5.0, 150.0), description="[low, high] milliseconds, 0 <= low <= high")

    @field_validator("abort_after_ms", mode="before")
    @classmethod
    def _a_pair(cls, value: Any) -> Any:
        """TOML gives an array; the model keeps the pair as a tuple, low first."""
        numbers = isinstance(value, list | tuple) and len(value) == 2 \
            and all(isinstance(v, int | float) and not isinstance(v, bool) for v in value)
        if numbers and 0 <= value[0] <= value[1]:
            return tuple(value)
        raise ValueError("allowed: [low, high] milliseconds, 0 <= low <= high")

    def inject(self, target: FaultTarget) -> dict[str, Any]:
        target.log.add(time.time() - target.t0, "clients disconnect mid-request", count=self.count)
        low_ms, high_ms = self.abort_after_ms
        outcome = disconnect_mid_request(target.service_url, target.server.url, self.count,
                                         (low_ms / 1000, high_ms / 1000), payload_seed=1, settle_timeout_s=60.0)
        return {"disconnect": asdict(outcome), "ok": outcome.ok}


# Every kind a chaos experiment may declare, told apart by its `kind` key.
FaultKind = Annotated[NoFault | KillWorker | KillAllWorkers | FreezeWorker | StopWorker | RestartRedis | PauseRedis
                      | SlowRedis | Partition | MaxMemory | ClientDisconnect, Field(discriminator="kind")]


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
