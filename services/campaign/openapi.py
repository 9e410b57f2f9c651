"""The published contract as clients read it: FastAPI's OpenAPI document, with an integer's bounds written as integers.

FastAPI validates the document it generates through its own OpenAPI model, whose `minimum`, `maximum`,
`exclusiveMinimum`, `exclusiveMaximum` and `multipleOf` are floats: `follow_ups` (`Field(ge=0, le=5)`) is published as
`{"type": "integer", "minimum": 0.0, "maximum": 5.0}`, and a client that builds a body from those bounds sends `5.0`,
which the strict request model refuses (422). The bounds are put back as integers wherever the schema is an integer's.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI

BOUNDS = ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "multipleOf")


def integer_bounds(node: Any) -> Any:
    """A copy of an OpenAPI document (or any part of it) with every integral bound of an integer schema an int."""
    if isinstance(node, list):
        return [integer_bounds(item) for item in node]
    if not isinstance(node, dict):
        return node
    fixed = {key: integer_bounds(value) for key, value in node.items()}
    if fixed.get("type") == "integer":
        for key in BOUNDS:
            if isinstance(bound := fixed.get(key), float) and bound.is_integer():
                fixed[key] = int(bound)
    return fixed


def publish_integer_bounds(app: FastAPI) -> None:
    """Make `app` serve /openapi.json (and answer `app.openapi()`) with integer bounds as integers."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = integer_bounds(generate())
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]  # FastAPI's documented way to change the document
