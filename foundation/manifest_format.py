"""manifest.json as typed records: the run, its cells, a sweep's points and resumes, written and read the same way.

The harness builds these records and saves them (offpath/manifest.py keeps the run's record current as cells start and
end); analysis reads them back through analysis/stats/load.py, never the raw JSON. They live apart from
foundation/format.py, which holds every other name and record of a results folder, only to keep each module short;
the format's version and history (`SCHEMA_VERSION`) are format.py's, for these records too.

Each record's fields are its JSON keys in the order written. `to_dict()` gives the JSON exactly as the harness has
written it under schema_version 1, and `from_dict()` reads it back (a key the reader does not know is ignored, one it
misses takes its default), so `X.from_dict(d).to_dict() == d` for every manifest the harness writes. Three parts stay
the mappings the harness gave, each the echo of a model owned elsewhere: the experiment as resolved (its typed views
in foundation/experiment_facts.py), a workload profile's step costs, and a tier's declared placement.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from foundation.experiment_facts import ExperimentFacts
from foundation.format import BENCH_KIND, SWEEP_KIND, cell_id, record_from

__all__ = [
    "SEARCH_OUTCOMES", "CapacitySearchRecord", "CellRecord", "CpuSplit", "GitFacts", "Layout", "LookRecord",
    "MachineFacts", "Placement", "PointRecord", "ProcessFacts", "ProfileFacts", "RedisFacts", "ResumeRecord",
    "RunRecord", "Seeds", "SequentialRecord", "TierGrant", "schema_version_of",
]


def _ints(values: Iterable[Any] | None) -> tuple[int, ...]:
    return tuple(int(v) for v in values or ())


# -- the run's facts -------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class GitFacts:
    """The commit the harness ran from; `dirty` None when git could not tell (sha "unknown")."""

    sha: str = "unknown"
    dirty: bool | None = None

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> GitFacts:
        return record_from(cls, data)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class MachineFacts:
    """The machine the run measured on (a gate baseline holds only on the machine that recorded it)."""

    cpu_count: int | None = None
    cpus_available: int | None = None  # this process's CPU affinity
    cpu_model: str | None = None
    platform: str | None = None
    hostname: str | None = None
    memory_gib: float | None = None

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> MachineFacts:
        return record_from(cls, data)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class ProfileFacts:
    """The workload profile as loaded: what each step of the slow work costs (`generation`, `automation`: the profile
    model's own fields, cpu_ms, wait_median_ms, ...; absent from manifests that recorded only the name)."""

    name: str = ""
    description: str = ""
    seed: int | None = None
    generation: Mapping[str, float] | None = None
    automation: Mapping[str, float] | None = None

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ProfileFacts:
        return record_from(cls, data)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "description": self.description, "seed": self.seed}
        for step in ("generation", "automation"):
            cost = getattr(self, step)
            if cost is not None:
                out[step] = dict(cost)
        return out


@dataclass(frozen=True)
class Seeds:
    """What makes a run's random draws repeatable."""

    profile: int | None = None  # the work's random draws (provider waits, failures)
    payload: int | None = None  # the request bodies

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Seeds:
        return record_from(cls, data)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class RedisFacts:
    """The Redis the run used, and how it persisted (the queued design's durability depends on its AOF)."""

    embedded: bool = False  # offpath started its own redis-server (else REDIS_URL's)
    aof: str | None = None

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RedisFacts:
        return record_from(cls, data)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class CpuSplit:
    """The CPUs of the load generator and of everything measured (the union of the serving tiers')."""

    load: tuple[int, ...] = ()
    system_under_test: tuple[int, ...] = ()

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> CpuSplit:
        return cls(_ints(data.get("load")), _ints(data.get("system_under_test")))

    def to_dict(self) -> dict[str, Any]:
        return {"load": list(self.load), "system_under_test": list(self.system_under_test)}


# -- a block's processes and placement -------------------------------------------------------------------------------


@dataclass(frozen=True)
class ProcessFacts:
    """One process a block started: its role (service, worker, load, ...), pid, the CPUs the kernel let it use."""

    name: str = ""
    role: str = ""
    pid: int | None = None
    cpus: tuple[int, ...] = ()
    argv: tuple[str, ...] = ()

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ProcessFacts:
        return record_from(cls, data, cpus=_ints(data.get("cpus")), argv=tuple(str(a) for a in data.get("argv") or ()))

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "role": self.role, "pid": self.pid, "cpus": list(self.cpus), "argv": list(self.argv)}


