"""Input generated from the published contract: schemathesis drives both services' OpenAPI with valid and invalid
requests. No 5xx, every rejection a well-formed 4xx with a message, nothing persisted on rejection, every answer
documented: its status, media type and body as the OpenAPI document says; and every body the published schema allows,
its integers' bounds included as written, is accepted."""

from __future__ import annotations

import importlib
import json
from collections.abc import Iterator

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, example, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import content_type_conformance, response_schema_conformance, status_code_conformance

from tests.conftest import valid_body

DOCUMENTED = [status_code_conformance, content_type_conformance, response_schema_conformance]


@pytest.mark.parametrize("design", ["inline", "queued"])
@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE], ids=["valid", "invalid"])
def test_no_server_errors_and_rejections_write_nothing(design, mode, launch, profiles):
    running = launch(design, profiles["quick"])  # queued without workers: only the request's own writes
    schema = schemathesis.openapi.from_url(f"{running.url}/openapi.json")
    checked = 0
    for result in schema.get_all_operations():
        operation = result.ok()
        if mode == GenerationMode.NEGATIVE and operation.method.upper() != "POST":
            continue  # the GETs take no body and any string id: there is nothing invalid to generate

        @given(case=operation.as_strategy(generation_mode=mode))
        @settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck), database=None)
        def check(case):
            nonlocal checked
            before = running.data_keys()
            response = case.call(base_url=running.url, timeout=30)
            where = f"{case.method} {case.formatted_path}"
            assert response.status_code < 500, f"{where}: {response.status_code} {response.text}"
            if 400 <= response.status_code < 500:
                assert response.json().get("detail"), f"{where}: a rejection without a message: {response.text}"
                if case.method == "POST":
                    assert running.data_keys() == before, f"{where}: a rejected request wrote to Redis"
            case.validate_response(response, checks=DOCUMENTED)
            checked += 1

        check()
    assert checked > 0


@pytest.mark.fast
@pytest.mark.parametrize("design", ["inline", "queued"])
def test_integer_bounds_are_published_as_integers(design):
    create_app = importlib.import_module(f"services.{design}.app").create_app
    document = create_app().openapi()
    bounds = [(name, key, value) for name, field in _integer_schemas(document) for key, value in field.items()
              if key in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "multipleOf")]
    assert ("follow_ups", "maximum", 5) in bounds and ("size", "minimum", 1) in bounds
    assert not [b for b in bounds if not isinstance(b[2], int)], bounds


def _integer_schemas(node, name: str = "") -> Iterator[tuple[str, dict]]:
    if isinstance(node, dict):
        if node.get("type") == "integer":
            yield name, node
        for key, value in node.items():
            yield from _integer_schemas(value, key)
    elif isinstance(node, list):
        for item in node:
            yield from _integer_schemas(item, name)


def published_bound_bodies(document: dict) -> list[dict]:
    """A valid body per bound of an integer field, the field set to the bound exactly as /openapi.json writes it: what
    a client that builds its bodies from the published schema sends."""
    schemas = document["components"]["schemas"]
    bodies = []
    for path, model in ((("follow_ups",), "CampaignRequest"), (("audience", "size"), "Audience")):
        field = schemas[model]["properties"][path[-1]]
        assert field["type"] == "integer", field
        for bound in ("minimum", "maximum"):
            body = valid_body()
            target = body
            for parent in path[:-1]:
                target = target[parent]
            target[path[-1]] = field[bound]
            bodies.append(body)
    return bodies


@pytest.mark.parametrize("design", ["inline", "queued"])
def test_a_body_the_published_schema_allows_is_accepted(design, launch, profiles):
    running = launch(design, profiles["quick"])  # queued without workers: acceptance is the request's own doing
    document = httpx.get(f"{running.url}/openapi.json", timeout=30).json()
    operation = schemathesis.openapi.from_dict(document)["/campaigns"]["POST"]
    accepted_status = {"inline": 201, "queued": 202}[design]
    sent = 0

    # Only the body: a generated Idempotency-Key repeated with another body is rightly refused (409).
    @given(body=operation.as_strategy(generation_mode=GenerationMode.POSITIVE).map(lambda case: case.body))
    @settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    def check(body):
        nonlocal sent
        with running.client() as client:
            response = client.post("/campaigns", content=json.dumps(body), headers={"content-type": "application/json"})
        assert response.status_code == accepted_status, f"{json.dumps(body)}: {response.status_code} {response.text}"
        sent += 1

    for body in published_bound_bodies(document):
        check = example(body=body)(check)
    check()
    assert sent >= 60
