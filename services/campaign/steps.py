"""A step's writes around the slow work, as a queued design's worker makes them: begin (the status transition, the
check that the step's outcome is not recorded yet, and taking the step, in one round trip), then the outcome recorded
with its side-effect count in one script, or the campaign failed.

The fence: each begin makes its delivery the step's *owner* (the campaign's `owner` field, the attempt number it
counted), and an outcome is written only by the step's owner, checked inside the script that writes it. A delivery
stops owning its step when another one begins it (its job ran again) or when its job is declared abandoned (RQ's
abandonment watch clears the owner in the same transaction: services/queued/liveness.py). So a worker that was taken
for dead (frozen by SIGSTOP or a swap storm for longer than the watch's threshold) and wakes records nothing: not its
outcome, not its side-effect count, not the next job. Its outcome is refused and logged (FENCED_KEY), and the step is
left to the delivery that owns it. The same check closes Celery's and Dramatiq's window of two copies of one message
running at once (their admission modules say how a crash makes one): the copy that began last records, the other one
is refused.

Synchronous, over redis-py's sync client: a worker performs one job at a time, so an event loop buys it no
concurrency around these writes, and redis-py's asyncio client costs about 2.4 times the CPU of the sync one per round
trip (measured here: 225 µs against 94 µs for a Lua call plus a MULTI/EXEC of two writes), which was most of what
offpath's job bodies added to RQ's own cost per job (issue #17). The slow work itself stays async
(services/campaign/work.py) and runs in the worker's event loop between these writes. The transitions are the store's
(services/campaign/store.py): same allowed moves, same arguments.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from redis import Redis
from redis.client import Pipeline
from redis.exceptions import ResponseError

from services.campaign.schema import CampaignRequest, Status
from services.campaign.store import (
    TRANSITION_LUA,
    campaign_key,
    encode,
    executions_key,
    raise_transition_error,
    transition_args,
)

__all__ = ["FENCED_KEY", "OWNER_FIELD", "StepStart", "StepStore"]

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
redis.call('HSET', KEYS[1], 'owner', attempt)
return {redis.call('HGET', KEYS[1], 'request'), attempt}
"""

# The field naming the delivery that owns the campaign's current step (the attempt number its begin counted).
OWNER_FIELD = "owner"
# Every outcome the fence refused, newest first (the last 10,000: OUTCOME_LUA's LTRIM): what the chaos audit counts.
FENCED_KEY = "offpath:fenced-outcomes"

