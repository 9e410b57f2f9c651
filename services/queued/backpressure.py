"""Backpressure for the queued design: shed new campaigns with 503 + Retry-After once the backlog
passes a bound, instead of acknowledging work the workers cannot reach for minutes.

The depth is sampled every 100 ms by one background task rather than read per request: a read per
request would add a Redis round trip to the ack path, and a bound is a bound to within 100 ms.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from redis.asyncio import Redis
from redis.exceptions import RedisError

log = logging.getLogger("offpath.backpressure")

SAMPLE_INTERVAL_S = 0.1


class BacklogGauge:
    def __init__(self, redis: Redis, queue_key: str, bound: int):
        self.redis = redis
        self.queue_key = queue_key
        self.bound = bound  # 0: no bound
        self.depth = 0
        self._task: asyncio.Task | None = None

    def over_bound(self) -> bool:
        return self.bound > 0 and self.depth >= self.bound

    def retry_after_s(self, drain_rate_per_s: float = 100.0) -> int:
        """A hint for clients: how long the excess takes to drain at a modest rate, 1..30 s."""
        excess = max(self.depth - self.bound, 0)
        return int(min(max(1.0, excess / drain_rate_per_s), 30.0))

    async def start(self) -> None:
        if self.bound > 0:
            await self._sample()
            self._task = asyncio.create_task(self._run(), name="backlog-gauge")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _sample(self) -> None:
        self.depth = int(await self.redis.llen(self.queue_key))

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(SAMPLE_INTERVAL_S)
            try:
                await self._sample()
            except RedisError as exc:  # admission itself will answer 503 while Redis is away
                log.debug("backlog sample failed: %s", exc)
