"""A step's writes around the slow work, as a queued design's worker makes them: begin (the status transition and the
check that the step's outcome is not recorded yet, in one round trip), then the outcome recorded with its side-effect
count in one transaction, or the campaign failed.

Synchronous, over redis-py's sync client: a worker performs one job at a time, so an event loop buys it no
concurrency around these writes, and redis-py's asyncio client costs about 2.4 times the CPU of the sync one per round
trip (measured here: 225 µs against 94 µs for a Lua call plus a MULTI/EXEC of two writes), which was most of what
offpath's job bodies added to RQ's own cost per job (issue #17). The slow work itself stays async
(services/campaign/work.py) and runs in the worker's event loop between these writes. The transitions are the store's
(services/campaign/store.py): same allowed moves, same compare-and-set script, same arguments.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from redis import Redis
from redis.client import Pipeline
from redis.exceptions import NoScriptError, ResponseError

from services.campaign.schema import CampaignRequest, Status
from services.campaign.store import (
    TRANSITION_LUA,
    campaign_key,
    encode,
    executions_key,
    raise_transition_error,
    transition_args,
)

__all__ = ["StepStart", "StepStore"]

# TRANSITION_LUA's move (ARGV[2..] are its arguments: transition_args), unless the field named by ARGV[1], which the
# step writes with its outcome, is set already: then nothing changes and the script returns false, so a step delivered
# again after its outcome was recorded neither runs nor counts another attempt. Otherwise it returns what the step
# works on: the request, and the number of this attempt (the counter the move increments).
BEGIN_LUA = """
local current = redis.call('HGET', KEYS[1], 'status')
if not current then return redis.error_reply('unknown campaign') end
if ARGV[1] ~= '' and redis.call('HEXISTS', KEYS[1], ARGV[1]) == 1 then return false end
local allowed = false
for i = 4, 3 + tonumber(ARGV[3]) do
  if ARGV[i] == current then allowed = true end
end
if not allowed then return redis.error_reply('illegal transition from ' .. current .. ' to ' .. ARGV[2]) end
redis.call('HSET', KEYS[1], 'status', ARGV[2])
for i = 4 + tonumber(ARGV[3]), #ARGV, 2 do
  if string.sub(ARGV[i], 1, 1) == '?' then
    redis.call('HSETNX', KEYS[1], string.sub(ARGV[i], 2), ARGV[i + 1])
  else
    redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1])
  end
end
local attempt = redis.call('HINCRBY', KEYS[1], 'attempts', 1)
return {redis.call('HGET', KEYS[1], 'request'), attempt}
"""


@dataclass(frozen=True)
class StepStart:
    """What a step works on, read as it began: the campaign's request and the number of this attempt (1-based, over
    all of the campaign's steps, as the inline design counts them)."""

    request: CampaignRequest
    attempt: int


class StepStore:
    """The campaign writes of a worker's steps, each one round trip."""

    def __init__(self, redis: Redis):
        self.redis = redis
        # Script objects reload themselves when Redis lost its script cache (a restart): EVALSHA, NOSCRIPT, SCRIPT LOAD.
        self._begin = redis.register_script(BEGIN_LUA)
        self._transition = redis.register_script(TRANSITION_LUA)

    def begin(self, campaign_id: str, to: Status, done: str, first_only: dict[str, Any] | None = None) -> StepStart | None:
        """Start an attempt: move the campaign to the working status `to` and count the attempt, setting `first_only`
        fields where not set yet; or, when the field `done` is set (the step's outcome was recorded by an earlier
        delivery), change nothing and return None. Raises IllegalTransition (e.g. the campaign failed meanwhile)."""
        try:
            started = self._begin(keys=[campaign_key(campaign_id)],
                                  args=[done, *transition_args(to, first_only=first_only)])
        except ResponseError as exc:
            raise_transition_error(campaign_id, exc)
        if started is None:
            return None
        request, attempt = started
        return StepStart(CampaignRequest.model_validate_json(request), int(attempt))

    def record_outcome(
        self, campaign_id: str, effect: str, fields: dict[str, Any], also: Callable[[Pipeline, str], None]
    ) -> None:
        """Count one execution of a side effect, store what it produced and whatever `also` buffers (the next job), in
        one MULTI/EXEC: the record, the outcome and what follows from them exist together or not at all."""
        with self.redis.pipeline(transaction=True) as pipe:
            pipe.multi()  # explicit, so RQ (buffering onto this pipeline) sees the transaction open
            pipe.hincrby(executions_key(campaign_id), effect, 1)
            pipe.hset(campaign_key(campaign_id), mapping={k: encode(v) for k, v in fields.items()})
            also(pipe, campaign_id)
            pipe.execute()

    def finish(self, campaign_id: str, to: Status, fields: dict[str, Any], executions: dict[str, int]) -> None:
        """Write a campaign's final status and its side-effect counts in one round trip (as CampaignStore.finish)."""
        args = transition_args(to, fields)
        with self.redis.pipeline(transaction=True) as pipe:
            # EVALSHA, not the Script object: in a pipeline redis-py would first ask SCRIPT EXISTS, a round trip more.
            pipe.evalsha(self._transition.sha, 1, campaign_key(campaign_id), *args)
            for effect, count in executions.items():
                pipe.hincrby(executions_key(campaign_id), effect, count)
            results = pipe.execute(raise_on_error=False)
        if isinstance(results[0], NoScriptError):
            # Redis lost its script cache (a restart): the counts above were applied, the status was not.
            self._transition(keys=[campaign_key(campaign_id)], args=args)
        elif isinstance(results[0], Exception):
            raise_transition_error(campaign_id, results[0])

    def fail(self, campaign_id: str, error: BaseException) -> None:
        """Mark the campaign `failed`, saying why: its last attempt failed."""
        fields = {"failed_at": time.time(), "last_error": f"{type(error).__name__}: {error}"}
        try:
            self._transition(keys=[campaign_key(campaign_id)], args=transition_args(Status.failed, fields))
        except ResponseError as exc:
            raise_transition_error(campaign_id, exc)
