"""What a campaign client does: create a campaign, then follow a 202's Location until the outcome, the way its
polling mode says. Free of Locust and gevent: whoever runs it gives it a way to send a request and a way to pause
(the closed-model user in users.py, the open-model sender in scheduler.py), so it runs, and is tested, anywhere."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

log = logging.getLogger("offpath.client")

CREATE_PATH = "/campaigns"  # Locust shows "POST /campaigns"; the logs are POST_campaigns*.hlog
STATUS_NAME = "/campaigns/{id}"  # every poll grouped under "GET /campaigns/{id}" (GET_campaigns_id*.hlog)
JSON_HEADERS = {"Content-Type": "application/json", "Accept": "application/json"}
DONE = ("completed", "failed")

# How the client of a 202 learns its campaign's outcome (--poll; an experiment's [layout] poll):
# "interval": GET the Location every --poll-interval seconds, as a client with a timer would;
# "retry-after": GET it when the service's Retry-After (on the 202 and on every unfinished GET) says to;
# "wait": GET it with ?wait=N, which the service holds until the campaign is final.
POLL_MODES = ("interval", "retry-after", "wait")

# (method, path, Locust name, body, intended monotonic send time, the client's pause before it or None for a
# POST) -> the response
Request = Callable[[str, str, str, bytes | None, float, float | None], Any]
# (seconds) -> False when the load is stopping and the client should give up
Pause = Callable[[float], bool]

# How long a held GET asks the service to hold it (mode "wait"; the service's limit is 30 s, Locust's network timeout
# 60 s): a campaign final within that is learned with one GET, and a GET still held when the load stops is cut off
# after at most this long.
POLL_WAIT_S = 20.0


def run_campaign(request: Request, pause: Pause, body: bytes, intended: float, poll_interval_s: float,
                 poll_timeout_s: float, poll: str = "interval") -> str:
    """Create one campaign; for a 202, follow its Location until the campaign is final, the way `poll` says
    (POLL_MODES). Returns the outcome.

    The design is read from the answer, not configured: 201 means inline (nothing to poll), 202 queued.
    Each GET's intended time is when the client means to send it, so a GET the driver sends late counts its
    lateness too (open model): with "interval" the previous one's plus the interval (a timer, not shifted by slow
    answers), with "retry-after" the arrival of the previous answer plus its Retry-After, with "wait" the arrival
    of the previous answer (a held GET that ran out is asked again at once).
    """
    response = request("POST", CREATE_PATH, CREATE_PATH, body, intended, None)
    status = response.status_code
    if status == 201:
        return "created"
    if status != 202:
        return "error"
    if poll_interval_s <= 0:
        return "accepted"
    location = _location(response)
    if location is None:
        log.warning("a 202 without a Location header or an id in its body; nothing to poll")
        return "error"
    due = time.monotonic()
    deadline = due + poll_timeout_s
    pause_s = 0.0 if poll == "wait" else _pause_after(poll, response, poll_interval_s, held_out=False)
    while True:
        due = due + pause_s if poll == "interval" else time.monotonic() + pause_s
        if due > deadline:
            return "timeout"
        if not pause(max(due - time.monotonic(), 0.0)):
            return "stopped"
        path, hold_s = location, 0.0
        if poll == "wait":
            hold_s = min(POLL_WAIT_S, deadline - due)
            path += f"{'&' if '?' in location else '?'}wait={hold_s:.3g}"
        asked = time.monotonic()
        response = request("GET", path, STATUS_NAME, None, due, pause_s)
        if response.status_code != 200:
            return "error"
        state = _json(response).get("status")
        if state in DONE:
            return str(state)
        pause_s = _pause_after(poll, response, poll_interval_s, held_out=time.monotonic() - asked >= 0.9 * hold_s)


def _pause_after(poll: str, response: Any, poll_interval_s: float, held_out: bool) -> float:
    """Seconds between an answer without the outcome (the 202, or a GET of an unfinished campaign) and the next GET.
    A held GET that ran its course is asked again at once; one answered early without the outcome (a server that
    does not hold) is not, or the client would poll in a busy loop: it then waits as "retry-after" does."""
    if poll == "wait" and held_out:
        return 0.0
    if poll in ("wait", "retry-after"):
        hint = _retry_after_s(response)
        return hint if hint is not None else poll_interval_s
    return poll_interval_s


def _retry_after_s(response: Any) -> float | None:
    """A Retry-After in delay-seconds (RFC 9110); None when absent or an HTTP-date, which this service never sends."""
    headers = response.headers or {}
    value = headers.get("Retry-After") or headers.get("retry-after")
    return float(value) if value is not None and str(value).strip().isdigit() else None


def _location(response: Any) -> str | None:
    headers = response.headers or {}
    location = headers.get("Location") or headers.get("location")
    if location:
        return str(location)
    campaign_id = _json(response).get("id")
    return f"/campaigns/{campaign_id}" if campaign_id else None


def _json(response: Any) -> dict[str, Any]:
    try:
        data = response.json()
    except Exception:  # noqa: BLE001 - a body that is not JSON is the service's problem, reported as no state
        return {}
    return data if isinstance(data, dict) else {}
