"""Redis replies as Python values: redis-py types a reply as any of the shapes a command could return (bytes, str,
a list, a tuple), so a reader that knows which one it asked for says so here, once."""

from __future__ import annotations

from typing import Any

__all__ = ["text"]


def text(reply: Any) -> str:
    """A bulk-string reply (bytes, or str from a client that decodes) as str; bytes decoded as UTF-8, anything not
    UTF-8 escaped rather than refused (a key's name may be any bytes)."""
    if isinstance(reply, bytes):
        return reply.decode(errors="backslashreplace")
    if isinstance(reply, str):
        return reply
    raise TypeError(f"expected a bulk-string reply, got {type(reply).__name__}")
