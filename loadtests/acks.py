"""The client's record of acknowledged campaigns: every POST /campaigns answered 201 or 202 appends the
campaign id to `<hdr-dir>/acks-<pid>.txt`, one per line. The fault audit checks each of these ids
against the service's state afterwards (a lost acknowledgement is only visible from the client side)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import IO, Any

from locust import events

_ACKED = (201, 202)
_file: IO[str] | None = None


@events.init.add_listener
def _open(environment: Any, **_: Any) -> None:
    global _file
    hdr_dir = getattr(environment.parsed_options, "hdr_dir", None) if environment.parsed_options else None
    if hdr_dir:
        Path(hdr_dir).mkdir(parents=True, exist_ok=True)
        _file = open(Path(hdr_dir) / f"acks-{os.getpid()}.txt", "a", buffering=64 * 1024)


@events.request.add_listener
def _record(request_type: str, name: str, response: Any = None, exception: Any = None, **_: Any) -> None:
    if _file is None or request_type != "POST" or exception is not None or response is None:
        return
    if getattr(response, "status_code", 0) not in _ACKED:
        return
    try:
        campaign_id = json.loads(response.content or b"{}").get("id")
    except (ValueError, AttributeError):
        return
    if campaign_id:
        _file.write(f"{campaign_id}\n")


@events.test_stop.add_listener
def _flush(**_: Any) -> None:
    if _file is not None:
        _file.flush()


@events.quitting.add_listener
def _close(**_: Any) -> None:
    if _file is not None and not _file.closed:
        _file.close()
