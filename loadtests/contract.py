"""The contract between a design and its clients, as data: the request the load sends, and how its outcome shows.

Every design offpath measures — its own two and any team's pair — is driven through one of these. The request:
method, path, headers and where the bodies come from (a payload function given a seeded random generator, a template
file, or one fixed JSON body). The outcome: which statuses answer with the finished result (the inline kind), which
acknowledge work that finishes later (the queued kind), where an acknowledged request's id is (a header such as
`Location`, or a JSON pointer into the body), and how its state is observed: a status URL, a JSON pointer to the state
field with its done and failed values, optionally a parameter that makes the service hold the GET until the state is
final, and JSON pointers to the timestamps the service records (accepted, started, completed).

The harness reads it from experiment files (offpath/designs.py), hands it to every Locust process as JSON
(`--contract FILE`), and the client (client.py) follows it. Plain `locust -f loadtests/locustfile.py` without
`--contract` drives offpath's own campaign services (CAMPAIGNS_FILE).
"""

from __future__ import annotations

import json
import re
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, model_validator

from foundation.config import ConfigModel, load_toml

__all__ = ["BodySource", "CAMPAIGNS_FILE", "Contract", "Driven", "IdSource", "Outcome", "Request", "StatusCheck",
           "Timestamps", "campaign_contract", "pointer", "timestamp_s"]

# offpath's own campaign services (services/inline, services/queued) share this contract; their design declarations
# name it, and the locustfile drives it when given no other.
CAMPAIGNS_FILE = Path(__file__).resolve().parent.parent / "services" / "campaign" / "contract.toml"

_POINTER = re.compile(r"^(/([^/~]|~[01])*)*$")


def _check_pointer(value: str | None, key: str) -> None:
    if value is not None and (not value.startswith("/") or not _POINTER.match(value)):
        raise ValueError(f"allowed: a JSON pointer such as '/id' or '/data/state' (RFC 6901), not {value!r} for {key}")


class BodySource(ConfigModel):
    """Where request bodies come from, exactly one of: `function` ('module:function', called as function(rng, number)
    with a seeded random.Random and the body's sequence number, returning bytes, str or a JSON-able dict), `template` (a
    file whose text may hold {number} and {uuid}: the body's sequence number and a seeded UUID), `json` (one body,
    sent every time)."""

    function: str | None = Field(None, description="'module:function', importable from the design's folder")
    template: str | None = Field(None, description="a path to a template file, relative to the experiment file")
    json_body: dict[str, Any] | list[Any] | None = Field(None, alias="json", description="a table: the JSON body")

    @model_validator(mode="after")
    def _exactly_one(self) -> BodySource:
        given = [name for name, value in (("function", self.function), ("template", self.template),
                                          ("json", self.json_body)) if value is not None]
        if len(given) != 1:
            raise ValueError("allowed: exactly one of function, template, json" + (f" (got {', '.join(given)})"
                                                                                    if given else ""))
        if self.function is not None and not re.match(r"^[\w.]+:\w+$", self.function):
            raise ValueError(f"allowed: 'module:function', e.g. 'payloads:order' (got {self.function!r})")
        return self


class Request(ConfigModel):
    """The request the load sends, one per arrival."""

    method: Literal["POST", "PUT", "PATCH", "GET", "DELETE"] = "POST"
    path: str = Field(description="a path starting with '/', e.g. '/orders'")
    headers: dict[str, str] = {}
    body: BodySource | None = None

    @model_validator(mode="after")
    def _path(self) -> Request:
        if not self.path.startswith("/"):
            raise ValueError(f"allowed: a path starting with '/' (got {self.path!r})")
        return self


class IdSource(ConfigModel):
    """Where an acknowledged request's id is: a response header (`Location`, whose value may be the status URL itself)
    or a JSON pointer into the answer's body."""

    header: str | None = None
    pointer: str | None = Field(None, description="a JSON pointer such as '/id'")

    @model_validator(mode="after")
    def _exactly_one(self) -> IdSource:
        if (self.header is None) == (self.pointer is None):
            raise ValueError("allowed: exactly one of header (e.g. 'Location') or pointer (e.g. '/id')")
        _check_pointer(self.pointer, "id.pointer")
        return self


class StatusCheck(ConfigModel):
    """How an acknowledged request's state is observed: GET `url` (with {id}; without a url, the id itself when it is a
    path or URL, as a Location header is), read the state at JSON pointer `state`, final when it is one of `done` or
    `failed`. With `hold`, the name of a query parameter (seconds) that makes the service hold the GET until final."""

    url: str | None = Field(None, description="a path with {id}, e.g. '/orders/{id}'")
    state: str = Field(description="a JSON pointer to the state field, e.g. '/status'")
    done: list[str] = Field(min_length=1, description="a list of the state values that mean done")
    failed: list[str] = []
    # The states it may show before it is final. Declared, any other state is a contract mismatch at once; left out,
    # a state that stays outside done and failed is only found out by waiting (the check before a run waits 30 s).
    pending: list[str] = []
    hold: str | None = Field(None, description="the name of the query parameter of a held GET, e.g. 'wait'")

    @model_validator(mode="after")
    def _pointers(self) -> StatusCheck:
        _check_pointer(self.state, "status.state")
        if self.url is not None and "{id}" not in self.url:
            raise ValueError(f"allowed: a path holding {{id}}, e.g. '/orders/{{id}}' (got {self.url!r})")
        return self


