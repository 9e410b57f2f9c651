"""Clients that go away mid-request and retry with the same Idempotency-Key: the chaos scenario checking that each
campaign ends consistent (completed, failed, or never created) and that the retry gets the same campaign.

Either design, asked the same way: the first POST goes out on a raw socket that is closed after a drawn delay
(inline: while the server does the slow work; queued: around admission), then the same request is retried, as a
client library would, until it names a campaign. Redis is then the ground truth for every key.
"""

from __future__ import annotations

import asyncio
import json
import math
import random
import re
import time
import uuid
from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import redis.asyncio as redis_async
from redis.exceptions import RedisError

from foundation.errors import ConfigurationError, HarnessError
from foundation.redis_replies import text
from loadtests.payloads import campaign_request
from services.campaign.schema import CampaignRequest
from services.campaign.store import campaign_key, executions_key, idempotency_record_key

__all__ = ["DisconnectResult", "disconnect_mid_request"]

# Clients in flight at once: enough that retries overlap first requests still running, few enough not to turn
# the scenario into an overload test (the inline service sheds past its in-flight limit, with 503s that are
# honoured but say nothing about disconnects).
CONCURRENCY = 16
# A retry's own bound, above the inline design's default request deadline (30 s): a retry that waits on slow work
# is not a retry that got no answer.
RETRY_TIMEOUT_S = 35.0
# The pause between a client's drop and its retry: a client's usual first backoff. It also lets the first request's
# admission finish on the server in all but overloaded cases, so that Redis can tell who created each campaign.
RETRY_BACKOFF_S = 0.2
# The pause after a retry that got no HTTP answer at all (refused, reset): the service may be restarting.
NO_ANSWER_PAUSE_S = 0.2
SETTLE_POLL_S = 0.1
MAX_EXAMPLES = 20
# Every this many-th client goes away while still sending its body: the server has nothing to act on, so the state
# must be "never created" until the retry creates the campaign. The others send the whole request first.
MID_BODY_EVERY = 4
KEY_PREFIX = "offpath-disconnect-"
# The key rides in the campaign's name, so every campaign created for a key can be found by scanning Redis.
_NAMED_KEY = re.compile(rb'"name":"[^"]* (' + KEY_PREFIX.encode() + rb'[0-9a-f]{32})"')
_SCAN_BATCH = 1000


@dataclass
class DisconnectResult:
    """What happened to `requested` campaigns whose first request's client went away (counts of campaigns)."""

    requested: int
    aborted: int = 0  # the client closed before any byte of an answer: the server saw it go away mid-request
    aborted_mid_body: int = 0  # ... of which while still sending the body (every MID_BODY_EVERY-th client)
    answered_before_abort: int = 0  # the answer began before the drawn delay: not a disconnect, still checked
    retried: int = 0  # retries that got an answer naming a campaign
    same_campaign: int = 0  # ... the campaign the first request had created
    created_by_retry: int = 0  # ... created by the retry: the first request had written nothing
    admitted_after_abort: int = 0  # aborted first requests whose campaign was admitted after the client had gone
    finished_after_abort: int = 0  # aborted first requests whose campaign became final after the client had gone
    completed: int = 0
    failed: int = 0
    pending: int = 0  # neither completed nor failed when settle_timeout_s ran out
    inconsistent: int = 0
    examples: list[str] = field(default_factory=list)  # up to MAX_EXAMPLES, "<Idempotency-Key>: <why>"
    retry_answers: dict[str, int] = field(default_factory=dict)  # every answer the retries got: status or error
    duration_s: float = 0.0

    @property
    def ok(self) -> bool:
        return self.inconsistent == 0 and self.pending == 0

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "ok": self.ok}


@dataclass
class _Client:
    """One campaign's story, from the client's side."""

    key: str
    body: bytes
    abort_after_s: float
    mid_body: bool = False  # goes away having sent only half of its body
    aborted: bool = False
    abort_at: float = 0.0  # wall clock, comparable with the campaign's timestamps (same machine)
    retry_sent_at: float = 0.0
    before_retry: str | None = None  # the campaign the idempotency record named when the retry was sent
    campaign_id: str | None = None  # the one the retry's answer named
    final_status: int = 0  # the HTTP status of that answer
    why_no_answer: str = ""
    answers: Counter[str] = field(default_factory=Counter)


