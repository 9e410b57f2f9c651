"""Bad input, generated: schemathesis drives both services' OpenAPI with valid and invalid requests.
No 5xx, every rejection a well-formed 4xx with a message, nothing persisted on rejection, and every
answer documented: its status, media type and body as the OpenAPI document says."""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import content_type_conformance, response_schema_conformance, status_code_conformance

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
