"""Bounded server concurrency (OFFPATH_CONCURRENCY): at most N requests in progress per process, the rest wait
for a slot (and the wait is in their latency), waiting is bounded, and the bound obeys Little's law."""

from __future__ import annotations

import asyncio
import statistics
import time

import aiohttp
import pytest

from tests.conftest import valid_body


async def _post_all(url: str, count: int) -> list[tuple[int, float]]:
    """`count` POSTs sent at once; each one's status and latency (s)."""
    async with aiohttp.ClientSession() as session:
        async def one(i: int) -> tuple[int, float]:
            started = time.perf_counter()
            async with session.post(f"{url}/campaigns", json=valid_body(name=f"c{i}")) as response:
                await response.read()
                return response.status, time.perf_counter() - started
        return list(await asyncio.gather(*(one(i) for i in range(count))))


async def _closed_loop(url: str, clients: int, seconds: float) -> tuple[int, list[float]]:
    """`clients` clients each sending its next POST when the last is answered; successes and their latencies."""
    latencies: list[float] = []
    deadline = time.perf_counter() + seconds
    connector = aiohttp.TCPConnector(limit=clients)
    async with aiohttp.ClientSession(connector=connector) as session:
        async def client(index: int) -> None:
            n = 0
            while time.perf_counter() < deadline:
                started = time.perf_counter()
                async with session.post(f"{url}/campaigns", json=valid_body(name=f"c{index}-{n}")) as response:
                    await response.read()
                    assert response.status == 201, await response.text()
                latencies.append(time.perf_counter() - started)
                n += 1
        started = time.perf_counter()
        await asyncio.gather(*(client(i) for i in range(clients)))
        elapsed = time.perf_counter() - started
    return int(len(latencies) / elapsed * 1000), latencies


def test_requests_beyond_the_bound_wait_for_a_slot_and_the_wait_is_in_their_latency(launch, profiles):
    # The `slow` profile's generation waits 1 s on its provider: with 2 slots, 6 requests take 3 waves.
    service = launch("inline", profiles["slow"], env={"OFFPATH_CONCURRENCY": "2"})
    results = asyncio.run(_post_all(service.url, 6))
    assert [status for status, _ in results] == [201] * 6
    waves = sorted(round(latency) for _, latency in results)
    assert waves == [1, 1, 2, 2, 3, 3], sorted(latency for _, latency in results)


def test_unbounded_serves_everything_at_once(launch, profiles):
    service = launch("inline", profiles["slow"])
    results = asyncio.run(_post_all(service.url, 6))
    assert [status for status, _ in results] == [201] * 6
    assert max(latency for _, latency in results) < 1.8


def test_waiting_past_its_bound_is_shed_with_503(launch, profiles):
    # One slot held 1 s by each slow request, at most 2 waiting: of 10 sent at once, 3 are served, 7 shed.
    service = launch("inline", profiles["slow"], env={"OFFPATH_CONCURRENCY": "1", "OFFPATH_MAX_IN_FLIGHT": "2"})
    results = asyncio.run(_post_all(service.url, 10))
    statuses = sorted(status for status, _ in results)
    assert statuses == [201] * 3 + [503] * 7
    assert max(latency for status, latency in results if status == 503) < 0.5  # shed at once, not after a wait


@pytest.mark.timeout(180)
def test_bounded_throughput_obeys_littles_law_under_the_default_profile(launch):
    """Saturated with more clients than slots, throughput = slots ÷ mean service time (within 15%); the mean
    service time is measured on an unbounded server at the same per-request work, where nobody waits."""
    unbounded = launch("inline", "default")
    _, service_times = asyncio.run(_closed_loop(unbounded.url, clients=4, seconds=20))
    mean_service_s = statistics.fmean(service_times)
    slots = 4
    bounded = launch("inline", "default", env={"OFFPATH_CONCURRENCY": str(slots)})
    milli_rate, latencies = asyncio.run(_closed_loop(bounded.url, clients=24, seconds=20))
    throughput = milli_rate / 1000
    expected = slots / mean_service_s
    print(f"little's law: {throughput:.1f}/s measured vs {slots} / {mean_service_s * 1000:.1f} ms = {expected:.1f}/s "
          f"({throughput / expected - 1:+.1%}; n = {len(latencies)}, {len(service_times)})")
    assert throughput == pytest.approx(expected, rel=0.15), (throughput, expected, mean_service_s, len(latencies))
    # Saturation means waiting: 24 clients on 4 slots wait about 5 service times each.
    assert statistics.median(latencies) > 3 * statistics.median(service_times)
