"""Process-tree facts from /proc for the tests that check nothing offpath started is left behind."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def _stat_fields(pid: int) -> list[str] | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()  # [state, ppid, ...]: the name in parentheses may hold spaces


def children(parent: int) -> set[int]:
    found = set()
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            fields = _stat_fields(int(entry))
            if fields is not None and int(fields[1]) == parent:
                found.add(int(entry))
    return found


def descendants(root: int) -> set[int]:
    found, todo = set(), [root]
    while todo:
        for child in children(todo.pop()):
            found.add(child)
            todo.append(child)
    return found


def cmdline(pid: int) -> list[str]:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")[:-1]
    except OSError:
        return []


def alive(pids: set[int]) -> set[int]:
    """The pids still running (a zombie has ended; it only waits for its parent to read its code)."""
    return {pid for pid in pids if (fields := _stat_fields(pid)) is not None and fields[0] != "Z"}


def wait_gone(pids: set[int], timeout_s: float) -> set[int]:
    """Wait until none of `pids` runs, for up to timeout_s; the ones still running."""
    deadline = time.monotonic() + timeout_s
    while alive(pids) and time.monotonic() < deadline:
        time.sleep(0.1)
    return alive(pids)


def describe(pids: set[int]) -> str:
    return "; ".join(f"{pid}: {' '.join(cmdline(pid))[:120]}" for pid in sorted(pids))


def kill_all(pids: set[int]) -> None:
    """Test cleanup: a test that fails must not leave its processes to the next one."""
    for pid in alive(pids):
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass


@contextmanager
def cpu_hog() -> Iterator[list[int]]:
    """Every CPU this process may use kept busy, one spinning process each at the tests' own priority, while the block
    runs: a busy machine, on purpose (the hogs' pids are yielded)."""
    count = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    hogs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(count)]
    try:
        yield [hog.pid for hog in hogs]
    finally:
        for hog in hogs:
            hog.kill()
            hog.wait()
