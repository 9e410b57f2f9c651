"""The campaign state store in Redis: admission (with idempotency), explicit status transitions, reads.

What a status transition is (the allowed moves, the compare-and-set script and its arguments) is declared here once;
the queued design's workers make the same transitions over redis-py's sync client (services/campaign/steps.py)."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast

from redis.asyncio import Redis
from redis.asyncio.client import Pipeline
from redis.exceptions import NoScriptError, ResponseError, WatchError

from services.campaign.schema import Campaign, CampaignRequest, Status

KEY_PREFIX = "offpath:"

# The allowed moves. A status may move to itself: a retried step starts again.
TRANSITIONS: dict[Status, frozenset[Status]] = {
    # accepted -> completed: the inline design does all the work inside the request and writes
    # the outcome once, instead of paying a Redis round trip per intermediate status.
    Status.accepted: frozenset({Status.generating, Status.completed, Status.failed}),
    Status.generating: frozenset({Status.generating, Status.automating, Status.failed}),
    Status.automating: frozenset({Status.automating, Status.completed, Status.failed}),
    Status.completed: frozenset(),
    Status.failed: frozenset(),
}

# Compare-and-set on the status field, so two workers (or a worker and a late retry) can never
# move a campaign backwards or out of a final state. Returns the previous status, or an error.
TRANSITION_LUA = """
local current = redis.call('HGET', KEYS[1], 'status')
if not current then return redis.error_reply('unknown campaign') end
local allowed = false
for i = 3, 2 + tonumber(ARGV[2]) do
  if ARGV[i] == current then allowed = true end
end
if not allowed then return redis.error_reply('illegal transition from ' .. current .. ' to ' .. ARGV[1]) end
local first_field = 3 + tonumber(ARGV[2])
redis.call('HSET', KEYS[1], 'status', ARGV[1])
for i = first_field, #ARGV, 2 do
  if string.sub(ARGV[i], 1, 1) == '?' then
    redis.call('HSETNX', KEYS[1], string.sub(ARGV[i], 2), ARGV[i + 1])
  else
    redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1])
  end
end
if ARGV[1] == 'generating' or ARGV[1] == 'automating' then
  redis.call('HINCRBY', KEYS[1], 'attempts', 1)