# A step's outcome, written only by the step's owner (ARGV[1]); otherwise nothing is written but the refusal, logged on
# KEYS[3] (ARGV[2]), and the script returns 0. Then, each list after its length: the status move (ARGV[3], '' for none,
# then the statuses it may come from, as transition_args gives them), the fields to set (pairs; a `?` before a name:
# only where not set yet), the side-effect counts (pairs, onto KEYS[2]), and the commands the caller buffered to commit
# with the outcome (each one's length, then its words): the next job, as its queue library writes it. A script, not a
# MULTI, because the fence decides whether any of those writes happen, and a MULTI cannot branch; it is one round trip,
# as the MULTI was. Nothing is written before every check has passed.
OUTCOME_LUA = """
local current = redis.call('HGET', KEYS[1], 'status')
if not current then return redis.error_reply('unknown campaign') end
if redis.call('HGET', KEYS[1], 'owner') ~= ARGV[1] then
  redis.call('LPUSH', KEYS[3], ARGV[2])
  redis.call('LTRIM', KEYS[3], 0, 9999)
  return 0
end
local to = ARGV[3]
local i = 5 + tonumber(ARGV[4])
if to ~= '' then
  local allowed = false
  for j = 5, i - 1 do
    if ARGV[j] == current then allowed = true end
  end
  if not allowed then return redis.error_reply('illegal transition from ' .. current .. ' to ' .. to) end
  redis.call('HSET', KEYS[1], 'status', to)
end
local fields = tonumber(ARGV[i])
for j = i + 1, i + 2 * fields, 2 do
  if string.sub(ARGV[j], 1, 1) == '?' then
    redis.call('HSETNX', KEYS[1], string.sub(ARGV[j], 2), ARGV[j + 1])
  else
    redis.call('HSET', KEYS[1], ARGV[j], ARGV[j + 1])
  end
end
i = i + 1 + 2 * fields
local effects = tonumber(ARGV[i])
for j = i + 1, i + 2 * effects, 2 do
  redis.call('HINCRBY', KEYS[2], ARGV[j], ARGV[j + 1])
end
i = i + 1 + 2 * effects
local commands = tonumber(ARGV[i])
i = i + 1
for _ = 1, commands do
  local words = tonumber(ARGV[i])
  redis.call(unpack(ARGV, i + 1, i + words))
  i = i + 1 + words
end
return 1
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
        self._outcome = redis.register_script(OUTCOME_LUA)

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
        self, campaign_id: str, owner: int, effect: str, fields: dict[str, Any], also: Callable[[Pipeline, str], None]
    ) -> bool:
        """Count one execution of a side effect, store what it produced and whatever `also` buffers (the next job), in
        one script: the record, the outcome and what follows from them exist together or not at all, and only if the
        delivery that began the step as attempt `owner` still owns it. False: it does not, nothing was written."""
        return self._write_outcome(campaign_id, owner, ["", 0], fields, {effect: 1}, self._buffered(also, campaign_id))

    def finish(self, campaign_id: str, owner: int, to: Status, fields: dict[str, Any], executions: dict[str, int]
               ) -> bool:
        """Write a campaign's final status and its side-effect counts in one round trip, if the delivery that began
        the step as attempt `owner` still owns it (False: it does not, nothing was written)."""
        return self._write_outcome(campaign_id, owner, transition_args(to), fields, executions, [])

    def _write_outcome(self, campaign_id: str, owner: int, move: list[str | int], fields: dict[str, Any],
                       effects: dict[str, int], commands: list[tuple[Any, ...]]) -> bool:
        refusal = json.dumps({"campaign": campaign_id, "attempt": owner, "effects": sorted(effects), "at": time.time()})
        args: list[Any] = [owner, refusal, *move, len(fields)]
        for name, value in fields.items():
            args += [name, encode(value)]
        args.append(len(effects))
        for name, count in effects.items():
            args += [name, count]
        args.append(len(commands))
        for command in commands:
            args += [len(command), *command]
        try:
            # The Script object: after a Redis restart emptied the script cache, it loads the script and runs it again
            # (nothing was written by the call that failed).
            written = self._outcome(keys=[campaign_key(campaign_id), executions_key(campaign_id), FENCED_KEY],
                                    args=args)
        except ResponseError as exc:
            raise_transition_error(campaign_id, exc)
        return bool(written)

    def _buffered(self, also: Callable[[Pipeline, str], None], campaign_id: str) -> list[tuple[Any, ...]]:
        """The commands `also` buffers onto a transaction (RQ's writes of the next job: Queue.enqueue_many with a
        pipeline only adds commands to it, services/queued/enqueue.py), taken from the pipeline unsent, so that the
        outcome script makes them behind its fence."""
        with self.redis.pipeline(transaction=True) as pipe:
            pipe.multi()  # open, as RQ expects a caller's transaction to be
            also(pipe, campaign_id)
            return [args for args, _options in pipe.command_stack]

    def fail(self, campaign_id: str, error: BaseException) -> None:
        """Mark the campaign `failed`, saying why: its last attempt failed."""
        fields = {"failed_at": time.time(), "last_error": f"{type(error).__name__}: {error}"}
        try:
            self._transition(keys=[campaign_key(campaign_id)], args=transition_args(Status.failed, fields))
        except ResponseError as exc:
            raise_transition_error(campaign_id, exc)

