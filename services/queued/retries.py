"""Retries on time: a failed job runs again when its backoff is over, not up to two seconds off, and its worker is
free meanwhile.

RQ schedules a retry with an interval on the queue's scheduled registry (Job.retry, rq/job.py:1790-1799), scored in
whole seconds (the datetime goes through calendar.timegm, and the scheduler compares with current_timestamp(), an int:
rq/scheduler.py:239-244), and its scheduler looks once a second (rq/scheduler.py:355). A 1 s backoff became 0-2 s, and
the campaigns that needed a retry were the queued design's completion tail (issue #17: completion P99 1,278 ms at 15/s
against inline's 1,130 ms, whose retries sleep exactly their backoff). Sleeping the backoff in the worker instead keeps
it exact but holds the worker: measured in the chaos experiment's provider-failures fault (50% of calls fail), four
workers held in backoffs drained 46 of 600 campaigns in 150 s.

So OffpathJob.retry keeps RQ's accounting (retries_left, the SCHEDULED status, the job saved in the failure's
transaction) but files a retry with an interval on a sorted set of its own, scored with the exact time it is due; the
process holding the queue's watch (services/queued/liveness.py) moves each due job to the front of the queue within
milliseconds of its time (move_due_retries). A retry without an interval is RQ's: enqueued at once.
"""

from __future__ import annotations

import time

from redis import Redis
from redis.client import Pipeline
from rq import Queue
from rq.exceptions import NoSuchJobError
from rq.job import Job, JobStatus
from rq.serializers import JSONSerializer

from foundation.redis_replies import text

RETRYING_KEY = "offpath:retrying:{queue}"  # job id -> the time (epoch seconds) its retry is due
_BATCH = 100


def retrying_key(queue_name: str) -> str:
    return RETRYING_KEY.format(queue=queue_name)


class OffpathJob(Job):
    """RQ's Job, with retries filed for the exact time they are due (the module docstring says why)."""

    def retry(self, queue: Queue, pipeline: Pipeline) -> None:
        interval = self.get_retry_interval()
        if not interval:
            super().retry(queue, pipeline)
            return
        assert self.retries_left
        self.retries_left -= 1
        self.set_status(JobStatus.SCHEDULED, pipeline=pipeline)
        self.save(pipeline=pipeline)
        pipeline.zadd(retrying_key(queue.name), {self.id: time.time() + interval})


def move_due_retries(redis: Redis, queue: Queue) -> float | None:
    """Enqueue at the front of `queue` every job whose retry is due; return the seconds until the next one is (None:
    none is waiting). Only one process at a time calls this for a queue (the watch's holder), so a job is moved once."""
    key = retrying_key(queue.name)
    due = redis.zrangebyscore(key, "-inf", time.time(), start=0, num=_BATCH)
    for raw_id in due:
        job_id = text(raw_id)
        try:
            job = OffpathJob.fetch(job_id, connection=redis, serializer=JSONSerializer)
        except NoSuchJobError:
            redis.zrem(key, job_id)  # expired or deleted meanwhile: nothing to run
            continue
        with redis.pipeline(transaction=True) as pipe:
            pipe.zrem(key, job_id)
            queue._enqueue_job(job, pipeline=pipe, at_front=True)  # what RQ's scheduler does with a due job
            pipe.execute()
    if len(due) == _BATCH:
        return 0.0
    following = redis.zrange(key, 0, 0, withscores=True)
    return max(0.0, float(following[0][1]) - time.time()) if following else None
