"""The regression gate's rules: a small declarative TOML file (analysis/gate/rules.toml) read into one model per rule
kind (each with exactly its own keys), then into the typed rules the judge applies."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field

from analysis.stats.commands import ALL, EACH
from foundation.config import ConfigError, ConfigModel, distinct, load_toml, one_of, parse
from foundation.format import COMPLETION, CREATE, SYSTEM_TIERS

RULES_PATH = Path(__file__).parent / "rules.toml"
PERCENTILES = {"p50": 50.0, "p90": 90.0, "p99": 99.0, "p99.9": 99.9}  # a rule's `metric`
ENDPOINTS = (CREATE, COMPLETION)
COST_TIERS = (*SYSTEM_TIERS, "system")  # a cost rule's `tier`: one tier's CPU, or the system tiers' together
COUNTED = {ALL: "Redis commands", EACH: "commands of any one kind"}  # a count rule's `command`, in words


class RulesError(ConfigError):
    """A rules file that cannot be used; one line naming the file, the key, its value and what is allowed."""


@dataclass(frozen=True)
class Rule:
    name: str
    kind: str
    design: str
    endpoint: str = CREATE
    metric: str = "p50"
    limit: float = 0.0  # percent, except max_error_rate (a fraction) and count (commands per campaign)
    reference: str = ""  # advantage: the design it is judged against; empty: the run's baseline (its first design)
    why: str = ""
    # regression: the limit against a base commit measured in the same job (`--against`; drift between runs cancels
    # there, so it may be tighter); None: `limit` there too.
    limit_against_base: float | None = None
    versus: str = "baseline"  # what a regression rule compares with: "baseline" (stored) or "base" (--against)
    tier: str = "system"  # cost: whose CPU (COST_TIERS)
    command: str = ALL  # count: "all" (every command together), "each" (each kind on its own) or one kind

    @property
    def needs_baseline(self) -> bool:
        return self.kind in ("regression", "cost", "count")

    @property
    def percentile(self) -> float:
        return PERCENTILES[self.metric]

    @property
    def designs(self) -> list[str]:
        return [d for d in (self.design, self.reference) if d]

    def against(self, baseline: str | None) -> Rule:
        """An advantage rule without a reference judged against `baseline` (the run's); any other rule as it is."""
        if self.kind != "advantage" or self.reference or not baseline:
            return self
        return replace(self, reference=baseline)

    def against_base(self) -> Rule:
        """A regression rule as judged against a base commit (its against-base limit); any other rule as it is."""
        if self.kind != "regression":
            return self
        limit = self.limit if self.limit_against_base is None else self.limit_against_base
        return replace(self, limit=limit, versus="base")

    def limit_text(self) -> str:
        return {"regression": f"≤ +{self.limit:g}% vs {self.versus}",
                "cost": f"≤ +{self.limit:g}% CPU per campaign vs base",
                "count": f"≤ +{self.limit:g} {COUNTED.get(self.command, self.command + ' commands')} per campaign "
                         "vs base",
                "advantage": f"≥ {self.limit:g}% below {self.reference}",
                "error_rate": f"≤ {self.limit:.2%}", "throughput": f"≥ {self.limit:g}% of offered",
                "sustainable": "backlog not growing"}[self.kind]


@dataclass(frozen=True)
class RuleSet:
    phase: str
    rules: tuple[Rule, ...]
    source: str = ""

    def against(self, baseline: str | None) -> RuleSet:
        """The rules with the run's baseline design as the reference of every advantage rule that names none."""
        return replace(self, rules=tuple(rule.against(baseline) for rule in self.rules))

    def against_base(self) -> RuleSet:
        """The rules as `--against` judges them: regression rules with their against-base limits."""
        return replace(self, rules=tuple(rule.against_base() for rule in self.rules))


class _RuleEntry(ConfigModel):
    """What every rule declares: a name (its JUnit test case), the design it judges, and why it is there."""

    name: Annotated[str, Field(min_length=1, description="a non-empty name"),
                    distinct("rule names", "a name no other rule has (each is a JUnit test case)")]
    design: str = Field(min_length=1, description="a design's name")
    why: str = ""

    def rule(self) -> Rule:
        raise NotImplementedError


Endpoint = Annotated[str, one_of(ENDPOINTS)]
Metric = Annotated[str, one_of(PERCENTILES)]
Percent = Annotated[float, Field(ge=0, description="a percentage >= 0")]


class RegressionRule(_RuleEntry):
    """A latency percentile of one design against the baseline (or, with --against, the base commit)."""

    kind: Literal["regression"]
    endpoint: Endpoint = CREATE
    metric: Metric = "p50"
    max_regression_pct: Percent
    # The limit against a base commit measured in the same job (drift between runs cancels there, so it may be
    # tighter); unset: max_regression_pct there too.
    max_regression_pct_against_base: Percent | None = None

    def rule(self) -> Rule:
        return Rule(name=self.name, kind=self.kind, design=self.design, endpoint=self.endpoint, metric=self.metric,
                    limit=self.max_regression_pct, limit_against_base=self.max_regression_pct_against_base,
                    why=self.why)


class AdvantageRule(_RuleEntry):
    """A design's percentile at least this much below another's in the same run."""

    kind: Literal["advantage"]
    reference: str = ""  # the design it is judged against; empty: the run's baseline (its first design)
    endpoint: Endpoint = CREATE
    metric: Metric = "p50"
    min_advantage_pct: float = Field(ge=0, le=100, description="a percentage from 0 to 100")

    def rule(self) -> Rule:
        return Rule(name=self.name, kind=self.kind, design=self.design, endpoint=self.endpoint, metric=self.metric,
                    limit=self.min_advantage_pct, reference=self.reference, why=self.why)


class ErrorRateRule(_RuleEntry):
    kind: Literal["error_rate"]
    endpoint: Endpoint = CREATE
    max_error_rate: float = Field(ge=0, le=1, description="a fraction from 0 to 1")

    def rule(self) -> Rule:
        return Rule(name=self.name, kind=self.kind, design=self.design, endpoint=self.endpoint,
                    limit=self.max_error_rate, why=self.why)


class ThroughputRule(_RuleEntry):
    """Successes per second held against the rate offered."""

    kind: Literal["throughput"]
    min_held_pct: float = Field(ge=0, le=100, description="a percentage from 0 to 100")

    def rule(self) -> Rule:
        return Rule(name=self.name, kind=self.kind, design=self.design, limit=self.min_held_pct, why=self.why)


class SustainableRule(_RuleEntry):
    """The queued backlog does not grow through the steady phase."""

    kind: Literal["sustainable"]

    def rule(self) -> Rule:
        return Rule(name=self.name, kind=self.kind, design=self.design, why=self.why)


class CostRule(_RuleEntry):
    """CPU ms per campaign against a base commit measured in the same job (stored baselines keep no CPU accounting)."""

    kind: Literal["cost"]
    tier: Annotated[str, one_of(COST_TIERS)] = "system"
    max_regression_pct_against_base: Percent

    def rule(self) -> Rule:
        return Rule(name=self.name, kind=self.kind, design=self.design, tier=self.tier,
                    limit=self.max_regression_pct_against_base, why=self.why)


class CountRule(_RuleEntry):
    """Redis commands per campaign against a base commit measured in the same job — `command`: "all" (every command
    together), "each" (each kind on its own: the largest increase decides) or one kind as INFO commandstats names it —
    limited in commands per campaign, not percent: a count moves by whole commands (stored baselines keep no counts)."""

    kind: Literal["count"]
    command: str = Field(ALL, pattern=r"^[a-z][a-z0-9_.-]*$",
                         description="all, each, or a command kind in lower case as INFO commandstats names it (e.g. "
                                     "'ping')")
    max_increase: float = Field(ge=0, description="commands per campaign >= 0, e.g. 0.5")

    def rule(self) -> Rule:
        return Rule(name=self.name, kind=self.kind, design=self.design, command=self.command,
                    limit=self.max_increase, why=self.why)


class RulesFile(ConfigModel):
    """A rules file: the phase it judges and its rules, told apart by `kind`."""

    phase: str = Field("steady", min_length=1, description="a phase's name")
    rules: list[Annotated[RegressionRule | AdvantageRule | ErrorRateRule | ThroughputRule | SustainableRule
                          | CostRule | CountRule, Field(discriminator="kind")]] = Field(
        min_length=1, description="at least one [[rules]] table")


def load_rules(path: Path = RULES_PATH) -> RuleSet:
    """The rules in a TOML file (by default the gate's own, analysis/gate/rules.toml); RulesError (one line)
    otherwise."""
    return _rule_set(load_toml(Path(path), RulesFile, error=RulesError), str(path))


def parse_rules(data: dict[str, Any], source: str) -> RuleSet:
    return _rule_set(parse(data, RulesFile, source, error=RulesError), source)


def _rule_set(file: RulesFile, source: str) -> RuleSet:
    return RuleSet(phase=file.phase, rules=tuple(entry.rule() for entry in file.rules), source=source)
