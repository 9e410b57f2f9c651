"""offpath's Locust entry point: `locust -f loadtests/locustfile.py --host URL [--arrival-rate R] [--hdr-dir DIR]`.

Works with the web UI, headless, and distributed (`--processes N`, or `--master` plus `--worker`s).
Closed model (no --arrival-rate): CampaignUser users create campaigns with --wait-s pauses. Open model:
one OpenModelSender per process sends its share of the schedule; `-u` does not change the load (pass
`-u N -r N`, N the number of processes: one idle user per sender, all spawned at once). With --hdr-dir,
every process records 1-second HdrHistograms (recorder.py) that the master (or the local runner) merges
and writes (merger.py). The master owns the run: at test start it sends each worker the run's epoch,
its shard of the schedule and the master's options; each worker ships an interval every second and a
final one when it stops; the master writes the last interval only after every worker's final one.
`python -m loadtests.options` lists offpath's options (Locust's --help runs before the locustfile loads).

Exit codes: Locust's (0; --exit-code-on-error, default 1, when requests failed; 2 on an unhandled error),
and 3 when a worker's final histograms never arrived, so the interval logs are incomplete.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import gevent
from locust import events
from locust.env import Environment
from locust.rpc import Message
from locust.runners import MasterRunner, WorkerRunner
from locust.stats import CSV_STATS_INTERVAL_SEC

import loadtests.acks  # noqa: F401 - registers the acknowledgement log
from foundation.format import OUTCOME_SEEN, REQUEST, SEND_LAG, raw_log
from loadtests.arrivals import Shard
from loadtests.loopback import RemoteTargetRefused, require_loopback
from loadtests.merger import IntervalMerger, MergeSummary
from loadtests.mismatch import clear as clear_mismatch
from loadtests.options import DriverOptions, add_arguments
from loadtests.payloads import PayloadFactory
from loadtests.recorder import Recorder, Ship
from loadtests.scheduler import LATE_US, OpenModelSender
from loadtests.users import OUTCOMES, CampaignUser

__all__ = ["CampaignUser"]  # the one user class Locust runs

log = logging.getLogger("offpath")

START = "offpath_start"  # master -> each worker: {epoch_s, end_s, shard: [index, count], options}
STOP = "offpath_stop"  # master -> each worker: stop now and ship your final interval
INTERVAL = "offpath_interval"  # worker -> master (or local -> itself): Recorder.take_interval()
EXIT_LOGS_INCOMPLETE = 3
FINAL_WAIT_S = 30.0  # beyond --stop-timeout: how long the master waits for workers' final intervals
# Workers take ~0.15 s from the master's test_start to their own (Locust builds an argument parser per
# option while handling "spawn"); an open-model schedule starting at the master's test_start would open
# every run with a burst of late sends. Its clock starts this much later, when every worker is ready.
WORKER_LEAD_S = 0.4


class Coordinator:
    """The plugin's life cycle in one process, whatever its role (local, master or worker)."""

    def __init__(self, environment: Environment):
        self.env = environment
        # Locust's init event fires once the Environment has its runner (locust/main.py); only a runner of its own
        # kind (local, master, worker) reaches here, each with the messaging the plugin uses.
        assert environment.runner is not None
        self.runner: Any = environment.runner
        self.role = "master" if isinstance(self.runner, MasterRunner) else (
            "worker" if isinstance(self.runner, WorkerRunner) else "local")
        self.recorder = Recorder()
        self.merger: IntervalMerger | None = None
        self.sender: OpenModelSender | None = None
        self.stop_s: float | None = None
        self._start_message: dict[str, Any] | None = None
        self._test_started = False
        self._recording = False

    def install(self) -> None:
        events = self.env.events
        if self.role != "worker":
            self.runner.register_message(INTERVAL, self._on_interval)
        if self.role == "worker":
            self.runner.register_message(START, self._on_start_message)
            self.runner.register_message(STOP, self._on_stop_message)
        events.test_start.add_listener(self._on_test_start)
        events.test_stopping.add_listener(self._on_test_stopping)
        events.test_stop.add_listener(self._on_test_stop)
        events.quitting.add_listener(self._on_quitting)

    # -- start ---------------------------------------------------------------------------------------------

    def _on_test_start(self, environment: Environment, **_: Any) -> None:
        options = DriverOptions.from_parsed(environment.parsed_options)
        now = time.time()
        epoch_s = now + (WORKER_LEAD_S if self.role == "master" and options.open_model else 0.0)
        run_time = getattr(environment.parsed_options, "run_time", None)
        end_s = now + run_time if run_time else None  # when Locust's --run-time stops the test
        self.stop_s = None
        if self.role == "worker":
            self._test_started = True
            self._maybe_begin()
            return
        if self.role == "master":
            self._check_spawn_rate(environment, options)
            workers = self._workers()
            for index, client_id in enumerate(workers):
                self.runner.send_message(START, {"epoch_s": epoch_s, "end_s": end_s, "shard": [index, len(workers)],
                                                 "options": options.to_dict()}, client_id=client_id)
            sources = set(workers)
        else:
            sources = {"local"}
        if options.hdr_dir:
            always = (REQUEST, raw_log(REQUEST), OUTCOME_SEEN) + ((SEND_LAG,) if options.open_model else ())
            self.merger = IntervalMerger(Path(options.hdr_dir), epoch_s, sources, always)
        if self.role == "local":
            self._begin(options, epoch_s, end_s, Shard(0, 1), "local", self.merger.add if self.merger else None)

    @staticmethod
    def _check_spawn_rate(environment: Environment, options: DriverOptions) -> None:
        users = getattr(environment.parsed_options, "num_users", None) or 0
        spawn_rate = getattr(environment.parsed_options, "spawn_rate", None) or 0
        if options.open_model and users > 1 and spawn_rate < users:
            log.warning("open model with -r %g below -u %d: each further spawn message stalls every worker for "
                        "~0.1 s (late sends). The users only idle here; pass -r %d to spawn them at once.",
                        spawn_rate, users, users)

    def _workers(self) -> list[str]:
        clients = self.runner.clients.ready + self.runner.clients.spawning + self.runner.clients.running
        index_of = getattr(self.runner, "get_worker_index", None)
        return [c.id for c in sorted(clients, key=lambda c: (index_of(c.id) if index_of else 0, c.id))]

    def _on_start_message(self, environment: Environment, msg: Message, **_: Any) -> None:
        self._start_message = dict(msg.data)
        self._maybe_begin()

    def _maybe_begin(self) -> None:
        # A worker begins after both its own test_start (Locust clears its stats there: a request counted
        # before that would be in our logs and not in Locust's) and the master's START.
        if not (self._test_started and self._start_message):
            return
        data = self._start_message
        options = DriverOptions.from_dict(data["options"])
        ship: Ship | None = (lambda message: self.runner.send_message(INTERVAL, message)) if options.hdr_dir else None
        self._begin(options, float(data["epoch_s"]), data.get("end_s"), Shard(*data["shard"]), self.runner.client_id,
                    ship)

    def _begin(self, options: DriverOptions, epoch_s: float, end_s: float | None, shard: Shard, source: str,
               ship: Ship | None) -> None:
        OUTCOMES.clear()
        clear_mismatch(self.env)
        if ship is not None:
            self.recorder.start(epoch_s, ship, source)
            self.env.events.request.add_listener(self.recorder.on_request)
            self._recording = True
        if options.open_model:
            self.sender = OpenModelSender(self.env, options, shard, epoch_s, end_s)
            self.sender.start()

    # -- stop ----------------------------------------------------------------------------------------------

    def _on_stop_message(self, environment: Environment, msg: Message, **_: Any) -> None:
        # Locust's master, when it quits (the end of every headless run), fires its test_stop *before*
        # telling workers anything, and then gives them 0.5 s. Stopping here, on the master's word at its
        # test_stopping, fires this worker's test_stop (our final flush) while the master still listens.
        self.runner.stop()

    def _on_test_stopping(self, environment: Environment, **_: Any) -> None:
        if self.role == "master":
            self.runner.send_message(STOP)
        self.stop_s = time.time()
        # Regular intervals end with the load: whatever comes after (the partial second, requests drained
        # at stop) goes into the final flush, which the merger folds into the run's last interval.
        self.recorder.stop_clock()
        if self.sender is not None:
            self.sender.stop_sending()
        if self.merger is not None:
            self.merger.stopping(self.stop_s)

    def _on_test_stop(self, environment: Environment, **_: Any) -> None:
        stop_s = self.stop_s if self.stop_s is not None else time.time()
        if self.sender is not None:
            unfinished = self.sender.drain(environment.stop_timeout or 0.0)
            if unfinished:
                log.warning("%d requests were still unanswered at the end of the drain after stop; they count "
                            "as failures (status 0)", unfinished)
            self.sender = None
        if self._recording:
            self.recorder.finish()
            self.env.events.request.remove_listener(self.recorder.on_request)
            self._recording = False
        elif self.role == "worker" and self._start_message and self._start_message["options"].get("hdr_dir"):
            # Started by the master but never by Locust: still tell the master there is nothing to wait for.
            self.runner.send_message(INTERVAL, {"source": self.runner.client_id, "index": 0, "final": True,
                                                "histograms": {}, "errors": []})
        if OUTCOMES:
            log.info("requests by outcome: %s", dict(OUTCOMES))
        if OUTCOMES["timeout"]:
            log.warning("%d acknowledged requests were neither done nor failed --poll-timeout after their "
                        "acknowledgement", OUTCOMES["timeout"])
        self._start_message = None
        self._test_started = False
        if self.merger is not None:
            self._finish_logs(stop_s, wait_s=(environment.stop_timeout or 0.0) + FINAL_WAIT_S)

    def _on_interval(self, environment: Environment, msg: Message, **_: Any) -> None:
        if self.merger is not None:
            self.merger.add(msg.data)

    def _finish_logs(self, stop_s: float, wait_s: float) -> None:
        merger = self.merger
        assert merger is not None
        deadline = time.monotonic() + wait_s
        while not merger.all_final and time.monotonic() < deadline:
            gevent.sleep(0.05)  # the master's listener greenlet keeps receiving meanwhile
        self.merger = None
        summary = merger.finish(stop_s)
        _report(summary, merger.out_dir)
        if summary.missing_sources:
            log.error("no final histograms from %s within %.0f s of the stop: the interval logs in %s miss their "
                      "last requests (exit code %d)", ", ".join(summary.missing_sources), wait_s, merger.out_dir,
                      EXIT_LOGS_INCOMPLETE)
            self.env.process_exit_code = EXIT_LOGS_INCOMPLETE

    def _on_quitting(self, environment: Environment, **_: Any) -> None:
        if self.merger is not None:  # the test never reached test_stop (e.g. Ctrl+C while starting)
            self._finish_logs(self.stop_s or time.time(), wait_s=0)
        if self.role != "worker" and getattr(environment.parsed_options, "csv_prefix", None):
            # Locust rewrites its --csv files every CSV_STATS_INTERVAL_SEC and never once more at exit, so
            # locust_stats.csv can miss the last second's requests (locust issues #1806, #2299). The stats
            # are final by now; give its writer one more turn so the cross-check sees the same totals.
            gevent.sleep(CSV_STATS_INTERVAL_SEC + 0.25)


