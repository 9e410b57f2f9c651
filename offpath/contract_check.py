"""The check before a design is measured: one request sent and followed the way its contract says, so that a contract
that does not match what the service does stops the run within seconds, with one line quoting what the service
answered — never minutes of time-outs, nor a silent "completed"."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from email.message import Message
from pathlib import Path
from typing import Any

from foundation.errors import ConfigurationError
from loadtests.client import ContractMismatch, Following, request_headers, run_request
from loadtests.contract import Driven, pointer
from loadtests.payloads import PayloadFactory

__all__ = ["ContractBroken", "check_contract"]

# Without declared pending states, how long the check waits for a final one before it calls the state unknown.
FINAL_WAIT_S = 30.0
# With them, how long it follows the request: any state outside the declared ones is a mismatch at once.
PENDING_WAIT_S = 3.0
REQUEST_TIMEOUT_S = 30.0


class ContractBroken(ConfigurationError):
    """The service does not answer as its design's contract declares; the message quotes its answer."""


@dataclass
class _Answer:
    """A urllib answer shaped as the client reads answers (status_code, headers, json(), text)."""

    status_code: int
    headers: Message
    content: bytes

    @property
    def text(self) -> str:
        return self.content.decode(errors="replace")

    def json(self) -> Any:
        return json.loads(self.content)


def _send(base_url: str, headers: dict[str, dict[str, str]], seen: list[_Answer]):  # type: ignore[no-untyped-def]
    def send(method: str, path: str, log_key: str, body: bytes | None, intended: float,
             pause_s: float | None) -> _Answer:
        url = path if "://" in path else base_url + path
        request = urllib.request.Request(url, data=body, method=method, headers=headers[log_key])
        try:
            with urllib.request.urlopen(request, timeout=REQUEST_TIMEOUT_S) as response:
                answer = _Answer(response.status, response.headers, response.read())
        except urllib.error.HTTPError as error:
            answer = _Answer(error.code, error.headers, error.read() or b"")
        except OSError as error:
            raise ContractBroken(f"{method} {url}: no answer ({error})") from None
        seen.append(answer)
        return answer

    return send


def check_contract(design_name: str, base_url: str, driven: Driven, payload_seed: int) -> str:
    """Send one request to the design at `base_url` and follow it until final (or, where the contract declares its
    pending states, for a few seconds); returns how it ended. ContractBroken, one line, when the service answers
    outside the contract or its state stays outside every declared value."""
    contract = driven.contract
    driven.make_importable()
    body = PayloadFactory(payload_seed, 0, contract.request.body,
                          Path(driven.base_dir) if driven.base_dir else None).next_body()
    seen: list[_Answer] = []
    check = contract.outcome.status
    waits = PENDING_WAIT_S if check is not None and check.pending else FINAL_WAIT_S
    following = Following(interval_s=0.2, mode="interval", timeout_s=waits, service_timestamps=False)
    try:
        ended = run_request(contract, _send(base_url, request_headers(contract), seen), _pause, _ignore, body,
                            time.monotonic(), following)
    except ContractMismatch as mismatch:
        raise ContractBroken(f"design {design_name!r}: {mismatch}") from None
    if ended == "error":
        answer = seen[-1]
        what = "its request" if len(seen) == 1 else "the status of its request"
        raise ContractBroken(f"design {design_name!r}: {what} answered {answer.status_code}: "
                             f"{_quote(answer.text)}")
    if ended == "timeout" and check is not None and not check.pending:
        state = pointer(_json(seen[-1]), check.state)
        raise ContractBroken(
            f"design {design_name!r}: the state at '{check.state}' stayed {state!r} for {waits:g} s, which is neither "
            f"done {check.done} nor failed {check.failed}; if the work takes longer, declare the states it passes "
            f"through (outcome.status.pending), else correct done/failed: {_quote(seen[-1].text)}")
    return ended


def _pause(seconds: float) -> bool:
    time.sleep(seconds)
    return True


def _ignore(name: str, value_us: float) -> None:
    pass


def _json(answer: _Answer) -> Any:
    try:
        return answer.json()
    except ValueError:
        return None


def _quote(text: str) -> str:
    text = " ".join(text.split())
    return repr(text if len(text) <= 160 else text[:160] + "...")


