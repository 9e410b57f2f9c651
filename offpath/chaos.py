"""The chaos experiment: run the queued design under load, inject one fault per scenario, then audit
every acknowledged campaign (lost and duplicated must be 0) and measure the time to recover."""

from __future__ import annotations

import time
import tomllib
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import redis as redis_py

from analysis.reports.chaos_report import fault_measures, fault_table
from analysis.stats.load import read_errors_csv
from foundation.format import ACKS_GLOB, CELLS_DIR, CHAOS_FILE, CHAOS_TABLE_FILE, ERRORS_FILE, LOGS_DIR, cell_id
from offpath.audit import audit
from offpath.disconnect import disconnect_mid_request
from offpath.experiment import EXPERIMENTS_DIR, ExperimentError, Phase
from offpath.faults import (
    FAULT_KINDS,
    FaultLog,
    fill_memory,
    kill_workers_mid_job,
    partition,
    pause_redis,
    recovery_times,
    restart_redis,
    slow_redis,
    stop_worker_mid_job,
)
from offpath.manifest import write_json_atomic
from offpath.placement import Placements, Placer
from offpath.probe import QueueProbe
from offpath.queues.rq import RqQueue
from offpath.redis_server import RedisServer, start_redis
from offpath.relay import TcpRelay
from offpath.runner import locust_argv
from offpath.serving import built_in, start_service, start_workers
from offpath.session import RunSession
from offpath.supervisor import Supervisor
from services.campaign.settings import Settings
from services.queued.liveness import ABANDONED_KEY, FALSE_ABANDONMENTS_KEY


@dataclass(frozen=True)
class Fault:
    name: str
    kind: str
    at_s: float = 5.0
    aof: str = "everysec"
    down_s: float = 2.0  # restart-redis: how long Redis stays down
    stall_ms: int = 300  # slow-redis
    for_s: float = 5.0  # slow-redis, pause-redis, partition, maxmemory: how long the fault lasts
    kills: int = 1  # kill-worker: how many workers to SIGKILL mid-job, every_s apart
    every_s: float = 1.5
    grace_s: float = 70.0  # stop-worker: how long a worker asked to stop may take to finish its job (job timeout+)
    count: int = 20  # client-disconnect: campaigns whose client goes away mid-request
    abort_after_ms: tuple[float, float] = (5.0, 150.0)
    profile: str | None = None
    design: str = "queued"
    rate_per_s: float | None = None  # the experiment's load, unless set here
    duration_s: float | None = None


@dataclass(frozen=True)
class ChaosOutcome:
    run_dir: Path
    complete: bool  # every fault ran (not interrupted, no harness fault)
    broken: tuple[str, ...]  # faults after which acknowledged work was lost, duplicated, stuck or pending


@dataclass(frozen=True)
class Chaos:
    name: str
    description: str
    profile: str
    rate_per_s: float
    duration_s: float
    workers: int
    settle_timeout_s: float
    faults: tuple[Fault, ...]


def load_chaos(spec: str) -> Chaos:
    path = Path(spec) if spec.endswith(".toml") else EXPERIMENTS_DIR / f"{spec}.toml"
    if not path.is_file():
        raise ExperimentError(f"chaos experiment {spec!r} not found (looked for {path})")
    data = tomllib.loads(path.read_text())
    faults = []
    for index, table in enumerate(data.get("faults", [])):
        unknown = set(table) - set(Fault.__dataclass_fields__)
        if unknown:
            raise ExperimentError(f"{path}: faults[{index}] has unknown keys {sorted(unknown)}; "
                                  f"allowed: {sorted(Fault.__dataclass_fields__)}")
        fault = Fault(**{key: _fault_value(path, index, key, value) for key, value in table.items()})
        if fault.kind not in FAULT_KINDS:
            raise ExperimentError(f"{path}: faults[{index}].kind is {fault.kind!r}; allowed: {', '.join(FAULT_KINDS)}")
        faults.append(fault)
    try:
        return Chaos(
            name=data["name"], description=data.get("description", ""), profile=data.get("profile", "default"),
            rate_per_s=float(data["rate_per_s"]), duration_s=float(data["duration_s"]),
            workers=int(data.get("workers", 4)), settle_timeout_s=float(data.get("settle_timeout_s", 120)),
            faults=tuple(faults),
        )
    except KeyError as exc:
        raise ExperimentError(f"{path}: missing key {exc}") from None


