"""The endpoint contract both designs share: validation, idempotency, reads, limits, Redis outages."""

from __future__ import annotations

import json
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


# Values of the wrong JSON type, set at a field's path: the 422 must name that field. Nothing is
# coerced: not false to 0, not "3" to 3, not 2.5 to 2, not 7 to "7" (2.0 is an integer: see below).
WRONG_TYPES = [
    (("follow_ups",), False),
    (("follow_ups",), True),
    (("follow_ups",), "3"),
    (("follow_ups",), 2.5),
    (("follow_ups",), None),
    (("name",), 123),
    (("name",), ["Spring launch"]),
    (("audience", "size"), "1200"),
    (("audience", "size"), True),
    (("audience", "size"), 1200.5),
    (("audience", "segment"), 7),
    (("audience",), ["trial-users", 1200]),
    (("channels",), "email"),
    (("channels",), [1]),
    (("channels",), [True]),
    (("locale",), 1),
    (("subject_hint",), 5),
    (("subject_hint",), False),
]


def with_value(path: tuple[str, ...], value: object) -> dict:
    body = valid_body()
    *parents, field = path
    target = body
    for parent in parents:
        target = target[parent]
    target[field] = value
    return body


# Bodies that are not JSON text at all. Each must be a documented 422 that says so, never a 400.
UNPARSEABLE_BODIES = {
    "invalid-utf8": b'{"name": "Spring \xff launch"}',
    "latin1": '{"name": "Fr\u00fchling", "audience": {"segment": "x", "size": 1}}'.encode("latin-1"),
    "not-json": b"name=Spring launch&follow_ups=2",
    "truncated": b'{"name": "x",',
    "nested-too-deep": b"[" * 5000 + b"]" * 5000,
    "integer-too-long": b'{"follow_ups": ' + b"9" * 5000 + b"}",
}

# Every status each operation can answer, read from the code: the OpenAPI document must list each
# one with a schema for its body.
ANSWERS = {
    "inline": {("post", "/campaigns"): {200, 201, 409, 413, 422, 502, 503, 504}},
    "queued": {("post", "/campaigns"): {202, 409, 413, 422, 503}},
}
SHARED_ANSWERS = {("get", "/campaigns/{campaign_id}"): {200, 404, 503}, ("get", "/healthz"): {200, 503}}


@pytest.fixture(scope="module", params=DESIGNS)
def design(request) -> str:
    return request.param


@pytest.fixture(scope="module")
def service(design, launch, profiles):
    # Queued runs without workers here: these tests are about what the request itself writes.
    return launch(design, profiles["quick"])


def assert_documented(running, method: str, path: str, response) -> None:
    """The response's status is in the operation's OpenAPI responses, with a schema for its media type."""
    with running.client() as client:
        responses = client.get("/openapi.json").json()["paths"][path][method]["responses"]
    where = f"{method.upper()} {path} answered {response.status_code}"
    assert str(response.status_code) in responses, f"{where}, which its OpenAPI document does not list"
    media_type = response.headers["content-type"].split(";")[0].strip()
    content = responses[str(response.status_code)].get("content", {})
    assert "schema" in content.get(media_type, {}), f"{where} as {media_type}, documented only as {list(content)}"


@pytest.mark.parametrize("body,field", INVALID_BODIES, ids=[f for _, f in INVALID_BODIES])
def test_invalid_body_is_422_with_message_and_writes_nothing(service, body, field):
    before = service.data_keys()
    with service.client() as client:
        response = client.post("/campaigns", json=body)
    assert response.status_code == 422, response.text
    assert field in response.text
    assert service.data_keys() == before


@pytest.mark.parametrize("path,value", WRONG_TYPES, ids=[f"{'.'.join(p)}={v!r}" for p, v in WRONG_TYPES])
def test_wrong_json_type_is_422_naming_the_field_and_writes_nothing(service, path, value):
    body = with_value(path, value)
    before = service.data_keys()
    with service.client() as client:
        response = client.post("/campaigns", json=body)
    assert response.status_code == 422, response.text
    failing = [tuple(error["loc"][1:]) for error in response.json()["detail"]]
    assert any(loc[:len(path)] == path for loc in failing), f"expected an error at {path}, got {failing}"
    assert service.data_keys() == before


@pytest.mark.parametrize("content", UNPARSEABLE_BODIES.values(), ids=UNPARSEABLE_BODIES.keys())
def test_unparseable_body_is_a_documented_422_and_writes_nothing(service, content):
    before = service.data_keys()
    with service.client() as client:
        response = client.post("/campaigns", content=content, headers={"content-type": "application/json"})
    assert response.status_code == 422, response.text
    assert "json" in response.json()["detail"][0]["msg"].lower(), response.text
    assert_documented(service, "post", "/campaigns", response)
    assert service.data_keys() == before


