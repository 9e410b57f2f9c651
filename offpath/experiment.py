"""Experiment files (`offpath/experiments/*.toml`) loaded into typed, validated objects."""

from __future__ import annotations

import itertools
import tomllib
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from foundation.errors import ConfigurationError
from foundation.format import Slo
from loadtests.client import POLL_MODES
from offpath.designs import DESIGNS
from offpath.placement import Placements
from services.campaign.profile import ProfileError, load_profile

EXPERIMENTS_DIR = Path(__file__).parent / "experiments"
PHASE_KINDS = ("warmup", "steady")


class ExperimentError(ConfigurationError):
    pass


@dataclass(frozen=True)
class Phase:
    name: str
    kind: str  # warmup: measured but not compared; steady: compared across designs
    rate_per_s: float | None  # open model; None with users = closed model
    duration_s: float
    users: int | None = None
    wait_s: float = 1.0  # closed model: each user's pause between requests


@dataclass(frozen=True)
class CapacitySearch:
    """Step the offered rate up until the P99 SLO or the error budget breaks (or max_per_s): by step_per_s each step,
    or, with step_factor, by that factor (the same relative resolution at every rate: what a sweep whose points'
    capacities differ several-fold needs)."""

    start_per_s: float
    step_per_s: float
    max_per_s: float
    step_duration_s: float
    step_factor: float | None = None

    def rates(self) -> list[float]:
        rates, rate = [], self.start_per_s
        while rate <= self.max_per_s + 1e-9:
            # A geometric step's rates to 3 significant digits (32.8/s, not 32.768/s): the same rate to Locust.
            rates.append(float(f"{rate:.3g}") if self.step_factor is not None else round(rate, 3))
            rate = rate * self.step_factor if self.step_factor is not None else rate + self.step_per_s
        return rates


@dataclass(frozen=True)
class Layout:
    service_processes: int = 1
    workers: int = 8
    locust_processes: int = 1
    poll_interval_s: float = 1.0  # queued: how often the simulated client polls its campaign (0: never)
    # queued: how the simulated client learns the outcome (loadtests/client.py POLL_MODES): "interval" GETs every
    # poll_interval_s, "retry-after" when the service's Retry-After says, "wait" one GET the service holds until final.
    poll: str = "interval"
    drain_timeout_s: float = 20.0  # queued: after a cell, wait this long at most for the queue to empty
    redis_aof: str = "everysec"
    # Requests in progress per service process, the same for both designs: 0 unbounded asyncio, N a sync
    # server's N workers or threads (services/campaign/concurrency.py).
    concurrency: int = 0
    # Where each tier runs (offpath/placement.py): CPU sets, CPU budgets, or "shared" (the default: the load
    # generator on the last CPU, everything measured on the others).
    placement: Placements = field(default_factory=Placements.shared)


# Each layout number's lowest allowed value.
LAYOUT_MINIMUM = {"service_processes": 1, "workers": 1, "locust_processes": 1, "poll_interval_s": 0,
                  "drain_timeout_s": 0, "concurrency": 0}


@dataclass(frozen=True)
class Claim:
    """A result measured elsewhere that this experiment is compared with (the report sets it beside what
    offpath measured): changes of the candidate design against the baseline, in percent."""

    source: str
    throughput_at_slo_change_pct: float
    p99_at_equal_load_change_pct: float


# What a sweep may vary (one or two of them), and each one's lowest allowed value: provider waits and CPU work scale
# the workload profile ('default*wait=2', 'default*cpu=0.5'), concurrency and workers set the layout, rate_per_s
# sets every steady phase's offered rate.
SWEEP_PARAMETERS = {"provider_wait_scale": "a number > 0", "cpu_work_scale": "a number > 0",
                    "concurrency": "a whole number >= 0", "workers": "a whole number >= 1",
                    "rate_per_s": "a number > 0"}
_WHOLE = {"concurrency": 0, "workers": 1}


@dataclass(frozen=True)
class SweepPoint:
    """One point of a sweep: the value of each swept parameter, in the sweep's order; `id` names its folder."""

    index: int  # 1-based, in the order the points run
    values: tuple[tuple[str, float], ...]

    @property
    def id(self) -> str:
        return f"{self.index:02d}-" + ",".join(f"{name}={value:g}" for name, value in self.values)

    def as_dict(self) -> dict[str, float]:
        return dict(self.values)


