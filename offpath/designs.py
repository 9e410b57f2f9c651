"""Designs as data: how each tier of a design starts (or the URL of one already running), how it shows it is ready, the
request and outcome contract its clients follow, and the queue adapter that reports its backlog.

An experiment declares each design in a `[designs.<name>]` table; `use = "<built-in>"` starts from one of offpath's
own declarations (services/inline/design.toml, services/queued/design.toml) and overrides what the table says (tables
merge key by key, every other value replaces). offpath's own two designs are declared in exactly this format, so
there is one code path: the harness never branches on a design's name, it asks its declaration.

Command templates and environment values take placeholders, checked when the file is read:

    {python}       the interpreter of the system under test (the design's `python`, else offpath's own; under
                   `offpath gate --against`, the base's)
    {port} {url}   the web tier's free loopback port, and its base URL
    {redis_url}    the run's Redis (a fresh database per block)
    {processes}    layout.service_processes        {concurrency}  layout.concurrency
    {workers}      layout.workers                  {profile}      the experiment's workload profile spec
    {index} {name} a worker process's number (from 0) and a unique name for it
    {log_level}    the log level offpath runs its processes at (warning in runs, info under `offpath up`)
    and each key of the design's `params` table (offpath's queued design: {backend}).
"""

from __future__ import annotations

import copy
import re
import shlex
import string
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, model_validator

from foundation.config import ConfigError, ConfigModel, parse, read_toml
from loadtests.contract import Contract, Outcome, Request

__all__ = ["BUILT_IN", "Declaration", "DesignError", "QueueSpec", "Ready", "Tier", "built_in_names", "declare",
           "placeholders_of"]

PROJECT_ROOT = Path(__file__).resolve().parent.parent
# offpath's own designs, each declared in the format below, beside the service it serves.
BUILT_IN: Mapping[str, Path] = {
    "inline": PROJECT_ROOT / "services" / "inline" / "design.toml",
    "queued": PROJECT_ROOT / "services" / "queued" / "design.toml",
}
# The placeholders the harness fills in; a design's `params` add its own.
HARNESS_PLACEHOLDERS = frozenset({"python", "port", "url", "redis_url", "processes", "concurrency", "workers", "log_level",
                                  "profile", "index", "name"})
# Queue adapters offpath knows (offpath/queues/): their backlog figures, the drain after each cell, the audit's reach.
ADAPTERS = ("rq", "celery", "dramatiq", "arq", "command", "metrics")


class DesignError(ConfigError):
    """A design declaration offpath cannot use; one line naming the file, the key and what is allowed."""


class Ready(ConfigModel):
    """How a started process shows it is ready (checked until `timeout_s`), one of: `url` (a path on the web tier, or
    a URL, answering 2xx), `log` (a regular expression a line of the process's output matches), `command` (exits 0),
    `adapter` (the queue adapter sees the workers registered). A web tier without one is ready when its port accepts
    connections; a worker tier without one, once started."""

    url: str | None = None
    log: str | None = None
    command: str | list[str] | None = None
    adapter: bool = False
    timeout_s: float = Field(30.0, gt=0, description="seconds > 0")

    @model_validator(mode="after")
    def _at_most_one(self) -> Ready:
        given = [k for k in ("url", "log", "command") if getattr(self, k) is not None] + (["adapter"] if self.adapter
                                                                                             else [])
        if len(given) > 1:
            raise ValueError(f"allowed: one of url, log, command, adapter (got {', '.join(given)})")
        if self.log is not None:
            try:
                re.compile(self.log)
            except re.error as exc:
                raise ValueError(f"allowed: a regular expression ({exc})") from None
        return self


class Tier(ConfigModel):
    """One tier's processes: the command (a template: a string split as a shell would, or a list of arguments), the
    folder it starts in (relative to the file that declares it), its environment (templates too), how it shows it is
    ready, and for workers how many (a number or a template such as "{workers}")."""

    command: str | list[str] = Field(description="a command: a string or a list of arguments")
    cwd: str | None = None
    env: dict[str, str] = {}
    ready: Ready | None = None
    count: int | str | None = None

    def argv_template(self) -> list[str]:
        return shlex.split(self.command) if isinstance(self.command, str) else list(self.command)


