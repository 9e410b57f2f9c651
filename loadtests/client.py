"""What a client of a design does: send its request, then, for an acknowledged one, follow its state until it is final,
the way its contract (loadtests/contract.py) and the polling mode say — and say when the service does not answer as
its contract declares.

Free of Locust and gevent: whoever runs it gives it a way to send a request, a way to pause and a way to record a value
(the closed-model user in users.py, the open-model sender in scheduler.py), so it runs, and is tested, anywhere.

What it records beside Locust's own request timings (results/README.md):
- `outcome_seen`: from the request's intended send to the first observation of its final state `done` (the answer itself
  for a `finished` status; otherwise the status answer that first showed it); `failed_seen` the same for `failed`.
  Its resolution is the polling interval, or exact with a held GET.
- with `timestamps` declared and `service_timestamps` asked for: from the service's own clock, `completion`
  (accepted → completed), `queue_wait` (accepted → started) and `run` (started → completed).
"""

from __future__ import annotations

import logging
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from foundation.format import COMPLETION, FAILED_SEEN, OUTCOME_SEEN, QUEUE_WAIT, REQUEST, RUN_TIME, STATUS
from loadtests.contract import Contract, pointer, timestamp_s

log = logging.getLogger("offpath.client")

# How the client of an acknowledged request learns its outcome (--poll; an experiment's [layout] poll):
# "interval": GET the status every --poll-interval seconds, as a client with a timer would;
# "retry-after": GET it when the service's Retry-After (on the acknowledgement and on every unfinished answer) says;
# "wait": GET it with the contract's hold parameter, which the service holds until the state is final.
POLL_MODES = ("interval", "retry-after", "wait")

# (method, path, log key, body, intended monotonic send time, the client's pause before it or None for the request)
# -> the response
Send = Callable[[str, str, str, bytes | None, float, float | None], Any]
# (seconds) -> False when the load is stopping and the client should give up
Pause = Callable[[float], bool]
# (log name, value in µs)
Record = Callable[[str, float], None]

# How long a held GET asks the service to hold it (mode "wait"; offpath's services hold up to 30 s, Locust's network
# timeout is 60 s): an outcome final within that is learned with one GET, and a GET still held when the load stops is
# cut off after at most this long.
POLL_WAIT_S = 20.0
EXCERPT_CHARS = 160


class ContractMismatch(Exception):
    """The service answered in a way its contract does not allow; the message quotes the answer. The load stops."""


@dataclass(frozen=True)
class Following:
    """How the client follows an acknowledged request: every `interval_s` (0: never; the request's acknowledgement is
    then its end), in `mode` (POLL_MODES), giving up after `timeout_s`; `service_timestamps`: record completion, queue
    wait and run time from the service's timestamps in the final answer (when the harness has no census of its own)."""

    interval_s: float = 1.0
    mode: str = "interval"
    timeout_s: float = 60.0
    service_timestamps: bool = False


def run_request(contract: Contract, send: Send, pause: Pause, record: Record, body: bytes, intended: float,
                following: Following) -> str:
    """Send one request and, when acknowledged, follow it until final. Returns how it ended: finished, completed,
    failed, accepted (acknowledged, not followed), timeout, error, stopped. Raises ContractMismatch when the service
    answers outside its contract."""
    outcome = contract.outcome
    response = send(contract.request.method, contract.request.path, REQUEST, body, intended, None)
    status = response.status_code
    if status in outcome.finished:
        record(OUTCOME_SEEN, (time.monotonic() - intended) * 1_000_000)
        return "finished"
    if status not in outcome.acknowledged:
        if 200 <= status < 300:
            declared = f"finished {outcome.finished}" + (f", acknowledged {outcome.acknowledged}"
                                                         if outcome.acknowledged else "")
            raise ContractMismatch(f"{contract.label} answered {status}, which its contract declares neither way "
                                   f"({declared}): {_excerpt(response)}")
        return "error"
    if following.interval_s <= 0:
        return "accepted"
    status_url = _status_url(contract, response)
    return _follow(contract, send, pause, record, response, status_url, intended, following)


def _follow(contract: Contract, send: Send, pause: Pause, record: Record, acknowledgement: Any, url: str,
            intended: float, following: Following) -> str:
    check = contract.outcome.status
    assert check is not None
    due = time.monotonic()
    deadline = due + following.timeout_s
    hold = following.mode == "wait" and check.hold is not None
    pause_s = 0.0 if hold else _pause_after(following, acknowledgement, held_out=False)
    first = True
    while True:
        due = due + pause_s if following.mode == "interval" else time.monotonic() + pause_s
        if due > deadline:
            return "timeout"
        if not pause(max(due - time.monotonic(), 0.0)):
            return "stopped"
        path, hold_s = url, 0.0
        if hold:
            hold_s = min(POLL_WAIT_S, deadline - due)
            path += f"{'&' if '?' in url else '?'}{check.hold}={hold_s:.3g}"
        asked = time.monotonic()
        response = send("GET", path, STATUS, None, due, pause_s)
        if response.status_code == 404 and first:
            raise ContractMismatch(f"the status URL {url} answered 404 for an id {contract.label} had just "
                                   f"acknowledged: {_excerpt(response)}")
        first = False
        if response.status_code != 200:
            return "error"
        document = _json(response)
        state = pointer(document, check.state)
        if state is None:
            raise ContractMismatch(f"the status answer of {url} has nothing at the state pointer '{check.state}': "
                                   f"{_excerpt(response)}")
        state = str(state)
        if check.pending and state not in check.pending and state not in check.done and state not in check.failed:
            raise ContractMismatch(f"the status answer of {url} shows the state {state!r} at '{check.state}', which "
                                   f"is none of done {check.done}, failed {check.failed} or pending {check.pending}: "
                                   f"{_excerpt(response)}")
        if state in check.done or state in check.failed:
            seen_us = (time.monotonic() - intended) * 1_000_000
            done = state in check.done
            record(OUTCOME_SEEN if done else FAILED_SEEN, seen_us)
            if done and following.service_timestamps:
                _record_timestamps(contract, document, record)
            return "completed" if done else "failed"
        pause_s = _pause_after(following, response, held_out=hold and time.monotonic() - asked >= 0.9 * hold_s)


