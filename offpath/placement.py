"""Where each tier of an experiment runs: the CPUs it may use (by affinity) and the CPU budget it may spend
(by a cgroup cpu quota), declared per tier in an experiment's `[layout.placement]` and applied to its processes.

The tiers are `web` (the service processes), `redis`, `workers` (RQ workers) and `load` (Locust). A tier left
out, or declared `"shared"`, gets today's layout: the load generator on the last CPU, everything measured on
the others (one CPU: no pinning). A declared tier gives `cpus = [...]`, `cpu_budget = <CPUs>`, or both; a budget
without `cpus` runs on the tier's shared CPUs. A `Placer` applies a run's placements: one cgroup per tier under
`offpath/<run-id>@<pid>/` (the cpu hierarchy for budgets, the cpuacct one so `offpath.cpu_meter` can count every process
that ever ran in the tier), affinity inherited by every child, and `granted()` reads back what each tier got.
"""

from __future__ import annotations

import errno
import math
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from foundation.errors import ConfigurationError
from foundation.format import SYSTEM_TIERS, TIERS
from offpath.process import available_cpus

__all__ = [
    "PERIOD_US",
    "SYSTEM_TIERS",
    "TIERS",
    "Cgroups",
    "Placement",
    "Placements",
    "Placer",
    "cpus_allowed",
    "process_tree",
]

PERIOD_US = 100_000  # the quota period: 100 ms, the kernel's default, short enough that a budget shows within a cell
_KEYS = ("cpus", "cpu_budget")
_BUDGET_HELP = ("run as root, or use `cpus = [...]` placements instead")


@dataclass(frozen=True)
class Placement:
    """One tier's place: the CPUs it may run on (empty: any) and its CPU budget in CPUs (None: no limit)."""

    tier: str
    cpus: tuple[int, ...]
    cpu_budget: float | None = None
    shared: bool = False  # the layout's default rather than a declaration

    def as_dict(self) -> dict[str, Any]:
        return {"shared": self.shared, "cpus": list(self.cpus), "cpu_budget": self.cpu_budget}


def _shared_cpus(tier: str, available: list[int]) -> tuple[int, ...]:
    if len(available) < 2:
        return ()
    return tuple(available[-1:]) if tier == "load" else tuple(available[:-1])


@dataclass(frozen=True)
class Placements:
    """Every tier's Placement, validated against the CPUs offpath may use here."""

    by_tier: Mapping[str, Placement]

    @classmethod
    def shared(cls, available: list[int] | None = None) -> Placements:
        cpus = sorted(available) if available is not None else available_cpus()
        return cls({t: Placement(t, _shared_cpus(t, cpus), shared=True) for t in TIERS})

    @classmethod
    def from_table(cls, table: object, where: str = "layout.placement",
                   available: list[int] | None = None) -> Placements:
        """Parse `[layout.placement]`: `"shared"`, or a table of tier → `"shared"` or {cpus, cpu_budget}."""
        cpus = sorted(available) if available is not None else available_cpus()
        if table is None or table == "shared":
            return cls.shared(cpus)
        if not isinstance(table, Mapping):
            raise ConfigurationError(f"key '{where}' is {table!r}; allowed: \"shared\" or a table of tiers "
                                     f"({', '.join(TIERS)})")
        unknown = sorted(set(table) - set(TIERS))
        if unknown:
            raise ConfigurationError(f"key '{where}.{unknown[0]}' is not a tier; allowed: {', '.join(TIERS)}")
        placed = cls.shared(cpus).by_tier
        return cls({t: _parse_tier(t, table[t], f"{where}.{t}", cpus) if t in table else placed[t] for t in TIERS})

    def __getitem__(self, tier: str) -> Placement:
        return self.by_tier[tier]

    def budgeted(self) -> list[Placement]:
        return [p for p in self.by_tier.values() if p.cpu_budget is not None]

    def as_dict(self) -> dict[str, dict[str, Any]]:
        return {t: p.as_dict() for t, p in self.by_tier.items()}

    def split(self) -> dict[str, list[int]]:
        """The CPUs of the load generator and of everything measured (the manifest's "cpus")."""
        measured = sorted({c for t in SYSTEM_TIERS for c in self.by_tier[t].cpus})
        return {"load": list(self.by_tier["load"].cpus), "system_under_test": measured}


def _parse_tier(tier: str, value: object, where: str, available: list[int]) -> Placement:
    if value == "shared":
        return Placement(tier, _shared_cpus(tier, available), shared=True)
    if not isinstance(value, Mapping) or not value:
        raise ConfigurationError(f"key '{where}' is {value!r}; allowed: \"shared\" or a table with "
                                 f"cpus = [CPU ids] and/or cpu_budget = <CPUs>")
    unknown = sorted(set(value) - set(_KEYS))
    if unknown:
        raise ConfigurationError(f"key '{where}.{unknown[0]}' is not known; allowed: {', '.join(_KEYS)}")
    cpus = _parse_cpus(value["cpus"], f"{where}.cpus", available) if "cpus" in value else _shared_cpus(tier, available)
    budget = _parse_budget(value["cpu_budget"], f"{where}.cpu_budget", cpus or tuple(available)) \
        if "cpu_budget" in value else None
    return Placement(tier, cpus, budget)


