"""The experiment runner: turns an experiment file into a results folder whose numbers can be trusted.

For each design and repetition (interleaved A B A B to cancel machine drift) it starts fresh
processes on a fresh Redis database, runs every phase as one Locust cell, probes the queue, and
writes the cell's files; then it runs each design's capacity search. The system under test and
the load generator are pinned to different CPUs where the machine has more than one.

A sweep runs that whole comparison once per point, each point's cells under `points/<point-id>/` of the one run
folder (the layout of a plain run's folder), recorded in the one manifest; `resume` goes on with an interrupted
sweep's folder, keeping the points that finished and redoing any other from scratch.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import redis as redis_py

from analysis.stats.bracket import Bracket
from analysis.stats.capacity import StepFigures, broken_limits
from analysis.stats.sequential import look, run_so_far
from analysis.stats.summary import cell_summary, format_table
from foundation.errors import ConfigurationError, HarnessError
from foundation.experiment_facts import ExperimentFacts
from foundation.format import (
    BENCH_KIND,
    CELLS_DIR,
    COMMANDS_FILE,
    CONTRACT_MISMATCH_FILE,
    CPU_FILE,
    POINTS_DIR,
    REQUEST,
    SOAK_KIND,
    SUMMARY_FILE,
    SWEEP_KIND,
    CellSummary,
    label,
)
from foundation.manifest_format import (
    CellRecord,
    CpuSplit,
    PointRecord,
    ProcessFacts,
    RedisFacts,
    ResumeRecord,
    RunRecord,
    Seeds,
    TierGrant,
)
from loadtests.contract import Driven
from offpath.capacity_search import (
    SETTLE_TIMEOUT_S,
    UNTIL_DECIDED,
    Search,
    SearchSettings,
    Step,
    StopSearch,
    drive,
    narrow_until_decided,
    phase_name,
    ratios_decided,
)
from offpath.command_count import CommandCount, unmeasured_reason
from offpath.contract_check import check_contract
from offpath.cpu_meter import CpuLog, CpuMeter
from offpath.designs import Design
from offpath.experiment import Experiment, Phase, SweepPoint
from offpath.manifest import PROJECT_ROOT, Manifest, git_facts, now_iso, write_json_atomic
from offpath.placement import Placer
from offpath.probe import QueueProbe
from offpath.queues.adapter import QueueAdapter
from offpath.redis_server import RedisServer, redis_for_run
from offpath.serving import Conditions, Served, serve
from offpath.session import RunSession
from offpath.soak import recording, roots_of, soak_phase, soak_rate
from offpath.supervisor import Managed, Supervisor, python
from offpath.sweep import check_resumable, point_record, profile_facts

LOCUSTFILE = PROJECT_ROOT / "loadtests" / "locustfile.py"
# The queued design's backlog past which a capacity search stops: the workers are long since lost.
BACKLOG_LIMIT = 50_000
# What a run spends beside offering load, for its planned duration (measured on the 2-core development machine, runs
# 20261130-050428-reference-752f35 and a two-point crossover sweep): Locust's start and stop around each cell
# (2.3-2.8 s); starting a block's fresh processes (1.4-2.7 s without workers, ~0.25 s more per RQ worker, which
# start on the workers' CPUs); and the step that ends a capacity search (Locust waits up to its 10 s stop timeout for
# the requests an overloaded service still holds; a queued design's drain up to the layout's drain_timeout_s).
CELL_OVERHEAD_S = 2.5
BLOCK_OVERHEAD_S = 2.5
WORKER_START_S = 0.25
BREAK_OVERHEAD_S = 10.0


@dataclass(frozen=True)
class Block:
    """One design with fresh processes: the phases of a repetition, or a capacity search."""

    design: str
    repetition: int
    phases: tuple[Phase, ...]
    capacity: bool = False
    soak: bool = False  # its one cell's rate is known once the design's capacity search has run (offpath/soak.py)
    narrowing: int = 0  # n > 0: the n-th block that narrows a paused capacity search (narrow = "until-decided")

    @property
    def label(self) -> str:
        if self.narrowing:
            return f"{self.design}.narrow{self.narrowing}"
        if self.soak:
            return f"{self.design}.soak"
        return f"{self.design}.capacity" if self.capacity else f"{self.design}.r{self.repetition}"


def plan(experiment: Experiment) -> list[Block]:
    if experiment.soak is not None:  # in the order they run: each design's capacity search (if any), then its soak
        soaks = []
        for design in experiment.designs:
            if experiment.capacity is not None:
                soaks.append(Block(design, 1, (), capacity=True))
            soaks.append(Block(design, 1, (), soak=True))
        return soaks
    blocks = [Block(design, rep, experiment.phases)
              for rep in range(1, experiment.repetitions + 1) for design in experiment.designs if experiment.phases]
    if experiment.capacity is not None:
        blocks += [Block(design, 1, (), capacity=True) for design in experiment.designs]
    return blocks


def planned_duration_s(experiment: Experiment) -> tuple[float, float]:
    """(at least, at most) seconds the experiment takes, every point of a sweep included: its phases and overheads,
    then its capacity searches, each of which stops somewhere between its first step and its last."""
    points = experiment.sweep.points() if experiment.sweep is not None else [None]
    least = most = 0.0
    for point in points:
        at = experiment.at(point) if point is not None else experiment
        soak_s = at.soak.duration_s + CELL_OVERHEAD_S + at.layout.drain_timeout_s if at.soak is not None else 0.0
        fixed = sum(_start_s(at, b.design) + sum(p.duration_s + CELL_OVERHEAD_S for p in b.phases) + b.soak * soak_s
                    for b in plan(at) if not b.capacity)
        least, most = least + fixed, most + fixed
        if at.capacity is not None:
            search = at.capacity
            step_s = search.step_duration_s + CELL_OVERHEAD_S
            # At most: every step to the ceiling, then every narrowing probe, each as long as one at the lowest rate.
            steps = search.most_probes() - search.refine_steps
            narrowing_s = search.refine_steps * (search.duration_s(search.start_per_s, "refine") + CELL_OVERHEAD_S)
            for name in at.designs:
                ends = _start_s(at, name) + BREAK_OVERHEAD_S
                least += ends + step_s
                most += ends + steps * step_s + narrowing_s
    return least, most


def _start_s(experiment: Experiment, name: str) -> float:
    """Starting one block's fresh processes: the service, and the workers of a design that has them."""
    return BLOCK_OVERHEAD_S + (WORKER_START_S * experiment.layout.workers if experiment.design(name).has_workers
                               else 0.0)


