"""Configuration files read one way: TOML into typed pydantic models that forbid unknown keys and check bounds, every
error one line naming the file, the key, the value and what is allowed.

Experiments, workload profiles, chaos scenarios and gate rules are all read through `load_toml` (or `parse` for data
already in hand); each declares its shape as a `ConfigModel` and nothing else validates by hand. The wording, for
every format alike:

    offpath/experiments/x.toml: key 'layout.workers' has value 0; allowed: a whole number >= 1
    offpath/experiments/x.toml: unknown key 'layout.wrokers'; allowed: concurrency, placement, workers, ...
    offpath/experiments/x.toml: missing key 'slo.p99_ms' (a number > 0)
    offpath/experiments/x.toml: not valid TOML: Expected '=' after a key in a key/value pair (at line 3, column 7)

A model says what a key allows where pydantic's own words would not: `Field(description=...)` is used as the
"allowed" text of its errors, and a validator raising ValueError("allowed: ...") words its own (`one_of` for names
known at run time, `distinct` for names no two entries may share). A format whose callers catch its own kind of error
passes it (`load_toml(path, Rules, error=RulesError)`, a subclass of ConfigError): the wording stays this one.
"""

from __future__ import annotations

import tomllib
import types
import typing
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Literal, TypeVar, Union, get_args, get_origin

from pydantic import AfterValidator, BaseModel, ConfigDict, ValidationError, ValidationInfo
from pydantic_core import ErrorDetails

from foundation.errors import ConfigurationError

__all__ = ["ConfigModel", "ConfigError", "distinct", "load_toml", "one_of", "parse", "read_toml"]


class ConfigError(ConfigurationError):
    """A configuration file offpath cannot use; the message is one line naming file, key, value and what is allowed."""


class ConfigModel(BaseModel):
    """The base of every configuration model: unknown keys are errors, values keep their TOML types (a string is never
    read as a number, nor a boolean as 0 or 1; a whole number is a number), and a model once read does not change."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


Model = TypeVar("Model", bound=BaseModel)


def read_toml(path: Path, error: type[ConfigError] = ConfigError) -> dict[str, Any]:
    """A TOML file's data; `error` (ConfigError or a format's own kind of it) for a file that is missing or not valid
    TOML."""
    try:
        text = path.read_text()
    except OSError as exc:
        raise error(f"{path}: cannot read it ({exc.strerror or exc})") from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise error(f"{path}: not valid TOML: {exc}") from None


def load_toml(path: Path, model: type[Model], error: type[ConfigError] = ConfigError) -> Model:
    """Read `path` into `model`; `error` (one line) for a missing file, bad TOML or data the model refuses."""
    return parse(read_toml(path, error), model, str(path), error=error)


def parse(data: Mapping[str, Any], model: type[Model], source: str, context: dict[str, Any] | None = None,
          error: type[ConfigError] = ConfigError) -> Model:
    """Validate `data` into `model`; `error` (one line: source, key, value, what is allowed) otherwise.
    `context` reaches the model's validators (pydantic's validation context); without one they get a fresh dict,
    which `distinct` keeps its names in."""
    try:
        return model.model_validate(data, context={} if context is None else context)
    except ValidationError as exc:
        raise error(describe(exc.errors()[0], model, source)) from None


def one_of(allowed: Iterable[str], why: str = "") -> AfterValidator:
    """A string key that takes one of names known only at run time (designs, endpoints), where a Literal cannot
    list them: `Annotated[str, one_of(DESIGNS)]`; `why` is said after them."""
    names = tuple(allowed)

    def check(value: str) -> str:
        if value not in names:
            raise ValueError(f"allowed: one of {', '.join(names)}" + (f" ({why})" if why else ""))
        return value

    return AfterValidator(check)


def distinct(group: str, allowed: str) -> AfterValidator:
    """A key whose value no other entry of the same file may repeat (fault names, rule names): the repeat is refused
    at its own key, `allowed` saying why. Needs the validation context `parse` gives."""

    def check(value: Any, info: ValidationInfo) -> Any:
        seen = info.context.setdefault(("distinct", group), set()) if isinstance(info.context, dict) else set()
        if value in seen:
            raise ValueError(f"allowed: {allowed}")
        seen.add(value)
        return value

    return AfterValidator(check)


def describe(error: ErrorDetails, model: type[BaseModel], source: str) -> str:
    """One pydantic error in offpath's wording."""
    path, owner, field_name = _walk(model, error["loc"])
    key = _key_text(path)
    kind = error["type"]
    if kind == "extra_forbidden":
        allowed = ", ".join(sorted(_fields(owner))) if owner is not None else ""
        return f"{source}: unknown key '{key}'" + (f"; allowed: {allowed}" if allowed else "")
    if kind in ("union_tag_invalid", "union_tag_not_found"):
        ctx = error.get("ctx") or {}
        tag = str(ctx.get("discriminator", "kind")).strip("'")
        value = (error.get("input") or {}).get(tag) if isinstance(error.get("input"), Mapping) else None
        info = _fields(owner).get(field_name) if owner is not None and field_name else None
        members = _models_in(info.annotation) if info is not None else []
        expected = ", ".join(t for m in members for t in _tags(m) or ()) or str(ctx.get("expected_tags", ""))
        if kind == "union_tag_not_found":
            return f"{source}: missing key '{_key_text([*path, tag])}' (one of {expected})"
        return f"{source}: key '{_key_text([*path, tag])}' has value {_shown(value)}; allowed: one of {expected}"
    allowed = _allowed(error, owner, field_name)
    if kind == "missing":
        return f"{source}: missing key '{key}'" + (f" ({allowed})" if allowed else "")
    where = f"key '{key}' has value {_shown(error.get('input'))}" if key else f"value {_shown(error.get('input'))}"
    return f"{source}: {where}; allowed: {allowed}"


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _key_text(path: list[str | int]) -> str:
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def _fields(model: type[BaseModel]) -> dict[str, Any]:
    return {info.alias or name: info for name, info in model.model_fields.items()}


