"""Experiment files (`offpath/experiments/*.toml`, or any .toml path) read into typed, validated objects.

An experiment says which designs it compares (declared as data: offpath/designs.py), under what deployment (the
layout), what load (phases; a capacity search), what SLO, how many interleaved repetitions, and optionally a sweep
over one or two conditions. Read through foundation/config.py: an unknown key, a wrong type or a value out of range
is one line naming the file, the key, the value and what is allowed.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, PrivateAttr, field_validator, model_validator

from analysis.stats.verdict_settings import Margins, Sequential
from foundation.config import ConfigError, ConfigModel, parse, read_toml
from foundation.errors import ConfigurationError
from foundation.format import Slo
from offpath.capacity_search import SearchSettings
from offpath.designs import BUILT_IN, Design, declare
from offpath.placement import Placements
from services.campaign.profile import ProfileSpec

__all__ = ["CapacitySearch", "Claim", "EXPERIMENTS_DIR", "Experiment", "ExperimentError", "Layout", "Phase",
           "SWEEP_PARAMETERS", "SloSettings", "SoakSettings", "Sweep", "SweepPoint", "available_experiments",
           "load_experiment", "parse_experiment"]

EXPERIMENTS_DIR = Path(__file__).parent / "experiments"
PHASE_KINDS = ("warmup", "steady")


class ExperimentError(ConfigError):
    """An experiment file offpath cannot use; the message is one line naming the file, the key and what is allowed."""


class Phase(ConfigModel):
    """A phase of load: open model (`rate_per_s`) or closed (`users`, each pausing `wait_s`), for `duration_s`.
    warmup: measured but not compared; steady: compared across designs; capacity: a step of the capacity search, and
    soak: a design's soak (the runner's own, never in a file)."""

    name: str
    kind: Literal["warmup", "steady", "capacity", "soak"] = "steady"
    rate_per_s: float | None = Field(None, gt=0, description="a number of requests per second > 0")
    duration_s: float = Field(gt=0, description="seconds > 0")
    users: int | None = Field(None, ge=1, description="a whole number of users >= 1")
    wait_s: float = Field(1.0, ge=0, description="seconds >= 0")

    @model_validator(mode="after")
    def _one_model(self) -> Phase:
        if (self.rate_per_s is None) == (self.users is None):
            raise ValueError("allowed: exactly one of rate_per_s (open model) or users (closed model)")
        return self


# `[capacity]`: the capacity search's settings (offpath/capacity_search.py): start, step, maximum and ceiling, the
# precision a found limit is bracketed to and the probes that may narrow it.
CapacitySearch = SearchSettings


class Layout(ConfigModel):
    """The deployment both designs get: processes, workers, the client's polling, Redis, server concurrency, and where
    each tier runs."""

    service_processes: int = Field(1, ge=1, description="a whole number >= 1")
    workers: int = Field(8, ge=1, description="a whole number >= 1")
    locust_processes: int = Field(1, ge=1, description="a whole number >= 1")
    # A design whose answers acknowledge: how often the simulated client polls its request's state (0: never).
    poll_interval_s: float = Field(1.0, ge=0, description="seconds >= 0 (0: never follow the outcome)")
    # How the simulated client learns the outcome (loadtests/client.py POLL_MODES): "interval" GETs every
    # poll_interval_s, "retry-after" when the service's Retry-After says, "wait" one GET the service holds until final.
    poll: Literal["interval", "retry-after", "wait"] = "interval"
    drain_timeout_s: float = Field(20.0, ge=0, description="seconds >= 0")
    redis_aof: Literal["off", "everysec", "always"] = "everysec"
    # Requests in progress per service process, the same for both designs: 0 unbounded asyncio, N a sync server's N
    # workers or threads (services/campaign/concurrency.py).
    concurrency: int = Field(0, ge=0, description="a whole number >= 0 (0: unbounded)")
    # Where each tier runs (offpath/placement.py): "shared" (the load generator on the last CPU, everything measured
    # on the others) or per tier a CPU set or budget. Read by Placements when the experiment is loaded.
    placement: str | dict[str, Any] = "shared"

    @model_validator(mode="after")
    def _held_gets_need_free_slots(self) -> Layout:
        if self.poll == "wait" and self.concurrency > 0:
            # Decided, not left to a flag: a sync server's worker held by a GET serves nothing else while it is held.
            raise ValueError(f"allowed with a bounded server (concurrency {self.concurrency}): poll = interval or "
                             "retry-after; each held GET would occupy a request slot until its outcome is final, "
                             "starving the requests a sync server has to answer")
        return self



class SloSettings(ConfigModel):
    """`[slo]`: the request's P99 and error budget, and for a design with queue data its completion P99."""

    p99_ms: float = Field(gt=0, description="milliseconds > 0")
    error_rate: float = Field(ge=0, le=1, description="a fraction from 0 to 1")
    completion_p99_ms: float | None = Field(None, gt=0, description="milliseconds > 0 (leave it out to use p99_ms)")

    def slo(self) -> Slo:
        return Slo(p99_ms=self.p99_ms, error_rate=self.error_rate,
                   completion_p99_ms=self.completion_p99_ms if self.completion_p99_ms is not None else self.p99_ms)


