"""A soak (`offpath bench soak`, an experiment with `[soak]`): each design in turn under one long steady load at a share
of its capacity, with the memory of every process offpath started, Redis's memory and its keys recorded as it goes.

The runner runs it (offpath/runner.py): each design's capacity search first where the soak's rate derives from it,
then one cell of kind "soak" per design on a Redis emptied for it. This module says at what rate a design is soaked
and records a soak cell's memory (offpath/memory_meter.py) and, at its end, its keys (offpath/key_census.py).
Analysis fits the slopes and judges the drift (analysis/stats/soak.py).

Why an experiment and not a command of its own (as chaos is): a soak is a run of the runner — its designs served
from their declarations, a capacity search, a cell with its latency logs, queue probe, census and CPU log, one
manifest — with longer cells and three more files in them; a command of its own would repeat all of it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

from foundation.errors import HarnessError
from foundation.format import KEYS_FILE
from foundation.manifest_format import CapacitySearchRecord
from offpath.experiment import Phase, SoakSettings
from offpath.key_census import key_census
from offpath.manifest import write_json_atomic
from offpath.memory_meter import MemoryLog, Root
from offpath.redis_server import RedisServer
from offpath.supervisor import ROLE_TIERS, Supervisor

__all__ = ["SOAK_PHASE", "recording", "roots_of", "soak_phase", "soak_rate"]

SOAK_PHASE = "soak"  # the phase (and the cell's kind) of a design's soak: cell id "<design>.soak.r1"


def soak_rate(soak: SoakSettings, design: str, searches: Mapping[str, CapacitySearchRecord]) -> float:
    """The rate `design` is soaked at: declared, or `load_fraction` of the highest rate its capacity search held (the
    bracket's lower end: a limit not found, at the ceiling, makes this at most the fraction of its capacity)."""
    if soak.rate_per_s is not None:
        return soak.rate_per_s[design]
    assert soak.load_fraction is not None
    search = searches.get(design)
    if search is None or search.held_per_s is None:
        ended = f"its capacity search ended '{search.outcome}' with no rate held" if search is not None else \
            "it has no capacity search"
        raise HarnessError(f"design {design}: {ended}, so there is no capacity to soak it at a share of; lower "
                           "[capacity] start_per_s, or declare soak.rate_per_s")
    return round(soak.load_fraction * search.held_per_s, 2)


def soak_phase(soak: SoakSettings, rate_per_s: float) -> Phase:
    return Phase(name=SOAK_PHASE, kind="soak", rate_per_s=rate_per_s, duration_s=soak.duration_s)


def roots_of(supervisor: Supervisor, redis: RedisServer | None) -> Callable[[], list[Root]]:
    """The processes a block started, asked at each sample (Locust starts after the cell's first): each child of the
    supervisor in its role's tier, and the embedded redis-server (none for REDIS_URL's: not offpath's to measure)."""
    def roots() -> list[Root]:
        found = [Root(ROLE_TIERS.get(m.role, m.role), m.name, m.pid) for m in supervisor.children if m.alive()]
        if redis is not None and redis.process is not None and redis.process.poll() is None:
            found.append(Root("redis", "redis-server", redis.process.pid))
        return found

    return roots


@contextmanager
def recording(cell_dir: Path, roots: Callable[[], list[Root]], redis_url: str, soak: SoakSettings) -> Iterator[None]:
    """Around a soak cell: memory.csv and redis_memory.csv while it runs, and keys.json once it has drained."""
    with MemoryLog(cell_dir, roots, redis_url, soak.sample_interval_s):
        yield
    write_json_atomic(cell_dir / KEYS_FILE, key_census(redis_url).to_dict())