def _parse_cpus(value: object, where: str, available: list[int]) -> tuple[int, ...]:
    if (not isinstance(value, list) or not value or len(set(value)) != len(value)
            or not all(isinstance(c, int) and not isinstance(c, bool) for c in value)):
        raise ConfigurationError(f"key '{where}' is {value!r}; allowed: a non-empty list of distinct CPU ids "
                                 f"from {available}")
    missing = sorted(set(value) - set(available))
    if missing:
        raise ConfigurationError(f"key '{where}' is {value!r}, but CPU {missing[0]} is not available to offpath "
                                 f"here; allowed: CPU ids from {available}")
    return tuple(sorted(value))


def _parse_budget(value: object, where: str, cpus: tuple[int, ...]) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ConfigurationError(f"key '{where}' is {value!r}; allowed: a number of CPUs, e.g. 0.5")
    if not 0 < value <= len(cpus):
        raise ConfigurationError(
            f"key '{where}' is {value!r}; allowed: more than 0 and at most {len(cpus)}, the number of CPUs the tier "
            f"may run on ({list(cpus)}); give the tier `cpus = [...]` to let it use more")
    if value * PERIOD_US < 1000:
        raise ConfigurationError(f"key '{where}' is {value!r}; allowed: at least 0.01 CPU (the kernel's smallest "
                                 f"quota is 1 ms per {PERIOD_US // 1000} ms)")
    return float(value)


# --- processes ------------------------------------------------------------------------------------------------

def process_tree(root: int) -> list[int]:
    """`root` and its living descendants, parents first; empty if `root` is gone."""
    children: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            ppid = _ppid(int(entry.name))
            if ppid is not None:
                children.setdefault(ppid, []).append(int(entry.name))
    if not Path(f"/proc/{root}").exists():
        return []
    tree, index = [root], 0
    while index < len(tree):
        tree.extend(children.get(tree[index], []))
        index += 1
    return tree


def _ppid(pid: int) -> int | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(stat.rsplit(")", 1)[1].split()[1])  # after the command name, which may hold spaces and ')'


def cpus_allowed(pid: int) -> list[int]:
    """The CPUs the kernel lets `pid` run on, as /proc/<pid>/status says (empty if it is gone)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return []
    for line in status.splitlines():
        if line.startswith("Cpus_allowed_list:"):
            return _parse_cpu_list(line.split(":", 1)[1])
    return []


def _parse_cpu_list(text: str) -> list[int]:
    cpus: list[int] = []
    for part in filter(None, text.strip().split(",")):
        first, _, last = part.partition("-")
        cpus.extend(range(int(first), int(last or first) + 1))
    return cpus


def _pin(pid: int, cpus: tuple[int, ...]) -> None:
    # Every thread, not just the main one: sched_setaffinity acts on one thread; later children inherit it.
    try:
        threads = [int(t) for t in os.listdir(f"/proc/{pid}/task")]
    except OSError:
        return
    for tid in threads:
        try:
            os.sched_setaffinity(tid, cpus)
        except ProcessLookupError:
            pass


# --- cgroups --------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Cgroups:
    """The cgroup hierarchies that can hold a budget (`cpu`) and count CPU (`cpuacct`), and their version.
    cgroup v1 mounts them separately or together (`cpu,cpuacct`); v2 has one root for both."""

    cpu: Path | None
    cpuacct: Path | None
    version: int = 1

    @classmethod
    def of_this_machine(cls, mounts: Path = Path("/proc/self/mounts")) -> Cgroups:
        cpu = cpuacct = v2 = None
        for line in mounts.read_text().splitlines():
            _, where, kind, options = line.split()[:4]
            if kind == "cgroup":
                controllers = set(options.split(","))
                cpu = Path(where) if "cpu" in controllers and cpu is None else cpu
                cpuacct = Path(where) if "cpuacct" in controllers and cpuacct is None else cpuacct
            elif kind == "cgroup2":
                v2 = Path(where)
        if cpu is None and v2 is not None and "cpu" in _read(v2 / "cgroup.controllers").split():
            return cls(cpu=v2, cpuacct=v2, version=2)
        return cls(cpu=cpu, cpuacct=cpuacct, version=1)


def _read(path: Path) -> str:
    try:
        return path.read_text()
    except OSError:
        return ""


def _make_group(root: Path, parts: tuple[str, ...], marker: str, v2: bool) -> Path:
    """Create root/parts... as a cgroup; a directory without the controller's file is not one (a plain path)."""
    if not (root / marker).is_file():
        raise OSError(errno.ENOENT, f"{root} is not a cgroup hierarchy with {marker}")
    path = root
    for part in parts:
        if v2:  # v2 hands a controller down only where each parent enables it
            _write(path / "cgroup.subtree_control", "+cpu")
        path = path / part
        path.mkdir(exist_ok=True)
    if not (path / marker).is_file():
        raise OSError(errno.ENOENT, f"{path} was created but holds no {marker}: not a cgroup")
    return path