class SoakSettings(ConfigModel):
    """`[soak]`: each design in turn under one steady open-model load for `duration_s`, the memory of every process
    offpath started sampled every `sample_interval_s` (offpath/soak.py). The rate is `load_fraction` of the design's
    capacity as the experiment's `[capacity]` search measures it first, in the same run (same machine, layout and
    code as the soak), or else declared per design in `rate_per_s` (to soak again at a load chosen before, with no
    search). How analysis reads it: latency merged per `bin_s`, slopes fitted after `warmup_s`, and the P99 of the
    first `drift_bins` bins after the warm-up compared with the last `drift_bins`' (analysis/stats/soak.py)."""

    duration_s: float = Field(gt=0, description="seconds > 0")
    load_fraction: float | None = Field(None, gt=0, le=1, description="a fraction of each design's capacity, > 0 and <= 1")
    rate_per_s: dict[str, Annotated[float, Field(gt=0)]] | None = Field(
        None, description="a table of each design's rate in requests per second > 0")
    sample_interval_s: float = Field(10.0, gt=0, description="seconds > 0")
    warmup_s: float = Field(60.0, ge=0, description="seconds >= 0")
    bin_s: float = Field(60.0, ge=1, description="seconds >= 1")
    drift_bins: int = Field(10, ge=1, description="a whole number of bins >= 1")

    @model_validator(mode="after")
    def _one_rate_and_room_to_compare(self) -> SoakSettings:
        if (self.load_fraction is None) == (self.rate_per_s is None):
            raise ValueError("allowed: exactly one of load_fraction (of each design's capacity, measured first by the "
                             "[capacity] search) or rate_per_s (a rate per design)")
        compared_s = 2 * self.drift_bins * self.bin_s
        if self.duration_s - self.warmup_s < compared_s:
            raise ValueError(f"allowed: duration_s ({self.duration_s:g}) >= warmup_s ({self.warmup_s:g}) + twice "
                             f"drift_bins x bin_s ({compared_s:g}): the first and last bins compared must not overlap")
        return self


class Claim(ConfigModel):
    """A result measured elsewhere that this experiment is compared with (the report sets it beside what offpath
    measured): changes of the candidate design against the baseline, in percent."""

    source: str
    throughput_at_slo_change_pct: float
    p99_at_equal_load_change_pct: float