# Keys of a tier that had a CPU budget (a cgroup of its own): absent from the JSON of one without.
_BUDGET_KEYS = ("cgroup", "quota_us", "period_us", "cpu_budget")


@dataclass(frozen=True)
class TierGrant:
    """What one tier got in one block, read back from the kernel once its processes ran: the CPUs they may use (None
    without processes), its budget's cgroup, quota and period (CPUs = quota / period), and how its CPU was counted.
    `declared` is the experiment's placement for the tier, as resolved."""

    declared: Mapping[str, Any] = field(default_factory=dict)
    processes: int = 0
    cpus_allowed: tuple[int, ...] | None = None
    cgroup: str | None = None
    quota_us: int | None = None
    period_us: int | None = None
    cpu_budget: float | None = None
    accounting: str = ""

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TierGrant:
        allowed = data.get("cpus_allowed")
        return record_from(cls, data, declared=dict(data.get("declared") or {}),
                           cpus_allowed=_ints(allowed) if allowed is not None else None)

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["cpus_allowed"] = list(self.cpus_allowed) if self.cpus_allowed is not None else None
        if self.cgroup is None:
            for key in _BUDGET_KEYS:
                del out[key]
        return out


Layout = Mapping[str, tuple[ProcessFacts, ...]]  # by block label ("inline.r1", "queued.capacity")
Placement = Mapping[str, Mapping[str, TierGrant]]  # by block label, then tier


def _layout(data: Any) -> Layout:
    return {str(block): tuple(ProcessFacts.from_dict(p) for p in processes if isinstance(p, Mapping))
            for block, processes in (data or {}).items()}


def _placement(data: Any) -> Placement:
    return {str(block): {str(t): TierGrant.from_dict(g) for t, g in tiers.items() if isinstance(g, Mapping)}
            for block, tiers in (data or {}).items() if isinstance(tiers, Mapping)}


def _layout_dict(layout: Layout) -> dict[str, Any]:
    return {block: [p.to_dict() for p in processes] for block, processes in layout.items()}


def _placement_dict(placement: Placement) -> dict[str, Any]:
    return {block: {tier: g.to_dict() for tier, g in tiers.items()} for block, tiers in placement.items()}


# -- cells, points, resumes --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CellRecord:
    """One entry of a manifest's `cells`: what a cell was asked to do, and when it ran. Its folder is
    cells/<id>/, id `cell_id(design, phase, repetition)`."""

    id: str
    design: str = ""
    phase: str = ""
    kind: str = ""  # "warmup" | "steady" | "capacity"
    repetition: int = 1
    model: str | None = None  # "open" | "closed"
    offered_rate_per_s: float | None = None
    users: int | None = None
    duration_s: float = 0.0
    started_at: float | None = None
    ended_at: float | None = None
    status: str | None = None  # "running" while it runs, then "complete" | "incomplete"

    @classmethod
    def start(cls, design: str, phase: str, kind: str, repetition: int, *, rate_per_s: float | None,
              users: int | None, duration_s: float, at: float) -> CellRecord:
        """A cell as it starts: open model with a rate, closed without one."""
        return cls(id=cell_id(design, phase, repetition), design=design, phase=phase, kind=kind, repetition=repetition,
                   model="open" if rate_per_s is not None else "closed", offered_rate_per_s=rate_per_s, users=users,
                   duration_s=duration_s, started_at=at, ended_at=None, status="running")

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> CellRecord:
        rate = data.get("offered_rate_per_s")
        return record_from(cls, data, id=str(data["id"]), repetition=int(data.get("repetition") or 1),
                           duration_s=float(data.get("duration_s") or 0.0),
                           offered_rate_per_s=float(rate) if rate is not None else None)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _cells(data: Any) -> tuple[CellRecord, ...]:
    return tuple(CellRecord.from_dict(c) for c in data or () if isinstance(c, Mapping) and "id" in c)


def _put(cells: tuple[CellRecord, ...], cell: CellRecord) -> tuple[CellRecord, ...]:
    """`cell` in place of the cell of its id, or after the others."""
    if any(c.id == cell.id for c in cells):
        return tuple(cell if c.id == cell.id else c for c in cells)
    return (*cells, cell)


def _cut_short(cells: tuple[CellRecord, ...]) -> tuple[CellRecord, ...]:
    return tuple(replace(c, status="incomplete") if c.status == "running" else c for c in cells)


# -- how a capacity search ended, and the looks of a sequential run (#25) ----------------------------------------------