def _fault_value(path: Path, index: int, key: str, value: Any) -> Any:
    """A fault's value, checked against the type of the field's default: one line naming the key and what it takes."""
    default = Fault.__dataclass_fields__[key].default
    where = f"{path}: faults[{index}].{key}"
    if key == "abort_after_ms":
        if not (isinstance(value, list) and len(value) == 2 and all(_number(v) and v >= 0 for v in value)
                and value[0] <= value[1]):
            raise ExperimentError(f"{where} is {value!r}; allowed: [low, high] milliseconds, 0 <= low <= high")
        return (float(value[0]), float(value[1]))
    if key in ("rate_per_s", "duration_s"):  # default None: the experiment's
        if not (_number(value) and value > 0):
            raise ExperimentError(f"{where} is {value!r}; allowed: a number > 0")
        return float(value)
    if default is None or isinstance(default, str):
        if not isinstance(value, str):
            raise ExperimentError(f"{where} is {value!r}; allowed: a string")
        return value
    if isinstance(default, int) and not (isinstance(value, int) and not isinstance(value, bool) and value >= 1):
        raise ExperimentError(f"{where} is {value!r}; allowed: a whole number >= 1")
    if isinstance(default, float) and not (_number(value) and value >= 0):
        raise ExperimentError(f"{where} is {value!r}; allowed: a number >= 0")
    return value


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def read_acknowledged(cell_dir: Path) -> list[str]:
    ids: list[str] = []
    for path in sorted(cell_dir.glob(ACKS_GLOB)):
        ids += [line.strip() for line in path.read_text().splitlines() if line.strip()]
    return ids


def run_fault(chaos: Chaos, fault: Fault, run_dir: Path, placer: Placer) -> dict[str, Any]:
    serving = built_in(fault.design)
    cell_dir = run_dir / CELLS_DIR / cell_id(fault.design, fault.name, 1)
    cell_dir.mkdir(parents=True)
    profile = fault.profile or chaos.profile
    rate_per_s = fault.rate_per_s if fault.rate_per_s is not None else chaos.rate_per_s
    duration_s = fault.duration_s if fault.duration_s is not None else chaos.duration_s
    queue_name = Settings.from_env().queue_name
    server = start_redis(aof=fault.aof)
    if server.process is not None:
        placer.add("redis", server.process.pid)
    log = FaultLog()
    errors: list[str] = []
    extra: dict[str, Any] = {}
    # The partition's workers reach Redis through a relay offpath controls; everything else connects directly.
    relay = TcpRelay(*_host_port(server.url)).start() if fault.kind == "partition" else None
    workers_url = relay.url(server.url) if relay is not None else server.url
    try:
        with Supervisor(log_dir=cell_dir / LOGS_DIR, placer=placer) as supervisor:
            _, url = start_service(supervisor, fault.design, server.url, profile)
            workers = start_workers(supervisor, chaos.workers, workers_url, profile) \
                if serving.has_workers else []
            phase = Phase(name=fault.name, kind="steady", rate_per_s=rate_per_s, duration_s=duration_s)
            argv = locust_argv(url, cell_dir, phase, 1, 1.0 if serving.follows_outcome else 0, 1)
            with QueueProbe(RqQueue(server.url, queue_name), cell_dir, server.url) as probe:
                t0 = time.time()
                locust = supervisor.start(f"locust-{fault.name}", argv, role="load", expect_exit=True)
                # Faults run on this (main) thread: children get PR_SET_PDEATHSIG, which fires when the
                # *thread* that started them exits, so a Redis or worker restarted from a short-lived
                # thread would be killed again the moment that thread ended.
                replace = lambda: start_workers(supervisor, 1, workers_url, profile)[0]  # noqa: E731
                action = _fault_action(fault, workers, server, relay, url, log, t0, replace, extra)
                if action is not None:
                    time.sleep(max(0.0, t0 + fault.at_s - time.time()))
                    try:
                        action()
                    except Exception as exc:  # noqa: BLE001 - reported below, not swallowed
                        errors.append(f"{type(exc).__name__}: {exc}")
                while locust.alive():
                    time.sleep(0.25)
                load_ended = time.time()
                acknowledged = read_acknowledged(cell_dir)
                if errors:
                    raise RuntimeError(f"fault {fault.name} could not be injected: {'; '.join(errors)}")
                result = audit(server.url, acknowledged, settle_timeout_s=chaos.settle_timeout_s,
                               queue_name=queue_name if serving.has_workers else None)
                settled = time.time()
            alive = sum(1 for w in workers if w.alive())
            fault_t = log.events[0]["t_s"] if log.events else None
            row = {
                "fault": fault.name, "kind": fault.kind, "design": fault.design, "profile": profile, "aof": fault.aof,
                "load": f"{rate_per_s:g}/s for {duration_s:g} s",
                **result.as_dict(),
                "recovered_after_fault_s": round(settled - t0 - fault_t, 1) if fault_t is not None and result.ok else None,
                "drained_after_load_s": round(settled - load_ended, 1),
                "refused": _refused(cell_dir),
                "workers_alive": f"{alive}/{chaos.workers}" if serving.has_workers else None,
                **(_liveness(server.url, queue_name, log) if serving.has_workers else {}),
                **extra,
                "events": log.events, "errors": errors, "probe_errors": probe.errors[:5],
            }
            row["ok"] = row["ok"] and not row.get("false_abandonments") and extra.get("ok", True) \
                and all(t is not None for t in row.get("recovery_s", []))
            return row
    finally:
        if relay is not None:
            relay.close()
        server.stop()