end
return current
"""


class IdempotencyConflict(Exception):
    """The Idempotency-Key was used before with a different body."""


class UnknownCampaign(KeyError):
    pass


class IllegalTransition(RuntimeError):
    pass


@dataclass(frozen=True)
class Admission:
    campaign_id: str
    created: bool  # False: an idempotent repeat of an earlier request
    accepted_at: float = 0.0


def campaign_key(campaign_id: str) -> str:
    return f"{KEY_PREFIX}campaign:{campaign_id}"


def executions_key(campaign_id: str) -> str:
    return f"{KEY_PREFIX}executions:{campaign_id}"


def idempotency_record_key(key: str) -> str:
    return f"{KEY_PREFIX}idempotency:{key}"


def new_campaign_id() -> str:
    return uuid.uuid4().hex


class CampaignStore:
    def __init__(self, redis: Redis, idempotency_ttl_s: int = 24 * 3600):
        self.redis = redis
        self.idempotency_ttl_s = idempotency_ttl_s
        self._transition = redis.register_script(TRANSITION_LUA)

    async def prepare(self) -> None:
        """Load the Lua scripts once, so pipelines can call them by SHA."""
        await self.redis.script_load(TRANSITION_LUA)

    async def admit(
        self,
        request: CampaignRequest,
        idempotency_key: str | None = None,
        also: Callable[[Pipeline, str], None] | None = None,
    ) -> Admission:
        """Persist a new campaign as `accepted`, plus whatever `also` buffers on the same
        transaction (the queued design's job enqueues), in one MULTI/EXEC: all or nothing."""
        campaign_id = new_campaign_id()
        if idempotency_key is None:
            async with self.redis.pipeline(transaction=True) as pipe:
                pipe.multi()  # explicit, so RQ (buffering onto this pipeline) sees a transaction already open
                accepted_at = self._buffer_new(pipe, campaign_id, request, also)
                await pipe.execute()
            return Admission(campaign_id, created=True, accepted_at=accepted_at)
        return await self._admit_once(request, idempotency_key, campaign_id, also)

    async def _admit_once(
        self,
        request: CampaignRequest,
        idempotency_key: str,
        campaign_id: str,
        also: Callable[[Pipeline, str], None] | None,
    ) -> Admission:
        key = idempotency_record_key(idempotency_key)
        fingerprint = request.fingerprint()
        async with self.redis.pipeline(transaction=True) as pipe:
            while True:
                try:
                    # WATCH makes the check-then-write atomic: a concurrent request with the same
                    # key aborts our EXEC, and the retry then sees its campaign.
                    await pipe.watch(key)
                    existing = await pipe.get(key)
                    if existing is not None:
                        await pipe.unwatch()
                        earlier_id, _, earlier_fingerprint = _decoded(existing).partition(" ")
                        if earlier_fingerprint != fingerprint:
                            raise IdempotencyConflict(idempotency_key)
                        return Admission(earlier_id, created=False)
                    pipe.multi()
                    pipe.set(key, f"{campaign_id} {fingerprint}", ex=self.idempotency_ttl_s)
                    accepted_at = self._buffer_new(pipe, campaign_id, request, also)
                    await pipe.execute()
                    return Admission(campaign_id, created=True, accepted_at=accepted_at)
                except WatchError:
                    continue

    @staticmethod
    def _buffer_new(
        pipe: Pipeline,
        campaign_id: str,
        request: CampaignRequest,
        also: Callable[[Pipeline, str], None] | None,
    ) -> float:
        accepted_at = time.time()
        pipe.hset(
            campaign_key(campaign_id),
            mapping={
                "status": Status.accepted.value,
                "request": request.model_dump_json(),
                "accepted_at": repr(accepted_at),
                "attempts": 0,
            },
        )
        if also is not None:
            also(pipe, campaign_id)
        return accepted_at

    async def transition(
        self, campaign_id: str, to: Status, fields: dict[str, Any] | None = None, first_only: dict[str, Any] | None = None
    ) -> Status:
        """Move a campaign to `to` if its current status allows it, setting `fields` alongside and
        `first_only` fields only where not set yet (started_at survives retries)."""
        try:
            previous = await self._transition(
                keys=[campaign_key(campaign_id)], args=transition_args(to, fields, first_only)
            )
        except ResponseError as exc:
            raise_transition_error(campaign_id, exc)
        return Status(previous.decode() if isinstance(previous, bytes) else previous)

    async def finish(
        self,
        campaign_id: str,
        to: Status,
        fields: dict[str, Any],
        executions: dict[str, int] | None = None,
    ) -> None:
        """Write a campaign's final status and its side-effect counts in one round trip."""
        args = transition_args(to, fields)
        async with self.redis.pipeline(transaction=True) as pipe:
            # EVALSHA, not the Script object: inside a pipeline redis-py would first ask SCRIPT EXISTS,
            # an extra round trip per campaign. prepare() loaded the script at startup.
            pipe.evalsha(self._transition.sha, 1, campaign_key(campaign_id), *args)
            for effect, count in (executions or {}).items():
                pipe.hincrby(executions_key(campaign_id), effect, count)
            results = await pipe.execute(raise_on_error=False)
        if isinstance(results[0], NoScriptError):
            # Redis lost its script cache (a restart): the counts above were applied, the status was not.
            await self._transition(keys=[campaign_key(campaign_id)], args=args)
        elif isinstance(results[0], Exception):
            raise_transition_error(campaign_id, results[0])

    async def get(self, campaign_id: str) -> Campaign | None:
        raw = await self.redis.hgetall(campaign_key(campaign_id))
        if not raw:
            return None
        # The client does not decode responses: keys and values are bytes.
        return campaign_from_hash(campaign_id, cast(dict[bytes, bytes], raw))

    async def ping(self) -> bool:
        return bool(await self.redis.ping())


def transition_args(
    to: Status, fields: dict[str, Any] | None = None, first_only: dict[str, Any] | None = None
) -> list[str | int]:
    """TRANSITION_LUA's arguments: the target, the statuses it may come from, then the fields to set (a `?` before a
    name: only where not set yet)."""
    allowed_from = [s.value for s, targets in TRANSITIONS.items() if to in targets]
    flat: list[str] = []
    for name, value in (fields or {}).items():
        flat += [name, encode(value)]
    for name, value in (first_only or {}).items():
        flat += ["?" + name, encode(value)]
    return [to.value, len(allowed_from), *allowed_from, *flat]


def raise_transition_error(campaign_id: str, exc: Exception) -> None:
    message = str(exc)
    if "unknown campaign" in message:
        raise UnknownCampaign(campaign_id) from exc
    if "illegal transition" in message:
        raise IllegalTransition(f"campaign {campaign_id}: {message}") from exc
    raise exc


def encode(value: Any) -> str:
    return value if isinstance(value, str) else repr(value)


def _opt_float(raw: dict[bytes, bytes], name: str) -> float | None:
    value = raw.get(name.encode())
    return float(value) if value is not None else None


def _decoded(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def campaign_from_hash(campaign_id: str, raw: dict[bytes, bytes]) -> Campaign:
    def text(name: str) -> str | None:
        value = raw.get(name.encode())
        return value.decode() if value is not None else None

    follow_ups = text("follow_ups_scheduled")
    return Campaign(
        id=campaign_id,
        status=Status(raw[b"status"].decode()),
        request=CampaignRequest.model_validate_json(raw[b"request"]),
        accepted_at=float(raw[b"accepted_at"]),
        started_at=_opt_float(raw, "started_at"),
        completed_at=_opt_float(raw, "completed_at"),
        failed_at=_opt_float(raw, "failed_at"),
        attempts=int(raw.get(b"attempts", b"0")),
        last_error=text("last_error"),
        content_digest=text("content_digest"),
        follow_ups_scheduled=int(follow_ups) if follow_ups is not None else None,
    )
