"""The RQ job functions: one attempt of a step each, with the state transitions around it. RQ retries
them; the last failed attempt marks the campaign `failed` (and RQ keeps the job in its failed registry)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

from rq import get_current_job

from services.campaign.api import redis_client
from services.campaign.profile import Profile
from services.campaign.schema import Campaign, Status
from services.campaign.settings import Settings
from services.campaign.store import CampaignStore, IllegalTransition, UnknownCampaign
from services.campaign.work import generate_campaign_content, trigger_follow_up_automation

log = logging.getLogger("offpath.jobs")

Step = Callable[[CampaignStore, str, Profile], Awaitable[None]]


async def _load(store: CampaignStore, campaign_id: str) -> Campaign:
    campaign = await store.get(campaign_id)
    if campaign is None:
        raise UnknownCampaign(campaign_id)
    return campaign


# Each step records its side effect atomically with its outcome (one MULTI), and checks that record
# before doing the work: a job delivered again after a worker crash does not repeat a finished step.


async def generation_attempt(store: CampaignStore, campaign_id: str, profile: Profile) -> None:
    campaign = await _load(store, campaign_id)
    if campaign.content_digest is not None:
        log.info("campaign %s: content already generated; not generating again", campaign_id)
        return
    await store.transition(campaign_id, Status.generating, first_only={"started_at": time.time()})
    content = await generate_campaign_content(campaign_id, campaign.request, profile, attempt=campaign.attempts + 1)
    await store.record_outcome(campaign_id, "content", {"content_digest": content.digest})


async def automation_attempt(store: CampaignStore, campaign_id: str, profile: Profile) -> None:
    campaign = await _load(store, campaign_id)
    await store.transition(campaign_id, Status.automating)
    automation = await trigger_follow_up_automation(
        campaign_id, campaign.request, profile, attempt=campaign.attempts + 1
    )
    await store.finish(
        campaign_id,
        Status.completed,
        {"completed_at": time.time(), "follow_ups_scheduled": automation.follow_ups_scheduled},
        executions={"automation": 1},
    )


async def mark_failed(store: CampaignStore, campaign_id: str, error: BaseException) -> None:
    await store.transition(
        campaign_id, Status.failed, fields={"failed_at": time.time(), "last_error": f"{type(error).__name__}: {error}"}
    )


class _WorkerContext:
    """One event loop, Redis pool, store and profile per worker process, reused by every job."""

    def __init__(self) -> None:
        self.settings = Settings.from_env()
        self.profile = self.settings.profile()
        self.runner = asyncio.Runner()
        self._store: CampaignStore | None = None

    def store(self) -> CampaignStore:
        if self._store is None:
            self._store = CampaignStore(redis_client(self.settings), self.settings.idempotency_ttl_s)
        return self._store


_context: _WorkerContext | None = None


def _ctx() -> _WorkerContext:
    global _context
    if _context is None:
        _context = _WorkerContext()
    return _context


def _is_last_attempt() -> bool:
    job = get_current_job()
    return job is None or not job.retries_left


async def _attempt(step: Step, campaign_id: str, ctx: _WorkerContext, last: bool) -> None:
    store = ctx.store()
    try:
        await step(store, campaign_id, ctx.profile)
    except IllegalTransition:
        # Already completed or failed (e.g. a duplicate delivery after a worker crash): nothing to do.
        log.warning("campaign %s is past this step; skipping", campaign_id)
    except Exception as error:
        if last:
            await mark_failed(store, campaign_id, error)
        raise


def _run(step: Step, campaign_id: str) -> None:
    ctx = _ctx()
    ctx.runner.run(_attempt(step, campaign_id, ctx, _is_last_attempt()))


def generate(campaign_id: str) -> None:
    _run(generation_attempt, campaign_id)


def automate(campaign_id: str) -> None:
    _run(automation_attempt, campaign_id)
