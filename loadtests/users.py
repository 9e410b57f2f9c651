"""What a campaign client does (create, then poll a 202's Location until done), and the closed-model Locust user."""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

import gevent
from locust import task
from locust.contrib.fasthttp import FastHttpUser

from loadtests.options import DriverOptions
from loadtests.payloads import PayloadFactory
from loadtests.recorder import THINK_KEY

log = logging.getLogger("offpath.users")

CREATE_PATH = "/campaigns"  # Locust shows "POST /campaigns"; the logs are POST_campaigns*.hlog
STATUS_NAME = "/campaigns/{id}"  # every poll grouped under "GET /campaigns/{id}" (GET_campaigns_id*.hlog)
JSON_HEADERS = {"Content-Type": "application/json", "Accept": "application/json"}
DONE = ("completed", "failed")

# How campaigns ended, per process, for the log at stop: created (201), completed, failed, accepted
# (202, not polled), timeout (still running after --poll-timeout), error (a failed request), stopped.
# Process state because Locust leaves no other place for it: it is written by every CampaignUser and by the
# open-model sender (scheduler.py) and read, and cleared at each test start, by the locustfile's Coordinator;
# Locust builds a user from its class with nothing but the Environment (locust/runners.py:227), and the
# Environment has no slot for a plugin's own objects (locust/env.py:Environment.__init__).
OUTCOMES: Counter[str] = Counter()

# (method, path, Locust name, body, intended monotonic send time) -> the response
Request = Callable[[str, str, str, bytes | None, float], Any]
# (seconds) -> False when the load is stopping and the client should give up
Pause = Callable[[float], bool]


def run_campaign(request: Request, pause: Pause, body: bytes, intended: float, poll_interval_s: float,
                 poll_timeout_s: float) -> str:
    """Create one campaign; for a 202, poll its Location the way a client with a timer would. Returns the outcome.

    The design is read from the answer, not configured: 201 means inline (nothing to poll), 202 queued.
    Each poll's intended time is the previous one's plus the interval, so a poll the driver sends late
    counts its lateness too (open model) instead of quietly shifting the client's timer.
    """
    response = request("POST", CREATE_PATH, CREATE_PATH, body, intended)
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
    while True:
        due += poll_interval_s
        if due > deadline:
            return "timeout"
        if not pause(max(due - time.monotonic(), 0.0)):
            return "stopped"
        response = request("GET", location, STATUS_NAME, None, due)
        if response.status_code != 200:
            return "error"
        state = _json(response).get("status")
        if state in DONE:
            return str(state)


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


class CampaignUser(FastHttpUser):
    """A campaign client. Closed model: each user creates a campaign, follows it if queued, pauses --wait-s, again.

    Open model (--arrival-rate): arrivals must not depend on how many users exist or how fast they come
    back, so a per-process scheduler (loadtests/scheduler.py) sends them, and these users only idle in a
    long wait, which Locust cuts short at stop. -u then changes nothing about the offered load.
    """

    # One cycle through the bodies shared by this process's users, so they do not all send the same bodies in
    # lockstep. On the class for the reason OUTCOMES is module state: users get only the Environment, and
    # the class is what Locust builds each of them from. Made by the first user to start in the closed model.
    _payloads: PayloadFactory | None = None

    def on_start(self) -> None:
        self.options = DriverOptions.from_parsed(self.environment.parsed_options)
        if CampaignUser._payloads is None and not self.options.open_model:
            stream = max(getattr(self.environment.runner, "worker_index", 0), 0)
            CampaignUser._payloads = PayloadFactory(self.options.payload_seed, stream)

    def wait_time(self) -> float:
        return 3600.0 if self.options.open_model else self.options.wait_s

    @task
    def create_campaign(self) -> None:
        if self.options.open_model:
            return
        assert CampaignUser._payloads is not None
        outcome = run_campaign(self._request, _sleep, CampaignUser._payloads.next_body(), time.monotonic(),
                               self.options.poll_interval, self.options.poll_timeout)
        OUTCOMES[outcome] += 1

    def _request(self, method: str, path: str, name: str, body: bytes | None, intended: float) -> Any:
        # The CO correction needs the pause after which this user would issue the request again.
        think_s = self.options.wait_s if method == "POST" else self.options.poll_interval
        return self.client.request(method, path, name=name, data=body, headers=JSON_HEADERS,
                                   context={THINK_KEY: think_s * 1_000_000})


def _sleep(seconds: float) -> bool:
    gevent.sleep(seconds)
    return True