def _models_in(annotation: Any) -> list[type[BaseModel]]:
    """The models an annotation may hold: itself, or those inside Optional, unions, lists, dicts, Annotated."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    found: list[type[BaseModel]] = []
    for arg in get_args(annotation):
        found += _models_in(arg)
    return found


def _walk(model: type[BaseModel], loc: tuple[str | int, ...]) -> tuple[list[str | int], type[BaseModel] | None, str]:
    """The key path of an error's location as the file spells it (a discriminated union's tag left out), the model
    that owns its last key, and that key."""
    path: list[str | int] = []
    owner: type[BaseModel] | None = model
    candidates: list[type[BaseModel]] = [model]
    field_name = ""
    for part in loc:
        if isinstance(part, int):
            path.append(part)
            continue
        by_tag = [m for m in candidates if part in (_tags(m) or ()) or part == m.__name__]
        if by_tag and not any(part in _fields(m) for m in candidates):
            candidates = by_tag  # the tag pydantic puts in the location of a discriminated union's member
            continue
        holders = [m for m in candidates if part in _fields(m)]
        path.append(part)
        owner = holders[0] if holders else (candidates[0] if candidates else None)
        field_name = str(part)
        info = _fields(owner).get(part) if owner is not None else None
        candidates = _models_in(info.annotation) if info is not None else []
    return path, owner, field_name


def _tags(model: type[BaseModel]) -> tuple[str, ...] | None:
    """The literal values of a model's tag field (`kind`), which name it inside a discriminated union."""
    info = model.model_fields.get("kind")
    if info is None or get_origin(info.annotation) is not Literal:
        return None
    return tuple(str(v) for v in get_args(info.annotation))


def _allowed(error: ErrorDetails, owner: type[BaseModel] | None, field_name: str) -> str:
    """What the key allows: its field's description where the model gives one, else from the error's kind."""
    kind, ctx = error["type"], error.get("ctx") or {}
    if kind == "value_error":
        message = str(ctx.get("error", error["msg"]))
        return message.split("allowed: ", 1)[1] if "allowed: " in message else message
    info = _fields(owner).get(field_name) if owner is not None and field_name else None
    if info is not None and info.description:
        return info.description
    if kind in ("literal_error", "enum"):
        return "one of " + str(ctx.get("expected", error["msg"])).replace("'", "").replace(" or ", ", ")
    bounds = {"greater_than": "> {gt}", "greater_than_equal": ">= {ge}", "less_than": "< {lt}",
              "less_than_equal": "<= {le}"}
    if kind in bounds:
        noun = _noun(info.annotation) if info is not None else "a value"
        return f"{noun} " + bounds[kind].format(**{k: f"{v:g}" if isinstance(v, float) else v for k, v in ctx.items()})
    if kind in ("too_short", "too_long"):
        return error["msg"].replace("List should", "a list that should").replace("Value should", "a value that should")
    if info is not None:
        return _noun(info.annotation)
    return error["msg"]


_NOUNS = {int: "a whole number", float: "a number", str: "a string", bool: "true or false"}


def _noun(annotation: Any) -> str:
    """How an annotation reads in an error: 'a whole number', 'a number or a string', 'a list of ...', 'a table'."""
    if annotation in _NOUNS:
        return _NOUNS[annotation]
    origin = get_origin(annotation)
    if origin is typing.Annotated:
        return _noun(get_args(annotation)[0])
    if origin is Literal:
        return "one of " + ", ".join(str(v) for v in get_args(annotation))
    if origin in (Union, types.UnionType):
        parts = [_noun(a) for a in get_args(annotation) if a is not type(None)]
        return " or ".join(dict.fromkeys(parts))
    if origin in (list, tuple):
        args = [a for a in get_args(annotation) if a is not Ellipsis]
        return "a list" + (f" of {_plural(_noun(args[0]))}" if args else "")
    if origin in (dict, Mapping) or (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
        return "a table"
    return getattr(annotation, "__name__", str(annotation))


def _plural(noun: str) -> str:
    for one, many in (("a whole number", "whole numbers"), ("a number", "numbers"), ("a string", "strings"),
                      ("a table", "tables")):
        noun = noun.replace(one, many)
    return noun
