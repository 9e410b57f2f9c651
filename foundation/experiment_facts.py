"""manifest.json's `experiment`: the experiment as the harness resolved it, kept whole, and typed views of what
analysis reads of it.

The experiment's model is the harness's (offpath/experiment.py) and changes with it; the manifest keeps whatever mapping
the harness resolved (`ExperimentFacts.resolved`, written back as it is), and analysis reads it only through the views
below, which tolerate keys a manifest written earlier lacks. Apart from foundation/manifest_format.py, whose records
hold it, so that a change of the experiment's model touches this module alone.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from foundation.format import Slo, record_from

__all__ = ["CapacityFacts", "ClaimFacts", "DesignFacts", "ExperimentFacts", "PhaseFacts", "SoakFacts"]


@dataclass(frozen=True)
class DesignFacts:
    """What analysis reads of a design's declaration (the manifest's `experiment.declarations`): how its request is
    named, whether its answers acknowledge work that finishes later, which figures offpath could not take of it."""

    name: str
    request: str = "request"  # "POST /orders"
    status: str = "status"  # "GET /orders/{id}"
    acknowledges: bool = False  # its answers acknowledge: the outcome comes later (the queued kind)
    started_by_offpath: bool = True  # False: a deployment already running (`url`): no CPU of its tiers
    queue_adapter: str | None = None  # what its backlog is read with; None: its clients' acknowledgements
    broker_elsewhere: str | None = None  # a broker offpath did not start (its CPU unmeasured)
    timestamps: bool = False  # its final answers carry the service's own timestamps

    @classmethod
    def of(cls, name: str, data: Mapping[str, Any]) -> DesignFacts:
        request = data.get("request") or {}
        outcome = data.get("outcome") or {}
        status = outcome.get("status") or {}
        queue = data.get("queue") or {}
        params = data.get("params") or {}
        adapter = queue.get("adapter")
        if isinstance(adapter, str):
            adapter = adapter.format_map({**params, "redis_url": ""}) if "{" in adapter else adapter
        method, path = request.get("method", "POST"), request.get("path")
        return cls(name=name, request=f"{method} {path}" if path else "request",
                   status=f"GET {status['url']}" if status.get("url") else "status",
                   acknowledges=bool(outcome.get("acknowledged")), started_by_offpath=not data.get("url"),
                   queue_adapter=adapter, broker_elsewhere=queue.get("redis_url"),
                   timestamps=bool(outcome.get("timestamps")))


@dataclass(frozen=True)
class PhaseFacts:
    """One phase the experiment declares: open model at `rate_per_s`, or closed with `users` waiting `wait_s`."""

    name: str = ""
    kind: str = ""
    rate_per_s: float | None = None
    duration_s: float = 0.0
    users: int | None = None
    wait_s: float | None = None

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> PhaseFacts:
        return record_from(cls, data)


@dataclass(frozen=True)
class CapacityFacts:
    """The capacity search: from `start_per_s` to `max_per_s`, by `step_per_s` or (a geometric search) `step_factor`;
    then, where declared (offpath/capacity_search.py, #25), narrowed to ±`precision_pct` in at most `refine_steps`
    probes of `tail_values` values beyond P99 each, going on past the maximum up to `ceiling_per_s`."""

    start_per_s: float = 0.0
    max_per_s: float = 0.0
    step_duration_s: float = 0.0
    step_per_s: float | None = None
    step_factor: float | None = None
    precision_pct: float | None = None
    refine_steps: int | None = None
    ceiling_per_s: float | None = None
    tail_values: int | None = None

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> CapacityFacts:
        return record_from(cls, data)


@dataclass(frozen=True)
class SoakFacts:
    """A soak (`[soak]`): each design for `duration_s` at `load_fraction` of its capacity or at its declared
    `rate_per_s`, sampled every `sample_interval_s`; analysis merges latency per `bin_s`, fits slopes after `warmup_s`
    and compares the first `drift_bins` bins after it with the last."""

    duration_s: float = 0.0
    load_fraction: float | None = None
    rate_per_s: Mapping[str, float] | None = None
    sample_interval_s: float = 10.0
    warmup_s: float = 60.0
    bin_s: float = 60.0
    drift_bins: int = 10

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SoakFacts:
        return record_from(cls, data)


@dataclass(frozen=True)
class ClaimFacts:
    """A result measured elsewhere, which the report sets beside this run's figures."""

    source: str = ""
    throughput_at_slo_change_pct: float = 0.0
    p99_at_equal_load_change_pct: float = 0.0

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ClaimFacts:
        return record_from(cls, data)


@dataclass(frozen=True)
class ExperimentFacts:
    """manifest.json's `experiment`: the experiment as the harness resolved it, kept whole (`resolved`, written back
    as it is), and typed views of what analysis reads of it. `designs` in the order declared: the first the baseline
    (A) of a comparison, the second its candidate (B)."""

    resolved: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ExperimentFacts:
        return cls(dict(data))

    def to_dict(self) -> dict[str, Any]:
        return dict(self.resolved)

    @property
    def name(self) -> str:
        return str(self.resolved.get("name") or "")

    @property
    def description(self) -> str:
        return str(self.resolved.get("description") or "")

    @property
    def profile(self) -> str | None:
        """The workload profile's spec, as given (e.g. 'default*wait=0.5')."""
        spec = self.resolved.get("profile")
        return str(spec) if spec is not None else None

    @property
    def designs(self) -> tuple[str, ...]:
        return tuple(str(d) for d in self.resolved.get("designs") or ())

    @property
    def repetitions(self) -> int:
        return int(self.resolved.get("repetitions") or 1)

    @property
    def slo(self) -> Slo | None:
        data = self.resolved.get("slo")
        if not data:
            return None
        completion = data.get("completion_p99_ms")
        return Slo(float(data.get("p99_ms") or 0.0), float(data.get("error_rate") or 0.0),
                   float(completion) if completion is not None else None)

    @property
    def phases(self) -> tuple[PhaseFacts, ...]:
        return tuple(PhaseFacts.from_dict(p) for p in self.resolved.get("phases") or () if isinstance(p, Mapping))

    @property
    def capacity(self) -> CapacityFacts | None:
        data = self.resolved.get("capacity")
        return CapacityFacts.from_dict(data) if data else None

    @property
    def layout(self) -> Mapping[str, Any]:
        """The layout as resolved: processes, workers, polling, drain, placement, ... (offpath/experiment.py)."""
        return self.resolved.get("layout") or {}

    @property
    def soak(self) -> SoakFacts | None:
        data = self.resolved.get("soak")
        return SoakFacts.from_dict(data) if data else None

    @property
    def claim(self) -> ClaimFacts | None:
        data = self.resolved.get("claim")
        return ClaimFacts.from_dict(data) if data else None

    @property
    def declarations(self) -> dict[str, DesignFacts]:
        """Each design's declaration, as far as analysis reads it (none in a manifest written before designs were
        declared as data)."""
        found = self.resolved.get("declarations") or {}
        return {str(name): DesignFacts.of(str(name), data) for name, data in found.items() if isinstance(data, Mapping)}

    @property
    def sweep(self) -> Mapping[str, tuple[float | str, ...]]:
        """A sweep's parameters, each with its values, in the sweep's order (empty for a plain experiment): numbers,
        or names (a queue backend)."""
        return {str(name): tuple(v if isinstance(v, str) else float(v) for v in values)
                for name, values in (self.resolved.get("sweep") or {}).items()}
