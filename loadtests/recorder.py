"""The HDR recording plugin's per-process half: every Locust request into 1-second HdrHistograms, shipped encoded.

Each Locust process that sends requests (the local runner, or each worker) records into its own histograms,
in microseconds, and every second, on a clock shared by all processes of the run, hands the encoded
interval to `ship` (Locust's send_message to the master, or straight to the local merger). What is recorded
for an endpoint (results/README.md):

- `<endpoint>.raw`: Locust's own response time, from the actual send.
- `<endpoint>`: open model, from the *intended* send (raw + send lag); closed model, the raw time corrected
  for coordinated omission with HdrHistogram's `record_corrected_value`.
- `send_lag`: open model, actual minus intended send of every request, failed ones included.
Failed requests go to per-second error counts by status (0: no HTTP answer), not into latency histograms.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

import gevent
from gevent.event import Event
from hdrh.histogram import HdrHistogram

from foundation.format import RAW_SUFFIX, SEND_LAG, endpoint_key
from loadtests.hlog_writer import clamp_us, new_histogram

log = logging.getLogger("offpath.recorder")

# Keys users put in a request's Locust `context` to tell the recorder how to time it.
SEND_LAG_KEY = "offpath_send_lag_us"  # open model: this request left send_lag µs after its intended time
LOG_KEY = "offpath_log"  # the log the request is recorded in (results/format.py: REQUEST, STATUS); absent: its name
THINK_KEY = "offpath_think_us"  # closed model: the user pauses think µs before issuing this request again

# The CO correction's expected interval is how often a closed-model user issues this request when the
# service is healthy: its think time plus the endpoint's usual latency. "Usual" is the median raw latency
# of the previous 1-second interval, so a stall (long values) does not lengthen its own correction window.
# Below 1 ms we stop correcting in finer steps: each step is one Python loop turn in hdrh.
MIN_EXPECTED_INTERVAL_US = 1_000

Ship = Callable[[dict[str, Any]], None]

# The recorder of this process's run, for values that are not Locust requests (record_value). Process state for the
# reason loadtests/users.py keeps OUTCOMES: the client that observes an outcome gets nothing from Locust but the
# Environment, which has no slot for a plugin's objects.
_ACTIVE: list[Recorder] = []


def record_value(name: str, value_us: float) -> None:
    """Record a value into this process's current interval of log `name`; nothing while no run is recording."""
    if _ACTIVE:
        _ACTIVE[0].record(name, value_us)


def status_of(response: Any) -> int:
    """The HTTP status of a failed request's response; 0 when there was no HTTP answer at all."""
    return int(getattr(response, "status_code", 0) or 0)


