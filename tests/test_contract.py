"""The endpoint contract both designs share: validation, idempotency, reads, limits, Redis outages."""

from __future__ import annotations

import time

import pytest

from tests.conftest import valid_body

DESIGNS = ["inline", "queued"]

INVALID_BODIES = [
    ({**valid_body(), "name": ""}, "name"),
    ({**valid_body(), "name": "x" * 201}, "name"),
    ({**valid_body(), "audience": {"segment": "trial-users", "size": 0}}, "size"),
    ({**valid_body(), "audience": {"segment": "trial-users", "size": 1_000_001}}, "size"),
    ({**valid_body(), "channels": []}, "channels"),
    ({**valid_body(), "channels": ["email", "email"]}, "unique"),
    ({**valid_body(), "channels": ["email", "fax"]}, "channels"),
    ({**valid_body(), "channels": ["email", "sms", "push", "email"]}, "channels"),
    ({**valid_body(), "follow_ups": 6}, "follow_ups"),
    ({**valid_body(), "follow_ups": -1}, "follow_ups"),
    ({**valid_body(), "surprise": True}, "surprise"),
    ({k: v for k, v in valid_body().items() if k != "audience"}, "audience"),
]


@pytest.fixture(scope="module", params=DESIGNS)
def service(request, launch, profiles):
    # Queued runs without workers here: these tests are about what the request itself writes.
    return launch(request.param, profiles["quick"])


@pytest.mark.parametrize("body,field", INVALID_BODIES, ids=[f for _, f in INVALID_BODIES])
def test_invalid_body_is_422_with_message_and_writes_nothing(service, body, field):
    before = service.data_keys()
    with service.client() as client:
        response = client.post("/campaigns", json=body)
    assert response.status_code == 422, response.text
    assert field in response.text
    assert service.data_keys() == before


def test_malformed_json_is_422_and_writes_nothing(service):
    before = service.data_keys()
    with service.client() as client:
        response = client.post("/campaigns", content=b'{"name": "x",', headers={"content-type": "application/json"})
    assert response.status_code == 422
    assert "json" in response.text.lower()
    assert service.data_keys() == before


def test_oversized_body_is_413_and_writes_nothing(service):
    before = service.data_keys()
    body = valid_body(subject_hint="x" * 100_000)
    with service.client() as client:
        response = client.post("/campaigns", json=body)
    assert response.status_code == 413
    assert service.data_keys() == before


def test_unknown_campaign_is_404(service):
    with service.client() as client:
        response = client.get("/campaigns/does-not-exist")
    assert response.status_code == 404
    assert "does-not-exist" in response.json()["detail"]


def test_healthz_and_openapi_docs(service):
    with service.client() as client:
        assert client.get("/healthz").json() == {"status": "ok", "redis": "ok"}
        assert client.get("/docs").status_code == 200
        paths = client.get("/openapi.json").json()["paths"]
    assert {"/campaigns", "/campaigns/{campaign_id}", "/healthz"} <= set(paths)


def test_same_idempotency_key_and_body_returns_the_same_campaign(service):
    with service.client() as client:
        first = client.post("/campaigns", json=valid_body(name="idem"), headers={"Idempotency-Key": "k-same"})
        second = client.post("/campaigns", json=valid_body(name="idem"), headers={"Idempotency-Key": "k-same"})
    assert first.status_code in (201, 202)
    assert second.status_code in (200, 202)
    assert first.json()["id"] == second.json()["id"]
    campaign_keys = [k for k in service.data_keys() if k.startswith(b"offpath:campaign:")]
    assert sum(1 for k in campaign_keys if first.json()["id"].encode() in k) == 1


def test_same_idempotency_key_with_other_body_is_409_and_writes_nothing(service):
    with service.client() as client:
        client.post("/campaigns", json=valid_body(name="one"), headers={"Idempotency-Key": "k-conflict"})
        before = service.data_keys()
        response = client.post("/campaigns", json=valid_body(name="two"), headers={"Idempotency-Key": "k-conflict"})
    assert response.status_code == 409
    assert "Idempotency-Key" in response.json()["detail"]
    assert service.data_keys() == before


@pytest.mark.parametrize("design", DESIGNS)
def test_redis_down_gives_503_fast_and_healthz_fails(design, launch, profiles):
    from loadtests.redis_server import start_redis

    private = start_redis()
    try:
        running = launch(design, profiles["quick"], redis_url=private.url)
        private.kill()
        with running.client() as client:
            started = time.monotonic()
            response = client.post("/campaigns", json=valid_body())
            elapsed = time.monotonic() - started
            health = client.get("/healthz")
        assert response.status_code == 503, response.text
        assert "Redis" in response.json()["detail"]
        assert elapsed < 3.0
        assert health.status_code == 503
    finally:
        private.stop()


@pytest.mark.parametrize("design", DESIGNS)
def test_refused_write_is_503_and_the_transaction_writes_nothing(design, launch, profiles):
    from loadtests.redis_server import start_redis

    private = start_redis()
    try:
        running = launch(design, profiles["quick"], redis_url=private.url)
        admin = running.redis()
        admin.config_set("maxmemory-policy", "noeviction")
        admin.config_set("maxmemory", "1")  # every write is refused with OOM at queue time: EXEC aborts
        before = running.data_keys()
        with running.client() as client:
            response = client.post("/campaigns", json=valid_body())
        admin.config_set("maxmemory", "0")
        assert response.status_code == 503, response.text
        assert running.data_keys() == before
    finally:
        private.stop()