# What a sweep may vary (one or two of them), and what each takes: provider waits and CPU work scale the workload
# profile ('default*wait=2', 'default*cpu=0.5'), concurrency and workers set the layout, rate_per_s sets every steady
# phase's offered rate, backend the queue library of every design that has a `backend` parameter (offpath's queued
# design: rq, celery, dramatiq).
SWEEP_PARAMETERS = {"provider_wait_scale": "a number > 0", "cpu_work_scale": "a number > 0",
                    "concurrency": "a whole number >= 0", "workers": "a whole number >= 1",
                    "rate_per_s": "a number > 0", "backend": "a queue backend's name"}
SweepValue = float | str


class SweepPoint(ConfigModel):
    """One point of a sweep: the value of each swept parameter, in the sweep's order; `id` names its folder."""

    index: int  # 1-based, in the order the points run
    values: tuple[tuple[str, SweepValue], ...]

    @property
    def id(self) -> str:
        return f"{self.index:02d}-" + ",".join(f"{name}={_text(value)}" for name, value in self.values)

    def as_dict(self) -> dict[str, SweepValue]:
        return dict(self.values)

    def text(self) -> str:
        """'provider_wait_scale 0.25', 'backend celery': what the runner says as the point starts."""
        return ", ".join(f"{name} {_text(value)}" for name, value in self.values)


def _text(value: SweepValue) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


class Sweep(ConfigModel):
    """`[sweep]`: one or two parameters (SWEEP_PARAMETERS), each over listed values; every combination is a point,
    the first parameter varying slowest."""

    parameters: tuple[tuple[str, tuple[SweepValue, ...]], ...]

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(name for name, _ in self.parameters)

    def points(self) -> list[SweepPoint]:
        combos = itertools.product(*(values for _, values in self.parameters))
        return [SweepPoint(index=number, values=tuple(zip(self.names, combo, strict=True)))
                for number, combo in enumerate(combos, start=1)]

    def as_dict(self) -> dict[str, list[SweepValue]]:
        return {name: list(values) for name, values in self.parameters}


_Positive = Annotated[list[Annotated[float, Field(gt=0)]], Field(min_length=2)]
_Whole = Annotated[list[Annotated[int, Field(ge=0)]], Field(min_length=2)]
_AtLeastOne = Annotated[list[Annotated[int, Field(ge=1)]], Field(min_length=2)]


class _SweepTable(ConfigModel):
    """`[sweep]` as a file writes it: one or two parameters, each a list of at least two distinct values."""

    provider_wait_scale: _Positive | None = None
    cpu_work_scale: _Positive | None = None
    concurrency: _Whole | None = None
    workers: _AtLeastOne | None = None
    rate_per_s: _Positive | None = None
    backend: Annotated[list[str], Field(min_length=2)] | None = None

    @field_validator("*")
    @classmethod
    def _distinct(cls, values: list[Any] | None) -> list[Any] | None:
        if values is not None and len(set(values)) != len(values):
            raise ValueError(f"allowed: distinct values (this list names one twice: {values!r})")
        return values

    @model_validator(mode="after")
    def _one_or_two(self) -> _SweepTable:
        given = [name for name in SWEEP_PARAMETERS if getattr(self, name) is not None]
        if not 1 <= len(given) <= 2:
            raise ValueError(f"allowed: one or two of {', '.join(SWEEP_PARAMETERS)} (this sweep varies "
                             f"{len(given)})")
        return self

    def sweep(self) -> Sweep:
        return Sweep(parameters=tuple(
            (name, tuple(float(v) if name != "backend" else str(v) for v in getattr(self, name)))
            for name in SWEEP_PARAMETERS if getattr(self, name) is not None))


