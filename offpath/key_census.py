"""What a Redis database holds after a soak, by kind of key: every key read with SCAN and grouped by its name with the
ids taken out (`offpath:campaign:{id}`, `rq:job:{id}-generation`), each group's TTLs and the memory of a sample of its
keys (keys.json: foundation/format.py KeyCensus). Which keys grow with every campaign, and which of them never expire,
is read from it."""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field

import redis

from foundation.format import KeyCensus, KeyPattern
from foundation.redis_replies import text
from offpath.command_count import harness_redis

__all__ = ["MEMORY_SAMPLES", "key_census", "pattern_of"]

# A uuid, a run of 16 or more hex digits (offpath's and RQ's ids), or a number (worker names, timestamps).
_ID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}|[0-9a-fA-F]{16,}|\d+")
MEMORY_SAMPLES = 20  # MEMORY USAGE of this many keys per pattern: its mean estimates the pattern's bytes per key
_BATCH = 1000  # keys per SCAN and per pipeline of PTTLs


def pattern_of(key: str) -> str:
    """The key's name with its ids taken out: 'offpath:campaign:4f…e1' -> 'offpath:campaign:{id}',
    'rq:worker:offpath-worker-3-81' -> 'rq:worker:offpath-worker-{n}-{n}'."""
    return _ID.sub(lambda found: "{n}" if found.group().isdigit() and len(found.group()) < 16 else "{id}", key)


@dataclass
class _Group:
    count: int = 0
    with_ttl: int = 0
    ttl_min_ms: int | None = None
    ttl_max_ms: int | None = None
    samples: list[bytes | str] = field(default_factory=list)

    def add(self, key: bytes | str, ttl_ms: int) -> None:
        self.count += 1
        if ttl_ms >= 0:  # -1: no TTL; -2: gone since SCAN saw it (counted: it was there)
            self.with_ttl += 1
            self.ttl_min_ms = ttl_ms if self.ttl_min_ms is None else min(self.ttl_min_ms, ttl_ms)
            self.ttl_max_ms = ttl_ms if self.ttl_max_ms is None else max(self.ttl_max_ms, ttl_ms)
        if len(self.samples) < MEMORY_SAMPLES:
            self.samples.append(key)


def key_census(redis_url: str) -> KeyCensus:
    """Every key of the database `redis_url` names, by pattern, most first. SCAN may return a key twice while the
    keyspace is rehashed: a key is counted once."""
    connection = harness_redis(redis_url, socket_timeout=10)
    at = time.time()
    try:
        groups = _groups(connection)
        patterns = [_pattern(connection, name, group) for name, group in groups.items()]
    except redis.RedisError as exc:
        return KeyCensus(at=at, error=f"{type(exc).__name__}: {exc}")
    finally:
        connection.close()
    patterns.sort(key=lambda p: (-p.count, p.pattern))
    return KeyCensus(at=at, keys=sum(p.count for p in patterns), patterns=tuple(patterns))


def _groups(connection: redis.Redis) -> dict[str, _Group]:
    groups: dict[str, _Group] = {}
    seen: set[bytes | str] = set()
    cursor = 0
    while True:
        cursor, keys = connection.scan(cursor, count=_BATCH)
        fresh = [key for key in keys if key not in seen]
        seen.update(fresh)
        pipe = connection.pipeline(transaction=False)
        for key in fresh:
            pipe.pttl(key)
        for key, ttl_ms in zip(fresh, pipe.execute(), strict=True):
            name = pattern_of(text(key))
            groups.setdefault(name, _Group()).add(key, int(ttl_ms))
        if cursor == 0:
            return groups


def _pattern(connection: redis.Redis, name: str, group: _Group) -> KeyPattern:
    pipe = connection.pipeline(transaction=False)
    for key in group.samples:
        pipe.memory_usage(key, samples=0)  # 0: every element of a collection, not an estimate from 5 of them
    sizes = [int(size) for size in pipe.execute() if size is not None]
    kind = connection.type(group.samples[0]) if group.samples else b""
    return KeyPattern(
        pattern=name, count=group.count, with_ttl=group.with_ttl,
        ttl_min_s=group.ttl_min_ms / 1000 if group.ttl_min_ms is not None else None,
        ttl_max_s=group.ttl_max_ms / 1000 if group.ttl_max_ms is not None else None,
        sampled=len(sizes), mean_bytes=round(sum(sizes) / len(sizes), 1) if sizes else None,
        type=text(kind))
