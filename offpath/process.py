"""Low-level process facts: children that die with their parent, process-tree cleanup, CPU pinning."""

from __future__ import annotations

import ctypes
import os
import signal

_PR_SET_PDEATHSIG = 1


def die_with_parent() -> None:
    """preexec_fn for children: the kernel SIGTERMs them if offpath itself dies, even by SIGKILL,
    so a crashed harness leaves no orphan servers holding ports. The signal fires when the *thread*
    that started the child exits: start children from the main thread only."""
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    except OSError:
        pass  # not Linux: the supervisor's own cleanup still runs


def new_group_dying_with_parent() -> None:
    os.setsid()
    die_with_parent()


def signal_group(pid: int, sig: int) -> None:
    try:
        os.killpg(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def available_cpus() -> list[int]:
    return sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else list(range(os.cpu_count() or 1))


def pin(pid: int, cpus: list[int]) -> bool:
    if not hasattr(os, "sched_setaffinity") or not cpus:
        return False
    try:
        os.sched_setaffinity(pid, cpus)
        return True
    except OSError:
        return False
