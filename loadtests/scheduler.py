"""The open-model sender: one per Locust process, it sends that process's share of the arrival schedule
concurrently, whatever the service does, and times every request from its intended send."""

from __future__ import annotations

import logging
import math
import time
from pathlib import Path
from typing import Any

import gevent
from gevent import GreenletExit
from gevent.event import Event
from gevent.lock import BoundedSemaphore
from gevent.pool import Pool
from locust.contrib.fasthttp import FastHttpSession

from foundation.format import REQUEST
from loadtests.arrivals import Shard, intended_times, parse_shape
from loadtests.client import ContractMismatch, request_headers, run_request, status_name
from loadtests.mismatch import report_mismatch
from loadtests.options import DriverOptions
from loadtests.payloads import PayloadFactory
from loadtests.recorder import LOG_KEY, SEND_LAG_KEY, record_value
from loadtests.users import OUTCOMES

log = logging.getLogger("offpath.scheduler")

# A request that leaves more than 10 ms after its intended time was delayed by the driver, not the
# service: far above gevent's scheduling jitter, far below the latencies measured. analysis.stats.summary
# flags a cell as driver_bottleneck at the same limit on the merged send-lag P99.
LATE_US = 10_000
LATE_FRACTION = 0.01  # more late sends than this in one second (and at least LATE_MIN), and the WARNING goes out
LATE_MIN = 3  # one or two late sends in a second are scheduling jitter on a busy machine, not a bottleneck
WARN_EVERY_S = 5.0
# Campaigns being followed (mostly asleep between polls) may outnumber requests in flight by this much.
CAMPAIGNS_PER_SLOT = 10
# At stop, requests in flight get at least this long to be answered: cutting them off would drop exactly
# the slowest requests of the run from its tail. Locust's --stop-timeout, when longer, wins.
MIN_DRAIN_S = 10.0
TIMEOUT_S = 60.0  # connect and network timeout of one request (Locust's FastHttpUser default)
# gevent's timers fire 0.3-1.2 ms after they are due (the loop polls with millisecond timeouts). Waking
# this much early keeps that slop out of every open-model latency; a request that then leaves before its
# intended time has a send lag of 0 and its latency counts from its actual send.
WAKE_EARLY_S = 0.001


class UnfinishedAtStop(Exception):
    """A request still unanswered when the drain after stop ran out; counted as a failure with status 0."""


