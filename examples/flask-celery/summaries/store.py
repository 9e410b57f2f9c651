"""Where both designs keep their summaries: Redis, at REDIS_URL. The queued design also keeps each task's record there:
its state and when it was queued, started and finished (ISO 8601, UTC)."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from typing import Any

import redis

# A record outlives any client's interest in it by far; Redis does not fill up over a long run.
RECORD_TTL_S = 24 * 3600

_connection: redis.Redis | None = None


def connection() -> redis.Redis:
    """This process's Redis client (its own pool: gunicorn and Celery fork their workers before the first request)."""
    global _connection
    if _connection is None:
        _connection = redis.Redis.from_url(os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"),
                                           decode_responses=True, socket_timeout=5)
    return _connection


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds")


def task_key(task_id: str) -> str:
    return f"summaries:task:{task_id}"


def summary_key(document_id: str) -> str:
    return f"summaries:summary:{document_id}"


def save_summary(summary: dict[str, Any], pipe: Any = None) -> None:
    (pipe or connection()).set(summary_key(summary["document_id"]), json.dumps(summary), ex=RECORD_TTL_S)


def create_task(task_id: str, document: dict[str, Any]) -> None:
    with connection().pipeline(transaction=True) as pipe:
        pipe.hset(task_key(task_id), mapping={"state": "PENDING", "queued_at": now_iso(), "document": json.dumps(document)})
        pipe.expire(task_key(task_id), RECORD_TTL_S)
        pipe.execute()


def load_task(task_id: str) -> dict[str, str] | None:
    record = connection().hgetall(task_key(task_id))
    return record or None


def update_task(task_id: str, **fields: str) -> None:
    connection().hset(task_key(task_id), mapping=fields)
