"""Request bodies, seeded: a design's body source (loadtests/contract.py) turned into a pool the load cycles through, and
offpath's own campaign bodies, each built and validated through the shared CampaignRequest model."""

from __future__ import annotations

import functools
import importlib
import itertools
import json
import math
import random
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from loadtests.contract import BodySource
from services.campaign.schema import Audience, CampaignRequest, Channel

__all__ = ["POOL_SIZE", "BodyError", "PayloadFactory", "body_pool", "campaign_body", "campaign_request"]

# Bodies are built once, up front, and then cycled: building (and for campaigns validating) a body per request would
# cost the driver tens of microseconds of CPU on the request path, and 4096 distinct bodies already vary far more than
# a service cares about.
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


class BodyError(ValueError):
    """A body source that cannot give bodies: a function that cannot be imported or returns something else than a body,
    a template that cannot be read. The message says which and what to do."""


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


def campaign_body(rng: random.Random, number: int) -> bytes:
    """offpath's own payload function (services/campaign/contract.toml): a campaign request as JSON."""
    return campaign_request(rng, number).model_dump_json(exclude_none=True).encode()


def _as_bytes(value: Any, where: str) -> bytes:
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode()
    if isinstance(value, dict | list):
        return json.dumps(value, separators=(",", ":")).encode()
    raise BodyError(f"{where} returned {type(value).__name__}; allowed: bytes, str, or a dict or list (sent as JSON)")


def _function(spec: str) -> Callable[[random.Random, int], Any]:
    module_name, _, name = spec.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise BodyError(f"payload function {spec!r}: cannot import {module_name!r} ({exc}); it must be importable "
                        "from the design's folder (its `cwd`) or the experiment file's folder") from None
    function = getattr(module, name, None)
    if not callable(function):
        raise BodyError(f"payload function {spec!r}: {module_name} has no function {name!r}")
    return function


def _template(path: Path) -> Callable[[random.Random, int], bytes]:
    try:
        text = path.read_text()
    except OSError as exc:
        raise BodyError(f"body template {path}: cannot read it ({exc.strerror or exc})") from None

    def render(rng: random.Random, number: int) -> bytes:
        # {number} and {uuid} only: str.replace, not str.format, so a JSON template's own braces stay as they are.
        seeded = uuid.UUID(int=rng.getrandbits(128), version=4)
        return text.replace("{number}", str(number)).replace("{uuid}", str(seeded)).encode()

    return render


def body_maker(source: BodySource | None, base_dir: Path | None = None) -> Callable[[random.Random, int], bytes]:
    """A function (rng, number) -> body for a body source; no source: an empty body."""
    if source is None:
        return lambda rng, number: b""
    if source.function is not None:
        function, where = _function(source.function), f"payload function {source.function!r}"
        return lambda rng, number: _as_bytes(function(rng, number), where)
    if source.template is not None:
        path = Path(source.template)
        return _template(path if path.is_absolute() or base_dir is None else base_dir / path)
    fixed = _as_bytes(source.json_body, "the json body")
    return lambda rng, number: fixed


@functools.cache
def body_pool(seed: int, source_json: str = "", base_dir: str = "") -> tuple[bytes, ...]:
    """The seed's bodies, built once per process (build them before the load starts: ~0.1 s for campaigns). The same
    seed and source give the same bodies in the same order, whichever process builds them: offpath's services key their
    simulated providers' draws by the body, so runs and designs see the same dice."""
    source = BodySource.model_validate_json(source_json) if source_json else None
    make = body_maker(source, Path(base_dir) if base_dir else None) if source is not None else campaign_body
    rng = random.Random(f"offpath-payloads:{seed}")
    return tuple(make(rng, number) for number in range(POOL_SIZE))


class PayloadFactory:
    """Cycles through the seed's pool of bodies; the same seed, source and stream give the same bodies in the same
    order."""

    def __init__(self, seed: int, stream: int = 0, source: BodySource | None = None, base_dir: Path | None = None):
        self.bodies = body_pool(seed, source.model_dump_json(by_alias=True, exclude_none=True) if source else "",
                                str(base_dir or ""))
        # Each Locust process (stream) starts at its own place in the pool, so workers do not send the
        # same sequence in lockstep, without building a pool per process.
        start = (stream * 1_009) % len(self.bodies)
        self._cycle = itertools.cycle(self.bodies[start:] + self.bodies[:start])

    def next_body(self) -> bytes:
        return next(self._cycle)