class Timestamps(ConfigModel):
    """JSON pointers, into the final status answer, to when the service accepted, started and completed the work
    (seconds since the epoch, or ISO 8601 text). With accepted and completed: the completion time; with started too:
    the time it waited in the queue and the time it ran."""

    accepted: str | None = None
    started: str | None = None
    completed: str | None = None

    @model_validator(mode="after")
    def _pointers(self) -> Timestamps:
        for key in ("accepted", "started", "completed"):
            _check_pointer(getattr(self, key), f"timestamps.{key}")
        return self


class Outcome(ConfigModel):
    """What the request's answer means. `finished`: statuses of an answer that is the outcome (the work is done);
    `acknowledged`: statuses of an answer that accepts work finishing later, whose outcome the client observes through
    `status` (and `id`)."""

    finished: list[int] = []
    acknowledged: list[int] = []
    id: IdSource | None = None
    status: StatusCheck | None = None
    timestamps: Timestamps | None = None

    @model_validator(mode="after")
    def _coherent(self) -> Outcome:
        if not self.finished and not self.acknowledged:
            raise ValueError("allowed: at least one status in finished (the answer is the outcome) or acknowledged "
                             "(accepted, the outcome later)")
        both = set(self.finished) & set(self.acknowledged)
        if both:
            raise ValueError(f"allowed: a status in finished or in acknowledged, not both ({sorted(both)})")
        if self.acknowledged and (self.id is None or self.status is None):
            raise ValueError("allowed: acknowledged statuses with an id and a status check ([outcome.id] and "
                             "[outcome.status]): how else would the client see the outcome?")
        if self.status is not None and self.status.url is None and (self.id is None or self.id.header is None):
            raise ValueError("allowed: a status url with {id} unless the id comes from a header that holds the URL "
                             "(such as Location)")
        return self


class Contract(ConfigModel):
    """A design's request and outcome, as the load follows them."""

    request: Request
    outcome: Outcome

    @property
    def label(self) -> str:
        """How reports name the request: 'POST /orders'."""
        return f"{self.request.method} {self.request.path}"

    def to_json(self) -> str:
        return self.model_dump_json(by_alias=True, exclude_none=True)

    @classmethod
    def from_json(cls, text: str) -> Contract:
        return cls.model_validate(json.loads(text), strict=False)


def campaign_contract() -> Contract:
    """offpath's own campaign services' contract (services/campaign/contract.toml)."""
    return load_toml(CAMPAIGNS_FILE, Contract)


_MISSING = object()


def pointer(document: Any, path: str) -> Any:
    """The value at JSON pointer `path` (RFC 6901) in `document`, or None when there is none."""
    if path == "":
        return document
    node = document
    for raw in path.lstrip("/").split("/"):
        part = raw.replace("~1", "/").replace("~0", "~")
        if isinstance(node, dict):
            node = node.get(part, _MISSING)
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            return None
        if node is _MISSING:
            return None
    return node


def timestamp_s(value: Any) -> float | None:
    """Seconds since the epoch from a number, numeric text or ISO 8601 text (naive text is taken as UTC); None when
    it is none of them."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            pass
        try:
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return None
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=UTC)
        return parsed.timestamp()
    return None


class Driven(ConfigModel):
    """What one Locust run drives: a design's contract, the folder its template paths are relative to, the folders its
    payload function imports from, and whether the client records completion, queue wait and run time from the
    service's timestamps (when the harness has no census of its own). offpath writes it as JSON for `--contract`; a
    contract TOML file ([request] and [outcome]) given to `--contract` directly reads as one too."""

    contract: Contract
    base_dir: str = ""
    pythonpath: list[str] = []
    service_timestamps: bool = False

    @classmethod
    def read(cls, path: str | Path) -> Driven:
        """From offpath's JSON, or from a contract TOML file (its folder then the base and the import path)."""
        path = Path(path)
        if path.suffix == ".toml":
            folder = str(path.resolve().parent)
            return cls(contract=load_toml(path, Contract), base_dir=folder, pythonpath=[folder])
        return cls.model_validate(json.loads(path.read_text()), strict=False)

    def to_json(self) -> str:
        return self.model_dump_json(by_alias=True, exclude_none=True)

    def make_importable(self) -> None:
        """Put the folders its payload function imports from on this process's import path (every process that builds
        its bodies: each Locust process, and the harness for the check before a run)."""
        for folder in self.pythonpath:
            if folder not in sys.path:
                sys.path.insert(0, folder)