def _write(path: Path, text: str) -> None:
    with open(path, "w") as out:
        out.write(text)


def _remove_group(path: Path, root: Path, deadline: float) -> None:
    """rmdir once the group's processes are gone; what still lingers at the deadline moves to the root first."""
    while True:
        try:
            path.rmdir()
            return
        except FileNotFoundError:
            return
        except OSError as exc:
            if exc.errno != errno.EBUSY or time.monotonic() > deadline:
                break
            time.sleep(0.05)
    for pid in _read(path / "cgroup.procs").split():
        try:
            _write(root / "cgroup.procs", pid)
        except OSError:
            pass
    try:
        path.rmdir()
    except OSError:
        pass  # a process that cannot be moved: the group stays, empty groups of crashed runs are swept later


def _sweep_stale(base: Path) -> None:
    """Remove the run groups a harness that is gone left behind (killed before it could clean up); a group
    still holding a process stays (rmdir refuses it). A live harness's groups are never touched."""
    if not base.is_dir():
        return
    for run in base.iterdir():
        owner = run.name.rpartition("@")[2]
        if not run.is_dir() or not owner.isdigit() or Path(f"/proc/{owner}").exists():
            continue
        for group in [*(d for d in run.iterdir() if d.is_dir()), run]:
            try:
                group.rmdir()
            except OSError:
                pass


