"""The queued design's Celery app and its one task, configured as a careful engineer would on a Redis broker: JSON
messages, acknowledged late (after the task ran, so a worker that dies mid-task leaves it to another), a visibility
timeout past the longest retry wait, provider failures retried with exponential backoff.

    celery -A summaries.tasks worker --pool solo
"""

from __future__ import annotations

import json
import os
from typing import Any

from celery import Celery, Task

from summaries import store
from summaries.work import Document, ProviderError, summarize

QUEUE = "summaries"

celery = Celery("summaries", broker=os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"))
celery.conf.update(
    task_serializer="json",
    accept_content=["json"],
    task_default_queue=QUEUE,
    task_acks_late=True,
    # A worker killed mid-task (OOM, SIGKILL): the task goes back to the queue instead of being acknowledged.
    task_reject_on_worker_lost=True,
    # One task reserved per worker process: a long task does not hold others hostage behind it.
    worker_prefetch_multiplier=1,
    # A task taken and not acknowledged within this long is given to another worker (kombu's Redis transport); it
    # must exceed the longest run plus the longest retry countdown, which the worker holds unacknowledged.
    broker_transport_options={"visibility_timeout": 120},
    # The app keeps each task's record itself (summaries/store.py): no result backend.
    task_ignore_result=True,
    broker_connection_retry_on_startup=True,
    worker_hijack_root_logger=False,
)


class SummaryTask(Task):
    """Keeps the task's record in step with Celery: RETRY while a retry waits for its countdown, FAILURE when Celery
    gives up (retries exhausted, or an error not retried)."""

    def on_retry(self, exc: BaseException, task_id: str, args: Any, kwargs: Any, einfo: Any) -> None:
        store.update_task(args[0], state="RETRY")

    def on_failure(self, exc: BaseException, task_id: str, args: Any, kwargs: Any, einfo: Any) -> None:
        store.update_task(args[0], state="FAILURE", finished_at=store.now_iso(), error=str(exc))


@celery.task(bind=True, base=SummaryTask, name="summaries.summarize", autoretry_for=(ProviderError,),
             max_retries=3, retry_backoff=1, retry_backoff_max=8, retry_jitter=False)
def summarize_task(self: Task, task_id: str) -> None:
    record = store.load_task(task_id)
    if record is None:
        return  # the record expired: nobody is waiting for this summary any more
    if record["state"] == "SUCCESS":
        return  # delivered again after it was done (a worker lost before its acknowledgement)
    # started_at is the first start: queued_at -> started_at is the time it waited in the queue, started_at ->
    # finished_at the time it took to run, its retries included.
    store.update_task(task_id, state="STARTED", **({"started_at": store.now_iso()} if "started_at" not in record
                                                   else {}))
    summary = summarize(Document.parse(json.loads(record["document"])), self.request.retries)
    with store.connection().pipeline(transaction=True) as pipe:
        store.save_summary(summary, pipe)
        pipe.hset(store.task_key(task_id), mapping={"state": "SUCCESS", "finished_at": store.now_iso(),
                                                    "result": json.dumps(summary)})
        pipe.execute()