class QueueSpec(ConfigModel):
    """Where the backlog of a design's work is read: a queue `adapter` (ADAPTERS; a template such as "{backend}") for
    the queue `name` on the broker at `redis_url` (default: the run's Redis), or `command` (prints the depth) or a
    metrics `url` (answers the depth as a number, or JSON with the depth at `pointer`). Without a queue, a design's
    backlog is what its clients saw acknowledged minus what they saw final."""

    adapter: str = Field(description=f"one of {', '.join(ADAPTERS)}, or a template naming one")
    name: str = "default"
    redis_url: str | None = None
    command: str | list[str] | None = None
    url: str | None = None
    pointer: str | None = None


class Declaration(ConfigModel):
    """One design, as an experiment declares it (after `use` has merged a built-in declaration under it)."""

    summary: str = ""
    url: str | None = Field(None, description="the base URL of a deployment already running, e.g. "
                                              "'http://127.0.0.1:8000'")
    # A deployment already running: how to tell it answers (a path on it, or a URL); without one, its port accepting
    # connections. A started tier says its own (web.ready, workers.ready).
    ready: Ready | None = None
    python: str | None = None
    params: dict[str, str] = {}
    web: Tier | None = None
    workers: Tier | None = None
    queue: QueueSpec | None = None
    contract: str | None = None
    request: Request | None = None
    outcome: Outcome | None = None
    census: Literal["campaigns"] | None = None

    @model_validator(mode="after")
    def _coherent(self) -> Declaration:
        if self.url is None and self.web is None:
            raise ValueError("allowed: a [web] tier to start, or the url of a deployment already running")
        if self.url is not None and (self.web is not None or self.workers is not None):
            raise ValueError("allowed: a url (a deployment already running) or tiers to start, not both")
        if self.ready is not None and self.url is None:
            raise ValueError("allowed: `ready` beside a url; a tier to start says how it is ready (web.ready)")
        if self.contract is None and (self.request is None or self.outcome is None):
            raise ValueError("allowed: a contract file, or both a [request] and an [outcome] table")
        return self

    @property
    def has_workers(self) -> bool:
        return self.workers is not None


@dataclass(frozen=True)
class Design:
    """A design as the harness runs it: its name, its declaration, where the declaration's relative paths start, and
    its contract (read from the contract file where it names one)."""

    name: str
    declaration: Declaration
    base_dir: Path
    contract: Contract

    @property
    def has_workers(self) -> bool:
        return self.declaration.has_workers

    @property
    def follows_outcome(self) -> bool:
        """Its clients get acknowledgements whose outcome comes later (the queued kind)."""
        return bool(self.contract.outcome.acknowledged)

    def resolved(self) -> dict[str, Any]:
        """The manifest's record of it: the declaration as it ran, its contract spelled out."""
        data = self.declaration.model_dump(mode="json", by_alias=True, exclude_none=True)
        data.pop("contract", None)
        contract = self.contract.model_dump(mode="json", by_alias=True, exclude_none=True)
        return {**data, **contract, "base_dir": str(self.base_dir)}


def built_in_names(with_workers: bool = False) -> list[str]:
    """offpath's own designs' names; with_workers: only those with a workers tier."""
    return [name for name, path in BUILT_IN.items() if not with_workers or "workers" in read_toml(path)]


