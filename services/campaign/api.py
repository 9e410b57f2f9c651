"""HTTP plumbing both services share: the Redis-owning lifespan, GET and health routes, error mapping.
Each design adds only its own POST /campaigns."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, HTTPException, Query, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exception_handlers import http_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError as RedisResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError
from starlette.exceptions import HTTPException as StarletteHTTPException

from services.campaign.concurrency import ConcurrencyLimit
from services.campaign.openapi import publish_integer_bounds
from services.campaign.outcome import FINAL, MAX_RETRY_AFTER_S, MAX_WAIT_S, OutcomeWatch, retry_after_s
from services.campaign.profile import Profile
from services.campaign.schema import Campaign, ErrorBody, InvalidRequest
from services.campaign.settings import Settings
from services.campaign.store import CampaignStore, IdempotencyConflict

log = logging.getLogger("offpath.service")

# OpenAPI entries for the answers both designs give, so each operation documents every status it can
# answer, with the shape of its body.
RETRY_AFTER = {"Retry-After": {"description": "Seconds to wait before retrying", "schema": {"type": "integer"}}}
REDIS_UNAVAILABLE = {"description": "Redis unavailable or refusing writes; nothing was accepted",
                     "model": ErrorBody, "headers": RETRY_AFTER}
INVALID_CAMPAIGN = {"description": "Not a valid campaign, or not UTF-8 JSON at all; nothing was written",
                    "model": InvalidRequest}
# Starlette's body limit answers this one itself, in plain text, before any handler of ours runs.
BODY_TOO_LARGE = {"description": "Body over the size limit; nothing was written",
                  "content": {"text/plain": {"schema": {"type": "string", "example": "Content Too Large"}}}}


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


# What a design adds to the shared lifespan, with the settings the app was created with.
StartHook = Callable[[FastAPI, Redis, Settings], Awaitable[None]]
StopHook = Callable[[FastAPI], Awaitable[None]]


def lifespan_for(
    settings: Settings,
    on_start: StartHook | None = None,
    on_stop: StopHook | None = None,
) -> Callable[[FastAPI], AbstractAsyncContextManager[None]]:
    """The lifespan that owns the service's Redis pool for the app's life, built around the app's settings."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        redis = redis_client(settings)
        app.state.settings = settings
        app.state.profile = settings.profile()
        app.state.store = CampaignStore(redis, settings.idempotency_ttl_s)
        await app.state.store.prepare()
        if on_start is not None:
            await on_start(app, redis, settings)
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


# The answer to a GET of a campaign that is not final yet says when to ask again (services/campaign/outcome.py).
RETRY_AFTER_HINT = {"Retry-After": {
    "description": "Present while the campaign is not final (accepted, generating, automating): whole seconds to "
                   "wait before asking again, from the work still ahead of it and how long it has waited so far",
    "schema": {"type": "integer", "minimum": 1, "maximum": MAX_RETRY_AFTER_S}}}


def outcome_watch(request: Request, store: CampaignStore) -> OutcomeWatch:
    """The process's OutcomeWatch, made with the first held GET (it costs nothing until a GET waits)."""
    watch = getattr(request.app.state, "outcome_watch", None)
    if watch is None:
        watch = request.app.state.outcome_watch = OutcomeWatch(store.redis)
    return watch


@router.get(
    "/campaigns/{campaign_id}",
    response_model=Campaign,
    responses={
        200: {"description": "The campaign's state. With `wait`, answered as soon as the campaign is final, or when "
                             "`wait` seconds have passed and it still is not (then with Retry-After)",
              "headers": RETRY_AFTER_HINT},
        404: {"description": "Unknown id", "model": ErrorBody},
        422: {"description": f"`wait` is not a number of seconds from 0 to {MAX_WAIT_S:g}", "model": InvalidRequest},
        503: REDIS_UNAVAILABLE,
    },
)
async def get_campaign(
    campaign_id: str,
    request: Request,
    response: Response,
    store: StoreDep,
    wait: Annotated[float, Query(
        ge=0, le=MAX_WAIT_S,
        description="Hold the answer until the campaign is completed or failed, for at most this many seconds "
                    "(0, the default: answer at once). A client that wants the outcome asks once and is told as soon "
                    "as there is one, instead of polling.")] = 0,
) -> Campaign:
    campaign = await store.get(campaign_id)
    if campaign is None:
        raise HTTPException(status_code=404, detail=f"no campaign with id {campaign_id!r}")
    if wait > 0 and campaign.status not in FINAL:
        if await outcome_watch(request, store).until_final(campaign_id, wait, request.receive):
            campaign = await store.get(campaign_id)
            if campaign is None:
                raise HTTPException(status_code=404, detail=f"no campaign with id {campaign_id!r}")
    if campaign.status not in FINAL:
        # The app's profile, read here rather than as a dependency: every dependency costs each GET, the hot path of
        # a polling client.
        profile: Profile = request.app.state.profile
        response.headers["Retry-After"] = str(retry_after_s(profile, campaign.status, campaign.accepted_at))
    return campaign


