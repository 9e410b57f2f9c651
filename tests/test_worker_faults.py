"""The chaos measures of a killed job's time to run again (offpath/worker_faults.py, FirstStarts): its *first* start
after the kill, not RQ's record of its latest. Real Redis, a real RQ worker, a job that runs twice."""

from __future__ import annotations

import time
import uuid

import redis
from rq import Queue, Retry, SimpleWorker
from rq.job import Job
from rq.serializers import JSONSerializer

from offpath.worker_faults import FirstStarts
from tests.queue_apps.rq_jobs import STARTS_KEY, fail_first_attempt


def _drain(connection: redis.Redis, queue: Queue) -> None:
    SimpleWorker([queue], connection=connection, serializer=JSONSerializer).work(burst=True, with_scheduler=False)


def test_a_job_run_again_at_once_then_retried_reads_its_first_start(redis_server):
    connection = redis.Redis.from_url(redis_server.url)
    connection.delete(STARTS_KEY)
    queue = Queue(f"test-first-starts-{uuid.uuid4().hex[:8]}", connection=connection, serializer=JSONSerializer)
    killed_at = time.time()
    job = queue.enqueue(fail_first_attempt, 0.5, retry=Retry(max=1))
    with FirstStarts(redis_server.url) as starts:
        starts.add(job.id, killed_at)
        _drain(connection, queue)
        starts.wait(until=time.time() + 5)
        measured = starts.seconds()
    first, second = (float(t) for t in connection.lrange(STARTS_KEY, 0, -1))  # RQ's started_at of each run
    latest = Job.fetch(job.id, connection=connection, serializer=JSONSerializer).started_at
    assert latest is not None and abs(latest.timestamp() - second) < 0.001  # RQ keeps only the retry's start ...
    assert second - first > 0.4
    assert measured[0] is not None and abs(measured[0] - (first - killed_at)) < 0.002, (measured, first - killed_at)
    # ... which a reading after the fact would have taken


def test_a_job_not_started_since_its_kill_reads_none(redis_server):
    connection = redis.Redis.from_url(redis_server.url)
    queue = Queue(f"test-first-starts-{uuid.uuid4().hex[:8]}", connection=connection, serializer=JSONSerializer)
    job = queue.enqueue(fail_first_attempt, 0.0)  # no Retry: it runs once, before the kill below
    _drain(connection, queue)
    with FirstStarts(redis_server.url) as starts:
        starts.add(job.id, time.time())
        starts.add("no-such-job", time.time())
        starts.wait(until=time.time() + 0.5)
        assert starts.seconds() == [None, None]
