"""Entry point of one RQ worker process: `python -m services.queued.worker`.

A SimpleWorker runs jobs in its own process instead of forking a work horse per job: the jobs are
short and mostly wait on providers, and a fork per job costs more than the work (measured in the
foundation issue's note). Isolation comes from running several worker processes instead.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys

from redis import Redis
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
    connection = Redis.from_url(settings.redis_url)
    queue = campaign_queue(settings, connection)
    # RQ's registry maintenance is what recovers (a) the job of a crashed worker, once its
    # started-registry entry expires (job monitoring interval + 60 s), and (b) dependents that RQ 3
    # moved to its ready registry but skipped enqueueing after losing a WATCH race with another
    # worker (measured: 5 of 60 automation jobs with 4 workers). Maintenance runs only between jobs
    # or when the blocking dequeue times out (worker_ttl - 15 s); with RQ's defaults (10 min, 405 s)
    # such campaigns sat for minutes. Here: maintenance every 5 s, dequeue timeout 5 s.
    worker = SimpleWorker(
        [queue], connection=connection, serializer=JSONSerializer, name=args.name,
        job_monitoring_interval=5, maintenance_interval=5, worker_ttl=20,
    )
    worked = worker.work(burst=args.burst, with_scheduler=True, logging_level=args.log_level)
    return 0 if worked or args.burst else 1


if __name__ == "__main__":
    sys.exit(main())
