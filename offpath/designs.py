"""The designs offpath compares, as data: one entry per design says how to serve it and what to measure.

The harness never branches on a design's name; it asks the entry. A third design (say, a thread-pool
inline service) is one more entry here and one more app under services/.
"""

from __future__ import annotations

from dataclasses import dataclass

from foundation.errors import ConfigurationError

__all__ = ["DESIGNS", "Design", "design"]


@dataclass(frozen=True)
class Design:
    name: str
    # The uvicorn application factory (`module:function`, called with no arguments; settings come from the
    # environment the supervisor gives the process).
    app_factory: str
    # Slow work done by RQ workers: start them, probe the queue, let the backlog drain after each cell.
    has_workers: bool
    # The acknowledgement is not the outcome: the simulated client polls the campaign's Location until
    # it is final, as a real client of a 202 would.
    polls_for_outcome: bool
    summary: str


DESIGNS: dict[str, Design] = {
    d.name: d for d in (
        Design("inline", "services.inline.app:create_app", has_workers=False, polls_for_outcome=False,
               summary="the request does the slow work and answers 201 with the finished campaign"),
        Design("queued", "services.queued.app:create_app", has_workers=True, polls_for_outcome=True,
               summary="the request persists and enqueues the slow work on RQ, answering 202 with a Location"),
    )
}


def design(name: str) -> Design:
    """The design called `name`; ConfigurationError naming the allowed ones otherwise."""
    try:
        return DESIGNS[name]
    except KeyError:
        raise ConfigurationError(f"design {name!r} is not one of {', '.join(DESIGNS)}") from None