# How a capacity search ended (offpath/capacity_search.py): the limit bracketed within the declared precision; the step
# budget spent first (a bracket, wider); held at the ceiling (the limit not found); broke at every rate down to the
# lowest it may try; stopped by the harness (`reason` says why); narrowed no further because every capacity ratio it
# serves was decided (`[capacity] narrow = "until-decided"`).
SEARCH_OUTCOMES = ("found", "budget", "ceiling", "below", "stopped", "decided")


@dataclass(frozen=True)
class CapacitySearchRecord:
    """`capacity_searches[design]`: how the design's capacity search ended. `held_per_s` is the highest rate at which it
    and every lower rate held (None: none did), `broke_per_s` the lowest rate above it that broke (None: none did, the
    limit was not found); `precision_pct` the declared ±precision, (broke − held) / (2 · held)."""

    outcome: str  # SEARCH_OUTCOMES
    held_per_s: float | None = None
    broke_per_s: float | None = None
    probes: int = 0
    precision_pct: float = 5.0
    ceiling_per_s: float | None = None
    reason: str = ""

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> CapacitySearchRecord:
        return record_from(cls, data, outcome=str(data.get("outcome") or ""))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _searches(data: Any) -> dict[str, CapacitySearchRecord]:
    return {str(design): CapacitySearchRecord.from_dict(record) for design, record in (data or {}).items()
            if isinstance(record, Mapping)}


@dataclass(frozen=True)
class LookRecord:
    """One look of a sequential run at its headline rows (analysis/stats/sequential.py decides it): which are decided at
    `repetitions` of each design, on intervals at `confidence`, and whether the runner added another repetition."""

    number: int = 1  # 1-based
    looks: int = 1  # the most looks the run may take
    repetitions: int = 1
    confidence: float = 0.95
    verdicts: Mapping[str, str] = field(default_factory=dict)  # row name -> verdict
    needs: Mapping[str, str] = field(default_factory=dict)  # undecided row -> what would decide it
    go_on: bool = False
    why: str = ""  # "every row decided" | "max repetitions" | "time budget" | "go on"
    spent_s: float = 0.0  # on repetitions added so far
    next_round_s: float = 0.0  # what one more was expected to take
    caveat: str = ""  # why the stated level may not hold

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> LookRecord:
        return record_from(cls, data, verdicts=dict(data.get("verdicts") or {}), needs=dict(data.get("needs") or {}))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self) | {"verdicts": dict(self.verdicts), "needs": dict(self.needs)}


@dataclass(frozen=True)
class SequentialRecord:
    """`sequential`: the looks a run took at its headline rows, and why it stopped adding repetitions (None while it
    goes on)."""

    looks: tuple[LookRecord, ...] = ()
    stopped: str | None = None

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SequentialRecord:
        return cls(looks=tuple(LookRecord.from_dict(look) for look in data.get("looks") or ()
                               if isinstance(look, Mapping)), stopped=data.get("stopped"))

    def to_dict(self) -> dict[str, Any]:
        return {"looks": [look.to_dict() for look in self.looks], "stopped": self.stopped}

    def with_look(self, look: LookRecord) -> SequentialRecord:
        return SequentialRecord(looks=(*self.looks, look), stopped=None if look.go_on else look.why)


def _verdict_keys(searches: Mapping[str, CapacitySearchRecord], sequential: SequentialRecord | None) -> dict[str, Any]:
    """The keys #25 added, written only where there is something (a manifest without them reads back as written)."""
    out: dict[str, Any] = {}
    if searches:
        out["capacity_searches"] = {design: record.to_dict() for design, record in searches.items()}
    if sequential is not None:
        out["sequential"] = sequential.to_dict()
    return out


