"""HTTP plumbing both services share: the Redis-owning lifespan, GET and health routes, error mapping.
Each design adds only its own POST /campaigns."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Annotated

from fastapi import APIRouter, Depends, FastAPI, HTTPException, Request
from fastapi.responses import JSONResponse
from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError as RedisResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from services.campaign.profile import Profile
from services.campaign.schema import Campaign
from services.campaign.settings import Settings
from services.campaign.store import CampaignStore, IdempotencyConflict

log = logging.getLogger("offpath.service")


def redis_client(settings: Settings) -> Redis:
    # Bounded timeouts and no client-side retries: when Redis is gone a request fails with 503
    # within about redis_timeout_s instead of hanging while redis-py backs off and retries.
    return Redis.from_url(
        settings.redis_url,
        socket_timeout=settings.redis_timeout_s,
        socket_connect_timeout=settings.redis_timeout_s,
        retry=Retry(NoBackoff(), 0),
        max_connections=512,
    )


def lifespan_for(
    settings: Settings,
    on_start: Callable[[FastAPI, Redis], Awaitable[None]] | None = None,
    on_stop: Callable[[FastAPI], Awaitable[None]] | None = None,
) -> Callable[[FastAPI], AsyncIterator[None]]:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        redis = redis_client(settings)
        app.state.settings = settings
        app.state.profile = settings.profile()
        app.state.store = CampaignStore(redis, settings.idempotency_ttl_s)
        await app.state.store.prepare()
        if on_start is not None:
            await on_start(app, redis)
        log.info("profile %s; redis %s", app.state.profile.name, settings.redis_url)
        try:
            yield
        finally:
            if on_stop is not None:
                await on_stop(app)
            await redis.aclose()

    return lifespan


async def get_store(request: Request) -> CampaignStore:
    return request.app.state.store


async def get_profile(request: Request) -> Profile:
    return request.app.state.profile


async def get_settings(request: Request) -> Settings:
    return request.app.state.settings


StoreDep = Annotated[CampaignStore, Depends(get_store)]
ProfileDep = Annotated[Profile, Depends(get_profile)]
SettingsDep = Annotated[Settings, Depends(get_settings)]

router = APIRouter()


@router.get("/campaigns/{campaign_id}", response_model=Campaign, responses={404: {"description": "Unknown id"}})
async def get_campaign(campaign_id: str, store: StoreDep) -> Campaign:
    campaign = await store.get(campaign_id)
    if campaign is None:
        raise HTTPException(status_code=404, detail=f"no campaign with id {campaign_id!r}")
    return campaign


@router.get("/healthz", responses={503: {"description": "Redis does not answer"}})
async def healthz(store: StoreDep) -> dict[str, str]:
    await store.ping()
    return {"status": "ok", "redis": "ok"}


async def _redis_unavailable(request: Request, exc: Exception) -> JSONResponse:
    return JSONResponse(
        status_code=503,
        content={"detail": f"Redis is unavailable ({type(exc).__name__}: {exc}); nothing was accepted, retry later"},
        headers={"Retry-After": "1"},
    )


async def _redis_refused(request: Request, exc: Exception) -> JSONResponse:
    # E.g. OOM under maxmemory: the transaction was discarded whole (EXECABORT), nothing was written.
    return JSONResponse(
        status_code=503,
        content={"detail": f"Redis refused the write ({exc}); nothing was accepted, retry later"},
        headers={"Retry-After": "1"},
    )


async def _idempotency_conflict(request: Request, exc: Exception) -> JSONResponse:
    return JSONResponse(
        status_code=409,
        content={"detail": f"Idempotency-Key {exc} was already used with a different body; use a new key"},
    )


def create_app(title: str, description: str, settings: Settings, lifespan: Callable, post_router: APIRouter) -> FastAPI:
    # FastAPI's own body limit answers 413 before an oversized body is read into memory.
    app = FastAPI(title=title, description=description, lifespan=lifespan, version="1",
                  max_body_size=settings.max_body_bytes)
    app.include_router(post_router)
    app.include_router(router)
    app.add_exception_handler(RedisConnectionError, _redis_unavailable)
    app.add_exception_handler(RedisTimeoutError, _redis_unavailable)
    app.add_exception_handler(RedisResponseError, _redis_refused)
    app.add_exception_handler(IdempotencyConflict, _idempotency_conflict)
    return app
