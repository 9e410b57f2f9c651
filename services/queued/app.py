"""The queued design: POST /campaigns validates, persists state and enqueues the generation job in one Redis
transaction, and answers 202 with a Location to poll. Workers of the deployment's queue backend (RQ, Celery or
Dramatiq: services/queued/backend.py) do the slow work."""

from __future__ import annotations

import sys
from typing import Annotated

from fastapi import APIRouter, FastAPI, Header, Request, Response
from fastapi.responses import JSONResponse
from redis.asyncio import Redis

from foundation.errors import EXIT_ERROR, ConfigurationError
from services.campaign.api import (
    BODY_TOO_LARGE,
    INVALID_CAMPAIGN,
    RETRY_AFTER,
    RETRY_AFTER_HINT,
    StoreDep,
    campaign_app,
)
from services.campaign.outcome import FINAL, retry_after_s
from services.campaign.schema import CampaignAccepted, CampaignRequest, ErrorBody, Status
from services.campaign.settings import Settings
from services.queued.backend import Admission, queue_backend
from services.queued.backpressure import BacklogGauge
from services.queued.enqueue import parse_redis_version

router = APIRouter()


@router.post(
    "/campaigns",
    status_code=202,
    response_model=CampaignAccepted,
    responses={
        202: {"description": "Accepted: the work is queued. Follow the Location (GET, optionally with `wait`) for the "
                             "outcome; Retry-After says when asking first is worth it",
              "headers": {"Location": {"description": "The campaign's URL", "schema": {"type": "string"}},
                          **RETRY_AFTER_HINT}},
        409: {"description": "Idempotency-Key reused with another body", "model": ErrorBody},
        413: BODY_TOO_LARGE,
        422: INVALID_CAMPAIGN,
        503: {"description": "Backlog over its bound, or Redis unavailable; nothing was accepted",
              "model": ErrorBody, "headers": RETRY_AFTER},
    },
)
async def create_campaign(
    body: CampaignRequest,
    request: Request,
    response: Response,
    store: StoreDep,
    idempotency_key: Annotated[str | None, Header(max_length=200)] = None,
):
    gauge: BacklogGauge = request.app.state.gauge
    if gauge.over_bound():
        return JSONResponse(
            status_code=503,
            content={"detail": f"backlog of {gauge.depth} queued jobs is at its bound of {gauge.bound}; "
                               "nothing was accepted, retry later"},
            headers={"Retry-After": str(gauge.retry_after_s())},
        )
    planner: Admission = request.app.state.planner
    admission = await store.admit(body, idempotency_key, also=planner.buffer)
    response.headers["Location"] = f"/campaigns/{admission.campaign_id}"
    profile = request.app.state.profile
    if admission.created:
        response.headers["Retry-After"] = str(retry_after_s(profile, Status.accepted, admission.accepted_at))
        return CampaignAccepted(id=admission.campaign_id, status=Status.accepted)
    earlier = await store.get(admission.campaign_id)
    if earlier is not None and earlier.status not in FINAL:
        response.headers["Retry-After"] = str(retry_after_s(profile, earlier.status, earlier.accepted_at))
    return CampaignAccepted(id=admission.campaign_id, status=earlier.status if earlier else Status.accepted)


async def _start_queue_side(app: FastAPI, redis: Redis, settings: Settings) -> None:
    info = await redis.info("server")
    backend = queue_backend(settings.queue_backend)
    app.state.planner = backend.admission(settings, parse_redis_version(info["redis_version"]))
    app.state.gauge = BacklogGauge(redis, backend.backlog_key(settings), settings.max_backlog)
    await app.state.gauge.start()


async def _stop_queue_side(app: FastAPI) -> None:
    try:
        await app.state.gauge.stop()
    finally:
        app.state.planner.close()


def create_app(settings: Settings | None = None) -> FastAPI:
    """The queued service (`uvicorn --factory services.queued.app:create_app`); without settings, from the
    environment at the time of the call (a value it cannot use: one line on stderr, exit 2)."""
    if settings is None:
        try:
            settings = Settings.from_env()
        except ConfigurationError as exc:
            print(f"services.queued.app: {exc}", file=sys.stderr)
            raise SystemExit(EXIT_ERROR) from None
    return campaign_app(
        title="offpath queued campaigns",
        description=f"POST /campaigns persists the campaign and enqueues its slow work on {settings.queue_backend}, "
                    "answering 202.",
        settings=settings,
        post_router=router,
        on_start=_start_queue_side,
        on_stop=_stop_queue_side,
    )
