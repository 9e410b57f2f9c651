"""What serving costs: the CPU seconds each tier spent between two instants, measured from the tiers' own
processes, the machine's CPU over the same instants (to check the tiers add up), and what that makes per
campaign (analysis/stats/cost.py turns cpu.csv into that) — the other half of the question.

Two ways to count a tier, the first one the machine allows:
- its counting cgroup (`Placer.usage_group`): cpuacct.usage (v1) or cpu.stat usage_usec (v2) counts every
  process that ever ran in the group, children that exited included. Exact.
- its process trees in /proc: utime+stime of each living process plus cutime+cstime, the time of the
  children it has reaped. Blind spot: a process that starts and exits between two snapshots without being
  reaped by a process of the tier (an orphan re-parented to init, a parent that ignores SIGCHLD) is never
  seen; and a placed process that exits counts only up to the last snapshot that saw it.
"""

from __future__ import annotations

import csv
import os
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, Protocol

from foundation.format import CPU_COLUMNS, TIERS
from offpath.placement import Placer, process_tree

__all__ = [
    "CgroupCounter",
    "CpuLog",
    "CpuMeter",
    "CpuSnapshot",
    "CpuUsage",
    "ProcessCounter",
    "TierCounter",
    "machine_cpu_s",
    "others_cpu_s",
    "process_cpu_s",
]

_TICKS_PER_S = os.sysconf("SC_CLK_TCK")


def machine_cpu_s(proc_stat: Path = Path("/proc/stat")) -> float:
    """CPU seconds the machine has spent busy since boot, all CPUs: user, nice, system, irq and softirq.
    Idle and iowait are not work; steal is time the hypervisor gave to someone else; guest is inside user."""
    fields = proc_stat.read_text().split("\n", 1)[0].split()
    user, nice, system, _idle, _iowait, irq, softirq = (int(v) for v in fields[1:8])
    return (user + nice + system + irq + softirq) / _TICKS_PER_S


def process_cpu_s(pid: int, reaped: bool = True) -> float | None:
    """CPU seconds `pid` has used (all its threads), plus its reaped children's with `reaped`; None if gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[1].split()  # after the command name, which may hold spaces and ')'
    utime, stime, cutime, cstime = (int(v) for v in fields[11:15])
    return (utime + stime + (cutime + cstime if reaped else 0)) / _TICKS_PER_S


def others_cpu_s(exclude: set[int], harness: int | None = None) -> float:
    """CPU seconds of every process in /proc outside `exclude`, reaped children included. Summed over all
    processes, time is conserved when one exits (it moves into its reaper's), so the difference of two
    sums is what those processes spent in between, short-lived ones included. The harness (this process)
    counts without its reaped children: they are the tiers' processes (Locust at each cell's end, services
    and workers at each block's), already counted in their tiers — counting them here too made the tiers
    plus others exceed the machine by 12-44% in the first seed run."""
    harness = os.getpid() if harness is None else harness
    return sum(s for s in (process_cpu_s(int(e.name), reaped=int(e.name) != harness) for e in os.scandir("/proc")
                           if e.name.isdigit() and int(e.name) not in exclude) if s is not None)


class TierCounter(Protocol):
    """A tier's cumulative CPU seconds since an arbitrary origin (only differences mean something), and the
    processes in it now."""

    method: str

    def cpu_s(self) -> float: ...

    def members(self) -> set[int]: ...


@dataclass
class CgroupCounter:
    """Counts a tier by its cgroup: every process that ever ran in it, exited children included."""

    group: Path
    method: str = "cgroup"

    def cpu_s(self) -> float:
        usage = self.group / "cpuacct.usage"
        if usage.exists():
            return int(usage.read_text()) / 1e9
        for line in (self.group / "cpu.stat").read_text().splitlines():  # cgroup v2
            if line.startswith("usage_usec "):
                return int(line.split()[1]) / 1e6
        raise OSError(f"{self.group} has neither cpuacct.usage nor cpu.stat usage_usec")

    def members(self) -> set[int]:
        return {int(pid) for pid in (self.group / "cgroup.procs").read_text().split()}


@dataclass
class ProcessCounter:
    """Counts a tier by its processes' trees in /proc (see the module's blind spot). A placed process that
    has gone keeps the last time seen for it, so a replaced worker does not make the tier's count go back."""

    roots: Callable[[], list[int]]
    method: str = "proc"
    _last_root_s: dict[int, float] = field(default_factory=dict)

    def cpu_s(self) -> float:
        total, counted = 0.0, set[int]()
        for root in self.roots():
            tree = process_tree(root)
            if not tree:
                total += self._last_root_s.get(root, 0.0)
                continue
            # Each living process once (a placed process may also be another's descendant); each exited one
            # inside the cutime of the tier process that reaped it.
            tree = [pid for pid in tree if pid not in counted]
            counted.update(tree)
            root_s = sum(s for s in (process_cpu_s(pid) for pid in tree) if s is not None)
            self._last_root_s[root] = root_s
            total += root_s
        return total

    def members(self) -> set[int]:
        return {pid for root in self.roots() for pid in process_tree(root)}


