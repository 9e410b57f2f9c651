"""The workload profile: what the slow work costs, read from a TOML data file."""

from __future__ import annotations

import math
import tomllib
from dataclasses import dataclass, replace
from pathlib import Path

from foundation.errors import ConfigurationError

PROFILES_DIR = Path(__file__).parent / "profiles"

# z-score of the 99th percentile of a standard normal: a lognormal's P99 is median * exp(Z99 * sigma).
Z99 = 2.3263478740408408
# What a scale in a profile spec may multiply: "" everything ('default*1.3'), only the provider waits
# ('default*wait=2') or only the CPU work ('default*cpu=0.5'). Failure probabilities and retry backoff never scale.
SCALED_PARTS = ("", "wait", "cpu")


class ProfileError(ConfigurationError):
    pass


@dataclass(frozen=True)
class StepCost:
    """What one piece of slow work costs: real CPU, a provider wait, a chance that the provider fails."""

    cpu_ms: float
    wait_median_ms: float
    wait_p99_ms: float
    failure_probability: float

    @property
    def wait_sigma(self) -> float:
        if self.wait_median_ms <= 0:
            return 0.0
        return math.log(self.wait_p99_ms / self.wait_median_ms) / Z99

    def scaled(self, factor: float, part: str = "") -> StepCost:
        """`factor` times the CPU and the waits (part ""), or only the CPU ("cpu") or only the waits ("wait")."""
        cpu, wait = (factor if part in ("", "cpu") else 1.0), (factor if part in ("", "wait") else 1.0)
        return replace(
            self,
            cpu_ms=self.cpu_ms * cpu,
            wait_median_ms=self.wait_median_ms * wait,
            wait_p99_ms=self.wait_p99_ms * wait,
        )


@dataclass(frozen=True)
class Profile:
    name: str
    description: str
    seed: int
    generation: StepCost
    automation: StepCost

    def scaled(self, factor: float, part: str = "") -> Profile:
        """The same profile with every CPU cost and wait multiplied by factor (1.3 = 30% more work); `part` "cpu" or
        "wait" scales only the CPU work or only the provider waits (SCALED_PARTS)."""
        if factor == 1.0:
            return self
        return replace(
            self,
            name=f"{self.name}*{part + '=' if part else ''}{factor:g}",
            generation=self.generation.scaled(factor, part),
            automation=self.automation.scaled(factor, part),
        )


def available_profiles() -> list[str]:
    return sorted(p.stem for p in PROFILES_DIR.glob("*.toml"))


def load_profile(spec: str) -> Profile:
    """Load a profile by name ('default'), path ('my/profile.toml'), either with '*1.3' to scale all its work, or
    '*wait=2' / '*cpu=0.5' to scale only its provider waits or only its CPU work (scales chain: 'default*wait=2*cpu=0.5')."""
    name, *scales = spec.split("*")
    path = Path(name) if name.endswith(".toml") else PROFILES_DIR / f"{name}.toml"
    if not path.is_file():
        raise ProfileError(
            f"workload profile {name!r} not found; use one of {', '.join(available_profiles())} "
            "or a path to a .toml file"
        )
    try:
        data = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise ProfileError(f"{path}: not valid TOML: {exc}") from exc
    profile = Profile(
        name=str(data.get("name", path.stem)),
        description=str(data.get("description", "")),
        seed=_int(data, "seed", path),
        generation=_step(data, "generation", path),
        automation=_step(data, "automation", path),
    )
    for scale in scales:
        part, _, factor_text = scale.rpartition("=")
        if part not in SCALED_PARTS:
            raise ProfileError(f"profile scale {scale!r} in {spec!r}: allowed a number (all work, 'default*1.3'), "
                               "'wait=N' (provider waits only) or 'cpu=N' (CPU work only)")
        try:
            factor = float(factor_text)
        except ValueError:
            raise ProfileError(f"profile scale in {spec!r} must be a number, e.g. 'default*1.3'") from None
        if not factor > 0 or factor == float("inf"):
            raise ProfileError(f"profile scale in {spec!r} must be positive")
        profile = profile.scaled(factor, part)
    return profile


def _int(data: dict, key: str, path: Path) -> int:
    value = data.get(key)
    if not isinstance(value, int):
        raise ProfileError(f"{path}: key {key!r} must be an integer")
    return value


def _step(data: dict, section: str, path: Path) -> StepCost:
    table = data.get(section)
    if not isinstance(table, dict):
        raise ProfileError(f"{path}: missing table [{section}]")
    fields = {}
    for key in ("cpu_ms", "wait_median_ms", "wait_p99_ms", "failure_probability"):
        value = table.get(key)
        if not isinstance(value, int | float) or isinstance(value, bool) or value < 0:
            raise ProfileError(f"{path}: [{section}].{key} must be a number >= 0")
        fields[key] = float(value)
    unknown = set(table) - set(fields)
    if unknown:
        raise ProfileError(f"{path}: [{section}] has unknown keys {sorted(unknown)}; allowed: {sorted(fields)}")
    if fields["failure_probability"] > 1:
        raise ProfileError(f"{path}: [{section}].failure_probability must be between 0 and 1")
    if fields["wait_median_ms"] > 0 and fields["wait_p99_ms"] < fields["wait_median_ms"]:
        raise ProfileError(f"{path}: [{section}].wait_p99_ms must be >= wait_median_ms")
    return StepCost(**fields)
