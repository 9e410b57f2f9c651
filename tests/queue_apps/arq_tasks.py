"""arq jobs and worker settings for the arq adapter's tests, run with arq's own interpreter (a venv of its own: arq
0.28 pins redis-py < 6): `python -m arq tests.queue_apps.arq_tasks.WorkerSettings` runs a worker; `python -m
tests.queue_apps.arq_tasks JOB COUNT [DEFER_S]` enqueues COUNT jobs. The broker from BROKER_URL."""

from __future__ import annotations

import asyncio
import os
import sys
from typing import Any

from arq import Retry, create_pool
from arq.connections import RedisSettings

QUEUE = "arq:queue"
REDIS = RedisSettings.from_dsn(os.environ.get("BROKER_URL", "redis://127.0.0.1:6379/0"))


async def nap(ctx: dict[str, Any], seconds: float) -> float:
    await asyncio.sleep(seconds)
    return seconds


async def postpone(ctx: dict[str, Any]) -> None:
    """Asks to be run again in a minute: a retry waiting for its time."""
    raise Retry(defer=60)


class WorkerSettings:
    functions = [nap, postpone]
    redis_settings = REDIS
    max_jobs = 2


async def enqueue(job: str, count: int, defer_s: float) -> None:
    pool = await create_pool(REDIS)
    args = (0.5,) if job == "nap" else ()
    for _ in range(count):
        await pool.enqueue_job(job, *args, _defer_by=defer_s or None)
    await pool.aclose()


if __name__ == "__main__":
    asyncio.run(enqueue(sys.argv[1], int(sys.argv[2]), float(sys.argv[3]) if len(sys.argv) > 3 else 0.0))
