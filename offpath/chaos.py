"""The chaos experiment: run the queued design under load, inject one fault per scenario, then audit
every acknowledged campaign (lost and duplicated must be 0) and measure the time to recover."""

from __future__ import annotations

import time
import tomllib
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from analysis.chaos_report import fault_table
from offpath.audit import audit
from offpath.designs import design
from offpath.experiment import EXPERIMENTS_DIR, ExperimentError, Phase
from offpath.faults import FAULT_KINDS, FaultLog, kill_worker_mid_job, restart_redis, slow_redis
from offpath.manifest import write_json_atomic
from offpath.placement import Placements, Placer
from offpath.probe import QueueProbe
from offpath.redis_server import RedisServer, start_redis
from offpath.runner import locust_argv
from offpath.session import RunSession
from offpath.supervisor import Supervisor, start_service, start_workers
from results.format import ACKS_GLOB, CELLS_DIR, CHAOS_FILE, CHAOS_TABLE_FILE, LOGS_DIR, cell_id
from services.campaign.settings import Settings


@dataclass(frozen=True)
class Fault:
    name: str
    kind: str
    at_s: float = 5.0
    aof: str = "everysec"
    down_s: float = 2.0
    stall_ms: int = 300
    for_s: float = 5.0
    profile: str | None = None
    design: str = "queued"


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
        fault = Fault(**table)
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


def read_acknowledged(cell_dir: Path) -> list[str]:
    ids: list[str] = []
    for path in sorted(cell_dir.glob(ACKS_GLOB)):
        ids += [line.strip() for line in path.read_text().splitlines() if line.strip()]
    return ids


def run_fault(chaos: Chaos, fault: Fault, run_dir: Path, placer: Placer) -> dict[str, Any]:
    serving = design(fault.design)
    cell_dir = run_dir / CELLS_DIR / cell_id(fault.design, fault.name, 1)
    cell_dir.mkdir(parents=True)
    profile = fault.profile or chaos.profile
    server = start_redis(aof=fault.aof)
    if server.process is not None:
        placer.add("redis", server.process.pid)
    log = FaultLog()
    errors: list[str] = []
    try:
        with Supervisor(log_dir=cell_dir / LOGS_DIR, placer=placer) as supervisor:
            _, url = start_service(supervisor, fault.design, server.url, profile)
            workers = start_workers(supervisor, chaos.workers, server.url, profile) \
                if serving.has_workers else []
            phase = Phase(name=fault.name, kind="steady", rate_per_s=chaos.rate_per_s, duration_s=chaos.duration_s)
            argv = locust_argv(url, cell_dir, phase, 1, 1.0 if serving.polls_for_outcome else 0, 1)
            with QueueProbe(server.url, Settings.from_env().queue_name, cell_dir) as probe:
                t0 = time.time()
                locust = supervisor.start(f"locust-{fault.name}", argv, role="load", expect_exit=True)
                # Faults run on this (main) thread: children get PR_SET_PDEATHSIG, which fires when the
                # *thread* that started them exits, so a Redis or worker restarted from a short-lived
                # thread would be killed again the moment that thread ended.
                action = _fault_action(fault, supervisor, workers, server, profile, log, t0)
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
                result = audit(server.url, acknowledged, settle_timeout_s=chaos.settle_timeout_s)
                settled = time.time()
            fault_t = log.events[0]["t_s"] if log.events else None
            return {
                "fault": fault.name, "kind": fault.kind, "design": fault.design, "profile": profile, "aof": fault.aof,
                "load": f"{chaos.rate_per_s:g}/s for {chaos.duration_s:g} s",
                **result.as_dict(),
                "recovered_after_fault_s": round(settled - t0 - fault_t, 1) if fault_t is not None and result.ok else None,
                "drained_after_load_s": round(settled - load_ended, 1),
                "events": log.events, "errors": errors, "probe_errors": probe.errors[:5],
            }
    finally:
        server.stop()


def _fault_action(fault: Fault, supervisor: Supervisor, workers: list, server: RedisServer, profile: str,
                  log: FaultLog, t0: float) -> Callable[[], None] | None:
    if fault.kind == "kill-worker":
        return lambda: kill_worker_mid_job(
            supervisor, workers, server.url, log, t0,
            replace=lambda: start_workers(supervisor, 1, server.url, profile)[0])
    if fault.kind == "restart-redis":
        return lambda: restart_redis(server, fault.down_s, log, t0)
    if fault.kind == "slow-redis":
        return lambda: slow_redis(server.url, fault.stall_ms, fault.for_s, log, t0)
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
            say(f"fault {fault.name}: {fault.kind} under {chaos.rate_per_s:g}/s for {chaos.duration_s:g} s")
            row = run_fault(chaos, fault, session.run_dir, placer)
            results.append(row)
            write_json_atomic(session.run_dir / CHAOS_FILE, results)
            say(f"  acknowledged {row['acknowledged']}, completed {row['completed']}, failed {row['failed']}, "
                f"lost {row['lost']}, duplicated {row['duplicated']}, pending {row['pending']}; "
                f"recovered after {row['recovered_after_fault_s']} s")

    error = session.run(measure)
    (session.run_dir / CHAOS_TABLE_FILE).write_text(fault_table(results))
    say("\n" + fault_table(results))
    if error:
        say(f"chaos run INCOMPLETE: {error}")
    return ChaosOutcome(run_dir=session.run_dir, complete=error is None and bool(results),
                        broken=tuple(r["fault"] for r in results if not r["ok"]))
