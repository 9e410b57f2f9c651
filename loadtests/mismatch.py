"""A service that answers outside its contract stops the load: the first mismatch a Locust process meets is logged,
written to `<hdr-dir>/contract_mismatch.txt` (offpath's harness watches for it and ends the run with that one line),
and a local Locust run quits by itself."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import gevent
from locust.runners import LocalRunner

from foundation.format import CONTRACT_MISMATCH_FILE

log = logging.getLogger("offpath.contract")

_REPORTED: set[int] = set()  # runners that have reported theirs (one line per process and run is enough)


def report_mismatch(environment: Any, hdr_dir: str | None, message: str) -> None:
    runner = environment.runner
    if id(runner) in _REPORTED:
        return
    _REPORTED.add(id(runner))
    log.error("contract mismatch, stopping the load: %s", message)
    if hdr_dir:
        path = Path(hdr_dir) / CONTRACT_MISMATCH_FILE
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(message + "\n")
    if isinstance(runner, LocalRunner):
        gevent.spawn(runner.quit)


def clear(environment: Any) -> None:
    """A new test run: report again."""
    _REPORTED.discard(id(environment.runner))