def _minutes(seconds: float) -> str:
    return f"{seconds / 60:.1f} min"


def driven(design: Design, census: bool) -> Driven:
    """What Locust drives for `design`: its contract, where its templates and payload functions are, and whether the
    client records the service's own timings (when the harness takes no census of its own)."""
    folder = str(design.base_dir)
    return Driven(contract=design.contract, base_dir=folder, pythonpath=[folder], service_timestamps=not census)


def locust_argv(
    url: str, cell_dir: Path, phase: Phase, payload_seed: int, poll_interval_s: float, processes: int,
    poll: str = "interval", contract: Path | None = None,
) -> list[str]:
    """Locust's command line for one cell; `poll` is how the client of an acknowledged request learns the outcome
    (POLL_MODES); `contract` the design it drives (loadtests/contract.py Driven; absent: offpath's campaigns)."""
    argv = [
        python(), "-m", "locust", "-f", str(LOCUSTFILE), "--headless", "--host", url,
        "-t", f"{phase.duration_s:g}s", "--stop-timeout", "10",
        "--hdr-dir", str(cell_dir), "--csv", str(cell_dir / "locust"), "--csv-full-history",
        "--only-summary", "--loglevel", "WARNING", "--exit-code-on-error", "0",
        "--payload-seed", str(payload_seed),
        "--poll-interval", f"{poll_interval_s:g}", "--poll", poll,
    ]
    if contract is not None:
        argv += ["--contract", str(contract)]
    if phase.rate_per_s is not None:
        # -r as high as -u: Locust would otherwise send a spawn message every second, each freezing workers.
        argv += ["--arrival-rate", f"{phase.rate_per_s:g}", "-u", str(processes), "-r", str(processes)]
    else:
        argv += ["-u", str(phase.users), "-r", str(phase.users), "--wait-s", f"{phase.wait_s:g}"]
    if processes > 1:
        argv += ["--processes", str(processes)]
    return argv