class Placer:
    """Applies a run's placements to its processes. Use as a context manager around the run: entering
    creates the tiers' cgroups (offpath/<run-id>@<harness pid>/<tier>) and sets budgets; `add(tier, pid)` places a process
    and its existing children (later children inherit both affinity and cgroup); leaving removes the groups.

    A budget needs a writable cpu hierarchy, else ConfigurationError says what to do instead. Counting
    groups (cpuacct) are made when the machine allows and skipped otherwise; `offpath.cpu_meter` then falls back
    to reading the tiers' processes in /proc."""

    def __init__(self, placements: Placements, run_id: str, cgroups: Cgroups | None = None):
        self.placements = placements
        self.run_group = f"{run_id}@{os.getpid()}"  # the owner, so that leftovers can be told from a live run
        self.cgroups = cgroups if cgroups is not None else Cgroups.of_this_machine()
        self._budget_groups: dict[str, Path] = {}
        self._usage_groups: dict[str, Path] = {}
        self._pids: dict[str, list[int]] = {t: [] for t in TIERS}
        self.accounting_refused: str | None = None

    def __enter__(self) -> Placer:
        self.open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def open(self) -> None:
        for root in dict.fromkeys(r for r in (self.cgroups.cpu, self.cgroups.cpuacct) if r is not None):
            _sweep_stale(root / "offpath")
        try:
            self._open_budgets()
            self._open_accounting()
        except BaseException:
            self.close()
            raise

    def _open_budgets(self) -> None:
        budgeted = self.placements.budgeted()
        if not budgeted:
            return
        cg = self.cgroups
        if cg.cpu is None:
            self._refuse("no cgroup cpu controller is mounted")
        assert cg.cpu is not None
        for placement in budgeted:
            try:
                group = _make_group(cg.cpu, ("offpath", self.run_group, placement.tier),
                                    "cpu.max" if cg.version == 2 else "cpu.cfs_quota_us", cg.version == 2)
                self._budget_groups[placement.tier] = group
                assert placement.cpu_budget is not None
                quota_us = round(placement.cpu_budget * PERIOD_US)
                if cg.version == 2:
                    _write(group / "cpu.max", f"{quota_us} {PERIOD_US}")
                else:
                    _write(group / "cpu.cfs_period_us", str(PERIOD_US))
                    _write(group / "cpu.cfs_quota_us", str(quota_us))
            except OSError as exc:
                self._refuse(f"{cg.cpu}: {exc.strerror or exc}")

    def _refuse(self, why: str) -> None:
        tiers = ", ".join(p.tier for p in self.placements.budgeted())
        raise ConfigurationError(
            f"CPU budgets (tier {tiers}) need a writable cgroup cpu controller (cgroup v1 /sys/fs/cgroup/cpu or v2 "
            f"cpu.max), and here {why}; {_BUDGET_HELP}")

    def _open_accounting(self) -> None:
        cg = self.cgroups
        if cg.cpuacct is None:
            self.accounting_refused = "no cgroup cpuacct controller is mounted"
            return
        try:
            for tier in TIERS:
                if cg.version == 2 and tier in self._budget_groups:
                    self._usage_groups[tier] = self._budget_groups[tier]
                else:
                    marker = "cgroup.procs" if cg.version == 2 else "cpuacct.usage"
                    self._usage_groups[tier] = _make_group(cg.cpuacct, ("offpath", self.run_group, tier), marker, False)
        except OSError as exc:
            self.accounting_refused = f"{cg.cpuacct}: {exc.strerror or exc}"
            self._usage_groups.clear()

    def add(self, tier: str, pid: int) -> None:
        """Place a running process (and the children it already has) in `tier`; later children inherit."""
        placement, tree = self.placements[tier], process_tree(pid)
        if pid not in self._pids[tier]:  # placing again (e.g. after a preexec placement) is harmless
            self._pids[tier].append(pid)
        for member in tree:
            if placement.cpus:
                _pin(member, placement.cpus)
            for group in self._groups_of(tier):
                try:
                    _write(group / "cgroup.procs", str(member))
                except ProcessLookupError:
                    pass

    def enter(self, tier: str) -> None:
        """Place the calling process in `tier`: meant as (part of) a child's preexec_fn, so the child runs
        nothing before it is placed."""
        placement = self.placements[tier]
        if placement.cpus:
            os.sched_setaffinity(0, placement.cpus)
        for group in self._groups_of(tier):
            _write(group / "cgroup.procs", str(os.getpid()))

    def preexec(self, tier: str, then: Callable[[], None] | None = None) -> Callable[[], None]:
        """A preexec_fn that places the child in `tier`, then calls `then` (e.g. the supervisor's own)."""
        def place() -> None:
            if then is not None:
                then()
            self.enter(tier)
        return place

    def _groups_of(self, tier: str) -> list[Path]:
        return list(dict.fromkeys(g for g in (self._budget_groups.get(tier), self._usage_groups.get(tier)) if g))

    def pids(self, tier: str) -> list[int]:
        """The processes placed in `tier` with add(), alive or not (for accounting without cgroups)."""
        return list(self._pids[tier])

    def usage_group(self, tier: str) -> Path | None:
        """The tier's counting cgroup (cpuacct, or the v2 group), or None when the machine gave none."""
        return self._usage_groups.get(tier)

    def granted(self) -> dict[str, dict[str, Any]]:
        """What each tier actually got, read back from the kernel, for the manifest."""
        return {tier: self._granted(tier) for tier in TIERS}

    def _granted(self, tier: str) -> dict[str, Any]:
        placement = self.placements[tier]
        alive = list(dict.fromkeys(p for root in self._pids[tier] for p in process_tree(root)))
        # The union over the tier's living processes; a process that changed its own affinity would show here.
        allowed = sorted({cpu for p in alive for cpu in cpus_allowed(p)})
        got: dict[str, Any] = {"declared": placement.as_dict(), "processes": len(alive),
                               "cpus_allowed": allowed if alive else None}
        group = self._budget_groups.get(tier)
        if group is not None:
            quota_us, period_us = self._read_budget(group)
            got.update(cgroup=str(group), quota_us=quota_us, period_us=period_us,
                       cpu_budget=round(quota_us / period_us, 4) if quota_us is not None and period_us else None)
        usage = self._usage_groups.get(tier)
        got["accounting"] = f"cgroup {usage}" if usage else f"/proc ({self.accounting_refused or 'no group'})"
        return got

    def _read_budget(self, group: Path) -> tuple[int | None, int | None]:
        if self.cgroups.version == 2:
            quota, _, period = _read(group / "cpu.max").strip().partition(" ")
        else:
            quota, period = _read(group / "cpu.cfs_quota_us").strip(), _read(group / "cpu.cfs_period_us").strip()
        as_int = lambda s: int(s) if s.lstrip("-").isdigit() else None  # noqa: E731 - "max" or -1: no quota
        return as_int(quota), as_int(period)

    def close(self, timeout_s: float = 2.0) -> None:
        """Remove the run's cgroups once their processes are gone (stop them first; what is left after
        timeout_s is moved out to the hierarchy's root); safe to call twice."""
        deadline = time.monotonic() + timeout_s
        for groups, root in ((self._budget_groups, self.cgroups.cpu), (self._usage_groups, self.cgroups.cpuacct)):
            if root is None:
                continue
            for group in groups.values():
                _remove_group(group, root, deadline)
            for parent in (root / "offpath" / self.run_group, root / "offpath"):  # the last one if no other run uses it
                try:
                    parent.rmdir()
                except OSError:
                    pass
        self._budget_groups.clear()
        self._usage_groups.clear()