@dataclass(frozen=True)
class Sweep:
    """`[sweep]`: one or two parameters (SWEEP_PARAMETERS), each over listed values; every combination is a point,
    the first parameter varying slowest."""

    parameters: tuple[tuple[str, tuple[float, ...]], ...]

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(name for name, _ in self.parameters)

    def points(self) -> list[SweepPoint]:
        combos = itertools.product(*(values for _, values in self.parameters))
        return [SweepPoint(number, tuple(zip(self.names, combo, strict=True)))
                for number, combo in enumerate(combos, start=1)]

    def as_dict(self) -> dict[str, list[float]]:
        return {name: list(values) for name, values in self.parameters}


@dataclass(frozen=True)
class Experiment:
    name: str
    description: str
    profile: str
    designs: tuple[str, ...]
    repetitions: int
    payload_seed: int
    slo: Slo
    layout: Layout
    phases: tuple[Phase, ...]
    capacity: CapacitySearch | None
    source: str = field(default="", compare=False)
    claim: Claim | None = None
    sweep: Sweep | None = None

    def resolved(self) -> dict[str, Any]:
        data = asdict(self)
        data["designs"] = list(self.designs)
        data["phases"] = [asdict(p) for p in self.phases]
        data["layout"]["placement"] = self.layout.placement.as_dict()
        if self.sweep is None:
            del data["sweep"]  # a plain experiment's manifest is as it was before sweeps
        else:
            data["sweep"] = self.sweep.as_dict()
        return data

    def at(self, point: SweepPoint) -> Experiment:
        """The plain experiment a sweep runs at one of its points: its parameters set, no sweep."""
        experiment = replace(self, sweep=None)
        # TODO(#22): with `profile: ProfileSpec` (services/campaign/profile.py), scale the spec instead of its text:
        # `experiment.profile.scaled(wait=value)` / `.scaled(cpu=value)`; str(spec) gives back the same text.
        for name, value in point.values:
            if name == "provider_wait_scale":
                experiment = replace(experiment, profile=f"{experiment.profile}*wait={value:g}")
            elif name == "cpu_work_scale":
                experiment = replace(experiment, profile=f"{experiment.profile}*cpu={value:g}")
            elif name == "concurrency":
                experiment = replace(experiment, layout=replace(experiment.layout, concurrency=int(value)))
            elif name == "workers":
                experiment = replace(experiment, layout=replace(experiment.layout, workers=int(value)))
            elif name == "rate_per_s":
                experiment = replace(experiment, phases=tuple(
                    replace(phase, rate_per_s=float(value)) if phase.kind == "steady" else phase
                    for phase in experiment.phases))
        return experiment


def available_experiments() -> list[str]:
    return sorted(p.stem for p in EXPERIMENTS_DIR.glob("*.toml"))


def load_experiment(spec: str) -> Experiment:
    path = Path(spec) if spec.endswith(".toml") else EXPERIMENTS_DIR / f"{spec}.toml"
    if not path.is_file():
        raise ExperimentError(
            f"experiment {spec!r} not found; use one of {', '.join(available_experiments())} or a path to a .toml file"
        )
    try:
        data = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise ExperimentError(f"{path}: not valid TOML: {exc}") from exc
    return parse_experiment(data, str(path))


