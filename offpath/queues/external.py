"""Queues offpath cannot read itself: a command that prints the depth, or a metrics URL that answers it. Only the depth
is known; what is in flight, scheduled or failed is not, and the report says so."""

from __future__ import annotations

import json
import subprocess
import urllib.request

from loadtests.contract import pointer as json_pointer
from offpath.queues.adapter import QueueState

__all__ = ["CommandQueue", "MetricsQueue", "QueueReadError"]


class QueueReadError(RuntimeError):
    """The command or URL did not give a depth; the probe records it as data for that second."""


def _depth(text: str, where: str, pointer: str | None = None) -> int:
    text = text.strip()
    if pointer is not None:
        try:
            value = json_pointer(json.loads(text), pointer)
        except ValueError:
            raise QueueReadError(f"{where} answered no JSON: {text[:80]!r}") from None
    else:
        value = text.split()[0] if text else None
    try:
        depth = int(float(value))  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise QueueReadError(f"{where} gave no depth{f' at {pointer}' if pointer else ''}: {text[:80]!r}") from None
    if depth < 0:
        raise QueueReadError(f"{where} gave a negative depth: {depth}")
    return depth


class CommandQueue:
    """The depth is what `argv` prints (its first word, a whole number), run at every reading (its CPU is counted
    among the machine's other processes, not a tier's)."""

    name = "command"

    def __init__(self, argv: list[str]):
        self.argv = argv

    def read(self) -> QueueState:
        try:
            done = subprocess.run(self.argv, capture_output=True, text=True, timeout=5)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise QueueReadError(f"queue command {self.argv[0]!r}: {exc}") from None
        if done.returncode != 0:
            raise QueueReadError(f"queue command {self.argv[0]!r} exited {done.returncode}: {done.stderr.strip()[:80]}")
        return QueueState(depth=_depth(done.stdout, f"queue command {self.argv[0]!r}"))

    def workers_ready(self, expected: int) -> bool:
        return False

    def close(self) -> None:
        pass


class MetricsQueue:
    """The depth is what `url` answers: a number, or JSON with the number at `pointer`."""

    name = "metrics"

    def __init__(self, url: str, pointer: str | None = None):
        self.url = url
        self.pointer = pointer

    def read(self) -> QueueState:
        try:
            with urllib.request.urlopen(self.url, timeout=2) as response:
                text = response.read().decode(errors="replace")
        except OSError as exc:
            raise QueueReadError(f"queue metrics {self.url}: {exc}") from None
        return QueueState(depth=_depth(text, f"queue metrics {self.url}", self.pointer))

    def workers_ready(self, expected: int) -> bool:
        return False

    def close(self) -> None:
        pass
