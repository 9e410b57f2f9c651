"""The rule every benchmark prints its figure by: no figure when a measured side had errors, and then what failed.

A ratio over a side that answered errors measures the error path (a 503 is cheap), not what the benchmark names, so
the benchmark prints `no figure: <side> had N errors in <where> (<kind> x n, ...)` instead and exits NO_FIGURE.
"""

from __future__ import annotations

import sys
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TextIO

__all__ = ["NO_FIGURE", "SideErrors", "refused"]

# The exit code of a benchmark that refused its figure (argparse's usage errors are 2).
NO_FIGURE = 1


@dataclass(frozen=True)
class SideErrors:
    """The errors one measured side had in one place (a round, a window, a set of runs), counted by kind: an HTTP
    status, an exception's name, a driver's error message."""

    side: str
    where: str
    counts: Mapping[str, int] = field(default_factory=Counter)

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def kinds(self) -> str:
        """`503 x 19,237, ClientOSError x 3`: most frequent first."""
        return ", ".join(f"{kind} x {count:,}" for kind, count in Counter(self.counts).most_common() if count)

    def __str__(self) -> str:
        return f"{self.side} had {self.total:,} error{'s' if self.total != 1 else ''} in {self.where} ({self.kinds()})"


def refused(errors: Iterable[SideErrors], figure: str = "", out: TextIO | None = None) -> bool:
    """Print `no figure: ...` (or `no <figure> figure: ...`) for each side that had errors; True when one did, and
    the caller then prints no figure and exits NO_FIGURE."""
    failed = [e for e in errors if e.total]
    label = f"no {figure} figure" if figure else "no figure"
    for side in failed:
        print(f"{label}: {side}", file=out or sys.stdout)
    return bool(failed)
