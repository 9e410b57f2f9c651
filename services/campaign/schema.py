"""The campaign contract: one request model and the response shapes both designs serve."""

from __future__ import annotations

import hashlib
import json
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field, field_validator


class Channel(StrEnum):
    email = "email"
    sms = "sms"
    push = "push"


class Status(StrEnum):
    accepted = "accepted"
    generating = "generating"
    automating = "automating"
    completed = "completed"
    failed = "failed"


class Audience(BaseModel):
    model_config = ConfigDict(extra="forbid")

    segment: str = Field(min_length=1, max_length=100, pattern=r"^[a-z0-9][a-z0-9_-]*$",
                         description="Audience segment slug, e.g. 'trial-users'.")
    size: int = Field(ge=1, le=1_000_000, description="Number of recipients in the segment.")


class CampaignRequest(BaseModel):
    """The body of POST /campaigns, shared by both services and by the load generator."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=200)
    audience: Audience
    channels: list[Channel] = Field(min_length=1, max_length=3)
    follow_ups: int = Field(ge=0, le=5, description="Follow-up messages to schedule after the first send.")
    locale: str = Field(default="en", pattern=r"^[a-z]{2}(-[A-Z]{2})?$")
    subject_hint: str | None = Field(default=None, max_length=500)

    @field_validator("channels")
    @classmethod
    def channels_unique(cls, channels: list[Channel]) -> list[Channel]:
        if len(set(channels)) != len(channels):
            raise ValueError("channels must be unique (choose from email, sms, push)")
        return channels

    def fingerprint(self) -> str:
        """A stable digest of the body, used to tell an idempotent repeat from a conflicting one."""
        canonical = json.dumps(self.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()


class CampaignAccepted(BaseModel):
    id: str
    status: Status


class Campaign(BaseModel):
    """A campaign's state as GET /campaigns/{id} shows it."""

    id: str
    status: Status
    request: CampaignRequest
    accepted_at: float
    started_at: float | None = None
    completed_at: float | None = None
    failed_at: float | None = None
    attempts: int = 0
    last_error: str | None = None
    content_digest: str | None = None
    follow_ups_scheduled: int | None = None