@dataclass(frozen=True)
class Stage:
    """Where one plain experiment's cells go: the run's folder and manifest (point None), or a sweep point's folder and
    its entry in the manifest's points (each holds its own `layout`, `placement` and `cells`)."""

    experiment: Experiment
    dir: Path
    point: str | None = None


class Runner:
    def __init__(self, experiment: Experiment, out_root: Path, say: Callable[[str], None] = print,
                 resume: Path | None = None):
        self.experiment = experiment
        self.say = say
        if resume is not None:
            check_resumable(Path(resume), experiment)
            self.session = RunSession.reopen(Path(resume), say)
        else:
            self.session = RunSession(out_root, experiment.name, say)
        self.resuming = resume is not None
        self.run_dir = self.session.run_dir
        self._placer: Placer | None = None
        self._meter: CpuMeter | None = None
        self.summaries: list[dict[str, Any]] = []
        self._db = 0
        points = [experiment.at(p) for p in experiment.sweep.points()] if experiment.sweep else [experiment]
        self._cells_total = sum(sum(len(b.phases) + b.soak for b in plan(at)) + (
            len(at.designs) * at.capacity.most_probes() if at.capacity else 0) for at in points)
        self._cells_done = 0
        self._started = time.monotonic()
        self._redis: RedisServer | None = None
        self._served: Served | None = None
        self._searches: dict[str, Search] = {}  # the stage's capacity searches, by design

    @property
    def manifest(self) -> Manifest:
        return self.session.manifest

    def run(self) -> bool:
        """Run everything; True for a complete run. The folder is marked incomplete otherwise."""
        error = self.session.run(self._measure)
        if self.summaries:
            self.say("\n" + format_table(self.summaries))
        if error:
            again = f"; go on with `offpath bench {self.experiment.source} --resume {self.run_dir}`"
            self.say(f"run INCOMPLETE: {error}" + (again if self.experiment.sweep else ""))
        return error is None

    def _measure(self) -> None:
        layout = self.experiment.layout
        with Placer(self.experiment.placements, self.session.id) as placer, redis_for_run(aof=layout.redis_aof) as redis:
            self._placer, self._meter, self._redis = placer, CpuMeter.of(placer), redis
            if redis.process is not None:
                placer.add("redis", redis.process.pid)
            profile = self.experiment.profile.load()
            if self.resuming:
                self.manifest.add_resume(ResumeRecord(at=now_iso(), git=git_facts(), redone=tuple(
                    p.id for p in self.manifest.record.points if p.status != "complete")))
            else:
                self.session.start_manifest(redis.version(), RunRecord(
                    kind=SWEEP_KIND if self.experiment.sweep else SOAK_KIND if self.experiment.soak else BENCH_KIND,
                    experiment=ExperimentFacts(self.experiment.resolved()),
                    profile=profile_facts(profile),
                    seeds=Seeds(profile=profile.seed, payload=self.experiment.payload_seed),
                    redis=RedisFacts(embedded=redis.embedded, aof=self.experiment.layout.redis_aof),
                    cpus=CpuSplit.from_dict(self.experiment.placements.split()),
                    cpu_accounting=self._meter.methods(),
                    points=self._sweep_points(),
                ))
            least, most = planned_duration_s(self.experiment)
            planned = _minutes(most) if least == most else f"{_minutes(least)} to {_minutes(most)}"
            points = f"{len(self.experiment.sweep.points())} sweep points, " if self.experiment.sweep else ""
            self.say(f"run {self.run_dir.name}: {points}{self._cells_total} cells, experiment "
                     f"{self.experiment.name!r}, profile {profile.name!r}; planned {planned} (phases and overheads, "
                     "then capacity searches that stop between their first and last step)")
            first = self.experiment.at(self.experiment.sweep.points()[0]) if self.experiment.sweep else self.experiment
            self._check_contracts(first)
            if self.experiment.sweep is None:
                self._run_stage(Stage(self.experiment, self.run_dir))
                return
            for point, record in zip(self.experiment.sweep.points(), self.manifest.record.points, strict=True):
                if record.status == "complete":
                    self.say(f"point {point.id}: complete, kept")
                    self._cells_done += len(record.cells)
                    continue
                self._run_point(point)

    def _check_contracts(self, experiment: Experiment) -> None:
        """Each design after the first served once and sent one request before anything is measured (the first is
        checked as its first block starts, a moment later): a design whose service does not keep its contract stops
        the run within seconds, not after the designs before it have been measured."""
        assert self._redis is not None
        layout = experiment.layout
        for design in experiment.declared[1:]:
            log_dir = self.run_dir / "logs" / f"{design.name}.contract-check"
            with Supervisor(log_dir=log_dir, env={"OFFPATH_LOG_LEVEL": "WARNING"}, placer=self._placer) as supervisor:
                served = serve(supervisor, design, Conditions(
                    redis_url=self._fresh_db(self._redis), profile=str(experiment.profile),
                    processes=layout.service_processes, concurrency=layout.concurrency, workers=layout.workers))
                check_contract(design.name, served.url, driven(design, census=False), experiment.payload_seed)
                if served.queue is not None:
                    served.queue.close()

    def _sweep_points(self) -> tuple[PointRecord, ...]:
        """A sweep's every point, pending until it runs (none for a plain experiment)."""
        sweep = self.experiment.sweep
        if sweep is None:
            return ()
        return tuple(point_record(point, self.experiment.at(point)) for point in sweep.points())

    def _run_point(self, point: SweepPoint) -> None:
        """One point from scratch: whatever an earlier, interrupted attempt left of it is removed first."""
        point_dir = self.run_dir / POINTS_DIR / point.id
        shutil.rmtree(point_dir, ignore_errors=True)
        self.manifest.put_point(self.manifest.record.point(point.id).restarted())
        self.say(f"point {point.id}: {point.text()}")
        self._run_stage(Stage(self.experiment.at(point), point_dir, point.id))
        self.manifest.put_point(replace(self.manifest.record.point(point.id), status="complete"))

    def _run_stage(self, stage: Stage) -> None:
        blocks = plan(stage.experiment)
        if stage.experiment.soak is not None:
            for block in blocks:
                self._run_block(block, stage)
            return
        for block in [b for b in blocks if not b.capacity]:
            self._run_block(block, stage)
        self._repeat_until_decided(stage)
        self._searches = {}
        for block in [b for b in blocks if b.capacity]:
            self._run_block(block, stage)
        self._narrow_until_decided(stage)

    def _narrow_until_decided(self, stage: Stage) -> None:
        """`[capacity] narrow = "until-decided"`: the searches paused where they would narrow are narrowed, the widest
        bracket first, each in a block of fresh processes, while a capacity ratio is undecided
        (offpath/capacity_search.py's narrow_until_decided)."""
        blocks = 0

        def narrow(name: str) -> None:
            nonlocal blocks
            blocks += 1
            self.say(f"  capacity ratio undecided: narrowing {name}'s bracket (±{self._searches[name].width_pct:.1f}%)")
            self._run_block(Block(name, 1, (), capacity=True, narrowing=blocks), stage)

        for name in narrow_until_decided(self._searches, lambda: self._ratios_decided(stage), narrow):
            self._put_search(stage, name, self._searches[name])

    def _ratios_decided(self, stage: Stage) -> bool:
        return ratios_decided(self._searches, stage.experiment.designs,
                              stage.experiment.margins.for_metric("capacity"))

    def _repeat_until_decided(self, stage: Stage) -> None:
        """A sequential experiment (analysis/stats/verdict_settings.py's Sequential): look at the headline rows after
        the declared repetitions, and add one interleaved repetition of every design while a look says so. Every
        look goes into the manifest (`sequential`): how many it took, and what was still undecided."""
        record = self.manifest.record if stage.point is None else self.manifest.record.point(stage.point)
        if not stage.experiment.phases or record.experiment.resolved.get("sequential") is None:
            return
        repetition = stage.experiment.repetitions
        while True:
            found = look(run_so_far(stage.dir, self.manifest.record, stage.point))
            self.manifest.add_look(stage.point, found.record())
            self.say(f"  {found.text()}")
            if not found.go_on:
                return
            repetition += 1
            for name in stage.experiment.designs:
                self._run_block(Block(name, repetition, stage.experiment.phases), stage)

    def _fresh_db(self, redis: RedisServer, everything: bool = False) -> str:
        """A fresh database; with `everything`, on a Redis emptied of every database (a soak measures Redis's memory,
        which keys left by earlier blocks, expiring meanwhile, would move)."""
        self._db += 1
        base = redis.url.rsplit("/", 1)[0]
        url = f"{base}/{self._db % 64}"
        connection = redis_py.Redis.from_url(url)
        if everything:
            connection.flushall()
        else:
            connection.flushdb()
        connection.close()
        return url

    def _run_block(self, block: Block, stage: Stage) -> None:
        experiment = stage.experiment
        assert self._redis is not None
        redis_url = self._fresh_db(self._redis, everything=block.soak)
        log_dir = stage.dir / "logs" / block.label
        design = experiment.design(block.design)
        layout = experiment.layout
        with Supervisor(log_dir=log_dir, env={"OFFPATH_LOG_LEVEL": "WARNING"}, placer=self._placer) as supervisor:
            self._served = served = serve(supervisor, design, Conditions(
                redis_url=redis_url, profile=str(experiment.profile), processes=layout.service_processes,
                concurrency=layout.concurrency, workers=layout.workers))
            url = served.url
            # One request sent and followed before anything is measured: a contract the service does not keep stops
            # the run here, within seconds, with what the service answered.
            check_contract(design.name, url, driven(design, census=False), experiment.payload_seed)
            # What each tier got, read back from the kernel once all are running.
            granted = {tier: TierGrant.from_dict(got) for tier, got in self._placer.granted().items()} \
                if self._placer is not None else None
            self.manifest.add_block(stage.point, block.label, [ProcessFacts.from_dict(p) for p in supervisor.layout()],
                                    granted)
            try:
                for phase in block.phases:
                    self._run_cell(stage, supervisor, block, phase, url, redis_url, kind=phase.kind)
                if block.soak and experiment.soak is not None:
                    rate = soak_rate(experiment.soak, block.design, self.manifest.record.capacity_searches)
                    phase = soak_phase(experiment.soak, rate)
                    self._run_cell(stage, supervisor, block, phase, url, redis_url, kind=phase.kind)
                if block.capacity:
                    self._capacity_search(stage, supervisor, block, url, redis_url)
            finally:
                if served.queue is not None:
                    served.queue.close()

    def _capacity_search(self, stage: Stage, supervisor: Supervisor, block: Block, url: str, redis_url: str) -> None:
        """offpath/capacity_search.py chooses the rates; each probe is a capacity cell judged by the rule analysis
        judges capacity by. How the search ended goes into the manifest (capacity_searches) for analysis to say."""
        record = self.manifest.record if stage.point is None else self.manifest.record.point(stage.point)
        settings = SearchSettings.of(record.experiment.resolved["capacity"], str(self.experiment.source or "experiment"))
        slo = stage.experiment.slo
        queue = self._served.queue if self._served is not None else None
        broke_last = False

        def backlog(queue: QueueAdapter) -> int | None:
            try:
                return queue.read().backlog
            except Exception:  # noqa: BLE001 - a broker that does not answer now may answer in a moment
                return None

        def settle(queue: QueueAdapter, step: Step) -> None:
            # After a probe that broke, the next starts on an empty queue: a leftover backlog would break it too.
            deadline = time.monotonic() + SETTLE_TIMEOUT_S
            while (left := backlog(queue)) != 0:
                if time.monotonic() > deadline:
                    raise StopSearch(f"{left if left is not None else 'the'} jobs left by the last probe did not "
                                     f"drain within {SETTLE_TIMEOUT_S:g} s, so {step.rate_per_s:g}/s could not start "
                                     "on an empty queue")
                self._check(supervisor)
                time.sleep(0.5)

        def probe(step: Step) -> bool:
            nonlocal broke_last
            if broke_last and queue is not None:
                settle(queue, step)
            phase = Phase(name=phase_name(step.rate_per_s), kind="capacity", rate_per_s=step.rate_per_s,
                          duration_s=step.duration_s)
            summary = self._run_cell(stage, supervisor, block, phase, url, redis_url, kind="capacity")
            figures = StepFigures.of_summary(summary)
            # The rule analysis judges capacity by: a step of a design with queue data must keep its acknowledgement,
            # a flat backlog and its completion P99 within the completion SLO.
            broken = broken_limits(figures, slo)
            if broken:
                completion = "" if not figures.queued else (
                    f", completion P99 {(figures.completion_p99_us or 0) / 1000:.0f} ms"
                    + (f", {figures.pending} of {figures.accepted} not final" if figures.pending else "")
                    + (", backlog growing" if figures.sustainable is False else ""))
                self.say(f"  {block.design} breaks the SLO at {step.rate_per_s:g}/s ({', '.join(broken)}: P99 "
                         f"{(figures.p99_us or 0) / 1000:.0f} ms, errors {figures.error_rate:.1%}{completion})")
            elif summary.queue is not None and (summary.queue.depth_end or 0) > BACKLOG_LIMIT:
                raise StopSearch(f"backlog over {BACKLOG_LIMIT} jobs at {step.rate_per_s:g}/s")
            broke_last = bool(broken)
            return not broken

        if block.narrowing:
            search = self._searches[block.design]
            search.paused = False
        else:
            # A soak's search narrows as it runs: the soak that follows it at once needs its limit.
            until_decided = settings.narrow == UNTIL_DECIDED and len(stage.experiment.designs) > 1 \
                and stage.experiment.soak is None
            search = Search(settings, paused=until_decided,
                            decided=(lambda: self._ratios_decided(stage)) if until_decided else None)
            self._searches[block.design] = search
        drive(search, probe)
        if search.outcome is None:
            self.say(f"  {block.design} capacity search: limit in {Bracket(search.held, search.broke).text()}, "
                     "narrowed only if a capacity ratio needs it")
            return
        self._put_search(stage, block.design, search)

    def _put_search(self, stage: Stage, design: str, search: Search) -> None:
        result = search.result()
        self.manifest.put_search(stage.point, design, result.record())
        self.say(f"  {design} capacity search: {result.text()}")

    def _run_cell(self, stage: Stage, supervisor: Supervisor, block: Block, phase: Phase, url: str, redis_url: str,
                  kind: str) -> CellSummary:
        record = CellRecord.start(block.design, phase.name, kind, block.repetition, rate_per_s=phase.rate_per_s,
                                  users=phase.users, duration_s=phase.duration_s, at=time.time())
        cell_id = record.id
        cell_dir = stage.dir / CELLS_DIR / cell_id
        cell_dir.mkdir(parents=True)
        self.manifest.put_cell(stage.point, record)
        self._cells_done += 1
        load = f"{phase.rate_per_s:g}/s" if phase.rate_per_s is not None else f"{phase.users} users"
        self.say(f"[{self._cells_done}/{self._cells_total}] {cell_id}: {load} for {phase.duration_s:g} s "
                 f"(elapsed {time.monotonic() - self._started:.0f} s)")
        served = self._served
        assert served is not None
        design = served.design
        census = design.declaration.census is not None
        contract_file = cell_dir / "contract.json"
        contract_file.write_text(driven(design, census).to_json())
        try:
            with ExitStack() as cell:
                # The CPU log spans the cell and, for a queued design, its drain: the work it accepted is its cost. A
                # deployment already running (a design's `url`) has no process of offpath's to count: no cpu.csv, so
                # its cost reads as unmeasured, never as the few milliseconds of offpath's own idle Redis.
                if self._meter is not None and served.started_anything:
                    cell.enter_context(CpuLog(self._meter, cell_dir / CPU_FILE))
                # A soak's memory, entered before the queue probe so that it leaves after it: keys counted once drained.
                if kind == "soak" and stage.experiment.soak is not None:
                    cell.enter_context(recording(cell_dir, roots_of(supervisor, self._redis), redis_url,
                                                 stage.experiment.soak))
                # Entered before the probe, so that it ends after the probe's census: the probe's commands are the
                # harness's, counted and subtracted (offpath/command_count.py).
                cell.enter_context(CommandCount(redis_url, cell_dir / COMMANDS_FILE, unmeasured_reason(design)))
                probe = cell.enter_context(QueueProbe(served.queue, cell_dir, redis_url if census else None)) \
                    if served.queue is not None else None
                layout = stage.experiment.layout
                argv = locust_argv(url, cell_dir, phase, stage.experiment.payload_seed,
                                   layout.poll_interval_s if design.follows_outcome else 0, layout.locust_processes,
                                   layout.poll, contract_file)
                locust = supervisor.start(f"locust-{cell_id}", argv, role="load", expect_exit=True)
                locust.log_path = supervisor.log_dir / f"locust-{cell_id}.log" if supervisor.log_dir else None
                self._watch(supervisor, locust, phase.duration_s, cell_dir)
                if probe is not None:
                    self._drain(supervisor, probe, layout.drain_timeout_s)
        finally:
            # A cell that raised keeps its end time; the run's end marks it incomplete (Manifest.finish).
            record = replace(record, ended_at=time.time())
            self.manifest.put_cell(stage.point, record)
        record = replace(record, status="complete")
        summary = cell_summary(cell_dir, record)
        written = summary.to_dict()
        write_json_atomic(cell_dir / SUMMARY_FILE, written)
        self.manifest.put_cell(stage.point, record)
        self.summaries.append(written)
        self.say(_one_line(summary))
        return summary

    def _check(self, supervisor: Supervisor) -> None:
        supervisor.check()
        redis = self._redis
        if redis is not None and redis.process is not None and redis.process.poll() is not None:
            raise HarnessError(f"redis-server ({redis.url}) died with code {redis.process.returncode} mid-run")

    def _watch(self, supervisor: Supervisor, locust: Managed, duration_s: float, cell_dir: Path) -> None:
        deadline = time.monotonic() + duration_s + 60
        mismatch = cell_dir / CONTRACT_MISMATCH_FILE
        while locust.alive():
            self._check(supervisor)
            if mismatch.is_file():
                supervisor.stop(locust)
                raise ConfigurationError(f"design {self._served.design.name if self._served else '?'}: "
                                         f"{mismatch.read_text().strip()}")
            if time.monotonic() > deadline:
                supervisor.stop(locust)
                raise HarnessError(f"Locust did not finish within {duration_s + 60:g} s; stopped it")
            time.sleep(0.25)
        if mismatch.is_file():
            raise ConfigurationError(mismatch.read_text().strip())
        if locust.process.returncode != 0:
            raise HarnessError(f"Locust exited with code {locust.process.returncode}:\n{locust.tail()}")
        self._check(supervisor)

    def _drain(self, supervisor: Supervisor, probe: QueueProbe, timeout_s: float) -> None:
        """Let the workers finish the cell's backlog (bounded), so completions are measured."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            self._check(supervisor)
            time.sleep(0.5)
            if probe.samples and probe.backlog() == 0:
                return


def _one_line(summary: CellSummary) -> str:
    create = summary.endpoint(REQUEST)
    text = (f"    {label(REQUEST)} n={create.count} errors={create.errors} {create.throughput_per_s:.1f}/s "
            f"P50 {(create.p50_us or 0) / 1000:.1f} ms P99 {(create.p99_us or 0) / 1000:.1f} ms")
    queue = summary.queue
    if queue is not None:
        verdict = "too short to judge the backlog" if queue.sustainable is None else (
            "sustainable" if queue.sustainable else "backlog GROWING: not sustainable")
        counted = "" if queue.accepted is None else (
            f" ({queue.completion.count} of {queue.accepted} completed, {queue.failed or 0} failed"
            + (f", {queue.pending} PENDING)" if queue.pending else ")"))
        text += (f" | completion P99 {(queue.completion.p99_us or 0) / 1000:.0f} ms{counted}, backlog end "
                 f"{queue.depth_end}, {verdict}")
    return text