class _File(ConfigModel):
    """An experiment file as written; `designs` is a table of declarations, or a list naming built-in ones."""

    name: str
    description: str = ""
    profile: ProfileSpec = ProfileSpec()
    designs: dict[str, Any] = Field(default_factory=lambda: {name: {"use": name} for name in BUILT_IN},
                                    description="a table of design declarations ([designs.<name>]), or a list of "
                                                f"built-in designs' names ({', '.join(BUILT_IN)})")
    repetitions: int = Field(1, ge=1, description="a whole number >= 1")
    payload_seed: int = 1
    slo: SloSettings
    layout: Layout = Layout()
    phases: list[Phase] = []
    capacity: CapacitySearch | None = None
    claim: Claim | None = None
    sweep: _SweepTable | None = None
    # How a comparison row is decided (analysis/stats/verdict_settings.py): the margin within which a change does not
    # matter, per measure; and, optionally, repetitions added until the headline rows are decided.
    margins: Margins = Margins()
    sequential: Sequential | None = None
    soak: SoakSettings | None = None

    @model_validator(mode="after")
    def _sequential_after_the_repetitions(self) -> _File:
        if self.sequential is not None and self.sequential.max_repetitions < self.repetitions:
            raise ValueError(f"allowed: sequential.max_repetitions ({self.sequential.max_repetitions}) >= "
                             f"repetitions ({self.repetitions})")
        return self

    @field_validator("designs", mode="before")
    @classmethod
    def _names_are_built_ins(cls, value: Any) -> Any:
        if isinstance(value, list):
            if not value or not all(isinstance(name, str) for name in value):
                raise ValueError(f"allowed: a list of built-in designs' names ({', '.join(BUILT_IN)}), or a table of "
                                 "design declarations")
            return {name: {"use": name} for name in value}
        return value

    @field_validator("phases")
    @classmethod
    def _phases(cls, phases: list[Phase]) -> list[Phase]:
        for phase in phases:
            if phase.kind not in PHASE_KINDS:
                raise ValueError(f"allowed for a phase's kind: one of {', '.join(PHASE_KINDS)} (got {phase.kind!r})")
        names = [p.name for p in phases]
        if len(set(names)) != len(names):
            raise ValueError(f"allowed: phases with distinct names (got {names})")
        return phases


