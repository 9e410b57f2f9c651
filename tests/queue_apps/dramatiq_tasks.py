"""Dramatiq actors on a RedisBroker, for the Dramatiq adapter's tests: `python -m dramatiq
tests.queue_apps.dramatiq_tasks`, the broker from BROKER_URL."""

from __future__ import annotations

import os
import time

import dramatiq
from dramatiq.brokers.redis import RedisBroker

QUEUE = "jobs"

dramatiq.set_broker(RedisBroker(url=os.environ.get("BROKER_URL", "redis://127.0.0.1:6379/0")))


@dramatiq.actor(queue_name=QUEUE, actor_name="nap", max_retries=0)
def nap(seconds: float) -> None:
    time.sleep(seconds)


@dramatiq.actor(queue_name=QUEUE, actor_name="fail", max_retries=0)
def fail() -> None:
    raise RuntimeError("this actor always fails")