@router.get("/healthz", responses={503: {**REDIS_UNAVAILABLE, "description": "Redis does not answer"}})
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


class _EscapedJSONResponse(JSONResponse):
    """JSON with everything past ASCII escaped. A 422 echoes the input, whose strings may hold lone
    surrogates ("\\ud800" is valid JSON but has no UTF-8 form): escaped, they still make a body."""

    def render(self, content: Any) -> bytes:
        return json.dumps(content, ensure_ascii=True, allow_nan=False, separators=(",", ":")).encode("ascii")


async def _invalid_request(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    return _EscapedJSONResponse(status_code=422, content={"detail": jsonable_encoder(exc.errors())})


def _unreadable_json(cause: BaseException) -> dict[str, Any]:
    """The 422 entry for a body Python's JSON decoder could not read, shaped like FastAPI's own json_invalid."""
    if isinstance(cause, UnicodeDecodeError):
        reason = f"the body is not UTF-8 ({cause.reason} at byte {cause.start}); send JSON encoded as UTF-8"
        loc: tuple[str | int, ...] = ("body", cause.start)
    elif isinstance(cause, RecursionError):
        reason = "arrays or objects are nested too deeply to parse"
        loc = ("body",)
    else:
        # E.g. an integer past Python's digit limit; the hint after ";" is for whoever runs Python.
        reason = str(cause).partition(";")[0]
        loc = ("body",)
    return {"type": "json_invalid", "loc": loc, "msg": f"JSON decode error: {reason}", "input": {},
            "ctx": {"error": reason}}


async def _http_error(request: Request, exc: Exception) -> Response:
    # FastAPI turns a body json.loads cannot decode into 400 "There was an error parsing the body"
    # unless the error is a JSONDecodeError: invalid UTF-8, nesting past the recursion limit, an
    # integer past Python's digit limit. Invalid input is 422 in this contract, whatever the reason.
    assert isinstance(exc, StarletteHTTPException)
    if exc.status_code == 400 and isinstance(exc.__cause__, ValueError | RecursionError):
        return await _invalid_request(request, RequestValidationError([_unreadable_json(exc.__cause__)]))
    return await http_exception_handler(request, exc)


async def _idempotency_conflict(request: Request, exc: Exception) -> JSONResponse:
    return JSONResponse(
        status_code=409,
        content={"detail": f"Idempotency-Key {exc} was already used with a different body; use a new key"},
    )


def campaign_app(
    title: str,
    description: str,
    settings: Settings,
    post_router: APIRouter,
    on_start: StartHook | None = None,
    on_stop: StopHook | None = None,
) -> FastAPI:
    """A service with the shared routes and error mapping, plus a design's POST /campaigns and lifespan hooks.
    Nothing is read or connected here: the lifespan does that when the server starts the app."""
    # FastAPI's own body limit answers 413 before an oversized body is read into memory.
    app = FastAPI(title=title, description=description, lifespan=lifespan_for(settings, on_start, on_stop),
                  version="1", max_body_size=settings.max_body_bytes)
    app.include_router(post_router)
    app.include_router(router)
    if settings.concurrency > 0:
        # Waiting for a slot is bounded by the same limit that sheds work in progress: the overload guard.
        app.add_middleware(ConcurrencyLimit, slots=settings.concurrency, max_waiting=settings.max_in_flight)
    app.add_exception_handler(RequestValidationError, _invalid_request)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(RedisConnectionError, _redis_unavailable)
    app.add_exception_handler(RedisTimeoutError, _redis_unavailable)
    app.add_exception_handler(RedisResponseError, _redis_refused)
    app.add_exception_handler(IdempotencyConflict, _idempotency_conflict)
    publish_integer_bounds(app)
    return app
