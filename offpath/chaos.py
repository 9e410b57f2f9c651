"""The chaos experiment: run the queued design under load, inject one fault per scenario, then audit
every acknowledged campaign (lost and duplicated must be 0) and measure the time to recover."""

from __future__ import annotations

import time
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import redis as redis_py
from pydantic import Field, PrivateAttr

from analysis.reports.chaos_report import fault_measures, fault_table
from analysis.stats.load import read_errors_csv
from foundation.config import ConfigError, ConfigModel, load_toml
from foundation.experiment_facts import ExperimentFacts
from foundation.format import (
    ACKS_GLOB,
    CELLS_DIR,
    CHAOS_FILE,
    CHAOS_KIND,
    CHAOS_TABLE_FILE,
    ERRORS_FILE,
    LOGS_DIR,
    cell_id,
)
from foundation.manifest_format import CpuSplit, RunRecord
from offpath.audit import Queued, audit
from offpath.designs import Design, built_in_names, declare
from offpath.experiment import EXPERIMENTS_DIR, Phase
from offpath.faults import Fault, FaultKind, FaultLog, FaultTarget
from offpath.http_audit import audit_over_http
from offpath.manifest import write_json_atomic
from offpath.placement import Placements, Placer
from offpath.probe import QueueProbe
from offpath.redis_server import start_redis
from offpath.relay import TcpRelay
from offpath.runner import driven, locust_argv
from offpath.serving import Conditions, add_worker, serve
from offpath.session import RunSession
from offpath.supervisor import Supervisor
from services.campaign.profile import ProfileSpec
from services.campaign.steps import FENCED_KEY
from services.queued.backend import queue_backend
from services.queued.liveness import ABANDONED_KEY, FALSE_ABANDONMENTS_KEY


@dataclass(frozen=True)
class ChaosOutcome:
    run_dir: Path
    complete: bool  # every fault ran (not interrupted, no harness fault)
    broken: tuple[str, ...]  # faults after which acknowledged work was lost, duplicated, stuck or pending


class Chaos(ConfigModel):
    """A chaos experiment file: the load and workers every fault runs under, and the faults, one model per kind
    (offpath/faults.py)."""

    name: str = Field(min_length=1, description="a non-empty name")
    description: str = ""
    profile: ProfileSpec = ProfileSpec()
    rate_per_s: float = Field(gt=0, description="requests per second > 0")
    duration_s: float = Field(gt=0, description="seconds > 0")
    workers: int = Field(4, ge=1, description="a whole number of RQ workers >= 1")
    settle_timeout_s: float = Field(120.0, gt=0, description="seconds > 0")
    # The designs the faults may run against, declared as in a bench experiment (offpath/designs.py); by default
    # offpath's own two. A fault's `design` names one of them.
    designs: dict[str, Any] = Field(default_factory=lambda: {name: {"use": name} for name in built_in_names()})
    faults: list[FaultKind] = Field(min_length=1, description="at least one [[faults]] table")
    _declared: dict[str, Design] = PrivateAttr(default_factory=dict)

    def resolved(self) -> dict[str, Any]:
        """The experiment as the manifest records it: every key, the faults' own and their defaults, each design's
        resolved declaration."""
        return {**self.model_dump(mode="json"), "declarations": {n: d.resolved() for n, d in self._declared.items()}}

    def design(self, name: str, backend: str | None = None) -> Design:
        """The declared design `name`, on `backend` when it takes one."""
        design = self._declared[name]
        if backend is None or "backend" not in design.declaration.params:
            return design
        declaration = design.declaration.model_copy(update={"params": {**design.declaration.params,
                                                                       "backend": backend}})
        return Design(design.name, declaration, design.base_dir, design.contract)

    def runs(self, fault: Fault) -> list[str | None]:
        """The queue backends a fault runs on: each of its `backends` (its design takes one: chaos.py checks), else its
        design's own."""
        return list(fault.backends) if fault.backends else [None]


def load_chaos(spec: str) -> Chaos:
    """A chaos experiment by name (offpath/experiments/NAME.toml) or path; ConfigError (one line) for a file offpath
    cannot use."""
    path = Path(spec) if spec.endswith(".toml") else EXPERIMENTS_DIR / f"{spec}.toml"
    if not path.is_file():
        names = sorted(p.stem for p in EXPERIMENTS_DIR.glob("chaos*.toml"))
        raise ConfigError(f"chaos experiment {spec!r} not found (looked for {path}); allowed: one of "
                          f"{', '.join(names)} or a path to a .toml file")
    chaos = load_toml(path, Chaos)
    chaos._declared = {name: declare(name, table, str(path), path.resolve().parent, f"designs.{name}")
                       for name, table in chaos.designs.items()}
    for index, fault in enumerate(chaos.faults):
        design = chaos._declared.get(fault.design)
        if design is None:
            raise ConfigError(f"{path}: key 'faults[{index}].design' has value {fault.design!r}; allowed: one of "
                              f"{', '.join(chaos._declared)}")
        if fault.backends and "backend" not in design.declaration.params:
            raise ConfigError(f"{path}: key 'faults[{index}].backends' has value {fault.backends!r}; allowed: only for "
                              "a design that takes a queue backend (params.backend: offpath's queued design)")
        if fault.on_workers and design.declaration.workers is None:
            raise ConfigError(f"{path}: key 'faults[{index}].design' has value {fault.design!r}; allowed: a design "
                              f"with workers (the {fault.kind} fault acts on them)")
    return chaos