def _host_port(redis_url: str) -> tuple[str, int]:
    parsed = urlsplit(redis_url)
    return parsed.hostname or "127.0.0.1", parsed.port or 6379


def _refused(cell_dir: Path) -> dict[str, int]:
    """Requests the service did not accept during the cell, by status (0: no HTTP answer)."""
    errors = read_errors_csv(cell_dir / ERRORS_FILE)
    return {str(int(status)): int(count) for status, count in errors.groupby("status")["count"].sum().items()}


def _liveness(redis_url: str, queue_name: str, log: FaultLog) -> dict[str, Any]:
    """What the abandonment watch declared, which of its declarations were false (the worker was still running the
    job: services/queued/liveness.py), and, per SIGKILL that hit a job, how long until the job ran again."""
    connection = redis_py.Redis.from_url(redis_url)
    try:
        abandoned = connection.llen(ABANDONED_KEY.format(queue=queue_name))
        false = connection.llen(FALSE_ABANDONMENTS_KEY.format(queue=queue_name))
    finally:
        connection.close()
    figures: dict[str, Any] = {"abandoned": abandoned, "false_abandonments": false}
    if any(e["what"] == "SIGKILL worker" for e in log.events):
        figures["recovery_s"] = recovery_times(redis_url, log.events)
    return figures


def _fault_action(fault: Fault, workers: list, server: RedisServer, relay: TcpRelay | None, service_url: str,
                  log: FaultLog, t0: float, replace: Callable[[], Any],
                  extra: dict[str, Any]) -> Callable[[], None] | None:
    if fault.kind == "kill-worker":
        return lambda: kill_workers_mid_job(workers, server.url, log, t0, replace, fault.kills, fault.every_s)
    if fault.kind == "stop-worker":
        return lambda: stop_worker_mid_job(workers, server.url, log, t0, replace, fault.grace_s)
    if fault.kind == "restart-redis":
        return lambda: restart_redis(server, fault.down_s, log, t0)
    if fault.kind == "pause-redis":
        return lambda: pause_redis(server, fault.for_s, log, t0)
    if fault.kind == "slow-redis":
        return lambda: slow_redis(server.url, fault.stall_ms, fault.for_s, log, t0)
    if fault.kind == "partition":
        assert relay is not None
        return lambda: partition(relay, fault.for_s, log, t0)
    if fault.kind == "maxmemory":
        return lambda: fill_memory(server.url, fault.for_s, log, t0)
    if fault.kind == "client-disconnect":
        def disconnect() -> None:
            log.add(time.time() - t0, "clients disconnect mid-request", count=fault.count)
            outcome = disconnect_mid_request(
                service_url, server.url, fault.count,
                (fault.abort_after_ms[0] / 1000, fault.abort_after_ms[1] / 1000),
                payload_seed=1, settle_timeout_s=60.0)
            extra["disconnect"] = asdict(outcome)
            extra["ok"] = outcome.ok
        return disconnect
    return None


def run_chaos(chaos: Chaos, out_root: Path, only: list[str] | None = None, say=print) -> ChaosOutcome:
    session = RunSession(out_root, chaos.name, say)
    results: list[dict[str, Any]] = []

    def measure() -> None:
        placements = Placements.shared()
        # Each fault starts its own redis-server (it crashes and restarts it): no one version for the run.
        session.start_manifest("per fault: bundled or PATH redis-server", {
            "kind": "chaos", "experiment": {**asdict(chaos), "faults": [asdict(f) for f in chaos.faults]},
            "cpus": placements.split(),
        })
        with Placer(placements, session.id) as placer:
            run_faults(placer)

    def run_faults(placer: Placer) -> None:
        for fault in chaos.faults:
            if only and fault.name not in only:
                continue
            rate_per_s = fault.rate_per_s if fault.rate_per_s is not None else chaos.rate_per_s
            duration_s = fault.duration_s if fault.duration_s is not None else chaos.duration_s
            say(f"fault {fault.name}: {fault.kind} ({fault.design}) under {rate_per_s:g}/s for {duration_s:g} s")
            row = run_fault(chaos, fault, session.run_dir, placer)
            results.append(row)
            write_json_atomic(session.run_dir / CHAOS_FILE, results)
            say(f"  acknowledged {row['acknowledged']}, completed {row['completed']}, failed {row['failed']}, "
                f"lost {row['lost']}, duplicated {row['duplicated']}, pending {row['pending']}, stuck {row['stuck']}; "
                f"recovered after {row['recovered_after_fault_s']} s; {fault_measures(row) or 'no more measures'}")

    error = session.run(measure)
    (session.run_dir / CHAOS_TABLE_FILE).write_text(fault_table(results))
    say("\n" + fault_table(results))
    if error:
        say(f"chaos run INCOMPLETE: {error}")
    return ChaosOutcome(run_dir=session.run_dir, complete=error is None and bool(results),
                        broken=tuple(r["fault"] for r in results if not r["ok"]))