@dataclass(frozen=True)
class PointRecord:
    """One entry of a sweep's `points`: what the point sets, the experiment and profile it runs (its sweep applied),
    and, laid out as a plain run's manifest holds them, its blocks' processes and placement and its cells. Status
    "pending" until it runs, "running", then "complete", or "incomplete" when a run was cut short in it."""

    id: str
    values: Mapping[str, float | str] = field(default_factory=dict)  # parameter -> value (a number, or a name)
    status: str = "pending"
    experiment: ExperimentFacts = field(default_factory=ExperimentFacts)
    profile: ProfileFacts = field(default_factory=ProfileFacts)
    layout: Layout = field(default_factory=dict)
    placement: Placement = field(default_factory=dict)
    cells: tuple[CellRecord, ...] = ()
    capacity_searches: Mapping[str, CapacitySearchRecord] = field(default_factory=dict)  # by design
    sequential: SequentialRecord | None = None

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> PointRecord:
        sequential = data.get("sequential")
        return record_from(cls, data, id=str(data["id"]), values=dict(data.get("values") or {}),
                           experiment=ExperimentFacts.from_dict(data.get("experiment") or {}),
                           profile=ProfileFacts.from_dict(data.get("profile") or {}),
                           layout=_layout(data.get("layout")), placement=_placement(data.get("placement")),
                           cells=_cells(data.get("cells")), capacity_searches=_searches(data.get("capacity_searches")),
                           sequential=SequentialRecord.from_dict(sequential) if sequential is not None else None)

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "values": dict(self.values), "status": self.status,
                "experiment": self.experiment.to_dict(), "profile": self.profile.to_dict(),
                "layout": _layout_dict(self.layout), "placement": _placement_dict(self.placement),
                "cells": [c.to_dict() for c in self.cells]} | _verdict_keys(self.capacity_searches, self.sequential)

    def restarted(self) -> PointRecord:
        """The point as it runs (again) from scratch: nothing of an earlier attempt kept."""
        return replace(self, status="running", layout={}, placement={}, cells=(), capacity_searches={},
                       sequential=None)

    def with_block(self, label: str, processes: Iterable[ProcessFacts],
                   granted: Mapping[str, TierGrant] | None) -> PointRecord:
        placement = {**self.placement, label: granted} if granted is not None else self.placement
        return replace(self, layout={**self.layout, label: tuple(processes)}, placement=placement)

    def with_cell(self, cell: CellRecord) -> PointRecord:
        return replace(self, cells=_put(self.cells, cell))

    def with_search(self, design: str, search: CapacitySearchRecord) -> PointRecord:
        return replace(self, capacity_searches={**self.capacity_searches, design: search})

    def with_look(self, look: LookRecord) -> PointRecord:
        return replace(self, sequential=(self.sequential or SequentialRecord()).with_look(look))

    def cut_short(self) -> PointRecord:
        """Cells and the point itself still running marked incomplete (a resume redoes such a point)."""
        return replace(self, cells=_cut_short(self.cells),
                       status="incomplete" if self.status == "running" else self.status)


@dataclass(frozen=True)
class ResumeRecord:
    """One `offpath bench EXP --resume RUN`: when, from which commit, and the points it ran again."""

    at: str = ""
    git: GitFacts = field(default_factory=GitFacts)
    redone: tuple[str, ...] = ()

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ResumeRecord:
        return record_from(cls, data, git=GitFacts.from_dict(data.get("git") or {}),
                           redone=tuple(str(p) for p in data.get("redone") or ()))

    def to_dict(self) -> dict[str, Any]:
        return {"at": self.at, "git": self.git.to_dict(), "redone": list(self.redone)}


# -- the run -----------------------------------------------------------------------------------------------------------


def schema_version_of(data: object) -> Any:
    """The `schema_version` of a manifest.json's JSON (None without one), read before the rest, whose shape depends on
    it."""
    return data.get("schema_version") if isinstance(data, Mapping) else None


