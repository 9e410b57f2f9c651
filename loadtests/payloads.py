"""Seeded, varied POST /campaigns bodies, each one built and validated through the shared CampaignRequest model."""

from __future__ import annotations

import functools
import itertools
import math
import random

from services.campaign.schema import Audience, CampaignRequest, Channel

# Bodies are built once, up front, and then cycled: validating a pydantic model per request would cost
# the driver tens of microseconds of CPU on the request path, and 4096 distinct bodies already vary
# names, segments, sizes, channels and follow-ups far more than the services care about.
POOL_SIZE = 4096

_ADJECTIVES = ("spring", "summer", "autumn", "winter", "flash", "loyal", "welcome", "comeback", "vip", "weekend",
               "holiday", "launch", "renewal", "trial", "annual", "midnight")
_THEMES = ("sale", "launch", "digest", "reminder", "survey", "offer", "newsletter", "upgrade", "onboarding",
           "webinar", "preview", "giveaway")
_SEGMENTS = ("trial-users", "churn-risk", "power-users", "new-signups", "dormant-90d", "enterprise", "smb",
             "students", "eu-customers", "us-customers", "beta_testers", "cart-abandoners", "vip", "newsletter-only")
_LOCALES = ("en", "en-GB", "de", "fr", "es", "pt-BR", "it", "nl", "ja")
_HINTS = ("keep it short", "mention the discount twice", "friendly, no exclamation marks", "use the customer's name",
          "highlight the deadline")


def campaign_request(rng: random.Random, number: int) -> CampaignRequest:
    """One plausible campaign: 1-3 distinct channels, 0-5 follow-ups, audience sizes spread log-uniformly."""
    return CampaignRequest(
        name=f"{rng.choice(_ADJECTIVES).title()} {rng.choice(_THEMES)} #{number}",
        audience=Audience(
            segment=rng.choice(_SEGMENTS),
            # Log-uniform over 1..1e6: a few huge segments, many small ones, like real audiences.
            size=min(1_000_000, max(1, int(math.exp(rng.uniform(0.0, math.log(1_000_000)))))),
        ),
        channels=rng.sample(list(Channel), k=rng.randint(1, 3)),
        follow_ups=rng.randint(0, 5),
        locale=rng.choice(_LOCALES),
        subject_hint=rng.choice(_HINTS) if rng.random() < 0.3 else None,
    )


@functools.cache
def body_pool(seed: int) -> tuple[bytes, ...]:
    """The seed's bodies as JSON, built once per process (build it before the load starts: it takes ~0.1 s)."""
    rng = random.Random(f"offpath-payloads:{seed}")
    return tuple(campaign_request(rng, number).model_dump_json(exclude_none=True).encode()
                 for number in range(POOL_SIZE))


class PayloadFactory:
    """Cycles through the seed's pool of bodies; the same seed and stream give the same bodies in the same order."""

    def __init__(self, seed: int, stream: int = 0):
        self.bodies = body_pool(seed)
        # Each Locust process (stream) starts at its own place in the pool, so workers do not send the
        # same sequence in lockstep, without building a pool per process.
        start = (stream * 1_009) % len(self.bodies)
        self._cycle = itertools.cycle(self.bodies[start:] + self.bodies[:start])

    def next_body(self) -> bytes:
        return next(self._cycle)
