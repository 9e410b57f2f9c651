"""How cheap is the queued design's acknowledgement? Requests/s and P50/P99 of queued POST /campaigns
(state + both jobs in one transaction, no workers running) against inline with the `none` profile
(validate + persist, no slow work: the persist-only limit), same process layout, measured side by
side in one run, interleaved A B A B to cancel machine drift.

Run: python benchmarks/ack_path.py [--rounds 3] [--seconds 5] [--connections 32]
Prints `ack_path_ratio: 0.NN` last (queued throughput / persist-only throughput).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import statistics
import sys
import time
from pathlib import Path

import aiohttp
from hdrh.histogram import HdrHistogram

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from loadtests.process import available_cpus, pin  # noqa: E402
from loadtests.redis_server import redis_for_run  # noqa: E402
from loadtests.supervisor import Supervisor, start_service  # noqa: E402


def bodies(seed: int, count: int) -> list[bytes]:
    rng = random.Random(seed)
    channel_sets = [["email"], ["sms"], ["push"], ["email", "push"], ["email", "sms", "push"]]
    return [
        json.dumps({
            "name": f"campaign {i}",
            "audience": {"segment": rng.choice(["trial-users", "churn-risk", "vip"]), "size": rng.randint(1, 1_000_000)},
            "channels": rng.choice(channel_sets),
            "follow_ups": rng.randint(0, 5),
        }).encode()
        for i in range(count)
    ]


async def closed_loop(url: str, seconds: float, connections: int, payloads: list[bytes]) -> tuple[HdrHistogram, int, float]:
    """`connections` clients each sending the next request as soon as the last one answers."""
    histogram = HdrHistogram(1, 3_600_000_000, 3)
    errors = 0
    connector = aiohttp.TCPConnector(limit=connections)
    headers = {"content-type": "application/json"}
    async with aiohttp.ClientSession(connector=connector) as session:
        deadline = time.perf_counter() + seconds

        async def client(index: int) -> None:
            nonlocal errors
            i = index
            while time.perf_counter() < deadline:
                body = payloads[i % len(payloads)]
                i += connections
                started = time.perf_counter_ns()
                async with session.post(url, data=body, headers=headers) as response:
                    await response.read()
                    if response.status in (201, 202):
                        histogram.record_value(max(1, (time.perf_counter_ns() - started) // 1000))
                    else:
                        errors += 1

        started = time.perf_counter()
        await asyncio.gather(*(client(i) for i in range(connections)))
        elapsed = time.perf_counter() - started
    return histogram, errors, elapsed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--connections", type=int, default=32)
    args = parser.parse_args()

    cpus = available_cpus()
    service_cpus = cpus[:1]
    client_cpus = cpus[1:] or cpus
    pin(os.getpid(), client_cpus)
    payloads = bodies(1, 5000)
    designs = {"queued": ("queued", "default"), "persist-only": ("inline", "none")}
    results: dict[str, list[tuple[float, int, int, int]]] = {name: [] for name in designs}

    with redis_for_run() as redis, Supervisor() as supervisor:
        services = {}
        for name, (design, profile) in designs.items():
            db_url = redis.url.rsplit("/", 1)[0] + ("/1" if name == "queued" else "/2")
            _, base = start_service(supervisor, design, db_url, profile, cpus=service_cpus)
            services[name] = base
        print(f"service on cpu {service_cpus}, client on cpu {client_cpus}, {args.connections} connections, "
              f"{args.rounds} rounds x {args.seconds:g} s, interleaved")
        for round_index in range(args.rounds):
            order = list(designs) if round_index % 2 == 0 else list(reversed(designs))
            for name in order:
                asyncio.run(closed_loop(services[name] + "/campaigns", 1.0, args.connections, payloads))  # warm-up
                histogram, errors, elapsed = asyncio.run(
                    closed_loop(services[name] + "/campaigns", args.seconds, args.connections, payloads)
                )
                rate = histogram.get_total_count() / elapsed
                p50, p99 = histogram.get_value_at_percentile(50), histogram.get_value_at_percentile(99)
                results[name].append((rate, p50, p99, errors))
                print(f"  round {round_index + 1} {name:>12}: {rate:8.0f} req/s  P50 {p50:6d} us  P99 {p99:6d} us"
                      f"  n={histogram.get_total_count()} errors={errors}")

    print()
    for name, rows in results.items():
        print(f"{name:>12}: median {statistics.median(r[0] for r in rows):8.0f} req/s, "
              f"P50 {statistics.median(r[1] for r in rows):6.0f} us, P99 {statistics.median(r[2] for r in rows):6.0f} us"
              " (medians over rounds)")
    ratios = [q[0] / p[0] for q, p in zip(results["queued"], results["persist-only"], strict=True)]
    print(f"per-round throughput ratios queued/persist-only: {', '.join(f'{r:.2f}' for r in ratios)}")
    print(f"ack_path_ratio: {statistics.median(ratios):.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