class LagWatch:
    """Per-second tally of late sends, and the WARNING when the driver, not the service, is the bottleneck."""

    def __init__(self, max_in_flight: int):
        self.max_in_flight = max_in_flight
        self.second = -1
        self.sent = self.late = 0
        self.max_lag_us = 0.0
        self.capped = ""
        self.seconds = self.bad_seconds = 0
        self._warned_at = -math.inf

    def observe(self, now: float, lag_us: float, in_flight: int) -> None:
        second = int(now)
        if second != self.second:
            self.close_second(now, in_flight)
            self.second = second
        self.sent += 1
        if lag_us > LATE_US:
            self.late += 1
            self.max_lag_us = max(self.max_lag_us, lag_us)

    def cap_reached(self, what: str) -> None:
        self.capped = what

    def close_second(self, now: float, in_flight: int) -> None:
        if self.sent == 0:
            return
        self.seconds += 1
        bad = self.late > LATE_FRACTION * self.sent and self.late >= LATE_MIN
        if bad:
            self.bad_seconds += 1
        if bad and now - self._warned_at >= WARN_EVERY_S:
            self._warned_at = now
            cap = (f"; the --max-in-flight cap on {self.capped} was reached ({in_flight}/{self.max_in_flight} "
                   "requests in flight)") if self.capped else ""
            log.warning(
                "the load generator is the bottleneck: %d of %d requests in the last second left more than %d ms "
                "after their intended time (worst %.0f ms)%s. Latencies still count from the intended times, but "
                "the offered rate is lower than asked; lower --arrival-rate, raise --max-in-flight or add "
                "--processes.", self.late, self.sent, LATE_US // 1000, self.max_lag_us / 1000, cap)
        self.sent = self.late = 0
        self.max_lag_us = 0.0
        self.capped = ""


class OpenModelSender:
    """Sends arrivals Shard.index, +count, +2 count, ... of the run's schedule, each as one campaign flow."""

    def __init__(self, environment: Any, options: DriverOptions, shard: Shard, epoch_s: float,
                 end_s: float | None = None):
        if not environment.host:
            raise ValueError("the open model needs a target: pass --host http://127.0.0.1:PORT")
        assert options.arrival_rate is not None
        self.options = options
        self.shard = shard
        self.environment = environment
        self.driven = options.driven()
        self.following = options.following()
        self._headers = request_headers(self.driven.contract)
        self._status_name = status_name(self.driven.contract)
        self._request_event = environment.events.request
        # One connection per request in flight: a smaller pool would queue requests inside the client,
        # where the wait would pass for service latency instead of showing up as send lag. Held GETs (--poll wait)
        # have slots and connections of their own: a client waiting for outcomes must not take the places of the
        # POSTs whose latency is measured, nor delay their sends.
        self._holds = options.poll == "wait" and self.driven.contract.outcome.status is not None \
            and self.driven.contract.outcome.status.hold is not None
        self._session = FastHttpSession(environment.host, request_event=environment.events.request, user=None,
                                        concurrency=options.max_in_flight * (2 if self._holds else 1),
                                        network_timeout=TIMEOUT_S, connection_timeout=TIMEOUT_S)
        self._times = intended_times(parse_shape(options.rate_shape), options.arrival_rate, shard)
        self._epoch_mono = time.monotonic() - (time.time() - epoch_s)
        # With a known run time the schedule ends exactly there (R x T arrivals), before Locust's own
        # stop work (which blocks the event loop for tens of ms) could delay arrivals due at its end.
        self._end_t_s = end_s - epoch_s if end_s is not None else float("inf")
        self._payloads = PayloadFactory(options.payload_seed, shard.index, self.driven.contract.request.body,
                                        Path(self.driven.base_dir) if self.driven.base_dir else None)
        self._slots = BoundedSemaphore(options.max_in_flight)
        self._held_slots = BoundedSemaphore(options.max_in_flight)
        self._campaigns = Pool(options.max_in_flight * CAMPAIGNS_PER_SLOT)
        self._stopping = Event()
        self._in_flight = 0
        self.watch = LagWatch(options.max_in_flight)
        self._loop: gevent.Greenlet | None = None
        self._drain_s = MIN_DRAIN_S

    def start(self) -> None:
        self._loop = gevent.spawn(self._run)

    def _run(self) -> None:
        for t_s in self._times:
            if t_s >= self._end_t_s:
                return
            intended = self._epoch_mono + t_s
            delay = intended - WAKE_EARLY_S - time.monotonic()
            if delay > 0:
                gevent.sleep(delay)  # not Event.wait: a plain timer is cheaper, and stop_sending kills this loop
            if self._campaigns.full():
                self.watch.cap_reached("campaigns being followed")
            self._campaigns.spawn(self._campaign, intended)  # blocks while full: the lag then shows it

    def _campaign(self, intended: float) -> None:
        try:
            outcome = run_request(self.driven.contract, self._request, self._pause, record_value,
                                  self._payloads.next_body(), intended, self.following)
        except ContractMismatch as mismatch:
            report_mismatch(self.environment, self.options.hdr_dir, str(mismatch))
            outcome = "mismatch"
        OUTCOMES[outcome] += 1

    def _pause(self, seconds: float) -> bool:
        return not self._stopping.wait(seconds) if seconds > 0 else not self._stopping.is_set()

    def _request(self, method: str, path: str, log_key: str, body: bytes | None, intended: float,
                 pause_s: float | None = None) -> Any:
        request = log_key == REQUEST
        name = self.driven.contract.request.path if request else self._status_name
        headers = self._headers[log_key]
        if self._holds and not request:
            return self._held_request(path, name, log_key, headers, intended)
        if self._slots.locked():
            self.watch.cap_reached("requests in flight")
        with self._slots:
            sent = time.monotonic()
            lag_us = max(sent - intended, 0.0) * 1_000_000
            self.watch.observe(sent, lag_us, self._in_flight)
            self._in_flight += 1
            try:
                # Bytes are a body FastHttpSession sends as it is (its docstring), unlike its hint.
                return self._session.request(method, path, name=name, data=body, headers=headers,  # type: ignore[arg-type]
                                             context={SEND_LAG_KEY: lag_us, LOG_KEY: log_key})
            except GreenletExit:
                # Killed after the drain: report it, so Locust's counts and ours still hold every request sent.
                self._request_event.fire(
                    request_type=method, name=name, response_time=(time.monotonic() - sent) * 1000,
                    response_length=0, response=None, context={SEND_LAG_KEY: lag_us, LOG_KEY: log_key}, url=path,
                    start_time=time.time() - (time.monotonic() - sent),
                    exception=UnfinishedAtStop(f"no answer within the drain after stop ({self._drain_s:g} s)"))
                raise
            finally:
                self._in_flight -= 1

    def _held_request(self, path: str, name: str, log_key: str, headers: dict[str, str], intended: float) -> Any:
        """A GET the service holds until the campaign is final. The drain at stop does not wait for it (it is a client
        waiting for an outcome, like one asleep between polls), and one cut off there is reported to nobody: Locust's
        counts and ours both leave it out, as a poll that was never sent."""
        if self._held_slots.locked():
            self.watch.cap_reached("held GETs")
        with self._held_slots:
            sent = time.monotonic()
            lag_us = max(sent - intended, 0.0) * 1_000_000
            self.watch.observe(sent, lag_us, self._in_flight)
            return self._session.request("GET", path, name=name, headers=headers,
                                         context={SEND_LAG_KEY: lag_us, LOG_KEY: log_key})

    def stop_sending(self) -> None:
        """No new arrivals and no new polls from now on; requests in flight carry on."""
        self._stopping.set()
        if self._loop is not None:
            self._loop.kill(block=False)

    def drain(self, stop_timeout_s: float) -> int:
        """Wait for requests in flight (bounded), then end every campaign; returns how many were cut off."""
        self.stop_sending()
        self._drain_s = max(stop_timeout_s, MIN_DRAIN_S)
        deadline = time.monotonic() + self._drain_s
        while self._in_flight and time.monotonic() < deadline:
            gevent.sleep(0.02)
        unfinished = self._in_flight
        self._campaigns.kill(block=True, timeout=5)
        if self._loop is not None:
            self._loop.kill(block=True, timeout=5)
        self.watch.close_second(time.monotonic(), unfinished)
        if self.watch.bad_seconds:
            log.warning("the load generator fell behind its schedule in %d of %d seconds (shard %d of %d)",
                        self.watch.bad_seconds, self.watch.seconds, self.shard.index + 1, self.shard.count)
        return unfinished
