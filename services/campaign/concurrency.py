"""Bounded server concurrency: at most N requests in progress per service process, the model of a sync
server (gunicorn sync workers, or a thread pool of N) under the same asyncio code.

A request that arrives while every slot is busy waits for one, in arrival order, and that wait is part of
its latency — as a request queued in a sync server's listen backlog waits for a free worker. A slot is
held for the whole request: the inline design holds it while it awaits its providers (throughput =
N ÷ service time, Little's law), the queued design only while it acknowledges. Waiting is bounded too:
past `max_waiting` requests waiting, new ones are shed with 503 + Retry-After, the overload guard above
the bound, instead of an unbounded queue of requests nobody will wait for.
"""

from __future__ import annotations

import asyncio
import json

from starlette.types import ASGIApp, Receive, Scope, Send

__all__ = ["ConcurrencyLimit"]


class ConcurrencyLimit:
    """Pure ASGI middleware (no per-request task or body buffering, unlike BaseHTTPMiddleware)."""

    def __init__(self, app: ASGIApp, slots: int, max_waiting: int):
        if slots < 1:
            raise ValueError("slots must be at least 1 (leave the middleware out for unbounded concurrency)")
        self.app = app
        self.slots = slots
        self.max_waiting = max_waiting
        self.waiting = 0
        self._semaphore = asyncio.Semaphore(slots)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if self.max_waiting > 0 and self._semaphore.locked() and self.waiting >= self.max_waiting:
            await _shed(send, self.slots, self.waiting)
            return
        self.waiting += 1
        try:
            await self._semaphore.acquire()
        finally:
            self.waiting -= 1
        try:
            await self.app(scope, receive, send)
        finally:
            self._semaphore.release()


async def _shed(send: Send, slots: int, waiting: int) -> None:
    body = json.dumps({"detail": f"all {slots} request slots are busy and {waiting} requests are waiting for one; "
                                 "nothing was accepted, retry later"}).encode()
    await send({"type": "http.response.start", "status": 503,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                            (b"retry-after", b"1")]})
    await send({"type": "http.response.body", "body": body})
