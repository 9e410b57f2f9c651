"""The client's record of acknowledged campaigns: every POST /campaigns answered 201 or 202 appends the
campaign id to `<hdr-dir>/acks-<pid>.txt`, one per line. The fault audit checks each of these ids
against the service's state afterwards (a lost acknowledgement is only visible from the client side)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import IO, Any

from locust import events
from locust.env import Environment

from foundation.format import acks_file

_ACKED = (201, 202)


class AckLog:
    """One Locust process's acknowledged ids, in the file it owns; it listens on that process's events."""

    def __init__(self, path: Path):
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._file: IO[str] = open(path, "a", buffering=64 * 1024)

    def install(self, environment: Environment) -> None:
        environment.events.request.add_listener(self.record)
        environment.events.test_stop.add_listener(self.flush)
        environment.events.quitting.add_listener(self.close)

    def record(self, request_type: str, name: str, response: Any = None, exception: Any = None, **_: Any) -> None:
        if request_type != "POST" or exception is not None or response is None or self._file.closed:
            return
        if getattr(response, "status_code", 0) not in _ACKED:
            return
        try:
            campaign_id = json.loads(response.content or b"{}").get("id")
        except (ValueError, AttributeError):
            return
        if campaign_id:
            self._file.write(f"{campaign_id}\n")

    def flush(self, **_: Any) -> None:
        if not self._file.closed:
            self._file.flush()

    def close(self, **_: Any) -> None:
        if not self._file.closed:
            self._file.close()


# The one piece of module state Locust requires: a locustfile (and what it imports) reaches its process's
# Environment only through a listener on the module-level `locust.events`, registered at import, which Locust
# fires as `init` once the Environment and its runner exist (locust/main.py). Everything else hangs off the
# AckLog that listener creates and installs on that Environment's own events.
@events.init.add_listener
def _open(environment: Environment, **_: Any) -> None:
    hdr_dir = getattr(environment.parsed_options, "hdr_dir", None) if environment.parsed_options else None
    if hdr_dir:
        AckLog(Path(hdr_dir) / acks_file(os.getpid())).install(environment)
