"""The workload profile: what the slow work costs, read from a TOML data file, and the spec that names a profile and
scales its work ('default', 'default*1.3', 'default*wait=2*cpu=0.5', 'my/profile.toml')."""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from pydantic import Field, ValidationInfo, field_validator
from pydantic_core import core_schema

from foundation.config import ConfigError, ConfigModel, parse, read_toml

__all__ = ["PROFILES_DIR", "Profile", "ProfileError", "ProfileSpec", "StepCost", "available_profiles", "load_profile"]

PROFILES_DIR = Path(__file__).parent / "profiles"

# z-score of the 99th percentile of a standard normal: a lognormal's P99 is median * exp(Z99 * sigma).
Z99 = 2.3263478740408408

# What a spec's scales may be, as its errors word it. A scale multiplies everything ('default*1.3'), only the provider
# waits ('default*wait=2') or only the CPU work ('default*cpu=0.5'); failure probabilities and retry backoff never scale.
SCALES_ALLOWED = ("'*N' (all the work, e.g. 'default*1.3'), '*wait=N' (provider waits only) or '*cpu=N' (CPU work "
                  "only), each N a number > 0")


class ProfileError(ConfigError):
    """A profile spec or profile file offpath cannot use; one line naming it and what is allowed."""


class StepCost(ConfigModel):
    """What one piece of slow work costs: real CPU, a provider wait, a chance that the provider fails."""

    cpu_ms: float = Field(ge=0, description="milliseconds of CPU >= 0")
    wait_median_ms: float = Field(ge=0, description="milliseconds >= 0")
    wait_p99_ms: float = Field(ge=0, description="milliseconds >= 0, and >= wait_median_ms")
    failure_probability: float = Field(ge=0, le=1, description="a probability from 0 to 1")

    @field_validator("wait_p99_ms")
    @classmethod
    def _p99_not_below_the_median(cls, value: float, info: ValidationInfo) -> float:
        median = info.data.get("wait_median_ms", 0.0)
        if median > 0 and value < median:
            raise ValueError(f"allowed: milliseconds >= wait_median_ms ({median:g})")
        return value

    @property
    def wait_sigma(self) -> float:
        if self.wait_median_ms <= 0:
            return 0.0
        return math.log(self.wait_p99_ms / self.wait_median_ms) / Z99

    def scaled(self, cpu: float, wait: float) -> StepCost:
        """`cpu` times the CPU work and `wait` times the provider waits."""
        return self.model_copy(update={"cpu_ms": self.cpu_ms * cpu, "wait_median_ms": self.wait_median_ms * wait,
                                       "wait_p99_ms": self.wait_p99_ms * wait})


class Profile(ConfigModel):
    """A workload profile as its file declares it (services/campaign/profiles/*.toml); `name` defaults to the file's
    stem, and a scaled profile's name carries its scales ('default*wait=2')."""

    name: str = Field(min_length=1, description="a non-empty string")
    description: str = ""
    seed: int
    generation: StepCost
    automation: StepCost


def available_profiles() -> list[str]:
    return sorted(p.stem for p in PROFILES_DIR.glob("*.toml"))


