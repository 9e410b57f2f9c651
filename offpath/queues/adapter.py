"""The queue adapter protocol: what the harness asks of a queue, whatever library keeps it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

__all__ = ["QueueAdapter", "QueueState"]


@dataclass(frozen=True)
class QueueState:
    """One reading of a queue, taken at once (one MULTI where the broker allows it), so a job moving between lists is
    counted once. `depth`: waiting to run; `deferred`: waiting for another job; `scheduled`: retries and delayed jobs
    waiting for their time; `started`: taken by a worker (running, or dequeued and about to run); `finished_total` and
    `failed_total`: counters the broker keeps (None where it keeps none); `workers`: registered (None: cannot tell)."""

    depth: int
    deferred: int = 0
    scheduled: int = 0
    started: int = 0
    finished_total: int | None = None
    failed_total: int | None = None
    workers: int | None = None

    @property
    def backlog(self) -> int:
        """Work accepted and not finished: what must reach 0 for the queue to have drained."""
        return self.depth + self.deferred + self.scheduled + self.started


class QueueAdapter(Protocol):
    """A design's queue, read without side effects (never a library's cleanup: probing must not change what it
    measures)."""

    name: str  # the adapter's kind, for reports: "rq", "celery", ...

    def read(self) -> QueueState:
        """The queue now; raises the broker's error (the probe records it as data, not a crash)."""
        ...

    def workers_ready(self, expected: int) -> bool:
        """At least `expected` workers registered and consuming (False where the adapter cannot tell)."""
        ...

    def close(self) -> None: ...
