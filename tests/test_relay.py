"""The relay between workers and Redis: it forwards intact, a cut is a partition (nothing passes, nothing is lost),
a restore resumes where the cut stopped, and close() leaves nothing behind. Real Redis throughout."""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from foundation.errors import ConfigurationError
from offpath.ports import free_port
from offpath.redis_server import RedisServer
from offpath.relay import TcpRelay

FIVE_MB = 5 * 1024 * 1024


@pytest.fixture
def relay(redis_server: RedisServer) -> Iterator[TcpRelay]:
    with TcpRelay.for_redis(redis_server.url) as running:
        yield running


def client(url: str, timeout_s: float | None, name: str | None = None) -> redis.Redis:
    """A client that neither retries nor reconnects on its own: what a cut does to it shows as is."""
    return redis.Redis.from_url(url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s,
                                retry=Retry(NoBackoff(), 0), client_name=name)


def eventually(check: Callable[[], bool], within_s: float = 5.0) -> bool:
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.02)
    return check()


def torn_down(sock: socket.socket) -> bool:
    """The peer closed: close() aborts (a reset), or the kernel closes a connection the relay never took."""
    try:
        return sock.recv(1) == b""
    except ConnectionResetError:
        return True
    finally:
        sock.close()


def relay_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("offpath-relay")]


def test_ping_passes_through_the_relay_and_is_counted(relay, redis_server):
    connected = client(relay.url(redis_server.url), 2)
    assert connected.ping()
    stats = relay.stats()
    assert stats.connections_accepted == 1 and stats.connections_open == 1
    assert stats.bytes_to_target > 0 and stats.bytes_from_target > 0
    assert (stats.cuts, stats.is_cut) == (0, False)


def test_url_points_through_the_relay_keeping_credentials_db_and_query(relay):
    target = f"redis://:secret@localhost:{relay.target_port}/7?health_check_interval=2"
    assert relay.url(target) == f"redis://:secret@127.0.0.1:{relay.port}/7?health_check_interval=2"


@pytest.mark.parametrize("url", ["unix:///tmp/redis.sock", "http://127.0.0.1:6379/0", "redis://127.0.0.1:1/0"])
def test_a_url_that_is_not_the_relays_target_is_refused(relay, url):
    with pytest.raises(ConfigurationError):
        relay.url(url)


@pytest.mark.fast
@pytest.mark.parametrize("host,port", [("", 6379), ("127.0.0.1", 0), ("127.0.0.1", 70000), ("127.0.0.1", "6379")])
def test_a_target_that_is_not_an_address_is_refused(host, port):
    with pytest.raises(ConfigurationError):
        TcpRelay(host, port)


@pytest.mark.parametrize("seconds", [0, -1.0, float("inf"), "5"])
def test_cut_for_needs_a_positive_duration(relay, seconds):
    with pytest.raises(ConfigurationError):
        relay.cut_for(seconds)


def test_a_cut_times_out_commands_and_a_restore_delivers_delayed_replies_intact(relay, redis_server):
    url = relay.url(redis_server.url)
    patient = client(url, None)
    assert patient.ping()
    impatient = client(url, 0.5, name="offpath-relay-impatient")
    assert impatient.ping()
    echo = os.urandom(64 * 1024)

    relay.cut()
    with pytest.raises(redis.TimeoutError):
        impatient.ping()
    with pytest.raises(redis.TimeoutError):
        client(url, 0.5).ping()  # a connection made during the cut is accepted, but reaches nothing
    with ThreadPoolExecutor(1) as pool:
        waiting = pool.submit(patient.echo, echo)
        time.sleep(1.0)
        assert not waiting.done()
        relay.restore()
        assert waiting.result(timeout=10) == echo  # delayed, intact

    assert client(url, 2).ping()
    # The clients that timed out closed their sockets: after the restore the relay closes their Redis
    # connections too, and keeps only the patient client's.
    direct = redis_server.client()
    assert eventually(lambda: not [c for c in direct.client_list() if c["name"] == "offpath-relay-impatient"])
    assert eventually(lambda: relay.stats().connections_open == 1)
    stats = relay.stats()
    assert stats.cuts == 1 and not stats.is_cut and stats.cut_s >= 1.0


def test_large_values_pass_intact_through_repeated_cuts(relay, redis_server):
    value = os.urandom(FIVE_MB)
    connection = client(relay.url(redis_server.url), 30)
    assert connection.ping()
    with ThreadPoolExecutor(1) as pool:
        relay.cut_for(0.05)  # the transfer starts against a cut, and meets one every few milliseconds after
        transfer = pool.submit(lambda: connection.set("offpath:relay:big", value) and connection.get("offpath:relay:big"))
        while not transfer.done():
            time.sleep(0.01)
            relay.cut_for(0.005)
        assert transfer.result() == value
    assert relay.stats().cuts >= 2
    assert relay.stats().bytes_to_target > FIVE_MB and relay.stats().bytes_from_target > FIVE_MB
    redis_server.client().delete("offpath:relay:big")


def test_cut_for_restores_on_its_own(relay, redis_server):
    url = relay.url(redis_server.url)
    relay.cut_for(0.3)
    assert relay.stats().is_cut
    assert client(url, 5).ping()  # answered once the cut is over
    assert not relay.stats().is_cut


def test_a_target_that_refuses_closes_the_client():
    with TcpRelay("127.0.0.1", free_port()) as relay:
        with pytest.raises(redis.ConnectionError):
            client(f"redis://127.0.0.1:{relay.port}/0", 2).ping()
        assert eventually(lambda: relay.stats().connections_refused == 1)
        assert relay.stats().connections_open == 0


def test_close_with_open_connections_returns_quickly_and_leaves_no_thread(redis_server):
    relay = TcpRelay.for_redis(redis_server.url).start()
    url = relay.url(redis_server.url)
    idle = client(url, 5)
    assert idle.ping()
    blocked = client(url, 5)
    assert blocked.ping()
    relay.cut()
    with ThreadPoolExecutor(1) as pool:
        waiting = pool.submit(blocked.echo, "never answered")
        held = socket.create_connection(("127.0.0.1", relay.port), timeout=5)  # accepted during the cut, never forwarded
        started = time.monotonic()
        relay.close()
        assert time.monotonic() - started < 2.0
        with pytest.raises(redis.ConnectionError):
            waiting.result(timeout=5)
    assert not relay_threads()
    with pytest.raises(redis.ConnectionError):
        idle.ping()
    assert torn_down(held)
    relay.close()  # a second close does nothing
