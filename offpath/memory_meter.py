"""What a soak's processes hold: the resident memory of every process offpath started and of its descendants, the
machine's available memory, and Redis's own memory and keys, sampled by a background thread around a cell
(memory.csv and redis_memory.csv: foundation/format.py)."""

from __future__ import annotations

import csv
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import redis

from foundation.format import MACHINE_TIER, MEMORY_COLUMNS, MEMORY_FILE, REDIS_MEMORY_COLUMNS, REDIS_MEMORY_FILE
from offpath.command_count import harness_redis

__all__ = ["MemoryLog", "Root", "available_bytes", "rss_bytes"]

_PAGE_BYTES = os.sysconf("SC_PAGE_SIZE")


@dataclass(frozen=True)
class Root:
    """A process offpath started: its placement tier (TIERS), the supervisor's name for it, its pid."""

    tier: str
    name: str
    pid: int


def rss_bytes(pid: int) -> int | None:
    """The resident set of `pid` (statm's second field: pages), None once it is gone."""
    try:
        return int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * _PAGE_BYTES
    except (OSError, IndexError, ValueError):
        return None


def available_bytes(meminfo: Path = Path("/proc/meminfo")) -> int | None:
    """MemAvailable: what the kernel estimates could be given to new work without swapping."""
    for line in meminfo.read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) * 1024
    return None


def _children() -> dict[int, list[tuple[int, str]]]:
    """Every process's children, (pid, command name), from one pass over /proc."""
    found: dict[int, list[tuple[int, str]]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry.name}/stat").read_text()
        except OSError:
            continue
        name = stat[stat.find("(") + 1:stat.rfind(")")]
        ppid = int(stat.rsplit(")", 1)[1].split()[1])  # after the command name, which may hold spaces and ')'
        found.setdefault(ppid, []).append((int(entry.name), name))
    return found


def _tree(root: Root, children: dict[int, list[tuple[int, str]]]) -> list[tuple[str, int]]:
    """(name, pid) of `root` and of its living descendants, parents first; a descendant is named after its root."""
    tree, index = [(root.name, root.pid)], 0
    while index < len(tree):
        tree += [(f"{root.name}>{command}", pid) for pid, command in children.get(tree[index][1], [])]
        index += 1
    return tree


class MemoryLog:
    """memory.csv and redis_memory.csv of one cell: a sample at the start, every `interval_s`, and at the end.

    `roots` is asked at every sample, so processes started during the cell (its load generator) are in from the first
    sample after they start. Redis is read with INFO (memory, keyspace) over a connection of its own: two commands per
    sample, nothing the design's own commands are confused with at one a `interval_s`. A sample Redis does not answer
    has no redis_memory.csv row; the error is kept in `errors`."""

    def __init__(self, cell_dir: Path, roots: Callable[[], list[Root]], redis_url: str | None, interval_s: float):
        self.cell_dir = cell_dir
        self.roots = roots
        self.interval_s = interval_s
        self.errors: list[str] = []
        self._redis = harness_redis(redis_url) \
            if redis_url is not None else None
        self._db = f"db{self._redis.connection_pool.connection_kwargs.get('db', 0)}" if self._redis is not None else ""
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="memory-log", daemon=True)
        self._files: list[IO[str]] = []

    def __enter__(self) -> MemoryLog:
        self._started = time.monotonic()
        self._memory = self._open(MEMORY_FILE, MEMORY_COLUMNS)
        self._redis_rows = self._open(REDIS_MEMORY_FILE, REDIS_MEMORY_COLUMNS)
        self._sample()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
        self._sample()
        for file in self._files:
            file.close()
        if self._redis is not None:
            self._redis.close()

    def _open(self, name: str, columns: tuple[str, ...]) -> Any:
        file = open(self.cell_dir / name, "w", newline="")
        self._files.append(file)
        writer = csv.writer(file)
        writer.writerow(columns)
        file.flush()
        return writer

    def _run(self) -> None:
        next_tick = self._started + self.interval_s
        while not self._stop.wait(max(0.0, next_tick - time.monotonic())):
            self._sample()
            next_tick += self.interval_s

    def _sample(self) -> None:
        t_s = round(time.monotonic() - self._started, 3)
        children = _children()
        for root in self.roots():
            for name, pid in _tree(root, children):
                rss = rss_bytes(pid)
                if rss is not None:
                    self._memory.writerow([t_s, root.tier, name, pid, rss])
        available = available_bytes()
        if available is not None:
            self._memory.writerow([t_s, MACHINE_TIER, "available", 0, available])
        if self._redis is not None:
            try:
                self._redis_rows.writerow([t_s, *self._redis_figures()])
            except redis.RedisError as exc:
                self.errors.append(f"{t_s:.0f}s: {exc}")
        for file in self._files:
            file.flush()

    def _redis_figures(self) -> list[int]:
        assert self._redis is not None
        pipe = self._redis.pipeline(transaction=False)
        pipe.info("memory")
        pipe.info("keyspace")
        memory, keyspace = pipe.execute()
        db = keyspace.get(self._db) or {}
        return [int(memory["used_memory"]), int(memory["used_memory_rss"]), int(db.get("keys", 0)),
                int(db.get("expires", 0))]
