"""A loopback TCP relay offpath controls, put between RQ workers and Redis to cut and restore their network:
the partition fault.

A cut is a partition as TCP sees it: nothing passes in either direction. The relay stops reading from both
sides, so bytes wait in the kernel's buffers and the senders' flow control applies; nothing is dropped or
reordered, and a stream that resumes is intact. Connections made during a cut are accepted (as a SYN to a
listening socket is by the kernel anyway) but reach the target only after the restore. A peer that gives up
and closes its socket is seen when reading resumes: the relay then closes the other side, after passing on
whatever the closing side had sent, and forgets the pair.

The relay runs its own asyncio loop in a daemon thread, so it works under a synchronous harness:

    with TcpRelay("127.0.0.1", 6379) as relay:
        start_workers(..., relay.url(redis_url), ...)
        relay.cut_for(30.0)
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from types import TracebackType
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from foundation.errors import ConfigurationError, HarnessError

__all__ = ["RelayStats", "TcpRelay"]

LISTEN_HOST = "127.0.0.1"
# Bounds on the calls other threads make into the relay's loop; each is a few loop iterations when healthy.
CALL_TIMEOUT_S = 5.0
REDIS_SCHEMES = ("redis", "rediss")
LOOPBACK_NAMES = {"localhost": "127.0.0.1", "::1": "::1"}


@dataclass(frozen=True)
class RelayStats:
    """What passed through the relay so far: connections and bytes each way, and the cuts."""

    connections_accepted: int
    connections_open: int  # pairs not yet closed, including those waiting for a restore to reach the target
    connections_refused: int  # the target refused or did not answer when the relay connected to it
    bytes_to_target: int
    bytes_from_target: int
    cuts: int
    cut_s: float  # seconds spent cut, the current cut included
    is_cut: bool


class _End(asyncio.Protocol):
    """One socket of a relayed connection: what it receives is written to the other end."""

    def __init__(self, pair: _Pair, to_target: bool) -> None:
        self.pair = pair
        self.to_target = to_target  # this end is the client's; what it receives goes to the target
        self.transport: asyncio.Transport | None = None
        self.held = bytearray()  # received while the pair could not forward: sent, in order, when it can
        self.eof = False  # the peer behind this end will send no more
        self.writes_paused = False  # this end's send buffer is full: the other end must stop reading

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.pair.relay.update_reading(self.pair)

    def data_received(self, data: bytes) -> None:
        self.held += data
        self.pair.relay.flush(self.pair)

    def eof_received(self) -> bool:
        self.eof = True
        self.pair.relay.flush(self.pair)
        return True  # keep the transport: the other direction may still carry bytes

    def connection_lost(self, exc: Exception | None) -> None:
        self.pair.relay.drop(self.pair)

    def pause_writing(self) -> None:
        self.writes_paused = True
        self.pair.relay.update_reading(self.pair)

    def resume_writing(self) -> None:
        self.writes_paused = False
        self.pair.relay.update_reading(self.pair)


class _Pair:
    """A client's connection to the relay and the relay's connection to the target on its behalf."""

    def __init__(self, relay: _Loop) -> None:
        self.relay = relay
        self.client = _End(self, to_target=True)
        self.target = _End(self, to_target=False)
        self.connecting: asyncio.Task[None] | None = None
        self.closed = False

    def ends(self) -> tuple[_End, _End]:
        return self.client, self.target

    def connected(self) -> bool:
        return self.client.transport is not None and self.target.transport is not None


class _Loop:
    """The relay's state, touched only from its own event loop's thread."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target_host = target_host
        self.target_port = target_port
        self.pairs: set[_Pair] = set()
        self.cut = False
        self.cut_since = 0.0
        self.cut_total_s = 0.0
        self.cuts = 0
        self.accepted = 0
        self.refused = 0
        self.bytes_to_target = 0
        self.bytes_from_target = 0
        self.restore_timer: asyncio.TimerHandle | None = None

    def accept(self) -> _End:
        pair = _Pair(self)
        self.pairs.add(pair)
        self.accepted += 1
        if not self.cut:
            self.connect(pair)
        return pair.client

    def connect(self, pair: _Pair) -> None:
        if pair.connecting is None and not pair.closed:
            pair.connecting = asyncio.get_running_loop().create_task(self._connect(pair))

    async def _connect(self, pair: _Pair) -> None:
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(CALL_TIMEOUT_S):
                await loop.create_connection(lambda: pair.target, self.target_host, self.target_port)
        except (OSError, TimeoutError):
            self.refused += 1
            self.drop(pair)
            return
        if pair.closed:  # the client went away while the relay was connecting for it
            self.drop(pair)
            return
        self.update_reading(pair)
        self.flush(pair)

    def update_reading(self, pair: _Pair) -> None:
        """Each end reads only while the pair forwards and the other end can take more (flow control)."""
        for end, other in (pair.client, pair.target), (pair.target, pair.client):
            if end.transport is None or end.transport.is_closing():
                continue
            if not self.cut and pair.connected() and not other.writes_paused:
                end.transport.resume_reading()
            else:
                end.transport.pause_reading()

    def flush(self, pair: _Pair) -> None:
        """Pass on what each end holds, and its EOF, unless the pair is cut or not connected yet."""
        if self.cut or not pair.connected() or pair.closed:
            self.update_reading(pair)
            return
        for end, other in (pair.client, pair.target), (pair.target, pair.client):
            assert other.transport is not None
            if end.held:
                data = bytes(end.held)
                end.held.clear()
                if end.to_target:
                    self.bytes_to_target += len(data)
                else:
                    self.bytes_from_target += len(data)
                other.transport.write(data)
            if end.eof and other.transport.can_write_eof() and not other.transport.is_closing():
                other.transport.write_eof()
        if pair.client.eof and pair.target.eof:
            self.drop(pair)
        else:
            self.update_reading(pair)

    def drop(self, pair: _Pair) -> None:
        """One side is gone: close the other cleanly (what it was already given still goes out) and forget the pair."""
        self.pairs.discard(pair)
        pair.closed = True
        for end in pair.ends():
            if end.transport is not None and not end.transport.is_closing():
                end.transport.close()

    def set_cut(self, cut: bool, restore_after_s: float | None = None) -> None:
        if self.restore_timer is not None:
            self.restore_timer.cancel()
            self.restore_timer = None
        now = time.monotonic()
        if cut and not self.cut:
            self.cut, self.cut_since = True, now
            self.cuts += 1
            for pair in self.pairs:
                self.update_reading(pair)
        elif not cut and self.cut:
            self.cut = False
            self.cut_total_s += now - self.cut_since
            for pair in list(self.pairs):
                if pair.target.transport is None:
                    self.connect(pair)
                else:
                    self.flush(pair)
        if cut and restore_after_s is not None:
            self.restore_timer = asyncio.get_running_loop().call_later(restore_after_s, self.set_cut, False)

    def stats(self) -> RelayStats:
        cut_s = self.cut_total_s + (time.monotonic() - self.cut_since if self.cut else 0.0)
        return RelayStats(
            connections_accepted=self.accepted, connections_open=len(self.pairs), connections_refused=self.refused,
            bytes_to_target=self.bytes_to_target, bytes_from_target=self.bytes_from_target,
            cuts=self.cuts, cut_s=round(cut_s, 3), is_cut=self.cut,
        )

    def abort_all(self) -> None:
        for pair in list(self.pairs):
            pair.closed = True
            if pair.connecting is not None:
                pair.connecting.cancel()
            for end in pair.ends():
                if end.transport is not None:
                    end.transport.abort()
        self.pairs.clear()