def disconnect_mid_request(
    service_url: str,
    redis_url: str,
    count: int,
    abort_after_s: tuple[float, float],
    payload_seed: int,
    settle_timeout_s: float,
) -> DisconnectResult:
    """Send `count` campaigns, drop each first request after a delay drawn uniformly in `abort_after_s`, retry each
    with its Idempotency-Key (honouring 409 and 503 with Retry-After) for up to settle_timeout_s, then wait up to
    settle_timeout_s for the campaigns to be final and check each key in Redis."""
    host, port, path = _service_address(service_url)
    _check_arguments(redis_url, count, abort_after_s, payload_seed, settle_timeout_s)
    clients = _clients(count, abort_after_s, payload_seed)
    try:
        return asyncio.run(_scenario(host, port, path, redis_url, clients, settle_timeout_s))
    except RedisError as exc:
        raise HarnessError(f"Redis at {redis_url} failed during the disconnect scenario ({exc}); "
                           "nothing was checked") from exc


def _service_address(service_url: str) -> tuple[str, int, str]:
    parts = urlsplit(service_url)
    if parts.scheme != "http" or not parts.hostname:
        raise ConfigurationError(f"service URL {service_url!r} is not http://host:port (the raw client speaks HTTP/1.1)")
    try:
        port = parts.port or 80
    except ValueError:
        raise ConfigurationError(f"service URL {service_url!r} has no valid port") from None
    return parts.hostname, port, parts.path.rstrip("/") + "/campaigns"


def _check_arguments(
    redis_url: str, count: int, abort_after_s: tuple[float, float], payload_seed: int, settle_timeout_s: float
) -> None:
    if urlsplit(redis_url).scheme not in ("redis", "rediss", "unix"):
        raise ConfigurationError(f"Redis URL {redis_url!r} is not redis://, rediss:// or unix://")
    if isinstance(count, bool) or not isinstance(count, int) or count < 1:
        raise ConfigurationError(f"count {count!r} is not a whole number of campaigns >= 1")
    if (not isinstance(abort_after_s, tuple) or len(abort_after_s) != 2
            or not all(_finite(v) and v >= 0 for v in abort_after_s) or abort_after_s[0] > abort_after_s[1]):
        raise ConfigurationError(f"abort_after_s {abort_after_s!r} is not a (low, high) pair of seconds, 0 <= low <= high")
    if isinstance(payload_seed, bool) or not isinstance(payload_seed, int):
        raise ConfigurationError(f"payload_seed {payload_seed!r} is not a whole number")
    if not _finite(settle_timeout_s) or settle_timeout_s <= 0:
        raise ConfigurationError(f"settle_timeout_s {settle_timeout_s!r} is not a positive number of seconds")


def _finite(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _clients(count: int, abort_after_s: tuple[float, float], payload_seed: int) -> list[_Client]:
    """Valid, varied bodies from the load generator's own factory, each named after its fresh key; the delays are
    drawn from the seed too. Keys are random: a rerun on the same Redis must not find the last run's campaigns."""
    bodies = random.Random(f"offpath-disconnect:{payload_seed}")
    delays = random.Random(f"offpath-disconnect-delays:{payload_seed}")
    clients = []
    for number in range(count):
        key = f"{KEY_PREFIX}{uuid.uuid4().hex}"
        request = campaign_request(bodies, number)
        named = request.model_copy(update={"name": f"{request.name} {key}"}).model_dump_json(exclude_none=True)
        body = CampaignRequest.model_validate_json(named).model_dump_json(exclude_none=True).encode()
        clients.append(_Client(key=key, body=body, abort_after_s=delays.uniform(*abort_after_s),
                               mid_body=number % MID_BODY_EVERY == MID_BODY_EVERY - 1))
    return clients


async def _scenario(
    host: str, port: int, path: str, redis_url: str, clients: list[_Client], settle_timeout_s: float
) -> DisconnectResult:
    started = time.monotonic()
    redis = redis_async.Redis.from_url(redis_url, socket_timeout=5, socket_connect_timeout=5)
    limit = asyncio.Semaphore(CONCURRENCY)
    try:
        async with aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=CONCURRENCY),
            timeout=aiohttp.ClientTimeout(total=RETRY_TIMEOUT_S),
        ) as session:

            async def one(client: _Client) -> None:
                async with limit:
                    await _first_request(host, port, path, client)
                    await asyncio.sleep(RETRY_BACKOFF_S)
                    await _retry(session, f"http://{host}:{port}{path}", redis, client, settle_timeout_s)

            await asyncio.gather(*(one(client) for client in clients))
        result = await _check(redis, clients, settle_timeout_s)
    finally:
        await redis.aclose()
    result.duration_s = round(time.monotonic() - started, 3)
    return result