def parse_experiment(data: dict[str, Any], source: str) -> Experiment:
    reader = _Reader(data, source)
    allowed_top = {"name", "description", "profile", "designs", "repetitions", "payload_seed", "slo", "layout",
                   "phases", "capacity", "claim", "sweep"}
    reader.no_unknown(data, allowed_top, "")
    profile = reader.get(data, "profile", str, "", default="default")
    try:
        load_profile(profile)
    except ProfileError as exc:
        raise ExperimentError(f"{source}: key 'profile': {exc}") from None
    designs = reader.get(data, "designs", list, "", default=list(DESIGNS))
    for design in designs:
        if design not in DESIGNS:
            raise ExperimentError(f"{source}: key 'designs': {design!r} is not one of {', '.join(DESIGNS)}")
    slo_table = reader.get(data, "slo", dict, "")
    reader.no_unknown(slo_table, {"p99_ms", "error_rate", "completion_p99_ms"}, "slo.")
    layout_table = reader.get(data, "layout", dict, "", default={})
    layout_fields = {f for f in Layout.__dataclass_fields__}
    reader.no_unknown(layout_table, layout_fields, "layout.")
    for key, lowest in LAYOUT_MINIMUM.items():
        if key not in layout_table:
            continue
        value = layout_table[key]
        whole = isinstance(getattr(Layout, key), int)
        if isinstance(value, bool) or not isinstance(value, int if whole else (int, float)) or value < lowest:
            kind = "a whole number" if whole else "a number"
            raise ExperimentError(f"{source}: key 'layout.{key}' is {value!r}; allowed: {kind} >= {lowest}")
    try:
        placement = Placements.from_table(layout_table.pop("placement", None))
    except ConfigurationError as exc:
        raise ExperimentError(f"{source}: {exc}") from None
    layout = Layout(**layout_table, placement=placement)
    if layout.redis_aof not in ("off", "everysec", "always"):
        raise ExperimentError(f"{source}: key 'layout.redis_aof' must be one of off, everysec, always")
    _check_poll(layout, source)
    phases = []
    for index, table in enumerate(reader.get(data, "phases", list, "", default=[])):
        where = f"phases[{index}]."
        reader.no_unknown(table, {"name", "kind", "rate_per_s", "duration_s", "users", "wait_s"}, where)
        kind = reader.get(table, "kind", str, where, default="steady")
        if kind not in PHASE_KINDS:
            raise ExperimentError(f"{source}: key '{where}kind' is {kind!r}; allowed: {', '.join(PHASE_KINDS)}")
        rate = reader.get(table, "rate_per_s", (int, float), where, default=None)
        users = reader.get(table, "users", int, where, default=None)
        if (rate is None) == (users is None):
            raise ExperimentError(f"{source}: {where[:-1]} needs exactly one of rate_per_s (open model) or users (closed)")
        phases.append(Phase(
            name=reader.get(table, "name", str, where),
            kind=kind,
            rate_per_s=float(rate) if rate is not None else None,
            duration_s=float(reader.get(table, "duration_s", (int, float), where)),
            users=users,
            wait_s=float(reader.get(table, "wait_s", (int, float), where, default=1.0)),
        ))
    capacity = None
    if "capacity" in data:
        table = reader.get(data, "capacity", dict, "")
        reader.no_unknown(table, {"start_per_s", "step_per_s", "step_factor", "max_per_s", "step_duration_s"},
                          "capacity.")
        if ("step_per_s" in table) == ("step_factor" in table):
            raise ExperimentError(f"{source}: [capacity] needs exactly one of step_per_s (add a rate each step) or "
                                  "step_factor (multiply the rate each step)")
        factor = reader.get(table, "step_factor", (int, float), "capacity.", default=None)
        capacity = CapacitySearch(**{k: float(reader.get(table, k, (int, float), "capacity.",
                                                         default=0.0 if k == "step_per_s" else _MISSING))
                                     for k in ("start_per_s", "step_per_s", "max_per_s", "step_duration_s")},
                                  step_factor=float(factor) if factor is not None else None)
        if capacity.start_per_s <= 0 or (factor is None and capacity.step_per_s <= 0):
            raise ExperimentError(f"{source}: capacity.start_per_s and capacity.step_per_s must be > 0")
        if factor is not None and not factor > 1:
            raise ExperimentError(f"{source}: key 'capacity.step_factor' is {factor!r}; allowed: a number > 1")
    if not phases and capacity is None:
        raise ExperimentError(f"{source}: an experiment needs [[phases]] or a [capacity] search")
    claim = None
    if "claim" in data:
        table = reader.get(data, "claim", dict, "")
        fields_ = ("throughput_at_slo_change_pct", "p99_at_equal_load_change_pct")
        reader.no_unknown(table, {"source", *fields_}, "claim.")
        claim = Claim(source=reader.get(table, "source", str, "claim."),
                      **{k: float(reader.get(table, k, (int, float), "claim.")) for k in fields_})
    names = [p.name for p in phases]
    if len(set(names)) != len(names):
        raise ExperimentError(f"{source}: phase names must be unique, got {names}")
    sweep = _sweep(reader, data, source) if "sweep" in data else None
    if sweep is not None:
        _check_sweep(sweep, phases, layout, source)
    return Experiment(
        name=reader.get(data, "name", str, ""),
        description=reader.get(data, "description", str, "", default=""),
        profile=profile,
        designs=tuple(designs),
        repetitions=reader.get(data, "repetitions", int, "", default=1),
        payload_seed=reader.get(data, "payload_seed", int, "", default=1),
        slo=_slo(reader, slo_table, source),
        layout=layout,
        phases=tuple(phases),
        capacity=capacity,
        source=source,
        claim=claim,
        sweep=sweep,
    )