def read_acknowledged(cell_dir: Path) -> list[str]:
    ids: list[str] = []
    for path in sorted(cell_dir.glob(ACKS_GLOB)):
        ids += [line.strip() for line in path.read_text().splitlines() if line.strip()]
    return ids


def run_fault(chaos: Chaos, fault: Fault, run_dir: Path, placer: Placer, backend: str | None = None) -> dict[str, Any]:
    design = chaos.design(fault.design, backend)
    census = design.declaration.census is not None
    on_rq = design.declaration.queue is not None and design.declaration.params.get("backend", "rq") == "rq" \
        and census  # offpath's own design on RQ: its registries, its watch, its jobs' restarts can be read
    phase_name = fault.name if backend is None else f"{fault.name}-{backend}"
    cell_dir = run_dir / CELLS_DIR / cell_id(fault.design, phase_name, 1)
    cell_dir.mkdir(parents=True)
    profile = fault.profile or chaos.profile
    rate_per_s = fault.rate_per_s if fault.rate_per_s is not None else chaos.rate_per_s
    duration_s = fault.duration_s if fault.duration_s is not None else chaos.duration_s
    queue_name = design.declaration.queue.name if design.declaration.queue is not None else ""
    queued = Queued(queue_backend(str(design.declaration.params.get("backend", "rq"))), queue_name) \
        if design.declaration.queue is not None and census else None
    server = start_redis(aof=fault.aof)
    if server.process is not None:
        placer.add("redis", server.process.pid)
    log = FaultLog()
    errors: list[str] = []
    extra: dict[str, Any] = {}
    relay = TcpRelay(*_host_port(server.url)).start() if fault.relayed else None
    workers_url = relay.url(server.url) if relay is not None else server.url
    conditions = Conditions(redis_url=server.url, profile=str(profile), workers=chaos.workers,
                            worker_redis_url=workers_url if relay is not None else None)
    served = None
    try:
        with Supervisor(log_dir=cell_dir / LOGS_DIR, placer=placer) as supervisor:
            served = serve(supervisor, design, conditions)
            phase = Phase(name=phase_name, kind="steady", rate_per_s=rate_per_s, duration_s=duration_s)
            contract_file = cell_dir / "contract.json"
            contract_file.write_text(driven(design, census).to_json())
            argv = locust_argv(served.url, cell_dir, phase, 1, 1.0 if design.follows_outcome else 0, 1,
                               contract=contract_file)
            probing = QueueProbe(served.queue, cell_dir, server.url if census else None) \
                if served.queue is not None else nullcontext(None)
            with probing as probe:
                t0 = time.time()
                locust = supervisor.start(f"locust-{phase_name}", argv, role="load", expect_exit=True)
                # Faults run on this (main) thread: children get PR_SET_PDEATHSIG, which fires when the
                # *thread* that started them exits, so a Redis or worker restarted from a short-lived
                # thread would be killed again the moment that thread ended.
                target = FaultTarget(served.workers, server, relay, served.url, log, t0,
                                     replace=lambda: add_worker(supervisor, served, conditions), jobs_visible=on_rq)
                try:
                    extra = fault.run(target)
                except Exception as exc:  # noqa: BLE001 - reported below, not swallowed
                    errors.append(f"{type(exc).__name__}: {exc}")
                while locust.alive():
                    time.sleep(0.25)
                load_ended = time.time()
                acknowledged = read_acknowledged(cell_dir)
                if errors:
                    raise RuntimeError(f"fault {fault.name} could not be injected: {'; '.join(errors)}")
                # offpath's own designs: their state in Redis says more than HTTP can (side effects run twice, jobs
                # left in their queue library); any other design is audited through its status URL alone.
                result = audit(server.url, acknowledged, settle_timeout_s=chaos.settle_timeout_s,
                               queued=queued) if census else \
                    audit_over_http(served.url, design.contract, acknowledged, chaos.settle_timeout_s)
                settled = time.time()
            alive = sum(1 for w in served.workers if w.alive())
            fault_t = log.events[0]["t_s"] if log.events else None
            row = {
                "fault": fault.name, "kind": fault.kind, "design": fault.design, "backend": backend,
                "profile": str(profile), "aof": fault.aof, "load": f"{rate_per_s:g}/s for {duration_s:g} s",
                **result.to_dict(),
                "recovered_after_fault_s": round(settled - t0 - fault_t, 1) if fault_t is not None and result.ok else None,
                "drained_after_load_s": round(settled - load_ended, 1),
                "refused": _refused(cell_dir),
                "workers_alive": f"{alive}/{chaos.workers}" if design.has_workers else None,
                **(_liveness(server.url, queue_name) if on_rq else {}),
                **extra,
                "events": log.events, "errors": errors, "probe_errors": probe.errors[:5] if probe is not None else [],
            }
            # A fault's own check (a client-disconnect's consistency) adds to the audit's, never replaces it.
            # A freeze makes a live worker look dead: its false abandonment is the fault's effect (counted, shown), and
            # what must hold is the fence's: nothing lost, nothing duplicated.
            row["ok"] = result.ok and (fault.takes_for_dead or not row.get("false_abandonments")) \
                and extra.get("ok", True) \
                and all(t is not None for t in row.get("recovery_s", []))
            return row
    finally:
        if relay is not None:
            relay.close()
        if served is not None and served.queue is not None:
            served.queue.close()
        server.stop()


