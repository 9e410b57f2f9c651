"""Entry point of one RQ worker process: `python -m services.queued.worker`.

A SimpleWorker runs jobs in its own process instead of forking a work horse per job: the jobs are
short and mostly wait on providers, and a fork per job costs more than the work (measured in the
foundation issue's note). Isolation comes from running several worker processes instead.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import time

from redis import Redis
from redis.exceptions import RedisError
from rq import SimpleWorker
from rq.serializers import JSONSerializer

from services.campaign.settings import Settings
from services.queued.enqueue import campaign_queue


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Run one offpath RQ worker (SimpleWorker, JSON serializer).")
    parser.add_argument("--name", default=None, help="worker name (default: RQ's)")
    parser.add_argument("--burst", action="store_true", help="exit when the queue is empty")
    parser.add_argument("--log-level", default=os.environ.get("OFFPATH_LOG_LEVEL", "WARNING"))
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level, format="%(asctime)s worker %(process)d %(levelname)s %(message)s")

    settings = Settings.from_env()
    settings.profile()  # fail at start, not on the first job, when the profile is wrong
    delay_s = 0.5
    generation = 0
    while True:
        name = args.name if generation == 0 or args.name is None else f"{args.name}-{generation}"
        try:
            return _work(settings, name, args.burst, args.log_level)
        except RedisError as exc:
            # RQ quits when Redis goes away in the middle of a job (measured: every worker of a
            # chaos run died on a Redis crash and nothing drained after the restart). Like a
            # process manager, start a fresh worker once Redis answers; RQ's maintenance retries
            # the job the old one held.
            logging.getLogger("offpath.worker").warning(
                "Redis connection lost (%s); starting a fresh worker in %.1f s", exc, delay_s)
            signal.signal(signal.SIGTERM, signal.SIG_DFL)  # a stop during the pause ends the process
            signal.signal(signal.SIGINT, signal.SIG_DFL)
            time.sleep(delay_s)
            delay_s = min(delay_s * 2, 5.0)
            generation += 1


def _work(settings: Settings, name: str | None, burst: bool, log_level: str) -> int:
    connection = Redis.from_url(settings.redis_url)
    queue = campaign_queue(settings, connection)
    # RQ's registry maintenance is what recovers (a) the job of a crashed worker, once its
    # started-registry entry expires (job monitoring interval + 60 s), and (b) dependents that RQ 3
    # moved to its ready registry but skipped enqueueing after losing a WATCH race with another
    # worker (measured: 5 of 60 automation jobs with 4 workers). Maintenance runs only between jobs
    # or when the blocking dequeue times out (worker_ttl - 15 s); with RQ's defaults (10 min, 405 s)
    # such campaigns sat for minutes. Here: maintenance every 5 s, dequeue timeout 5 s.
    worker = SimpleWorker(
        [queue], connection=connection, serializer=JSONSerializer, name=name,
        job_monitoring_interval=5, maintenance_interval=5, worker_ttl=20,
    )
    worked = worker.work(burst=burst, with_scheduler=True, logging_level=log_level)
    return 0 if worked or burst else 1


if __name__ == "__main__":
    sys.exit(main())
