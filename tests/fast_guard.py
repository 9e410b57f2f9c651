"""The `fast` marker kept honest: while a test marked fast runs, starting a process or connecting a socket fails it.

`just test-fast` promises a loop under a minute with no process to start, wait for or leave behind; a mark that only
states an intention would drift. The guard wraps the points every way of starting a process or reaching a peer goes
through in CPython (subprocess, os.fork/posix_spawn/system, multiprocessing's fork_exec, socket.connect), records each
attempt and fails the test even when the code under test swallows the refusal.
"""

from __future__ import annotations

import _posixsubprocess
import os
import socket
import subprocess
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest

HOW_TO_FIX = ("a fast test starts no process and opens no socket: take its `fast` mark off, or test the part that "
              "needs neither")


class NotFast(Exception):
    """A test marked fast tried to start a process or connect a socket."""


def _command(args: tuple[Any, ...], kwargs: dict[str, Any]) -> str:
    command = args[0] if args else kwargs.get("args", kwargs.get("path", ""))
    if isinstance(command, (list, tuple)):
        command = " ".join(str(part) for part in command)
    return str(command)[:120]


# Each entry: where the function lives, its name, what calling it means, how to describe the call.
_GUARDED: list[tuple[Any, str, str, Callable[[tuple[Any, ...], dict[str, Any]], str]]] = [
    (subprocess.Popen, "_execute_child", "started a process", lambda a, k: _command(a[1:], {})),
    (_posixsubprocess, "fork_exec", "started a process", lambda a, k: _command(a[:1], {})),
    (os, "fork", "forked a process", lambda a, k: "os.fork()"),
    (os, "forkpty", "forked a process", lambda a, k: "os.forkpty()"),
    (os, "posix_spawn", "started a process", _command),
    (os, "posix_spawnp", "started a process", _command),
    (os, "system", "started a process", _command),
    (socket.socket, "connect", "connected a socket", lambda a, k: f"to {a[1]!r}"),
    (socket.socket, "connect_ex", "connected a socket", lambda a, k: f"to {a[1]!r}"),
]


class ProcessGuard:
    """Refuses, while entered, every process start and socket connection made by the test's own threads."""

    def __init__(self, test: str):
        self.test = test
        self.violations: list[str] = []
        self._restore: list[Callable[[], None]] = []
        # Threads an earlier test left running (a log reader, a pool) are not this test's doing.
        self._foreign: set[int] = set()

    def __enter__(self) -> ProcessGuard:
        self._foreign = {t.ident for t in threading.enumerate() if t.ident is not None} - {threading.get_ident()}
        for owner, name, what, describe in _GUARDED:
            if hasattr(owner, name):
                self._wrap(owner, name, what, describe)
        return self

    def __exit__(self, *exc_info: object) -> None:
        while self._restore:
            self._restore.pop()()

    def _wrap(self, owner: Any, name: str, what: str, describe: Callable[[tuple[Any, ...], dict[str, Any]], str]) -> None:
        original = getattr(owner, name)
        own = name in vars(owner)

        def refuse(*args: Any, **kwargs: Any) -> Any:
            if threading.get_ident() in self._foreign:
                return original(*args, **kwargs)
            message = f"{self.test} is not fast: it {what} ({describe(args, kwargs)}); {HOW_TO_FIX}"
            self.violations.append(message)
            raise NotFast(message)

        setattr(owner, name, refuse)
        self._restore.append(lambda: setattr(owner, name, original) if own else delattr(owner, name))

    def report(self) -> str:
        more = f" (and {len(self.violations) - 1} more attempt(s))" if len(self.violations) > 1 else ""
        return self.violations[0] + more


@contextmanager
def kept(item: pytest.Item) -> Iterator[None]:
    """Run one phase of `item` under the guard if it is marked fast; fail it if it tried, even if it caught the error."""
    if item.get_closest_marker("fast") is None:
        yield
        return
    guard = ProcessGuard(item.nodeid)
    try:
        with guard:
            yield
    except Exception as error:
        if guard.violations and not isinstance(error, NotFast):
            pytest.fail(guard.report(), pytrace=False)
        raise
    if guard.violations:
        pytest.fail(guard.report(), pytrace=False)
