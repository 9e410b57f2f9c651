"""The regression gate's rules: a small declarative TOML file (analysis/gate/rules.toml) loaded into typed rules."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from foundation.errors import ConfigurationError
from foundation.format import COMPLETION, CREATE, SYSTEM_TIERS

RULES_PATH = Path(__file__).parent / "rules.toml"
PERCENTILES = {"p50": 50.0, "p90": 90.0, "p99": 99.0, "p99.9": 99.9}  # a rule's `metric`
ENDPOINTS = (CREATE, COMPLETION)
COST_TIERS = (*SYSTEM_TIERS, "system")  # a cost rule's `tier`: one tier's CPU, or the system tiers' together
# kind -> (its limit key, the keys it accepts besides name, kind, why)
KINDS: dict[str, tuple[str, frozenset[str]]] = {
    "regression": ("max_regression_pct",
                   frozenset({"design", "endpoint", "metric", "max_regression_pct_against_base"})),
    "advantage": ("min_advantage_pct", frozenset({"design", "reference", "endpoint", "metric"})),
    "error_rate": ("max_error_rate", frozenset({"design", "endpoint"})),
    "throughput": ("min_held_pct", frozenset({"design"})),
    "sustainable": ("", frozenset({"design"})),
    # CPU ms per campaign against a base commit measured in the same job (stored baselines keep no CPU accounting)
    "cost": ("max_regression_pct_against_base", frozenset({"design", "tier"})),
}


class RulesError(ConfigurationError):
    """A rules file that cannot be used; the message names the file, the rule and the key."""


@dataclass(frozen=True)
class Rule:
    name: str
    kind: str
    design: str
    endpoint: str = CREATE
    metric: str = "p50"
    limit: float = 0.0  # percent, except max_error_rate (a fraction)
    reference: str = ""  # advantage: the design it is judged against; empty: the run's baseline (its first design)
    why: str = ""
    # regression: the limit against a base commit measured in the same job (`--against`; drift between runs cancels
    # there, so it may be tighter); None: `limit` there too.
    limit_against_base: float | None = None
    versus: str = "baseline"  # what a regression rule compares with: "baseline" (stored) or "base" (--against)
    tier: str = "system"  # cost: whose CPU (COST_TIERS)

    @property
    def needs_baseline(self) -> bool:
        return self.kind in ("regression", "cost")

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


def load_rules(path: Path = RULES_PATH) -> RuleSet:
    """The rules in a TOML file (by default the gate's own, analysis/gate/rules.toml)."""
    try:
        data = tomllib.loads(Path(path).read_text())
    except FileNotFoundError:
        raise RulesError(f"gate rules file {path} not found") from None
    except tomllib.TOMLDecodeError as exc:
        raise RulesError(f"{path}: not valid TOML: {exc}") from None
    return parse_rules(data, str(path))


def parse_rules(data: dict[str, Any], source: str) -> RuleSet:
    unknown = set(data) - {"phase", "rules"}
    if unknown:
        raise RulesError(f"{source}: unknown key(s) {', '.join(sorted(unknown))}; allowed: phase, rules")
    tables = data.get("rules")
    if not isinstance(tables, list) or not tables:
        raise RulesError(f"{source}: needs at least one [[rules]] table")
    rules = tuple(_rule(table, f"{source}: rules[{number}]") for number, table in enumerate(tables))
    names = [r.name for r in rules]
    if len(set(names)) != len(names):
        raise RulesError(f"{source}: rule names must be unique (each is a JUnit test case), got {names}")
    return RuleSet(phase=_text(data, "phase", source, "steady"), rules=rules, source=source)


def _rule(table: Any, where: str) -> Rule:
    if not isinstance(table, dict):
        raise RulesError(f"{where} must be a table")
    kind = _text(table, "kind", where)
    if kind not in KINDS:
        raise RulesError(f"{where}: kind {kind!r} is not one of {', '.join(KINDS)}")
    limit_key, keys = KINDS[kind]
    allowed = {"name", "kind", "why", *keys} | ({limit_key} if limit_key else set())
    unknown = set(table) - allowed
    if unknown:
        raise RulesError(f"{where}: unknown key(s) {', '.join(sorted(unknown))} for kind {kind}; allowed: "
                         f"{', '.join(sorted(allowed))}")
    endpoint = _text(table, "endpoint", where, CREATE)
    if endpoint not in ENDPOINTS:
        raise RulesError(f"{where}: endpoint {endpoint!r} is not one of {', '.join(ENDPOINTS)}")
    metric = _text(table, "metric", where, "p50")
    if metric not in PERCENTILES:
        raise RulesError(f"{where}: metric {metric!r} is not one of {', '.join(PERCENTILES)}")
    limit = 0.0
    if limit_key:
        value = table.get(limit_key)
        if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
            raise RulesError(f"{where}: {limit_key} must be a number >= 0")
        limit = float(value)
    against_base = table.get("max_regression_pct_against_base")
    if against_base is not None and (isinstance(against_base, bool) or not isinstance(against_base, int | float)
                                     or against_base < 0):
        raise RulesError(f"{where}: max_regression_pct_against_base must be a number >= 0")
    reference = _text(table, "reference", where, "")
    tier = _text(table, "tier", where, "system")
    if tier not in COST_TIERS:
        raise RulesError(f"{where}: tier {tier!r} is not one of {', '.join(COST_TIERS)}")
    return Rule(name=_text(table, "name", where), kind=kind, design=_text(table, "design", where), endpoint=endpoint,
                metric=metric, limit=limit, reference=reference, why=_text(table, "why", where, ""),
                limit_against_base=None if against_base is None else float(against_base), tier=tier)


def _text(table: dict[str, Any], key: str, where: str, default: str | None = None) -> str:
    value = table.get(key, default)
    if not isinstance(value, str) or (default is None and not value):
        raise RulesError(f"{where}: {key} must be a non-empty string" + ("" if key in table else " (missing)"))
    return value