def _sweep(reader: _Reader, data: dict[str, Any], source: str) -> Sweep:
    """`[sweep]`: one or two of SWEEP_PARAMETERS, each a list of at least two distinct allowed values."""
    table = reader.get(data, "sweep", dict, "")
    reader.no_unknown(table, set(SWEEP_PARAMETERS), "sweep.")
    if not 1 <= len(table) <= 2:
        raise ExperimentError(f"{source}: [sweep] varies {len(table)} parameters; allowed: one or two of "
                              f"{', '.join(SWEEP_PARAMETERS)}")
    parameters = []
    for name, values in table.items():
        allowed = SWEEP_PARAMETERS[name]
        if not isinstance(values, list) or len(values) < 2:
            raise ExperimentError(f"{source}: key 'sweep.{name}' is {values!r}; allowed: a list of at least two "
                                  f"values, each {allowed}")
        for value in values:
            whole = name in _WHOLE
            wrong_type = isinstance(value, bool) or not isinstance(value, int if whole else (int, float))
            if wrong_type or (value < _WHOLE[name] if whole else not value > 0):
                raise ExperimentError(f"{source}: key 'sweep.{name}' has value {value!r}; allowed: {allowed}")
        if len(set(values)) != len(values):
            raise ExperimentError(f"{source}: key 'sweep.{name}' lists a value twice ({values!r}); allowed: "
                                  "distinct values")
        parameters.append((name, tuple(float(v) for v in values)))
    return Sweep(tuple(parameters))


def _check_sweep(sweep: Sweep, phases: list[Phase], layout: Layout, source: str) -> None:
    """What a sweep may not do to this experiment: vary a rate it has no open-model steady phase for, or bound the
    server's concurrency where the client's held GETs would starve it (as `_check_poll` says of a plain one)."""
    if "rate_per_s" in sweep.names and not any(p.kind == "steady" and p.rate_per_s is not None for p in phases):
        raise ExperimentError(f"{source}: key 'sweep.rate_per_s' sets the offered rate of the steady phases, and "
                              "this experiment has no open-model steady phase (a [[phases]] of kind steady with "
                              "rate_per_s)")
    if "concurrency" in sweep.names and layout.poll == "wait" and any(v for v in sweep.as_dict()["concurrency"]):
        raise ExperimentError(f"{source}: key 'sweep.concurrency' bounds the server while layout.poll is 'wait'; "
                              "allowed with a bounded server: layout.poll = interval or retry-after")


def _slo(reader: _Reader, table: dict[str, Any], source: str) -> Slo:
    p99_ms = float(reader.get(table, "p99_ms", (int, float), "slo."))
    completion = float(reader.get(table, "completion_p99_ms", (int, float), "slo.", default=p99_ms))
    if completion <= 0:
        raise ExperimentError(f"{source}: key 'slo.completion_p99_ms' is {completion:g}; allowed: a number of "
                              "milliseconds > 0 (leave it out to use slo.p99_ms)")
    return Slo(p99_ms=p99_ms, error_rate=float(reader.get(table, "error_rate", (int, float), "slo.")),
               completion_p99_ms=completion)


def _check_poll(layout: Layout, source: str) -> None:
    if layout.poll not in POLL_MODES:
        raise ExperimentError(f"{source}: key 'layout.poll' is {layout.poll!r}; allowed: {', '.join(POLL_MODES)}")
    if layout.poll == "wait" and layout.concurrency > 0:
        # Decided, not left to a flag: a sync server's worker held by a GET serves nothing else while it is held.
        raise ExperimentError(
            f"{source}: key 'layout.poll' is 'wait' with layout.concurrency = {layout.concurrency}: each held GET "
            f"would occupy one of the {layout.concurrency} request slots per process until its campaign is final, "
            "starving the POSTs a sync server has to answer; allowed with a bounded server: interval, retry-after")


_MISSING = object()


class _Reader:
    def __init__(self, data: dict[str, Any], source: str):
        self.source = source

    def get(self, table: dict[str, Any], key: str, kind: Any, where: str, default: Any = _MISSING) -> Any:
        if key not in table:
            if default is _MISSING:
                raise ExperimentError(f"{self.source}: missing key '{where}{key}'")
            return default
        value = table[key]
        if isinstance(value, bool) or not isinstance(value, kind):
            names = kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
            raise ExperimentError(f"{self.source}: key '{where}{key}' must be {names}, got {value!r}")
        return value

    def no_unknown(self, table: dict[str, Any], allowed: set[str], where: str) -> None:
        unknown = set(table) - allowed
        if unknown:
            raise ExperimentError(
                f"{self.source}: unknown key(s) {', '.join(where + k for k in sorted(unknown))}; "
                f"allowed: {', '.join(sorted(allowed))}"
            )
