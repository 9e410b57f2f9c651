"""The inline design: the request does the work and answers with the finished campaign."""

from __future__ import annotations

import pytest

from tests.conftest import valid_body


@pytest.fixture(scope="module")
def inline(launch, profiles):
    return launch("inline", profiles["quick"])


def test_post_returns_201_with_the_completed_campaign(inline):
    with inline.client() as client:
        response = client.post("/campaigns", json=valid_body(follow_ups=3))
        assert response.status_code == 201, response.text
        campaign = response.json()
        assert campaign["status"] == "completed"
        assert campaign["accepted_at"] <= campaign["started_at"] <= campaign["completed_at"]
        assert campaign["attempts"] == 2  # one generation attempt, one automation attempt
        assert campaign["follow_ups_scheduled"] == 3
        assert len(campaign["content_digest"]) == 64
        assert client.get(f"/campaigns/{campaign['id']}").json() == campaign


def test_work_runs_once_per_campaign(inline):
    with inline.client() as client:
        campaign = client.post("/campaigns", json=valid_body(), headers={"Idempotency-Key": "inline-once"}).json()
        repeat = client.post("/campaigns", json=valid_body(), headers={"Idempotency-Key": "inline-once"})
    assert repeat.status_code == 200
    assert repeat.json()["id"] == campaign["id"]
    executions = inline.redis().hgetall(f"offpath:executions:{campaign['id']}")
    assert executions == {b"content": b"1", b"automation": b"1"}


def test_provider_failures_retry_then_answer_502_with_campaign_failed(launch, profiles):
    broken = launch("inline", profiles["broken"])
    with broken.client() as client:
        response = client.post("/campaigns", json=valid_body())
    assert response.status_code == 502
    body = response.json()
    assert "retries" in body["detail"]
    campaign = body["campaign"]
    assert campaign["status"] == "failed"
    assert campaign["attempts"] == 3  # first try and two retries (OFFPATH_RETRIES=2)
    assert "ProviderError" in campaign["last_error"]