def _merge(base: dict[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    """`over` onto `base`: tables merge key by key, every other value replaces."""
    merged = copy.deepcopy(base)
    for key, value in over.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def declare(name: str, table: Any, source: str, base_dir: Path, where: str) -> Design:
    """The design `name` from its experiment table (`where` is its key path, e.g. 'designs.queued'); `use` starts it
    from a built-in declaration. Relative paths resolve from `base_dir` (the experiment file's folder), a built-in's
    own paths from its file's folder."""
    if not isinstance(table, Mapping):
        raise DesignError(f"{source}: key '{where}' has value {table!r}; allowed: a table declaring the design "
                          f"(or use = one of {', '.join(BUILT_IN)})")
    data = dict(table)
    used = data.pop("use", None)
    origin_dir = base_dir
    if used is not None:
        if used not in BUILT_IN:
            raise DesignError(f"{source}: key '{where}.use' has value {used!r}; allowed: one of {', '.join(BUILT_IN)}")
        built_in_file = BUILT_IN[used]
        data = _merge(read_toml(built_in_file), data)
        origin_dir = built_in_file.parent
    declaration = _parse_declaration(data, source, where)
    contract = _contract(declaration, source, where, origin_dir)
    design = Design(name, declaration, origin_dir, contract)
    _check_placeholders(design, source, where)
    return design


def _parse_declaration(data: dict[str, Any], source: str, where: str) -> Declaration:
    try:
        return parse(data, Declaration, source)
    except ConfigError as exc:
        # parse() names keys from the declaration's top; here they sit under the design's own key.
        message = str(exc)
        if message.startswith(f"{source}: key '"):
            message = message.replace(f"{source}: key '", f"{source}: key '{where}.", 1)
        elif message.startswith(f"{source}: unknown key '"):
            message = message.replace(f"{source}: unknown key '", f"{source}: unknown key '{where}.", 1)
        elif message.startswith(f"{source}: missing key '"):
            message = message.replace(f"{source}: missing key '", f"{source}: missing key '{where}.", 1)
        elif message.startswith(f"{source}: value "):
            message = message.replace(f"{source}: value ", f"{source}: key '{where}' has value ", 1)
        raise DesignError(message) from None


def _contract(declaration: Declaration, source: str, where: str, base_dir: Path) -> Contract:
    """The design's contract: its [request] and [outcome]; with a contract file, the file's, each table the declaration
    gives replacing the file's whole."""
    if declaration.contract is None:
        assert declaration.request is not None and declaration.outcome is not None
        return Contract(request=declaration.request, outcome=declaration.outcome)
    path = Path(declaration.contract)
    path = path if path.is_absolute() else base_dir / path
    if not path.is_file():
        raise DesignError(f"{source}: key '{where}.contract' has value {declaration.contract!r}; allowed: a contract "
                          f"file ([request] and [outcome]); {path} does not exist")
    contract = parse(read_toml(path), Contract, str(path))
    return Contract(request=declaration.request or contract.request, outcome=declaration.outcome or contract.outcome)


def placeholders_of(text: str) -> set[str]:
    """The {placeholders} a template names."""
    return {field for _, field, _, _ in string.Formatter().parse(text) if field}


def _check_placeholders(design: Design, source: str, where: str) -> None:
    known = HARNESS_PLACEHOLDERS | set(design.declaration.params)
    declaration = design.declaration
    templates: list[tuple[str, str]] = []
    for tier_name in ("web", "workers"):
        tier = getattr(declaration, tier_name)
        if tier is None:
            continue
        templates += [(f"{tier_name}.command", part) for part in tier.argv_template()]
        templates += [(f"{tier_name}.env.{key}", value) for key, value in tier.env.items()]
        if isinstance(tier.count, str):
            templates.append((f"{tier_name}.count", tier.count))
        if tier.cwd is not None:
            templates.append((f"{tier_name}.cwd", tier.cwd))
    if declaration.queue is not None:
        templates.append(("queue.adapter", declaration.queue.adapter))
        if declaration.queue.redis_url is not None:
            templates.append(("queue.redis_url", declaration.queue.redis_url))
    for key, text in templates:
        try:
            unknown = sorted(placeholders_of(text) - known)
        except ValueError as exc:
            raise DesignError(f"{source}: key '{where}.{key}' has value {text!r}; allowed: a template with "
                              f"{{placeholders}} ({exc})") from None
        if unknown:
            raise DesignError(f"{source}: key '{where}.{key}' uses {{{unknown[0]}}}; allowed placeholders: "
                              f"{', '.join(sorted(known))}")
    if declaration.queue is not None and not placeholders_of(declaration.queue.adapter) \
            and declaration.queue.adapter not in ADAPTERS:
        raise DesignError(f"{source}: key '{where}.queue.adapter' has value {declaration.queue.adapter!r}; allowed: "
                          f"one of {', '.join(ADAPTERS)}")
