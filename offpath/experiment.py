"""Experiment files (`offpath/experiments/*.toml`) loaded into typed, validated objects."""

from __future__ import annotations

import tomllib
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from loadtests.client import POLL_MODES
from offpath.designs import DESIGNS
from offpath.errors import ConfigurationError
from offpath.placement import Placements
from results.format import Slo
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
    """Step the offered rate up until the P99 SLO or the error budget breaks (or max_per_s)."""

    start_per_s: float
    step_per_s: float
    max_per_s: float
    step_duration_s: float

    def rates(self) -> list[float]:
        rates, rate = [], self.start_per_s
        while rate <= self.max_per_s + 1e-9:
            rates.append(round(rate, 3))
            rate += self.step_per_s
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

    def resolved(self) -> dict[str, Any]:
        data = asdict(self)
        data["designs"] = list(self.designs)
        data["phases"] = [asdict(p) for p in self.phases]
        data["layout"]["placement"] = self.layout.placement.as_dict()
        return data


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
                   "phases", "capacity", "claim"}
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
        reader.no_unknown(table, {"start_per_s", "step_per_s", "max_per_s", "step_duration_s"}, "capacity.")
        capacity = CapacitySearch(**{k: float(reader.get(table, k, (int, float), "capacity.")) for k in
                                     ("start_per_s", "step_per_s", "max_per_s", "step_duration_s")})
        if capacity.step_per_s <= 0 or capacity.start_per_s <= 0:
            raise ExperimentError(f"{source}: capacity.start_per_s and capacity.step_per_s must be > 0")
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
    )


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
