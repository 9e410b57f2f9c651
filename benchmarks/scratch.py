"""Scratch Redis databases for benchmarks that empty theirs between rounds: refuse one that holds data."""

from __future__ import annotations

import redis


def empty_database(url: str, benchmark: str) -> redis.Redis:
    """A client of a database that holds nothing; SystemExit naming what to do when it holds keys."""
    client = redis.Redis.from_url(url)
    keys = client.dbsize()
    if keys:
        raise SystemExit(f"Redis database {url} holds {keys:,} keys; {benchmark} empties its databases before every "
                         "round, so it takes only empty ones: point REDIS_URL at an empty, idle Redis, or unset it to "
                         "let the benchmark start its own")
    return client
