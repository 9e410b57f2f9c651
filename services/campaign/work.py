"""The slow work itself. The same two functions run inside the inline request and inside RQ workers."""

from __future__ import annotations

import asyncio
import hashlib
import random
import time
from dataclasses import dataclass

from services.campaign.profile import Profile, StepCost
from services.campaign.schema import CampaignRequest

# Hashing blocks this large releases the GIL inside hashlib, so CPU work run in a thread does
# not stall the event loop that serves other requests.
_BLOCK_BYTES = 64 * 1024
# A provider wait is drawn from a lognormal; this bounds its tail below the queued design's job timeout (60 s).
_MAX_WAIT_S = 55.0


class ProviderError(RuntimeError):
    """An external provider failed; transient, the caller retries it."""


@dataclass(frozen=True)
class GeneratedContent:
    digest: str


@dataclass(frozen=True)
class Automation:
    follow_ups_scheduled: int


def burn_cpu(cpu_ms: float, seed: bytes) -> str:
    """Do cpu_ms of real computation (chained SHA-256 over a seeded block) in the calling thread."""
    digest = hashlib.sha256(seed)
    if cpu_ms <= 0:
        return digest.hexdigest()
    block = (seed * (_BLOCK_BYTES // max(len(seed), 1) + 1))[:_BLOCK_BYTES]
    deadline_ns = time.thread_time_ns() + int(cpu_ms * 1_000_000)
    while time.thread_time_ns() < deadline_ns:
        digest.update(block)
    return digest.hexdigest()


def _rng(profile: Profile, fingerprint: str, step: str, attempt: int) -> random.Random:
    # A fresh, reproducible stream per request, step and attempt: a retry draws anew. Keyed by what was requested (the
    # body's fingerprint), not by the campaign's random id, so the same request meets the same provider in every run
    # and in both designs: common random numbers. The load sends the same seeded bodies in the same order each run
    # (loadtests/payloads.py), so run-to-run and design-to-design differences are the code's, not the dice's. Keyed by
    # campaign id, identical code moved inline's P50 by up to ~10% between gate runs (issue #14).
    return random.Random(f"{profile.seed}:{fingerprint}:{step}:{attempt}")


def _provider_wait_s(cost: StepCost, rng: random.Random) -> float:
    if cost.wait_median_ms <= 0:
        return 0.0
    sample_ms = rng.lognormvariate(0.0, cost.wait_sigma) * cost.wait_median_ms
    return min(sample_ms / 1000.0, _MAX_WAIT_S)


async def _call_provider(provider: str, cost: StepCost, rng: random.Random) -> None:
    wait_s = _provider_wait_s(cost, rng)
    if wait_s > 0:
        await asyncio.sleep(wait_s)
    if rng.random() < cost.failure_probability:
        raise ProviderError(f"{provider} provider failed (simulated, p={cost.failure_probability:g})")


async def _cpu(cost: StepCost, seed: bytes) -> str:
    if cost.cpu_ms <= 0:
        return hashlib.sha256(seed).hexdigest()
    return await asyncio.to_thread(burn_cpu, cost.cpu_ms, seed)


async def generate_campaign_content(
    campaign_id: str, request: CampaignRequest, profile: Profile, attempt: int = 1
) -> GeneratedContent:
    """Render the campaign's content (real CPU) and call the content provider (a wait that may fail)."""
    fingerprint = request.fingerprint()  # a JSON dump and a hash: once a step, it is on inline's request path
    rng = _rng(profile, fingerprint, "generation", attempt)
    cost = profile.generation
    digest = await _cpu(cost, f"{campaign_id}:{fingerprint}".encode())
    await _call_provider("content", cost, rng)
    return GeneratedContent(digest=digest)


async def trigger_follow_up_automation(
    campaign_id: str, request: CampaignRequest, profile: Profile, attempt: int = 1
) -> Automation:
    """Plan the follow-ups (real CPU), then register the first send and each follow-up with the
    messaging provider; the calls run concurrently, as a careful client would make them."""
    rng = _rng(profile, request.fingerprint(), "automation", attempt)
    cost = profile.automation
    await _cpu(cost, f"{campaign_id}:automation".encode())
    calls = 1 + request.follow_ups
    call_rngs = [random.Random(rng.random()) for _ in range(calls)]
    await asyncio.gather(*(_call_provider("messaging", cost, r) for r in call_rngs))
    return Automation(follow_ups_scheduled=request.follow_ups)
