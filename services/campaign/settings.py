"""Service settings, read once from the environment: the one place a service's knobs live."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TypeVar

from foundation.errors import ConfigurationError
from services.campaign.profile import Profile, ProfileError, ProfileSpec

DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"

T = TypeVar("T")


class SettingError(ConfigurationError):
    """An environment variable holds a value the service cannot use; the message names both."""


def _read(env: Mapping[str, str], name: str, default: str, parse: Callable[[str], T | None], allowed: str) -> T:
    text = env.get(name, default)
    try:
        value = parse(text)
    except ValueError:
        value = None
    if value is None:
        raise SettingError(f"environment variable {name} has value {text!r}; allowed: {allowed}")
    return value


def _non_negative_int(text: str) -> int | None:
    value = int(text)
    return value if value >= 0 else None


def _positive_int(text: str) -> int | None:
    value = int(text)
    return value if value > 0 else None


def _positive_float(text: str) -> float | None:
    value = float(text)
    return value if value > 0 and value != float("inf") else None


def _int_list(text: str) -> list[int] | None:
    values = [int(part) for part in text.split(",") if part.strip()]
    return values if all(v >= 0 for v in values) else None


def _profile_spec(env: Mapping[str, str]) -> ProfileSpec:
    """OFFPATH_PROFILE, the spec the harness gives a service as text (str(spec)), read back into the spec."""
    try:
        return ProfileSpec.parse(env.get("OFFPATH_PROFILE", "default"))
    except ProfileError as exc:
        raise SettingError(f"environment variable OFFPATH_PROFILE: {exc}") from None


@dataclass(frozen=True)
class Settings:
    redis_url: str = DEFAULT_REDIS_URL
    profile_spec: ProfileSpec = field(default_factory=ProfileSpec)
    # Redis calls that take longer than this fail the request with 503 instead of hanging it.
    redis_timeout_s: float = 2.0
    # Retries of a failed provider call, and the backoff before each (seconds). RQ's Retry takes
    # whole seconds; the inline service uses the same policy so the two designs stay comparable.
    retries: int = 3
    retry_backoff_s: list[int] = field(default_factory=lambda: [1, 2, 4])
    queue_name: str = "campaigns"
    # Idempotency keys are remembered this long.
    idempotency_ttl_s: int = 24 * 3600
    max_body_bytes: int = 64 * 1024
    # Queued: jobs waiting in the queue past which new campaigns are shed with 503 (0: no bound).
    max_backlog: int = 10_000
    # Inline: requests in progress past which new ones are shed with 503 at once, and the time
    # after which a request gives up with 504 (its campaign marked failed), instead of piling up.
    max_in_flight: int = 512
    request_deadline_s: float = 30.0
    # Requests in progress per service process: 0 is unbounded asyncio; N models a sync server with N
    # workers or threads (services/campaign/concurrency.py). Both designs take the same bound.
    concurrency: int = 0

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """Settings from environment variables; a value it cannot use raises SettingError naming the variable."""
        env = os.environ if env is None else env
        return cls(
            redis_url=env.get("REDIS_URL", DEFAULT_REDIS_URL),
            profile_spec=_profile_spec(env),
            redis_timeout_s=_read(env, "OFFPATH_REDIS_TIMEOUT_S", "2.0", _positive_float, "seconds > 0, e.g. 2.0"),
            retries=_read(env, "OFFPATH_RETRIES", "3", _non_negative_int, "a whole number >= 0"),
            retry_backoff_s=_read(env, "OFFPATH_RETRY_BACKOFF_S", "1,2,4", _int_list,
                                  "whole seconds >= 0 separated by commas, e.g. 1,2,4"),
            queue_name=_read(env, "OFFPATH_QUEUE", "campaigns", lambda t: t.strip() or None, "a non-empty name"),
            max_backlog=_read(env, "OFFPATH_MAX_BACKLOG", "10000", _non_negative_int,
                              "a whole number of queued jobs >= 0 (0: no bound)"),
            max_in_flight=_read(env, "OFFPATH_MAX_IN_FLIGHT", "512", _positive_int, "a whole number > 0"),
            request_deadline_s=_read(env, "OFFPATH_REQUEST_DEADLINE_S", "30", _positive_float,
                                     "seconds > 0, e.g. 30"),
            concurrency=_read(env, "OFFPATH_CONCURRENCY", "0", _non_negative_int,
                              "a whole number of requests in progress per process >= 0 (0: unbounded)"),
        )

    def profile(self) -> Profile:
        return self.profile_spec.load()

    def backoff_s(self, retry_number: int) -> int:
        """Backoff before retry number retry_number (1-based), the last value repeating."""
        if not self.retry_backoff_s:
            return 0
        return self.retry_backoff_s[min(retry_number, len(self.retry_backoff_s)) - 1]
