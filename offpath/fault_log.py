"""The log a chaos fault keeps of what it did: each event's time since its cell's load started, what, and what it hit."""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["FaultLog"]


@dataclass
class FaultLog:
    """What was done, when (seconds since the cell started), and what it hit."""

    events: list[dict] = field(default_factory=list)

    def add(self, t_s: float, what: str, **details: object) -> None:
        self.events.append({"t_s": round(t_s, 3), "what": what, **details})
