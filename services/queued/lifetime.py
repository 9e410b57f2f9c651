"""A worker process's life, the same on every queue backend: one line on stderr once it consumes (the harness waits
for it), and an end with the process that started it.

A harness starts its workers with the kernel's parent-death signal (SIGTERM, offpath/process.py), which every backend
takes as a warm stop. ParentWatch is the same request for a worker started without it, or whose signal was lost: and
because a warm stop waits for the job in progress, and that job or the library's shutdown may wait on a Redis that went
away with the harness, it ends the process outright once the stop has taken longer than STOP_GRACE_S. So a worker
whose parent is gone, however it stops, is gone within STOP_GRACE_S + PARENT_CHECK_S: the bound the README states for
what `offpath up` and a bench leave after a SIGKILL.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
import time

__all__ = ["READY", "STOP_GRACE_S", "ParentWatch", "announce_ready"]

log = logging.getLogger("offpath.worker")

READY = "offpath worker ready"
PARENT_CHECK_S = 0.5
STOP_GRACE_S = 10.0


def announce_ready(backend: str, name: str | None) -> None:
    """The one line that says this worker consumes: `offpath worker ready: backend=rq name=w1 pid=123`."""
    print(f"{READY}: backend={backend} name={name or '-'} pid={os.getpid()}", file=sys.stderr, flush=True)


class ParentWatch(threading.Thread):
    """Once the process that started this one is gone, ask for a warm stop as SIGTERM does (unless `ask` is False: the
    worker asks itself), then end the process if it is still running STOP_GRACE_S later."""

    def __init__(self, stop_grace_s: float = STOP_GRACE_S, ask: bool = True) -> None:
        super().__init__(name="parent-watch", daemon=True)
        self.parent = os.getppid()
        self.stop_grace_s = stop_grace_s
        self.ask = ask

    def run(self) -> None:
        while os.getppid() == self.parent:
            time.sleep(PARENT_CHECK_S)
        if self.ask:
            log.warning("the process that started this worker (pid %d) is gone; stopping", self.parent)
            os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(self.stop_grace_s)
        log.error("still running %.0f s after its parent went; exiting now", self.stop_grace_s)
        os._exit(1)