@dataclass(frozen=True)
class ProfileSpec:
    """Which workload profile, and how much of its work: parsed once from the text a user writes ('default*1.3'), and
    given back as that text by `str()` (the OFFPATH_PROFILE a service reads, which services of older commits parse
    too). Scales compose by multiplying, so a sweep scales the spec it is given (`spec.scaled(wait=2)`)."""

    name: str = "default"  # a profile in services/campaign/profiles/, or a path to a .toml file
    scale: float = 1.0  # all the work: CPU and provider waits
    wait_scale: float = 1.0  # the provider waits only
    cpu_scale: float = 1.0  # the CPU work only

    def __post_init__(self) -> None:
        for factor in (self.scale, self.wait_scale, self.cpu_scale):
            if isinstance(factor, bool) or not (isinstance(factor, int | float) and 0 < factor < math.inf):
                raise ProfileError(f"profile spec {self.name!r}: scale {factor!r} is not allowed; allowed: "
                                   f"{SCALES_ALLOWED}")
        if not self.name or "*" in self.name:
            raise ProfileError(f"profile spec {str(self)!r}: it names no profile; allowed: a profile name "
                               f"({', '.join(available_profiles())}) or a path to a .toml file, then scales "
                               f"{SCALES_ALLOWED}")

    @classmethod
    def parse(cls, text: str) -> ProfileSpec:
        """The spec a text names: 'NAME' or 'PATH.toml', then any of '*N', '*wait=N', '*cpu=N' (repeated scales
        multiply); ProfileError (one line) for a scale it cannot read or a profile that does not exist."""
        name, *scales = text.split("*")
        factors = {"": 1.0, "wait": 1.0, "cpu": 1.0}
        for scale in scales:
            part, _, factor_text = scale.rpartition("=")
            try:
                factor = float(factor_text) if part in factors else math.nan
            except ValueError:
                factor = math.nan
            if not 0 < factor < math.inf:
                raise ProfileError(f"profile spec {text!r}: scale {'*' + scale!r} is not allowed; allowed: "
                                   f"{SCALES_ALLOWED}")
            factors[part] *= factor
        spec = cls(name, scale=factors[""], wait_scale=factors["wait"], cpu_scale=factors["cpu"])
        spec.path()  # a profile that does not exist fails here, where the spec is given
        return spec

    def __str__(self) -> str:
        return self.name + self.scales_text

    @property
    def scales_text(self) -> str:
        """The scales as a spec writes them ('*1.3*wait=2'); '' for the profile as its file has it."""
        parts = [(label, factor) for label, factor in (("", self.scale), ("wait=", self.wait_scale),
                                                       ("cpu=", self.cpu_scale)) if factor != 1]
        return "".join(f"*{label}{_number(factor)}" for label, factor in parts)

    def scaled(self, factor: float = 1.0, *, wait: float = 1.0, cpu: float = 1.0) -> ProfileSpec:
        """This spec with its work scaled further: `factor` all of it, `wait` the provider waits, `cpu` the CPU work."""
        return replace(self, scale=self.scale * factor, wait_scale=self.wait_scale * wait,
                       cpu_scale=self.cpu_scale * cpu)

    def path(self) -> Path:
        """The profile's file; ProfileError naming the profiles there are when it does not exist."""
        path = Path(self.name) if self.name.endswith(".toml") else PROFILES_DIR / f"{self.name}.toml"
        if not path.is_file():
            raise ProfileError(f"workload profile {self.name!r} not found; allowed: one of "
                               f"{', '.join(available_profiles())} or a path to a .toml file")
        return path

    def load(self) -> Profile:
        """The profile, its work scaled; ProfileError (one line: file, key, value, what is allowed) for a bad file."""
        path = self.path()
        profile = parse({"name": path.stem, **read_toml(path, error=ProfileError)}, Profile, str(path),
                        error=ProfileError)
        if not self.scales_text:
            return profile
        cpu, wait = self.scale * self.cpu_scale, self.scale * self.wait_scale
        return profile.model_copy(update={"name": profile.name + self.scales_text,
                                          "generation": profile.generation.scaled(cpu, wait),
                                          "automation": profile.automation.scaled(cpu, wait)})

    @classmethod
    def __get_pydantic_core_schema__(cls, source: Any, handler: Any) -> core_schema.CoreSchema:
        """A spec as a key of a configuration file: its text there, a ProfileSpec once read, its text when dumped."""
        return core_schema.no_info_plain_validator_function(
            _spec_of, serialization=core_schema.plain_serializer_function_ser_schema(str))


def _spec_of(value: Any) -> ProfileSpec:
    if isinstance(value, ProfileSpec):
        return value
    if not isinstance(value, str):
        raise ValueError(f"allowed: a profile spec such as 'default' or 'default*wait=2', with scales {SCALES_ALLOWED}")
    try:
        return ProfileSpec.parse(value)
    except ProfileError as exc:
        raise ValueError(str(exc)) from None  # its "allowed: ..." is what foundation/config.py words the error with


def _number(factor: float) -> str:
    """A factor as the shortest text that reads back as the same number ('2', '1.3', '0.1')."""
    text = repr(float(factor))
    return text[:-2] if text.endswith(".0") else text


def load_profile(spec: str) -> Profile:
    """The profile a spec's text names (`ProfileSpec.parse(spec).load()`)."""
    return ProfileSpec.parse(spec).load()
