"""The inline design: POST /campaigns does the slow work inside the request and answers 201 when done.

A fair implementation, written the way a careful engineer would without a queue: provider waits
are awaited (they hold no thread), CPU work runs in a thread (hashlib releases the GIL), transient
provider failures are retried with the same backoff policy the queued design's RQ jobs use, and
Redis is touched twice per campaign: once to admit it, once to record its outcome.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Annotated, TypeVar

from fastapi import APIRouter, FastAPI, Header, Request
from fastapi.responses import JSONResponse
from redis.asyncio import Redis

from services.campaign.api import (
    BODY_TOO_LARGE,
    INVALID_CAMPAIGN,
    RETRY_AFTER,
    ProfileDep,
    SettingsDep,
    StoreDep,
    campaign_app,
)
from services.campaign.profile import Profile
from services.campaign.schema import (
    Campaign,
    CampaignFailed,
    CampaignRequest,
    CampaignTimedOut,
    ErrorBody,
    Status,
)
from services.campaign.settings import Settings
from services.campaign.store import CampaignStore
from services.campaign.work import ProviderError, generate_campaign_content, trigger_follow_up_automation

T = TypeVar("T")

router = APIRouter()


class _Attempts:
    """Counts attempts across both steps, like the `attempts` field the workers keep in Redis."""

    def __init__(self) -> None:
        self.count = 0

    async def retrying(self, settings: Settings, attempt: Callable[[int], Awaitable[T]]) -> T:
        for retry_number in range(settings.retries + 1):
            self.count += 1
            try:
                return await attempt(self.count)
            except ProviderError:
                if retry_number == settings.retries:
                    raise
                await asyncio.sleep(settings.backoff_s(retry_number + 1))
        raise AssertionError("unreachable")


class InFlight:
    """Counts requests doing work; past the limit new ones are shed before anything is written."""

    def __init__(self, limit: int):
        self.limit = limit
        self.count = 0

    def full(self) -> bool:
        return self.limit > 0 and self.count >= self.limit


@router.post(
    "/campaigns",
    status_code=201,
    response_model=Campaign,
    responses={
        200: {"description": "Idempotent repeat of a finished request", "model": Campaign},
        409: {"description": "Idempotency-Key reused with another body, or its first request is still running",
              "model": ErrorBody, "headers": RETRY_AFTER},
        413: BODY_TOO_LARGE,
        422: INVALID_CAMPAIGN,
        502: {"description": "A provider kept failing; the campaign is marked failed", "model": CampaignFailed},
        503: {"description": "Too many requests in progress, or Redis unavailable; nothing was accepted",
              "model": ErrorBody, "headers": RETRY_AFTER},
        504: {"description": "The work passed the request deadline; the campaign is marked failed",
              "model": CampaignTimedOut},
    },
)
async def create_campaign(
    body: CampaignRequest,
    request: Request,
    store: StoreDep,
    profile: ProfileDep,
    settings: SettingsDep,
    idempotency_key: Annotated[str | None, Header(max_length=200)] = None,
):
    in_flight: InFlight = request.app.state.in_flight
    if in_flight.full():
        return JSONResponse(
            status_code=503,
            content={"detail": f"{in_flight.count} campaigns are in progress, the limit is {in_flight.limit}; "
                               "nothing was accepted, retry later"},
            headers={"Retry-After": "1"},
        )
    in_flight.count += 1
    try:
        return await _create(body, store, profile, settings, idempotency_key)
    finally:
        in_flight.count -= 1


async def _create(
    body: CampaignRequest, store: CampaignStore, profile: Profile, settings: Settings, idempotency_key: str | None
):
    admission = await store.admit(body, idempotency_key)
    campaign_id = admission.campaign_id
    if not admission.created:
        earlier = await store.get(campaign_id)
        if earlier is None or earlier.status not in (Status.completed, Status.failed):
            return JSONResponse(
                status_code=409,
                content={"detail": "the first request with this Idempotency-Key is still running; retry later"},
                headers={"Retry-After": "1"},
            )
        return JSONResponse(status_code=200, content=earlier.model_dump(mode="json"))

    started_at = time.time()
    attempts = _Attempts()
    executions: dict[str, int] = {}
    try:
        async with asyncio.timeout(settings.request_deadline_s):
            content = await attempts.retrying(
                settings, lambda n: generate_campaign_content(campaign_id, body, profile, attempt=n)
            )
            executions["content"] = 1
            automation = await attempts.retrying(
                settings, lambda n: trigger_follow_up_automation(campaign_id, body, profile, attempt=n)
            )
            executions["automation"] = 1
    except TimeoutError:
        error_text = f"DeadlineExceeded: work did not finish within {settings.request_deadline_s:g} s"
        await store.finish(
            campaign_id, Status.failed,
            {"started_at": started_at, "failed_at": time.time(), "attempts": attempts.count, "last_error": error_text},
            executions,
        )
        return JSONResponse(status_code=504, content={"detail": error_text, "id": campaign_id})
    except ProviderError as error:
        await store.finish(
            campaign_id,
            Status.failed,
            {"started_at": started_at, "failed_at": time.time(), "attempts": attempts.count,
             "last_error": f"{type(error).__name__}: {error}"},
            executions,
        )
        failed = await store.get(campaign_id)
        return JSONResponse(
            status_code=502,
            content={"detail": f"campaign failed after {settings.retries} retries: {error}",
                     "campaign": failed.model_dump(mode="json") if failed else None},
        )
    completed_at = time.time()
    await store.finish(
        campaign_id,
        Status.completed,
        {"started_at": started_at, "completed_at": completed_at, "attempts": attempts.count,
         "content_digest": content.digest, "follow_ups_scheduled": automation.follow_ups_scheduled},
        executions,
    )
    # The response is built from what was written, without reading it back: one round trip less.
    return Campaign(
        id=campaign_id, status=Status.completed, request=body, accepted_at=admission.accepted_at,
        started_at=started_at, completed_at=completed_at, attempts=attempts.count,
        content_digest=content.digest, follow_ups_scheduled=automation.follow_ups_scheduled,
    )


async def _start_limits(app: FastAPI, redis: Redis, settings: Settings) -> None:
    app.state.in_flight = InFlight(settings.max_in_flight)


def create_app(settings: Settings | None = None) -> FastAPI:
    """The inline service (`uvicorn --factory services.inline.app:create_app`); without settings, from the
    environment at the time of the call."""
    return campaign_app(
        title="offpath inline campaigns",
        description="POST /campaigns does the slow work in the request and answers 201 with the finished campaign.",
        settings=settings if settings is not None else Settings.from_env(),
        post_router=router,
        on_start=_start_limits,
    )
