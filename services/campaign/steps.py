"""One attempt of each slow step, with the state transitions around it. The inline service loops
over attempts itself; the queued design lets RQ run one attempt per job execution."""

from __future__ import annotations

import time

from services.campaign.profile import Profile
from services.campaign.schema import Campaign, Status
from services.campaign.store import CampaignStore, UnknownCampaign
from services.campaign.work import generate_campaign_content, trigger_follow_up_automation


async def _load(store: CampaignStore, campaign_id: str) -> Campaign:
    campaign = await store.get(campaign_id)
    if campaign is None:
        raise UnknownCampaign(campaign_id)
    return campaign


async def generation_attempt(store: CampaignStore, campaign_id: str, profile: Profile) -> None:
    campaign = await _load(store, campaign_id)
    await store.transition(campaign_id, Status.generating, first_only={"started_at": time.time()})
    content = await generate_campaign_content(campaign_id, campaign.request, profile, attempt=campaign.attempts + 1)
    await store.record_execution(campaign_id, "content")
    await store.annotate(campaign_id, {"content_digest": content.digest})


async def automation_attempt(store: CampaignStore, campaign_id: str, profile: Profile) -> None:
    campaign = await _load(store, campaign_id)
    await store.transition(campaign_id, Status.automating)
    automation = await trigger_follow_up_automation(
        campaign_id, campaign.request, profile, attempt=campaign.attempts + 1
    )
    await store.record_execution(campaign_id, "automation")
    await store.transition(
        campaign_id,
        Status.completed,
        fields={"completed_at": time.time(), "follow_ups_scheduled": automation.follow_ups_scheduled},
    )


async def mark_failed(store: CampaignStore, campaign_id: str, error: BaseException) -> None:
    await store.transition(
        campaign_id, Status.failed, fields={"failed_at": time.time(), "last_error": f"{type(error).__name__}: {error}"}
    )