def _record_timestamps(contract: Contract, document: Any, record: Record) -> None:
    declared = contract.outcome.timestamps
    if declared is None:
        return
    at = {key: timestamp_s(pointer(document, path)) if path else None
          for key, path in (("accepted", declared.accepted), ("started", declared.started),
                            ("completed", declared.completed))}
    for name, start, end in ((COMPLETION, "accepted", "completed"), (QUEUE_WAIT, "accepted", "started"),
                             (RUN_TIME, "started", "completed")):
        first, last = at[start], at[end]
        if first is not None and last is not None and last >= first:
            record(name, (last - first) * 1_000_000)


def _status_url(contract: Contract, response: Any) -> str:
    """Where the acknowledged request's state is read; ContractMismatch when its id is not where the contract says."""
    outcome = contract.outcome
    assert outcome.id is not None and outcome.status is not None
    value = _id_value(contract, response)
    if value is None:
        where = f"header {outcome.id.header}" if outcome.id.header is not None else f"body pointer '{outcome.id.pointer}'"
        raise ContractMismatch(f"{contract.label} acknowledged with {response.status_code} but has no id at its "
                               f"{where}: {_excerpt(response)}")
    if outcome.status.url is None:
        return value  # a Location: the status URL itself
    return status_url(contract, _last_segment(value) if outcome.id.header is not None else value)


def status_url(contract: Contract, request_id: str) -> str:
    """The status URL of an acknowledged request's id (the contract's template; None-safe only with one)."""
    check = contract.outcome.status
    assert check is not None and check.url is not None
    return check.url.replace("{id}", urllib.parse.quote(request_id, safe=""))


def _id_value(contract: Contract, response: Any) -> str | None:
    """The id as the answer gives it: a header's value (a Location is a whole path), or the value at a body pointer."""
    source = contract.outcome.id
    if source is None:
        return None
    if source.header is not None:
        headers = response.headers or {}
        value = headers.get(source.header) or headers.get(source.header.lower())
    else:
        assert source.pointer is not None
        value = pointer(_json(response), source.pointer)
    return str(value) if value not in (None, "") else None


def _last_segment(value: str) -> str:
    """An id carried in a URL or path (a Location): its last segment."""
    return value.split("?", 1)[0].rstrip("/").rsplit("/", 1)[-1] if "/" in value else value


def acknowledged_id(contract: Contract, response: Any) -> str | None:
    """The id of an acknowledged or finished answer, for the acknowledgement log: where the contract says it is (the
    last segment of a Location), else the body's `/id`; None when it has none."""
    value = _id_value(contract, response)
    if value is not None and contract.outcome.id is not None and contract.outcome.id.header is not None:
        value = _last_segment(value)
    if value is None:
        found = pointer(_json(response), "/id")
        value = str(found) if found not in (None, "") else None
    return value


def request_headers(contract: Contract) -> dict[str, dict[str, str]]:
    """The headers of the design's request (its contract's) and of its status GETs (those, without a body's)."""
    ask = {"Accept": "application/json", **contract.request.headers}
    status = {k: v for k, v in ask.items() if k.lower() not in ("content-type", "content-length")}
    return {REQUEST: ask, STATUS: status}


def status_name(contract: Contract) -> str:
    """How Locust's statistics name the status GETs (one row for all of them)."""
    check = contract.outcome.status
    return check.url if check is not None and check.url is not None else f"{contract.request.path}/{{id}}"


def _pause_after(following: Following, response: Any, held_out: bool) -> float:
    """Seconds between an answer without the outcome (the acknowledgement, or an unfinished state) and the next GET.
    A held GET that ran its course is asked again at once; one answered early without the outcome (a server that
    does not hold) is not, or the client would poll in a busy loop: it then waits as "retry-after" does."""
    if following.mode == "wait" and held_out:
        return 0.0
    if following.mode in ("wait", "retry-after"):
        hint = _retry_after_s(response)
        return hint if hint is not None else following.interval_s
    return following.interval_s


def _retry_after_s(response: Any) -> float | None:
    """A Retry-After in delay-seconds (RFC 9110); None when absent or an HTTP-date."""
    headers = response.headers or {}
    value = headers.get("Retry-After") or headers.get("retry-after")
    return float(value) if value is not None and str(value).strip().isdigit() else None


def _json(response: Any) -> Any:
    try:
        return response.json()
    except Exception:  # noqa: BLE001 - a body that is not JSON reads as no document; the caller says what is missing
        return None


def _excerpt(response: Any) -> str:
    try:
        text = response.text if isinstance(getattr(response, "text", None), str) else (response.content or b"").decode(
            errors="replace")
    except Exception:  # noqa: BLE001 - quoting the answer must not fail the report of it
        text = ""
    text = " ".join(text.split())
    return repr(text if len(text) <= EXCERPT_CHARS else text[:EXCERPT_CHARS] + "...")