def _host_port(redis_url: str) -> tuple[str, int]:
    parsed = urlsplit(redis_url)
    return parsed.hostname or "127.0.0.1", parsed.port or 6379


def _refused(cell_dir: Path) -> dict[str, int]:
    """Requests the service did not accept during the cell, by status (0: no HTTP answer)."""
    errors = read_errors_csv(cell_dir / ERRORS_FILE)
    totals = errors.groupby("status")["count"].sum()
    return {str(int(str(status))): int(count) for status, count in totals.items()}


def _liveness(redis_url: str, queue_name: str) -> dict[str, Any]:
    """What the abandonment watch declared, which of its declarations were false (the worker was still running the
    job: services/queued/liveness.py), and which outcomes the fence refused."""
    connection = redis_py.Redis.from_url(redis_url)
    try:
        abandoned = connection.llen(ABANDONED_KEY.format(queue=queue_name))
        false = connection.llen(FALSE_ABANDONMENTS_KEY.format(queue=queue_name))
        fenced = connection.llen(FENCED_KEY)
    finally:
        connection.close()
    # fenced: outcomes refused because their delivery no longer owned its step (services/campaign/steps.py).
    return {"abandoned": abandoned, "false_abandonments": false, "fenced": fenced}


def run_chaos(chaos: Chaos, out_root: Path, only: list[str] | None = None, say=print) -> ChaosOutcome:
    session = RunSession(out_root, chaos.name, say)
    results: list[dict[str, Any]] = []

    def measure() -> None:
        placements = Placements.shared()
        # Each fault starts its own redis-server (it crashes and restarts it): no one version for the run.
        session.start_manifest("per fault: bundled or PATH redis-server", RunRecord(
            kind=CHAOS_KIND, experiment=ExperimentFacts(chaos.resolved()),
            cpus=CpuSplit.from_dict(placements.split()),
        ))
        with Placer(placements, session.id) as placer:
            run_faults(placer)

    def run_faults(placer: Placer) -> None:
        for fault in chaos.faults:
            if only and fault.name not in only:
                continue
            rate_per_s = fault.rate_per_s if fault.rate_per_s is not None else chaos.rate_per_s
            duration_s = fault.duration_s if fault.duration_s is not None else chaos.duration_s
            for backend in chaos.runs(fault):
                on = f" on {backend}" if backend else ""
                say(f"fault {fault.name}: {fault.kind} ({fault.design}{on}) under {rate_per_s:g}/s for "
                    f"{duration_s:g} s")
                row = run_fault(chaos, fault, session.run_dir, placer, backend)
                results.append(row)
                write_json_atomic(session.run_dir / CHAOS_FILE, results)
                say(f"  acknowledged {row['acknowledged']}, completed {row['completed']}, failed {row['failed']}, "
                    f"lost {row['lost']}, duplicated {row.get('duplicated', '-')}, pending {row['pending']}, "
                    f"stuck {row.get('stuck', '-')}; recovered after {row['recovered_after_fault_s']} s; "
                    f"{fault_measures(row) or 'no more measures'}"
                    + (f"; outcomes fenced {row['fenced']}" if row.get("fenced") else ""))

    error = session.run(measure)
    (session.run_dir / CHAOS_TABLE_FILE).write_text(fault_table(results))
    say("\n" + fault_table(results))
    if error:
        say(f"chaos run INCOMPLETE: {error}")
    return ChaosOutcome(run_dir=session.run_dir, complete=error is None and bool(results),
                        broken=tuple(r["fault"] + (f" on {r['backend']}" if r.get("backend") else "")
                                     for r in results if not r["ok"]))