class Experiment(ConfigModel):
    """An experiment as the harness runs it: its designs declared and resolved, in the order the file gives them (the
    first is a comparison's baseline, A; the second its candidate, B)."""

    name: str
    description: str = ""
    profile: ProfileSpec = ProfileSpec()
    declared: tuple[Design, ...] = ()
    repetitions: int = 1
    payload_seed: int = 1
    slo_settings: SloSettings
    layout: Layout = Layout()
    phases: tuple[Phase, ...] = ()
    capacity: CapacitySearch | None = None
    claim: Claim | None = None
    sweep: Sweep | None = None
    margins: Margins = Margins()
    sequential: Sequential | None = None
    soak: SoakSettings | None = None
    source: str = ""
    _placements: Placements | None = PrivateAttr(default=None)

    model_config = {**ConfigModel.model_config, "arbitrary_types_allowed": True}

    @property
    def designs(self) -> tuple[str, ...]:
        return tuple(design.name for design in self.declared)

    def design(self, name: str) -> Design:
        for design in self.declared:
            if design.name == name:
                return design
        raise ConfigurationError(f"design {name!r} is not one of this experiment's: {', '.join(self.designs)}")

    @property
    def slo(self) -> Slo:
        return self.slo_settings.slo()

    @property
    def placements(self) -> Placements:
        if self._placements is None:
            self._placements = Placements.from_table(self.layout.placement)
        return self._placements

    def with_profile(self, profile: ProfileSpec | str) -> Experiment:
        return self._copy(profile=ProfileSpec.parse(profile) if isinstance(profile, str) else profile)

    def until_decided(self, budget_s: float, more: int = 4) -> Experiment:
        """This experiment with repetitions added while a headline row is undecided (`[sequential]`), for at most
        `budget_s` and `more` repetitions; one it declares keeps its rows and confidence."""
        if self.soak is not None:
            raise ConfigurationError(f"{self.source}: --until-decided adds repetitions until comparison rows are "
                                     "decided; a soak has neither (its report judges each design's slopes and drift)")
        rows = self.sequential.rows if self.sequential is not None else Sequential.model_fields["rows"].default
        sequential = Sequential(max_repetitions=self.repetitions + more, budget_s=budget_s, rows=rows)
        return self._copy(sequential=sequential)

    def _copy(self, **update: Any) -> Experiment:
        copied = self.model_copy(update=update)
        copied._placements = self._placements
        return copied

    def resolved(self) -> dict[str, Any]:
        """The experiment as it ran, for the manifest: `designs` the names in order, `declarations` each design's
        resolved declaration."""
        data: dict[str, Any] = {
            "name": self.name, "description": self.description, "profile": str(self.profile),
            "designs": list(self.designs), "repetitions": self.repetitions, "payload_seed": self.payload_seed,
            "slo": self.slo.to_dict(), "layout": {**self.layout.model_dump(), "placement": self.placements.as_dict()},
            "phases": [p.model_dump() for p in self.phases],
            "capacity": self.capacity.model_dump() if self.capacity is not None else None,
            "source": self.source, "claim": self.claim.model_dump() if self.claim is not None else None,
            "margins": self.margins.model_dump(),
            "sequential": self.sequential.model_dump() if self.sequential is not None else None,
            **({"soak": self.soak.model_dump()} if self.soak is not None else {}),
            "declarations": {d.name: d.resolved() for d in self.declared},
        }
        if self.sweep is not None:
            data["sweep"] = self.sweep.as_dict()
        return data

    def at(self, point: SweepPoint) -> Experiment:
        """The plain experiment a sweep runs at one of its points: its parameters set, no sweep."""
        experiment = self._copy(sweep=None)
        for name, value in point.values:
            if name == "provider_wait_scale":
                experiment = experiment._copy(profile=experiment.profile.scaled(wait=float(value)))
            elif name == "cpu_work_scale":
                experiment = experiment._copy(profile=experiment.profile.scaled(cpu=float(value)))
            elif name == "concurrency":
                experiment = experiment._copy(layout=experiment.layout.model_copy(update={"concurrency": int(value)}))
            elif name == "workers":
                experiment = experiment._copy(layout=experiment.layout.model_copy(update={"workers": int(value)}))
            elif name == "rate_per_s":
                experiment = experiment._copy(phases=tuple(
                    p.model_copy(update={"rate_per_s": float(value)}) if p.kind == "steady" else p
                    for p in experiment.phases))
            elif name == "backend":
                experiment = experiment._copy(declared=tuple(
                    _with_param(d, "backend", str(value)) for d in experiment.declared))
        return experiment


def _with_param(design: Design, name: str, value: str) -> Design:
    if name not in design.declaration.params:
        return design
    declaration = design.declaration.model_copy(update={"params": {**design.declaration.params, name: value}})
    return Design(design.name, declaration, design.base_dir, design.contract)


def available_experiments() -> list[str]:
    return sorted(p.stem for p in EXPERIMENTS_DIR.glob("*.toml"))


def load_experiment(spec: str) -> Experiment:
    """An experiment by name (offpath/experiments/<name>.toml) or path; ExperimentError (one line) otherwise."""
    path = Path(spec) if spec.endswith(".toml") else EXPERIMENTS_DIR / f"{spec}.toml"
    if not path.is_file():
        raise ExperimentError(
            f"experiment {spec!r} not found; use one of {', '.join(available_experiments())} or a path to a .toml file"
        )
    try:
        data = read_toml(path)
    except ConfigError as exc:
        raise ExperimentError(str(exc)) from None
    return parse_experiment(data, str(path), base_dir=path.resolve().parent)


