"""A Celery app as a careful engineer configures one on Redis (JSON, late acks, one task prefetched), for the Celery
adapter's tests: `python -m celery -A tests.queue_apps.celery_tasks worker`, the broker from BROKER_URL."""

from __future__ import annotations

import os
import time

from celery import Celery

QUEUE = "jobs"

app = Celery("offpath_test", broker=os.environ.get("BROKER_URL", "redis://127.0.0.1:6379/0"))
app.conf.update(task_serializer="json", accept_content=["json"], task_acks_late=True, worker_prefetch_multiplier=1,
                task_default_queue=QUEUE, broker_transport_options={"visibility_timeout": 300},
                worker_hijack_root_logger=False)


@app.task(name="nap")
def nap(seconds: float) -> float:
    time.sleep(seconds)
    return seconds


@app.task(name="fail")
def fail() -> None:
    raise RuntimeError("this task always fails")
