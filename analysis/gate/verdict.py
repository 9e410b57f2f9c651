"""A gate's verdict: pass, regression or harness error, one outcome per rule, and the commits or the baseline it was
judged against; its exit code is foundation/errors.py's (0 pass, 1 regression, 2 harness error, never a pass).

analysis/gate/judge.py and analysis/gate/against_base.py give verdicts; analysis/gate/verdict_formats.py writes them as
CI and people read them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from analysis.gate.rules import Rule, RuleSet
from foundation.errors import EXIT_CHECK_FAILED, EXIT_ERROR, EXIT_OK

__all__ = ["EXIT_CODES", "Commit", "Outcome", "Verdict", "harness_error"]

EXIT_CODES = {"pass": EXIT_OK, "regression": EXIT_CHECK_FAILED, "error": EXIT_ERROR}


@dataclass(frozen=True)
class Outcome:
    rule: Rule
    status: str  # pass | fail | error | skipped
    measured: str  # one line a reviewer reads
    figures: dict[str, Any] = field(default_factory=dict)  # machine-readable numbers behind `measured`


@dataclass(frozen=True)
class Commit:
    """A side of `offpath gate --against`: the commit, its subject, and whether the checkout had changes beyond it."""

    sha: str
    subject: str
    ref: str = ""  # as the user named it (HEAD~1, main); empty when it was not named
    dirty: bool = False

    @property
    def short(self) -> str:
        return self.sha[:10]

    @property
    def label(self) -> str:
        """`1a2b3c4d5e "subject"`, and `+ uncommitted changes` for a checkout that differs from its commit."""
        return f'{self.short} "{self.subject}"' + (" + uncommitted changes" if self.dirty else "")

    def to_dict(self) -> dict[str, Any]:
        return {"sha": self.sha, "short": self.short, "subject": self.subject, "ref": self.ref, "dirty": self.dirty}


@dataclass(frozen=True)
class Verdict:
    status: str  # pass | regression | error
    outcomes: tuple[Outcome, ...]
    errors: tuple[str, ...] = ()  # harness errors: why the run could not be judged at all
    notes: tuple[str, ...] = ()
    run_id: str | None = None
    run_dir: str | None = None
    baseline: str | None = None
    phase: str = ""
    # `--against`: the two commits measured side by side (the regression rules judge candidate against base).
    base: Commit | None = None
    candidate: Commit | None = None

    @property
    def exit_code(self) -> int:
        return EXIT_CODES[self.status]

    def count(self, status: str) -> int:
        return sum(o.status == status for o in self.outcomes)


def harness_error(errors: str | Sequence[str], rules: RuleSet | None = None, *, run_id: str | None = None,
                  run_dir: str | None = None, baseline: str | None = None, base: Commit | None = None,
                  candidate: Commit | None = None) -> Verdict:
    """A verdict for a gate that could not judge at all: every rule unjudged, exit code 2."""
    outcomes = tuple(Outcome(r, "error", "not judged: harness error") for r in (rules.rules if rules else ()))
    return Verdict(status="error", outcomes=outcomes, errors=(errors,) if isinstance(errors, str) else tuple(errors),
                   run_id=run_id, run_dir=run_dir, baseline=baseline, phase=rules.phase if rules else "", base=base,
                   candidate=candidate)