def parse_experiment(data: Mapping[str, Any], source: str, base_dir: Path | None = None) -> Experiment:
    """An experiment from a file's data; relative paths in its designs resolve from `base_dir` (the file's folder)."""
    try:
        file = parse(data, _File, source)
    except ConfigError as exc:
        raise ExperimentError(str(exc)) from None
    if not file.designs:
        raise ExperimentError(f"{source}: key 'designs' is empty; allowed: one or more design declarations")
    declared = tuple(declare(name, table, source, base_dir or Path.cwd(), f"designs.{name}")
                     for name, table in file.designs.items())
    if not file.phases and file.capacity is None and file.soak is None:
        raise ExperimentError(f"{source}: an experiment needs [[phases]], a [capacity] search or a [soak]")
    if file.soak is not None:
        _check_soak(file, declared, source)
    sweep = file.sweep.sweep() if file.sweep is not None else None
    experiment = Experiment(
        name=file.name, description=file.description, profile=file.profile, declared=declared,
        repetitions=file.repetitions, payload_seed=file.payload_seed, slo_settings=file.slo, layout=file.layout,
        phases=tuple(file.phases), capacity=file.capacity, claim=file.claim, sweep=sweep, margins=file.margins,
        sequential=file.sequential, soak=file.soak, source=source)
    try:
        experiment.placements  # noqa: B018 - read now, so a bad placement is refused before anything starts
    except ConfigurationError as exc:
        raise ExperimentError(f"{source}: {exc}") from None
    if sweep is not None:
        _check_sweep(experiment, source)
    return experiment


def _check_soak(file: _File, declared: tuple[Design, ...], source: str) -> None:
    """What a soak may not be mixed with (it is its own load, one cell per design), and where its rate comes from."""
    soak = file.soak
    assert soak is not None
    for key, present in (("phases", bool(file.phases)), ("sweep", file.sweep is not None),
                         ("sequential", file.sequential is not None), ("repetitions", file.repetitions != 1)):
        if present:
            raise ExperimentError(f"{source}: key {key!r} is not allowed beside [soak]: a soak runs each design once, "
                                  "under its own load (soak.duration_s at its rate)")
    names = [design.name for design in declared]
    if soak.load_fraction is not None and file.capacity is None:
        raise ExperimentError(f"{source}: key 'soak.load_fraction' is a fraction of each design's capacity, which the "
                              "[capacity] search measures first; add a [capacity] table, or declare soak.rate_per_s")
    if soak.rate_per_s is not None:
        if file.capacity is not None:
            raise ExperimentError(f"{source}: key 'capacity' is not allowed beside soak.rate_per_s: a soak at declared "
                                  "rates runs no capacity search (use soak.load_fraction to soak at a share of it)")
        if sorted(soak.rate_per_s) != sorted(names):
            raise ExperimentError(f"{source}: key 'soak.rate_per_s' names {', '.join(sorted(soak.rate_per_s)) or 'none'};"
                                  f" allowed: a rate for each design, and only those ({', '.join(names)})")


def _check_sweep(experiment: Experiment, source: str) -> None:
    """What a sweep may not do to this experiment: vary a rate it has no open-model steady phase for, bound the
    server's concurrency where the client's held GETs would starve it, or vary a backend no design takes."""
    sweep = experiment.sweep
    assert sweep is not None
    if "rate_per_s" in sweep.names and not any(p.kind == "steady" and p.rate_per_s is not None
                                               for p in experiment.phases):
        raise ExperimentError(f"{source}: key 'sweep.rate_per_s' sets the offered rate of the steady phases, and "
                              "this experiment has no open-model steady phase (a [[phases]] of kind steady with "
                              "rate_per_s)")
    if "concurrency" in sweep.names and experiment.layout.poll == "wait" and any(sweep.as_dict()["concurrency"]):
        raise ExperimentError(f"{source}: key 'sweep.concurrency' bounds the server while layout.poll is 'wait'; "
                              "allowed with a bounded server: layout.poll = interval or retry-after")
    if "backend" in sweep.names and not any("backend" in d.declaration.params for d in experiment.declared):
        raise ExperimentError(f"{source}: key 'sweep.backend' sets the `backend` parameter of the designs, and none of "
                              f"{', '.join(experiment.designs)} has one (params = {{ backend = ... }})")
