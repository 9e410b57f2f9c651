"""A worker that stops itself at a named point of a job's life, so that a test can kill (or freeze) it exactly there:
OFFPATH_HALT_AT="<point>,<KILL|STOP>,<marker file>" (tests/test_windows.py).

The points, in the order a job meets them on RQ (the last two on every backend, from the step itself):
- `dequeued`: RQ moved the job from its queue to its intermediate queue (BLMOVE) and nothing else yet;
- `prepared`: the execution exists in the started registry, the job is still `queued` and in the intermediate queue;
- `started`: the job is `started` and out of the intermediate queue, before its first pulse;
- `begun`: the step began (the campaign's status moved, the attempt counted), its slow work not done;
- `recorded`: the step's outcome transaction committed, before the library recorded the job's end.

The first process that reaches the point creates the marker file, writes the time into it and halts; every other one
(the replacement, the redelivery) finds the file and goes on, so one test halts one worker once. Unset, as in every
deployment, a point costs a dictionary lookup: the production path is the same code.
"""

from __future__ import annotations

import functools
import os
import signal
import threading
import time

__all__ = ["HALT_ENV", "POINTS", "halt_at"]

HALT_ENV = "OFFPATH_HALT_AT"
POINTS = ("dequeued", "prepared", "started", "begun", "recorded")
_SIGNALS = {"KILL": signal.SIGKILL, "STOP": signal.SIGSTOP}


@functools.cache
def _plan() -> tuple[str, signal.Signals, str] | None:
    value = os.environ.get(HALT_ENV)
    if not value:
        return None
    point, how, marker = value.split(",", 2)
    if point not in POINTS or how not in _SIGNALS:
        raise ValueError(f"{HALT_ENV}={value!r}; allowed: <one of {', '.join(POINTS)}>,<KILL|STOP>,<marker file>")
    return point, _SIGNALS[how], marker


def halt_at(point: str) -> None:
    """Halt this process here if the test asked for `point` and no process halted there yet."""
    plan = _plan()
    if plan is None or plan[0] != point:
        return
    try:
        marker = os.open(plan[2], os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    except FileExistsError:
        return
    try:
        os.write(marker, repr(time.time()).encode())  # when it halted: a file's mtime is coarser than RQ's timestamps
    finally:
        os.close(marker)
    # To this thread: a signal sent to the process may be taken by another of its threads, while this one, holding the
    # GIL, runs on for a moment past its point (seen: a Dramatiq worker sent its next message before it stopped).
    signal.pthread_kill(threading.get_ident(), plan[1])