async def _first_request(host: str, port: int, path: str, client: _Client) -> None:
    """Send the request (the whole of it, or half its body), wait the drawn delay for an answer, and close. A plain
    close (FIN), the way a client that times out or exits goes away; the server sees the disconnect whether or not
    its work has finished."""
    try:
        reader, writer = await asyncio.open_connection(host, port)
    except OSError as exc:
        raise HarnessError(f"the service at http://{host}:{port} refused a connection ({exc}); is it running?") from exc
    head = (f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: application/json\r\n"
            f"Idempotency-Key: {client.key}\r\nContent-Length: {len(client.body)}\r\nConnection: close\r\n\r\n")
    writer.write(head.encode() + (client.body[:len(client.body) // 2] if client.mid_body else client.body))
    await writer.drain()
    try:
        async with asyncio.timeout(client.abort_after_s):
            await reader.read(1)
    except TimeoutError:
        client.aborted = True
    client.abort_at = time.time()
    writer.close()
    try:
        await writer.wait_closed()
    except OSError:
        pass  # a reset: the server's answer arrived after the close, which is the point


async def _retry(
    session: aiohttp.ClientSession, url: str, redis: redis_async.Redis, client: _Client, bound_s: float
) -> None:
    """Repeat the request with the same key until an answer names a campaign, or bound_s passes."""
    existing = await redis.get(idempotency_record_key(client.key))
    client.before_retry = _record_campaign(existing)
    client.retry_sent_at = time.time()
    deadline = time.monotonic() + bound_s
    headers = {"Content-Type": "application/json", "Idempotency-Key": client.key}
    while True:
        pause_s = NO_ANSWER_PAUSE_S
        try:
            async with session.post(url, data=client.body, headers=headers) as response:
                answer = await response.text()
                client.answers[str(response.status)] += 1
                campaign_id = _named_campaign(answer)
                if campaign_id is not None and (response.status < 300 or response.status in (502, 504)):
                    # 502/504: the inline design's failed campaign, still named.
                    client.campaign_id, client.final_status = campaign_id, response.status
                    return
                retry_after = response.headers.get("Retry-After")
                if response.status not in (409, 503) or retry_after is None:
                    client.why_no_answer = f"the retry was answered {response.status}: {answer[:120]}"
                    return
                pause_s = float(retry_after) if retry_after.isdigit() else 1.0  # an HTTP date: not ours to parse
                client.why_no_answer = f"still told to retry after {bound_s:g} s ({response.status})"
        except (aiohttp.ClientError, TimeoutError) as exc:
            client.answers[type(exc).__name__] += 1
            client.why_no_answer = f"no answer to the retry within {bound_s:g} s ({type(exc).__name__})"
        remaining_s = deadline - time.monotonic()
        if remaining_s <= 0:
            return
        await asyncio.sleep(min(pause_s, remaining_s))


def _made_by_first_request(client: _Client, accepted_at: float) -> bool:
    """Whether the campaign the retry got is the first request's: it existed when the retry went out (the record
    named it, or it was accepted before), or the retry was told it repeated a request (409: still running; 200: a
    repeat of a finished one). Otherwise nothing existed for the key when the retry went out: the retry made it."""
    existed = client.before_retry == client.campaign_id or 0 < accepted_at < client.retry_sent_at
    return existed or client.answers["409"] > 0 or client.final_status == 200


def _named_campaign(text: str) -> str | None:
    """The campaign an answer names: `id` (201, 200, 202, 504) or `campaign.id` (502)."""
    try:
        body = json.loads(text)
    except ValueError:
        return None
    if not isinstance(body, dict):
        return None
    campaign = body.get("campaign")
    named = body.get("id") or (campaign.get("id") if isinstance(campaign, dict) else None)
    return named if isinstance(named, str) else None


def _record_campaign(record: bytes | str | None) -> str | None:
    """The campaign an idempotency record points to (the store writes "<campaign id> <body fingerprint>")."""
    if record is None:
        return None
    return text(record).partition(" ")[0]


async def _check(redis: redis_async.Redis, clients: list[_Client], settle_timeout_s: float) -> DisconnectResult:
    result = DisconnectResult(requested=len(clients))
    answers: Counter[str] = Counter()
    for client in clients:
        answers.update(client.answers)
    result.retry_answers = dict(sorted(answers.items()))
    campaigns = await _settled(redis, [c.campaign_id for c in clients if c.campaign_id], settle_timeout_s)
    per_key = await _campaigns_per_key(redis)
    for client in clients:
        why = await _verdict(redis, client, campaigns, per_key, result)
        if why:
            result.inconsistent += 1
            if len(result.examples) < MAX_EXAMPLES:
                result.examples.append(f"{client.key}: {why}")
    return result


async def _verdict(
    redis: redis_async.Redis,
    client: _Client,
    campaigns: dict[str, dict[bytes, bytes]],
    per_key: Counter[str],
    result: DisconnectResult,
) -> str:
    """Count one key's outcome into `result`; the reason it is inconsistent, or "" when it is not."""
    result.aborted += client.aborted
    result.aborted_mid_body += client.aborted and client.mid_body
    result.answered_before_abort += not client.aborted
    if client.campaign_id is None:
        return client.why_no_answer or "the retry got no answer naming a campaign"
    result.retried += 1
    campaign = campaigns.get(client.campaign_id, {})
    status = campaign.get(b"status", b"").decode()
    result.completed += status == "completed"
    result.failed += status == "failed"
    result.pending += status not in ("completed", "failed", "")
    accepted_at = float(campaign.get(b"accepted_at", b"0"))
    by_first = _made_by_first_request(client, accepted_at)
    result.same_campaign += by_first
    result.created_by_retry += not by_first
    if client.aborted and by_first:
        result.admitted_after_abort += accepted_at > client.abort_at
        final_at = float(campaign.get(b"completed_at") or campaign.get(b"failed_at") or 0)
        result.finished_after_abort += status in ("completed", "failed") and final_at > client.abort_at
    record = _record_campaign(await redis.get(idempotency_record_key(client.key)))
    executions = await redis.hgetall(executions_key(client.campaign_id))
    if not status:
        return f"the retry named campaign {client.campaign_id}, which Redis does not hold"
    if record != client.campaign_id:
        return f"the idempotency record names {record}, the retry got {client.campaign_id}"
    if client.before_retry is not None and client.before_retry != client.campaign_id:
        return f"the first request created {client.before_retry}, the retry got {client.campaign_id}"
    if per_key[client.key] != 1:
        return f"{per_key[client.key]} campaigns carry this key"
    doubled = {text(effect): int(n) for effect, n in executions.items() if int(n) > 1}
    if doubled:
        return f"side effects ran more than once: {doubled}"
    return ""


async def _settled(
    redis: redis_async.Redis, campaign_ids: list[str], settle_timeout_s: float
) -> dict[str, dict[bytes, bytes]]:
    """Each campaign's hash, read again until all are final or settle_timeout_s has passed."""
    deadline = time.monotonic() + settle_timeout_s
    while True:
        pipe = redis.pipeline(transaction=False)
        for campaign_id in campaign_ids:
            pipe.hgetall(campaign_key(campaign_id))
        hashes = dict(zip(campaign_ids, await pipe.execute(), strict=True))
        final = all(h.get(b"status") in (b"completed", b"failed") for h in hashes.values())
        if final or time.monotonic() >= deadline:
            return hashes
        await asyncio.sleep(SETTLE_POLL_S)


async def _campaigns_per_key(redis: redis_async.Redis) -> Counter[str]:
    """How many campaigns in Redis carry each of the scenario's keys in their name: any past one is a duplicate
    the idempotency record does not know about."""
    found: Counter[str] = Counter()
    keys: list[bytes] = []

    async def read(batch: list[bytes]) -> None:
        pipe = redis.pipeline(transaction=False)
        for key in batch:
            pipe.hget(key, "request")
        for request in await pipe.execute():
            named = _NAMED_KEY.search(request or b"")
            if named:
                found[named.group(1).decode()] += 1

    async for key in redis.scan_iter(match=campaign_key("*"), count=_SCAN_BATCH):
        keys.append(key)
        if len(keys) >= _SCAN_BATCH:
            await read(keys)
            keys = []
    await read(keys)
    return found
