"""The campaign contract: one request model and the response shapes, errors included, both designs serve."""

from __future__ import annotations

import hashlib
import json
from enum import StrEnum
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, Strict, field_validator


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


# FastAPI validates the decoded body (validate_python), where a channel arrives as the JSON string
# "email", not as a Channel, and strict mode would refuse it. Lax, an enum takes exactly its string
# values (and Channel members, from Python); numbers and booleans are still refused.
ChannelName = Annotated[Channel, Strict(False)]


def _whole(value: Any) -> Any:
    return int(value) if isinstance(value, float) and value.is_integer() else value


# The published schema is JSON Schema 2020-12 (OpenAPI 3.1), where an integer is any number with a zero fractional
# part: 5.0 is one (and a client that computes its bodies in floats sends it), 5.5, true and "5" are not. Strict
# pydantic takes only the first spelling; an integral float is read as the integer it is, the rest stays refused.
WholeNumber = Annotated[int, BeforeValidator(_whole)]


class Audience(BaseModel):
    # Strict, like CampaignRequest: a value of the wrong JSON type is refused, never coerced.
    model_config = ConfigDict(extra="forbid", strict=True)

    segment: str = Field(min_length=1, max_length=100, pattern=r"^[a-z0-9][a-z0-9_-]*$",
                         description="Audience segment slug, e.g. 'trial-users'.")
    size: WholeNumber = Field(ge=1, le=1_000_000, description="Number of recipients in the segment.")


class CampaignRequest(BaseModel):
    """The body of POST /campaigns, shared by both services and by the load generator."""

    # Strict: the body must match its OpenAPI schema as sent. Lax pydantic would take false as 0 and "3" as 3,
    # accepting bodies the published schema calls invalid (2.0 is an integer there: WholeNumber).
    model_config = ConfigDict(extra="forbid", strict=True)

    name: str = Field(min_length=1, max_length=200)
    audience: Audience
    # Published unique (a list keeps the order the client chose), so that a body the schema allows is one we accept.
    channels: list[ChannelName] = Field(min_length=1, max_length=3, json_schema_extra={"uniqueItems": True})
    follow_ups: WholeNumber = Field(ge=0, le=5, description="Follow-up messages to schedule after the first send.")
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


class ErrorBody(BaseModel):
    """The body of every refusal and failure the services answer themselves, but 422: what happened, what to do."""

    detail: str


class CampaignFailed(ErrorBody):
    """The inline design's 502: a provider kept failing, and the campaign is recorded as failed."""

    campaign: Campaign | None


class CampaignTimedOut(ErrorBody):
    """The inline design's 504: the work passed the request deadline, and the campaign is recorded as failed."""

    id: str


class FieldError(BaseModel):
    """One reason a request is invalid, as pydantic reports it."""

    loc: list[str | int] = Field(
        description='Where: e.g. ["body", "audience", "size"], or ["body", byte offset] in a body that is not JSON.'
    )
    msg: str
    type: str
    input: Any = None
    ctx: dict[str, Any] | None = None


class InvalidRequest(BaseModel):
    """The body of a 422: every failing field, each named by its `loc`."""

    detail: list[FieldError]
