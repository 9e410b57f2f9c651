"""The Locust user: in the closed model a design's client (loadtests/client.py) pausing --wait-s between requests;
in the open model an idle placeholder while the scheduler (loadtests/scheduler.py) sends."""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path
from typing import Any

import gevent
from locust import task
from locust.contrib.fasthttp import FastHttpUser

from foundation.format import REQUEST
from loadtests.client import ContractMismatch, request_headers, run_request, status_name
from loadtests.mismatch import report_mismatch
from loadtests.options import DriverOptions
from loadtests.payloads import PayloadFactory
from loadtests.recorder import LOG_KEY, THINK_KEY, record_value

# How requests ended, per process, for the log at stop: finished (the answer was the outcome), completed, failed,
# accepted (acknowledged, not followed), timeout (not final after --poll-timeout), error (a failed request), stopped,
# mismatch (the service answered outside its contract).
# Process state because Locust leaves no other place for it: it is written by every CampaignUser and by the
# open-model sender (scheduler.py) and read, and cleared at each test start, by the locustfile's Coordinator;
# Locust builds a user from its class with nothing but the Environment (locust/runners.py:227), and the
# Environment has no slot for a plugin's own objects (locust/env.py:Environment.__init__).
OUTCOMES: Counter[str] = Counter()


class CampaignUser(FastHttpUser):
    """A design's client. Closed model: each user sends the request, follows it if acknowledged, pauses --wait-s,
    again.

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
        if self.options.open_model:
            return
        self.driven = self.options.driven()
        self.following = self.options.following()
        self._headers = request_headers(self.driven.contract)
        self._status_name = status_name(self.driven.contract)
        if CampaignUser._payloads is None:
            stream = max(getattr(self.environment.runner, "worker_index", 0), 0)
            CampaignUser._payloads = PayloadFactory(self.options.payload_seed, stream, self.driven.contract.request.body,
                                                    Path(self.driven.base_dir) if self.driven.base_dir else None)

    def wait_time(self) -> float:
        return 3600.0 if self.options.open_model else self.options.wait_s

    @task
    def create_campaign(self) -> None:
        if self.options.open_model:
            return
        assert CampaignUser._payloads is not None
        try:
            outcome = run_request(self.driven.contract, self._request, _sleep, record_value,
                                  CampaignUser._payloads.next_body(), time.monotonic(), self.following)
        except ContractMismatch as mismatch:
            report_mismatch(self.environment, self.options.hdr_dir, str(mismatch))
            outcome = "mismatch"
        OUTCOMES[outcome] += 1

    def _request(self, method: str, path: str, log_key: str, body: bytes | None, intended: float,
                 pause_s: float | None) -> Any:
        # The CO correction needs the pause after which this user would issue the request again.
        think_s = self.options.wait_s if pause_s is None else pause_s
        name = self.driven.contract.request.path if log_key == REQUEST else self._status_name
        # Locust documents bytes as a body FastHttpSession sends as it is (locust/contrib/fasthttp.py), unlike its hint.
        return self.client.request(method, path, name=name, data=body, headers=self._headers[log_key],  # type: ignore[arg-type]
                                   context={THINK_KEY: think_s * 1_000_000, LOG_KEY: log_key})


def _sleep(seconds: float) -> bool:
    gevent.sleep(seconds)
    return True
