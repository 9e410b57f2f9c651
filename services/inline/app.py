"""The inline design: POST /campaigns does the slow work inside the request and answers 201 when done.

A fair implementation: provider waits are awaited (they hold no thread), CPU work runs in a thread
(hashlib releases the GIL), transient provider failures are retried with the same backoff policy
the queued design's RQ jobs use.
"""

from __future__ import annotations

import asyncio
from typing import Annotated

from fastapi import APIRouter, Header
from fastapi.responses import JSONResponse

from services.campaign.api import ProfileDep, SettingsDep, StoreDep, create_app, lifespan_for
from services.campaign.profile import Profile
from services.campaign.schema import Campaign, CampaignRequest, Status
from services.campaign.settings import Settings
from services.campaign.steps import automation_attempt, generation_attempt, mark_failed
from services.campaign.store import CampaignStore
from services.campaign.work import ProviderError

router = APIRouter()


async def _with_retries(step, store: CampaignStore, campaign_id: str, profile: Profile, settings: Settings) -> None:
    for retry_number in range(settings.retries + 1):
        try:
            await step(store, campaign_id, profile)
            return
        except ProviderError:
            if retry_number == settings.retries:
                raise
            await asyncio.sleep(settings.backoff_s(retry_number + 1))


@router.post(
    "/campaigns",
    status_code=201,
    response_model=Campaign,
    responses={
        200: {"description": "Idempotent repeat of a finished request", "model": Campaign},
        409: {"description": "Idempotency-Key reused with another body, or its first request is still running"},
        422: {"description": "Invalid campaign"},
        502: {"description": "A provider kept failing; the campaign is marked failed"},
        503: {"description": "Redis is unavailable; nothing was accepted"},
    },
)
async def create_campaign(
    body: CampaignRequest,
    store: StoreDep,
    profile: ProfileDep,
    settings: SettingsDep,
    idempotency_key: Annotated[str | None, Header(max_length=200)] = None,
):
    admission = await store.admit(body, idempotency_key)
    if not admission.created:
        earlier = await store.get(admission.campaign_id)
        if earlier is None or earlier.status not in (Status.completed, Status.failed):
            return JSONResponse(
                status_code=409,
                content={"detail": "the first request with this Idempotency-Key is still running; retry later"},
                headers={"Retry-After": "1"},
            )
        return JSONResponse(status_code=200, content=earlier.model_dump(mode="json"))
    campaign_id = admission.campaign_id
    try:
        await _with_retries(generation_attempt, store, campaign_id, profile, settings)
        await _with_retries(automation_attempt, store, campaign_id, profile, settings)
    except ProviderError as error:
        await mark_failed(store, campaign_id, error)
        failed = await store.get(campaign_id)
        return JSONResponse(
            status_code=502,
            content={"detail": f"campaign failed after {settings.retries} retries: {error}",
                     "campaign": failed.model_dump(mode="json") if failed else None},
        )
    return await store.get(campaign_id)


settings = Settings.from_env()
app = create_app(
    title="offpath inline campaigns",
    description="POST /campaigns does the slow work in the request and answers 201 with the finished campaign.",
    settings=settings,
    lifespan=lifespan_for(settings),
    post_router=router,
)