@dataclass(frozen=True)
class CpuSnapshot:
    """Cumulative CPU seconds at one instant (monotonic `at_s`): per tier, of every other process in sight
    (the harness, anything else running here), and of the whole machine."""

    at_s: float
    tiers: dict[str, float]
    others_s: float
    machine_s: float


@dataclass(frozen=True)
class CpuUsage:
    """CPU seconds spent between two snapshots: per tier, by every other process, by the machine, over how
    much wall time. On a quiet machine the tiers add up to the machine; `others_s` says when it was not."""

    wall_s: float
    tiers: dict[str, float]
    others_s: float
    machine_s: float

    @property
    def accounted_s(self) -> float:
        return sum(self.tiers.values())

    @property
    def unaccounted_s(self) -> float:
        """What the machine spent outside the tiers (the harness, other processes, interrupts)."""
        return self.machine_s - self.accounted_s

    @property
    def unseen_s(self) -> float:
        """What the machine spent that no process in sight accounts for (interrupts, other pid namespaces)."""
        return self.machine_s - self.accounted_s - self.others_s

    def as_dict(self) -> dict[str, Any]:
        return {"wall_s": round(self.wall_s, 3), "cpu_s": {t: round(v, 4) for t, v in self.tiers.items()},
                "accounted_cpu_s": round(self.accounted_s, 4), "others_cpu_s": round(self.others_s, 4),
                "machine_cpu_s": round(self.machine_s, 4), "unseen_cpu_s": round(self.unseen_s, 4)}


class CpuMeter:
    """Snapshots every tier's CPU; `usage(before, after)` is what each tier spent in between."""

    def __init__(self, counters: Mapping[str, TierCounter]):
        self.counters = dict(counters)

    @classmethod
    def of(cls, placer: Placer) -> CpuMeter:
        """Counts each of the placer's tiers by its cgroup where it has one, else by its processes."""
        counters: dict[str, TierCounter] = {}
        for tier in TIERS:
            group = placer.usage_group(tier)
            counters[tier] = CgroupCounter(group) if group is not None else ProcessCounter(partial(placer.pids, tier))
        return cls(counters)

    def methods(self) -> dict[str, str]:
        """How each tier is counted (for the manifest): "cgroup" or "proc"."""
        return {tier: counter.method for tier, counter in self.counters.items()}

    def snapshot(self) -> CpuSnapshot:
        members = set().union(*(c.members() for c in self.counters.values()))
        return CpuSnapshot(at_s=time.monotonic(), tiers={t: c.cpu_s() for t, c in self.counters.items()},
                           others_s=others_cpu_s(members), machine_s=machine_cpu_s())

    @staticmethod
    def usage(before: CpuSnapshot, after: CpuSnapshot) -> CpuUsage:
        return CpuUsage(wall_s=after.at_s - before.at_s,
                        tiers={t: after.tiers[t] - before.tiers[t] for t in after.tiers},
                        others_s=after.others_s - before.others_s, machine_s=after.machine_s - before.machine_s)


class CpuLog:
    """cpu.csv of one cell (foundation/format.py): once a second, the CPU seconds each tier, the machine and
    every other process have spent since the cell started — a background thread around the cell."""

    def __init__(self, meter: CpuMeter, path: Path, interval_s: float = 1.0):
        self.meter = meter
        self.path = path
        self.interval_s = interval_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="cpu-log", daemon=True)
        self._rows: list[list[float]] = []

    def __enter__(self) -> CpuLog:
        self._first = self.meter.snapshot()
        self._file = open(self.path, "w", newline="")
        self._csv = csv.writer(self._file)
        self._csv.writerow(CPU_COLUMNS)
        self._write(self._first)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
        self._write(self.meter.snapshot())
        self._file.close()

    def total(self) -> CpuUsage:
        """What the cell spent, first row to last."""
        return CpuMeter.usage(self._first, self._last)

    def _run(self) -> None:
        next_tick = self._first.at_s + self.interval_s
        while not self._stop.wait(max(0.0, next_tick - time.monotonic())):
            self._write(self.meter.snapshot())
            next_tick += self.interval_s

    def _write(self, snapshot: CpuSnapshot) -> None:
        used = CpuMeter.usage(self._first, snapshot)
        self._last = snapshot
        self._csv.writerow([round(used.wall_s, 3), *(round(used.tiers.get(t, 0.0), 4) for t in TIERS),
                            round(used.machine_s, 4), round(used.others_s, 4)])
        self._file.flush()
