"""A stand-in for the campaign service whose latency is known exactly, for testing the load generator.

This is a fake of "the service" on purpose: in the tests that use it the *driver* (locustfile, scheduler,
recorder, merger) is what is under test, so the service must behave in a way we can compute: it answers
at once, except that every --stall-period seconds it stops answering for --stall-s seconds (requests that
arrive then are held and answered together when the stall ends). It speaks the endpoint contract's
shape: inline (201) or queued (202 + Location, then GET shows generating until --complete-after).

    python -m tests.stall_app --port 8089 [--design queued] [--stall-period 5 --stall-s 1] [--fail-every 10]
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import time

from aiohttp import web


class StallApp:
    def __init__(self, design: str, stall_period_s: float, stall_s: float, fail_every: int, complete_after_s: float):
        self.design = design
        self.stall_period_s = stall_period_s
        self.stall_s = stall_s
        self.fail_every = fail_every
        self.complete_after_s = complete_after_s
        self.epoch = time.monotonic()
        self.created: dict[str, float] = {}
        self._posts = itertools.count(1)

    async def _stall(self) -> None:
        if self.stall_s <= 0:
            return
        phase = (time.monotonic() - self.epoch) % self.stall_period_s
        if phase < self.stall_s:
            await asyncio.sleep(self.stall_s - phase)

    async def create(self, request: web.Request) -> web.Response:
        await request.read()
        await self._stall()
        number = next(self._posts)
        if self.fail_every and number % self.fail_every == 0:
            return web.json_response({"detail": "injected failure"}, status=500)
        campaign_id = f"c{number}"
        if self.design == "inline":
            return web.json_response({"id": campaign_id, "status": "completed"}, status=201)
        self.created[campaign_id] = time.monotonic()
        return web.json_response({"id": campaign_id, "status": "accepted"}, status=202,
                                 headers={"Location": f"/campaigns/{campaign_id}"})

    async def status(self, request: web.Request) -> web.Response:
        await self._stall()
        campaign_id = request.match_info["campaign_id"]
        created = self.created.get(campaign_id)
        if created is None:
            return web.json_response({"detail": f"no campaign with id {campaign_id!r}"}, status=404)
        done = time.monotonic() - created >= self.complete_after_s
        return web.json_response({"id": campaign_id, "status": "completed" if done else "generating"})

    async def health(self, request: web.Request) -> web.Response:
        return web.json_response({"status": "ok", "epoch": self.epoch})

    def app(self) -> web.Application:
        app = web.Application()
        app.add_routes([web.post("/campaigns", self.create), web.get("/campaigns/{campaign_id}", self.status),
                        web.get("/healthz", self.health)])
        return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--design", choices=["inline", "queued"], default="inline")
    parser.add_argument("--stall-period", type=float, default=5.0)
    parser.add_argument("--stall-s", type=float, default=0.0)
    parser.add_argument("--fail-every", type=int, default=0)
    parser.add_argument("--complete-after", type=float, default=0.3)
    args = parser.parse_args()
    app = StallApp(args.design, args.stall_period, args.stall_s, args.fail_every, args.complete_after)
    # A held request must not hold up shutdown: the tests stop the app right after the load.
    web.run_app(app.app(), host="127.0.0.1", port=args.port, access_log=None, print=None, shutdown_timeout=1)


if __name__ == "__main__":
    main()