def _report(summary: MergeSummary, out_dir: Path) -> None:
    counts = ", ".join(f"{name} {count}" for name, count in sorted(summary.counts.items()))
    log.info("wrote %d intervals to %s: %s; %d failed requests", summary.intervals, out_dir, counts, summary.errors)
    if summary.send_lag_p99_us is not None and summary.send_lag_p99_us > LATE_US:
        log.warning("send lag P99 was %.1f ms (limit %d ms): the load generator, not the service, limited this run",
                    summary.send_lag_p99_us / 1000, LATE_US // 1000)


@events.init_command_line_parser.add_listener
def _add_options(parser: Any) -> None:
    add_arguments(parser)


@events.init.add_listener
def _install(environment: Environment, **_: Any) -> None:
    options = DriverOptions.from_parsed(environment.parsed_options)
    if environment.host and not isinstance(environment.runner, WorkerRunner):
        try:
            require_loopback(environment.host, allow_remote=bool(getattr(environment.parsed_options, "allow_remote", False)))
        except RemoteTargetRefused as exc:
            raise SystemExit(str(exc)) from None
    if options.hdr_dir and not isinstance(environment.runner, WorkerRunner):
        try:
            Path(options.hdr_dir).mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise SystemExit(f"--hdr-dir {options.hdr_dir}: cannot create it ({exc}); pass a writable folder") from None
    if environment.runner is not None:
        Coordinator(environment).install()
        if not isinstance(environment.runner, MasterRunner):
            driven = options.driven()  # the contract read, and its bodies built, now: not on the run's clock
            PayloadFactory(options.payload_seed, 0, driven.contract.request.body,
                           Path(driven.base_dir) if driven.base_dir else None)
    # Locust times --run-time with gevent.spawn_later, which counts from the event loop's cached clock;
    # that clock was last read before the locustfile and its imports loaded, so a "-t 30s" run would
    # end about half a second early. Refresh it: runs then last -t, and a cell has -t intervals.
    gevent.get_hub().loop.update_now()