class TcpRelay:
    """Forwards every connection made to 127.0.0.1:`port` to the target, until cut; a context manager."""

    def __init__(self, target_host: str, target_port: int) -> None:
        if not isinstance(target_host, str) or not target_host.strip():
            raise ConfigurationError(f"relay target host {target_host!r} is not a host name or address")
        if isinstance(target_port, bool) or not isinstance(target_port, int) or not 0 < target_port < 65536:
            raise ConfigurationError(f"relay target port {target_port!r} is not a TCP port (1-65535)")
        self.target_host = target_host
        self.target_port = target_port
        self._state = _Loop(target_host, target_port)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server: asyncio.Server | None = None
        self._port: int | None = None

    @classmethod
    def for_redis(cls, redis_url: str) -> TcpRelay:
        """A relay (not started) to the Redis at `redis_url`; `url(redis_url)` then points through it."""
        host, port = _redis_address(redis_url)
        return cls(host, port)

    def __enter__(self) -> TcpRelay:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.close()

    @property
    def port(self) -> int:
        if self._port is None:
            raise HarnessError("the relay has no port until start()")
        return self._port

    def url(self, redis_url: str) -> str:
        """`redis_url` with its host and port replaced by the relay's; credentials, db and query kept."""
        host, port = _redis_address(redis_url)
        if (_loopback_alias(host), port) != (_loopback_alias(self.target_host), self.target_port):
            raise ConfigurationError(
                f"{redis_url} is not this relay's target {self.target_host}:{self.target_port}; "
                "make the relay with TcpRelay.for_redis(redis_url)"
            )
        parts = urlsplit(redis_url)
        credentials, at, _ = parts.netloc.rpartition("@")
        netloc = f"{credentials}{at}{LISTEN_HOST}:{self.port}"
        return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))

    def start(self) -> TcpRelay:
        """Listen on a free loopback port (the kernel picks it: no race with other processes) and forward."""
        if self._thread is not None:
            raise HarnessError("this relay was started before; make a new TcpRelay")
        loop = asyncio.new_event_loop()
        ready: Future[int] = Future()
        self._loop = loop
        self._thread = threading.Thread(
            target=self._run, args=(loop, ready), daemon=True,
            name=f"offpath-relay-{self.target_host}:{self.target_port}",
        )
        self._thread.start()
        try:
            self._port = ready.result(CALL_TIMEOUT_S)
        except (OSError, FutureTimeout) as exc:
            self.close()
            raise HarnessError(f"the relay to {self.target_host}:{self.target_port} could not listen: {exc}") from exc
        return self

    def _run(self, loop: asyncio.AbstractEventLoop, ready: Future[int]) -> None:
        asyncio.set_event_loop(loop)
        try:
            try:
                server = loop.run_until_complete(loop.create_server(self._state.accept, LISTEN_HOST, 0))
            except OSError as exc:
                ready.set_exception(exc)
                return
            self._server = server
            ready.set_result(int(server.sockets[0].getsockname()[1]))
            loop.run_forever()
            tasks = asyncio.all_tasks(loop)
            for task in tasks:
                task.cancel()
            loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
        finally:
            loop.close()

    def cut(self) -> None:
        """Partition from now on: once this returns, nothing passes either way until restore()."""
        self._call(self._state.set_cut, True)

    def restore(self) -> None:
        """End the partition: forwarding resumes where it stopped, and connections made meanwhile reach the target."""
        self._call(self._state.set_cut, False)

    def cut_for(self, seconds: float) -> None:
        """Cut now and restore after `seconds`, without blocking the caller (a later cut() or restore() replaces
        the pending restore)."""
        if isinstance(seconds, bool) or not isinstance(seconds, int | float) or not 0 < seconds < float("inf"):
            raise ConfigurationError(f"cut_for needs a positive number of seconds, not {seconds!r}")
        self._call(self._state.set_cut, True, float(seconds))

    def stats(self) -> RelayStats:
        if self._running():
            return self._call(self._state.stats)
        return self._state.stats()  # the loop is gone: nothing else touches the state any more

    def close(self) -> None:
        """Tear down every connection (abruptly: a peer blocked on a cut must not hold the relay) and the thread."""
        if self._thread is None or self._loop is None:
            return
        if self._running():
            self._loop.call_soon_threadsafe(self._shutdown)
        self._thread.join(CALL_TIMEOUT_S)
        if self._thread.is_alive():
            raise HarnessError(f"the relay to {self.target_host}:{self.target_port} did not stop within "
                               f"{CALL_TIMEOUT_S:g} s")

    def _shutdown(self) -> None:
        assert self._loop is not None and self._server is not None
        self._server.close()
        self._state.abort_all()
        # After the aborts' connection_lost callbacks, which the loop runs in its next iteration.
        self._loop.call_soon(self._loop.stop)

    def _running(self) -> bool:
        return self._thread is not None and self._thread.is_alive() and self._loop is not None \
            and self._loop.is_running()

    def _call(self, fn: Callable[..., Any], *args: Any) -> Any:
        """Run fn(*args) in the relay's loop and return its result: the relay's state has one owner."""
        if not self._running():
            raise HarnessError("the relay is not running; use it between start() and close()")
        assert self._loop is not None
        done: Future[Any] = Future()

        def run() -> None:
            try:
                done.set_result(fn(*args))
            except BaseException as exc:  # handed to the caller's thread
                done.set_exception(exc)

        self._loop.call_soon_threadsafe(run)
        return done.result(CALL_TIMEOUT_S)


def _redis_address(redis_url: str) -> tuple[str, int]:
    parts = urlsplit(redis_url)
    if parts.scheme not in REDIS_SCHEMES or not parts.hostname:
        raise ConfigurationError(f"a relay needs a redis:// URL with a host, not {redis_url!r}")
    try:
        port = parts.port or 6379
    except ValueError:
        raise ConfigurationError(f"the Redis URL {redis_url!r} has no valid port") from None
    return parts.hostname, port


def _loopback_alias(host: str) -> str:
    return LOOPBACK_NAMES.get(host, host)