@pytest.mark.parametrize("field", ["name", "subject_hint"])
def test_text_with_a_lone_surrogate_is_422_naming_the_field_and_writes_nothing(service, field):
    # "\ud800" is valid JSON that decodes to no Unicode text: the 422 echoing it must still be answerable.
    content = json.dumps({**valid_body(), field: "Spring \ud800"}).encode()
    before = service.data_keys()
    with service.client() as client:
        response = client.post("/campaigns", content=content, headers={"content-type": "application/json"})
    assert response.status_code == 422, response.text
    assert [field] in [error["loc"][1:] for error in response.json()["detail"]]
    assert service.data_keys() == before


@pytest.mark.parametrize("content_type", ["text/plain", None], ids=["text-plain", "no-content-type"])
def test_body_not_sent_as_json_is_a_documented_422_and_writes_nothing(service, content_type):
    before = service.data_keys()
    headers = {"content-type": content_type} if content_type else {}
    with service.client() as client:
        response = client.post("/campaigns", content=b'{"name": "Spring launch"}', headers=headers)
    assert response.status_code == 422, response.text
    assert_documented(service, "post", "/campaigns", response)
    assert service.data_keys() == before


def test_every_status_each_operation_can_answer_is_documented_with_a_schema(service, design):
    with service.client() as client:
        paths = client.get("/openapi.json").json()["paths"]
    for (method, path), statuses in {**ANSWERS[design], **SHARED_ANSWERS}.items():
        responses = paths[path][method]["responses"]
        for status in statuses:
            content = responses.get(str(status), {}).get("content", {})
            assert any("schema" in media for media in content.values()), (
                f"{method.upper()} {path} can answer {status}; its OpenAPI document has {responses.get(str(status))}"
            )


def test_the_answers_the_suite_observes_are_documented(service):
    with service.client() as client:
        answers = [
            ("post", "/campaigns", client.post("/campaigns", json=valid_body(name="documented"),
                                               headers={"Idempotency-Key": "k-documented"})),
            ("post", "/campaigns", client.post("/campaigns", json=valid_body(name="documented"),
                                               headers={"Idempotency-Key": "k-documented"})),
            ("post", "/campaigns", client.post("/campaigns", json=valid_body(name="other"),
                                               headers={"Idempotency-Key": "k-documented"})),
            ("post", "/campaigns", client.post("/campaigns", json={**valid_body(), "follow_ups": False})),
            ("post", "/campaigns", client.post("/campaigns", json=valid_body(subject_hint="x" * 100_000))),
            ("get", "/campaigns/{campaign_id}", client.get("/campaigns/does-not-exist")),
            ("get", "/healthz", client.get("/healthz")),
        ]
    assert {response.status_code for _, _, response in answers} >= {404, 409, 413, 422}
    for method, path, response in answers:
        assert_documented(service, method, path, response)


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


def test_an_integral_number_is_the_integer_the_published_schema_says_it_is(service):
    # OpenAPI 3.1's JSON Schema: 2.0 satisfies {"type": "integer"}; it is the same campaign as 2, repeat included.
    whole = {**valid_body(name="whole", follow_ups=2.0), "audience": {"segment": "trial-users", "size": 1200.0}}
    with service.client() as client:
        first = client.post("/campaigns", content=json.dumps(whole), headers={"Idempotency-Key": "k-whole",
                                                                             "content-type": "application/json"})
        second = client.post("/campaigns", json=valid_body(name="whole"), headers={"Idempotency-Key": "k-whole"})
        campaign = client.get(f"/campaigns/{first.json()['id']}").json()
    assert first.status_code in (201, 202), first.text
    assert second.status_code in (200, 202) and second.json()["id"] == first.json()["id"], second.text
    assert campaign["request"]["follow_ups"] == 2 and campaign["request"]["audience"]["size"] == 1200
    assert '"follow_ups":2,' in json.dumps(campaign["request"], separators=(",", ":"))


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
    from offpath.redis_server import start_redis

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
        assert_documented(running, "post", "/campaigns", response)
        assert_documented(running, "get", "/healthz", health)
    finally:
        private.stop()


@pytest.mark.parametrize("design", DESIGNS)
def test_refused_write_is_503_and_the_transaction_writes_nothing(design, launch, profiles):
    from offpath.redis_server import start_redis

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
