"""The client's record of what the service promised: every request answered with one of its contract's finished or
acknowledged statuses appends its id (where the contract says the id is) to `<hdr-dir>/acks-<pid>.txt`, one per line.
The fault audit checks each of these ids against the service afterwards (a lost acknowledgement is only visible from
the client's side)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import IO, Any

from locust import events
from locust.env import Environment

from foundation.format import REQUEST, acks_file
from loadtests.client import acknowledged_id
from loadtests.contract import Contract
from loadtests.options import DriverOptions
from loadtests.recorder import LOG_KEY


class AckLog:
    """One Locust process's acknowledged ids, in the file it owns; it listens on that process's events."""

    def __init__(self, path: Path, contract: Contract):
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.contract = contract
        self._promised = frozenset(contract.outcome.finished) | frozenset(contract.outcome.acknowledged)
        self._file: IO[str] = open(path, "a", buffering=64 * 1024)

    def install(self, environment: Environment) -> None:
        environment.events.request.add_listener(self.record)
        environment.events.test_stop.add_listener(self.flush)
        environment.events.quitting.add_listener(self.close)

    def record(self, request_type: str, name: str, response: Any = None, exception: Any = None,
               context: dict[str, Any] | None = None, **_: Any) -> None:
        if exception is not None or response is None or self._file.closed or (context or {}).get(LOG_KEY) != REQUEST:
            return
        if getattr(response, "status_code", 0) not in self._promised:
            return
        promised_id = acknowledged_id(self.contract, response)
        if promised_id:
            self._file.write(f"{promised_id}\n")

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
        contract = DriverOptions.from_parsed(environment.parsed_options).driven().contract
        AckLog(Path(hdr_dir) / acks_file(os.getpid()), contract).install(environment)