class Recorder:
    """One process's current interval: histograms per log name and failures per (endpoint, status)."""

    def __init__(self) -> None:
        self._histograms: dict[str, HdrHistogram] = {}
        self._errors: Counter[tuple[str, int]] = Counter()
        self._keys: dict[tuple[str, str], str] = {}
        self._typical_us: dict[str, int] = {}
        self.shipped: Counter[str] = Counter()  # values shipped per log this run, for the log line at finish
        self._clock: gevent.Greenlet | None = None
        self._clock_stop = Event()
        self._epoch_mono = 0.0
        self._ship: Ship | None = None
        self.source = "local"

    # -- recording (Locust's events.request listener; runs once per request, keep it lean) ----------------

    def on_request(self, request_type: str, name: str, response_time: float, response_length: int,
                   exception: BaseException | None = None, context: dict[str, Any] | None = None,
                   response: Any = None, **_: Any) -> None:
        context = context or {}
        key = context.get(LOG_KEY)
        if key is None:
            key = self._keys.get((request_type, name))
            if key is None:
                key = self._keys[(request_type, name)] = endpoint_key(request_type, name)
        lag_us = context.get(SEND_LAG_KEY)
        if lag_us is not None:
            self._histogram(SEND_LAG).record_value(clamp_us(lag_us))
        if exception is not None:
            self._errors[(key, status_of(response))] += 1
            return
        raw_us = clamp_us(response_time * 1000.0)
        self._histogram(key + RAW_SUFFIX).record_value(raw_us)
        if lag_us is not None:
            self._histogram(key).record_value(clamp_us(response_time * 1000.0 + lag_us))
            return
        think_us = context.get(THINK_KEY)
        if think_us is None:
            self._histogram(key).record_value(raw_us)
            return
        expected_us = max(int(think_us) + self._typical_us.get(key, 0), MIN_EXPECTED_INTERVAL_US)
        self._histogram(key).record_corrected_value(raw_us, expected_us)

    def record(self, name: str, value_us: float) -> None:
        """A value that is not a request's response time (what the client saw of an outcome, a service's own
        timings), into the current interval of log `name`."""
        self._histogram(name).record_value(clamp_us(value_us))

    def _histogram(self, name: str) -> HdrHistogram:
        histogram = self._histograms.get(name)
        if histogram is None:
            histogram = self._histograms[name] = new_histogram()
        return histogram

    # -- intervals ------------------------------------------------------------------------------------------

    def take_interval(self, index: int, final: bool = False) -> dict[str, Any]:
        """The current interval as a message (encoded histograms, error counts); recording restarts empty."""
        encoded: dict[str, str] = {}
        # Fresh histograms, not reset() ones: hdrh's reset costs ~1 ms, a new histogram ~0.1 ms.
        histograms, self._histograms = self._histograms, {}
        for name, histogram in histograms.items():
            if histogram.get_total_count() == 0:
                continue
            if name.endswith(RAW_SUFFIX):
                self._typical_us[name[: -len(RAW_SUFFIX)]] = int(histogram.get_value_at_percentile(50))
            encoded[name] = histogram.encode().decode("ascii")
            self.shipped[name] += histogram.get_total_count()
        errors = [[endpoint, status, count] for (endpoint, status), count in self._errors.items()]
        self.shipped["errors"] += sum(self._errors.values())
        self._errors.clear()
        return {"source": self.source, "index": index, "final": final, "histograms": encoded, "errors": errors}

    def start(self, epoch_s: float, ship: Ship, source: str) -> None:
        """Start afresh on the run's clock: interval k covers [epoch_s + k, epoch_s + k + 1)."""
        self.stop_clock()
        self._histograms = {}
        self._errors.clear()
        self._typical_us.clear()
        self.shipped.clear()
        self.source = source
        self._ship = ship
        _ACTIVE[:] = [self]
        # One epoch for every process of the run (sent by the master), mapped once onto this process's
        # monotonic clock so that wall-clock steps during the run do not move interval boundaries.
        self._epoch_mono = time.monotonic() - (time.time() - epoch_s)
        self._clock_stop = Event()
        self._clock = gevent.spawn(self._tick, self._clock_stop)

    def _index_now(self) -> int:
        return max(int(time.monotonic() - self._epoch_mono), 0)

    def _tick(self, stop: Event) -> None:
        index = self._index_now()
        # Wait for the boundary, not for 1 s: boundaries stay on the shared clock however late a tick runs.
        while not stop.wait(max(self._epoch_mono + index + 1 - time.monotonic(), 0)):
            if self._ship is not None:
                self._ship(self.take_interval(index))
            index += 1

    def stop_clock(self) -> None:
        """Stop ticking between ticks (never mid-ship, which would lose the interval being shipped)."""
        if self._clock is not None:
            self._clock_stop.set()
            self._clock.join(timeout=10)
            self._clock = None

    def finish(self) -> None:
        """Stop the clock and ship what the last, partial interval holds, marked final."""
        if self._ship is None:
            return
        self.stop_clock()
        self._ship(self.take_interval(self._index_now(), final=True))
        self._ship = None
        if _ACTIVE and _ACTIVE[0] is self:
            _ACTIVE.clear()
        log.info("%s recorded %s", self.source, ", ".join(f"{k} {v}" for k, v in sorted(self.shipped.items())))