@dataclass(frozen=True)
class RunRecord:
    """manifest.json. Keys absent from the JSON when None: `profile`, `seeds`, `redis`, `cpus`, `cpu_accounting`
    (a chaos run records none of them) and `placement` (until the first block ran; a sweep keeps it per point);
    `kind` when "bench"; `points` and `resumes` unless the kind is "sweep" (whose top-level `layout` and `cells` stay
    empty)."""

    schema_version: int | None = None
    run_id: str = ""
    started_at: str | None = None
    finished_at: str | None = None
    git: GitFacts = field(default_factory=GitFacts)
    versions: Mapping[str, str] = field(default_factory=dict)  # python, offpath, locust, ..., redis_server
    machine: MachineFacts = field(default_factory=MachineFacts)
    kind: str = BENCH_KIND  # | CHAOS_KIND | SWEEP_KIND
    experiment: ExperimentFacts = field(default_factory=ExperimentFacts)
    profile: ProfileFacts | None = None
    seeds: Seeds | None = None
    redis: RedisFacts | None = None
    cpus: CpuSplit | None = None
    cpu_accounting: Mapping[str, str] | None = None  # by tier: "cgroup" | "proc"
    points: tuple[PointRecord, ...] = ()
    resumes: tuple[ResumeRecord, ...] = ()
    status: str | None = None  # "complete" | "incomplete"
    error: str | None = None  # why it is incomplete
    layout: Layout = field(default_factory=dict)
    cells: tuple[CellRecord, ...] = ()
    placement: Placement | None = None
    capacity_searches: Mapping[str, CapacitySearchRecord] = field(default_factory=dict)  # by design (a plain run's)
    sequential: SequentialRecord | None = None  # a plain run's looks, when its experiment declares [sequential]

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RunRecord:
        def some(key: str, read: Any) -> Any:
            return read(data[key]) if data.get(key) is not None else None

        return record_from(
            cls, data, kind=str(data.get("kind") or BENCH_KIND), git=GitFacts.from_dict(data.get("git") or {}),
            versions=dict(data.get("versions") or {}), machine=MachineFacts.from_dict(data.get("machine") or {}),
            experiment=ExperimentFacts.from_dict(data.get("experiment") or {}),
            profile=some("profile", ProfileFacts.from_dict), seeds=some("seeds", Seeds.from_dict),
            redis=some("redis", RedisFacts.from_dict), cpus=some("cpus", CpuSplit.from_dict),
            cpu_accounting=some("cpu_accounting", dict),
            points=tuple(PointRecord.from_dict(p) for p in data.get("points") or () if isinstance(p, Mapping)),
            resumes=tuple(ResumeRecord.from_dict(r) for r in data.get("resumes") or () if isinstance(r, Mapping)),
            layout=_layout(data.get("layout")), cells=_cells(data.get("cells")),
            placement=some("placement", _placement), capacity_searches=_searches(data.get("capacity_searches")),
            sequential=some("sequential", SequentialRecord.from_dict))

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"schema_version": self.schema_version, "run_id": self.run_id,
                               "started_at": self.started_at, "finished_at": self.finished_at,
                               "git": self.git.to_dict(), "versions": dict(self.versions),
                               "machine": self.machine.to_dict()}
        if self.kind != BENCH_KIND:
            out["kind"] = self.kind
        out["experiment"] = self.experiment.to_dict()
        for key in ("profile", "seeds", "redis", "cpus"):
            value = getattr(self, key)
            if value is not None:
                out[key] = value.to_dict()
        if self.cpu_accounting is not None:
            out["cpu_accounting"] = dict(self.cpu_accounting)
        if self.kind == SWEEP_KIND:
            out["points"] = [p.to_dict() for p in self.points]
            out["resumes"] = [r.to_dict() for r in self.resumes]
        out |= {"status": self.status, "error": self.error, "layout": _layout_dict(self.layout),
                "cells": [c.to_dict() for c in self.cells]}
        if self.placement is not None:
            out["placement"] = _placement_dict(self.placement)
        return out | _verdict_keys(self.capacity_searches, self.sequential)

    def point(self, point_id: str) -> PointRecord:
        found = [p for p in self.points if p.id == point_id]
        if not found:
            raise KeyError(f"run {self.run_id} has no sweep point {point_id!r}")
        return found[0]

    def with_point(self, point: PointRecord) -> RunRecord:
        """`point` in place of the point of its id."""
        self.point(point.id)
        return replace(self, points=tuple(point if p.id == point.id else p for p in self.points))

    def with_block(self, label: str, processes: Iterable[ProcessFacts],
                   granted: Mapping[str, TierGrant] | None) -> RunRecord:
        placement = {**(self.placement or {}), label: granted} if granted is not None else self.placement
        return replace(self, layout={**self.layout, label: tuple(processes)}, placement=placement)

    def with_cell(self, cell: CellRecord) -> RunRecord:
        return replace(self, cells=_put(self.cells, cell))

    def as_point_run(self, point_id: str) -> RunRecord:
        """A sweep point as a plain run's record: its entry of `points` over the run's facts (what analysis reads of a
        point, laid out as a plain run's folder under points/<point-id>/)."""
        point = self.point(point_id)
        return replace(self, run_id=f"{self.run_id}/{point.id}", kind=BENCH_KIND, points=(), resumes=(),
                       experiment=point.experiment, profile=point.profile, layout=point.layout,
                       placement=point.placement, cells=point.cells, capacity_searches=point.capacity_searches,
                       sequential=point.sequential)

    def with_search(self, design: str, search: CapacitySearchRecord) -> RunRecord:
        return replace(self, capacity_searches={**self.capacity_searches, design: search})

    def with_look(self, look: LookRecord) -> RunRecord:
        return replace(self, sequential=(self.sequential or SequentialRecord()).with_look(look))

    def finished(self, at: str, error: str | None) -> RunRecord:
        """The run as it ends: complete, or incomplete with the error and whatever was still running cut short (a sweep
        point cut short is incomplete, and a resume redoes it from scratch)."""
        return replace(self, finished_at=at, status="incomplete" if error else "complete", error=error,
                       cells=_cut_short(self.cells), points=tuple(p.cut_short() for p in self.points))
