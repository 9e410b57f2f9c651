"""How a client learns a campaign's outcome without polling blind: the Retry-After hint on an unfinished campaign,
and the held GET (`GET /campaigns/{id}?wait=N`) that answers as soon as the campaign is final.

Both are part of the contract both designs share; the inline design simply never has a campaign to wait for
once its POST has answered.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import RedisError
from starlette.types import Receive

from services.campaign.profile import Profile
from services.campaign.schema import Status
from services.campaign.store import campaign_key

__all__ = ["FINAL", "MAX_RETRY_AFTER_S", "MAX_WAIT_S", "OutcomeWatch", "retry_after_s"]

log = logging.getLogger("offpath.outcome")

FINAL = frozenset({Status.completed, Status.failed})
# The longest a GET may be held. Below the usual 30-60 s idle timeouts of proxies and clients (Locust's is 60 s),
# so a held GET is never cut off by the path to the client instead of answering.
MAX_WAIT_S = 30.0
# Retry-After never tells a client to stay away longer than this: a hint, not a promise.
MAX_RETRY_AFTER_S = 30


def expected_work_s(profile: Profile, status: Status) -> float:
    """The profile's median time for the work a campaign in `status` still has ahead of it (CPU plus provider
    waits at their medians; the automation's calls run concurrently, so one wait counts)."""
    generation = profile.generation.cpu_ms + profile.generation.wait_median_ms
    automation = profile.automation.cpu_ms + profile.automation.wait_median_ms
    ahead = automation if status == Status.automating else generation + automation
    return ahead / 1000


def retry_after_s(profile: Profile, status: Status, accepted_at: float, now: float | None = None) -> int:
    """Whole seconds (RFC 9110 delay-seconds) a client should wait before asking about an unfinished campaign again.

    The service knows two things: what the work still costs by the profile, and how long the campaign has waited
    already. A campaign that has waited longer than its work takes is behind a backlog or a retry's backoff, and
    its wait so far is the best estimate of what is left: the hint is then half of it, so a client asks O(log T)
    times about a campaign that takes T, instead of T times, and learns the outcome at most ~50% late. At least 1
    (a shorter hint would be a busy poll), at most MAX_RETRY_AFTER_S."""
    waited = max((time.time() if now is None else now) - accepted_at, 0.0)
    estimate = max(expected_work_s(profile, status), waited / 2)
    return int(min(max(math.ceil(estimate), 1), MAX_RETRY_AFTER_S))


# One round trip answers for every campaign held: Redis compares each status itself and returns only the positions
# (1-based) of the campaigns that are final, or gone.
_IS_FINAL = " or ".join(f"status == '{status.value}'" for status in sorted(FINAL))
_FINAL_LUA = f"""
local done = {{}}
for i, key in ipairs(KEYS) do
  local status = redis.call('HGET', key, 'status')
  if not status or {_IS_FINAL} then done[#done + 1] = i end
end
return done
"""


@dataclass
class _Held:
    """A campaign some GETs are held for."""

    final: asyncio.Event
    since: float  # monotonic: when the first of its GETs started waiting
    waiters: int = 0


class OutcomeWatch:
    """Holds GETs until their campaign is final. While any GET waits, one task per service process reads the status
    of every campaign held, all in one round trip (a Lua script that returns only the final ones), and wakes the GETs
    whose campaign is final (or gone); with nothing held, the task ends and costs nothing.

    The reads come every tenth of the youngest hold's age so far, between MIN_READ_GAP_S and MAX_READ_GAP_S: a held
    GET is told at most MAX_READ_GAP_S after its campaign became final (a client polling every second, up to a
    second), and the process makes at most 1 / MIN_READ_GAP_S round trips a second however many GETs it holds. The
    round trip's fixed cost (~0.1 ms of the service's CPU, measured) is what bounds the rate: each campaign in it
    adds one HGET inside Redis.

    Why reads and not a notification: keyspace notifications need `CONFIG SET notify-keyspace-events` on the user's
    Redis (off by default, often refused by managed Redis, lost when it restarts) and make every hash write in the
    database publish an event, RQ's own included; a PUBLISH by the writer of a final status would need every writer
    (both designs, every worker) to take part.
    """

    MIN_READ_GAP_S = 0.1
    MAX_READ_GAP_S = 0.25

    def __init__(self, redis: Redis, min_read_gap_s: float = MIN_READ_GAP_S, max_read_gap_s: float = MAX_READ_GAP_S):
        self.redis = redis
        self.min_read_gap_s = min_read_gap_s
        self.max_read_gap_s = max_read_gap_s
        self._held: dict[str, _Held] = {}
        self._finals = redis.register_script(_FINAL_LUA)
        self._task: asyncio.Task[None] | None = None
        self.reads = 0  # round trips made, and the statuses they read: for whoever measures what holding costs
        self.keys_read = 0

    async def until_final(self, campaign_id: str, timeout_s: float, receive: Receive | None = None) -> bool:
        """Wait until the campaign is final (True), or `timeout_s` passed or the client went away (False). With
        `receive` (the request's ASGI receive), a client that disconnects ends its wait at once: a held GET
        nobody will read must not hold the server (and its shutdown) for the rest of its timeout."""
        held = self._held.get(campaign_id)
        if held is None:
            held = self._held[campaign_id] = _Held(asyncio.Event(), since=time.monotonic())
        held.waiters += 1
        if self._task is None:
            self._task = asyncio.create_task(self._watch(), name="outcome-watch")
        waits: set[asyncio.Future[Any]] = {asyncio.ensure_future(held.final.wait())}
        if receive is not None:
            waits.add(asyncio.ensure_future(_disconnected(receive)))
        try:
            await asyncio.wait(waits, timeout=timeout_s, return_when=asyncio.FIRST_COMPLETED)
            return held.final.is_set()
        finally:
            for waiting in waits:
                waiting.cancel()
            held.waiters -= 1
            if held.waiters <= 0:
                self._held.pop(campaign_id, None)

    def _gap_s(self) -> float:
        youngest = max((h.since for h in self._held.values()), default=time.monotonic())
        return min(max((time.monotonic() - youngest) / 10, self.min_read_gap_s), self.max_read_gap_s)

    async def _watch(self) -> None:
        try:
            while self._held:
                await asyncio.sleep(self._gap_s())
                ids = [i for i, h in self._held.items() if not h.final.is_set()]
                if ids:
                    await self._read(ids)
        finally:
            self._task = None

    async def _read(self, ids: list[str]) -> None:
        try:
            final = await self._finals(keys=[campaign_key(i) for i in ids])
        except RedisError as exc:
            # The waiters keep waiting; each answers from the store when its timeout ends (503 if Redis is still away).
            log.debug("status read for %d held GETs failed: %s", len(ids), exc)
            return
        self.reads += 1
        self.keys_read += len(ids)
        for position in final:
            held = self._held.get(ids[int(position) - 1])
            if held is not None:
                held.final.set()


async def _disconnected(receive: Receive) -> None:
    """Returns when the client has gone. A GET has no body: the first message is its (empty) request, the next one
    comes when the connection closes."""
    while (await receive())["type"] != "http.disconnect":
        pass
