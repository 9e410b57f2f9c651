"""How cheap is the queued design's acknowledgement? Requests/s and P50/P99 of queued POST /campaigns
(state + both jobs in one transaction, no workers running) against inline with the `none` profile
(validate + persist, no slow work: the persist-only limit), same process layout, measured side by
side in one run, interleaved A B A B to cancel machine drift.

What is measured is the acknowledgement path, and only it. With no workers every acknowledged campaign
stays queued: at ~1,000 req/s the queued service passes its backlog bound (10,000 jobs by default) within
the first round and from then on answers 503 to everything (the shedding path, which is cheap). So:
- the queued service runs with a backlog bound no round can reach (UNREACHABLE_BACKLOG), not with the bound
  off (0): its depth sampler keeps running, as in production, and only the shedding is out of reach;
- both services' databases are emptied before each side's warm-up (FLUSHDB: the queue, the jobs, the
  campaigns), so every round starts from the same state instead of an ever longer queue and keyspace.
  That is why the benchmark takes only empty databases (1 and 2 of the embedded Redis, or of REDIS_URL's);
- a request counts only when answered with the side's acknowledgement (202 queued, 201 inline); every other
  status, and every connection error or timeout, is counted as an error by kind, and a side with an error
  in any round gets no figure (benchmarks/figure.py): a ratio over errors measures something else.

Run: python benchmarks/ack_path.py [--rounds 3] [--seconds 5] [--connections 32]
Prints `ack_path_ratio: 0.NN` last (queued throughput / persist-only throughput), or `no figure: ...` and
exits 1 when a side had errors.
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
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
from hdrh.histogram import HdrHistogram

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.figure import NO_FIGURE, SideErrors, refused  # noqa: E402
from benchmarks.scratch import empty_database  # noqa: E402
from offpath.process import available_cpus, pin  # noqa: E402
from offpath.redis_server import redis_for_run  # noqa: E402
from offpath.supervisor import Supervisor, start_service  # noqa: E402
from services.campaign.profile import ProfileSpec  # noqa: E402

# A billion jobs: a round of seconds at any rate one service process reaches stays orders of magnitude below.
UNREACHABLE_BACKLOG = 1_000_000_000
REQUEST_TIMEOUT_S = 10.0  # an answer slower than this is an error (a hung service), not a latency


@dataclass(frozen=True)
class Side:
    name: str
    design: str
    profile: ProfileSpec
    database: int
    ack_status: int  # the one answer that counts as an acknowledged request
    env: dict[str, str] = field(default_factory=dict)


SIDES = (
    Side("queued", "queued", ProfileSpec("default"), 1, 202, {"OFFPATH_MAX_BACKLOG": str(UNREACHABLE_BACKLOG)}),
    Side("persist-only", "inline", ProfileSpec("none"), 2, 201),
)


@dataclass
class Window:
    """One measured window of one side: latencies of the acknowledged requests, the rest counted by kind."""

    histogram: HdrHistogram
    errors: Counter[str]
    elapsed_s: float

    @property
    def count(self) -> int:
        return int(self.histogram.get_total_count())

    @property
    def rate_per_s(self) -> float:
        return self.count / self.elapsed_s if self.elapsed_s > 0 else 0.0


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


async def closed_loop(url: str, seconds: float, connections: int, payloads: list[bytes], ack_status: int) -> Window:
    """`connections` clients each sending the next request as soon as the last one answers."""
    histogram = HdrHistogram(1, 3_600_000_000, 3)
    errors: Counter[str] = Counter()
    connector = aiohttp.TCPConnector(limit=connections)
    headers = {"content-type": "application/json"}
    timeout = aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_S)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        deadline = time.perf_counter() + seconds

        async def client(index: int) -> None:
            i = index
            while time.perf_counter() < deadline:
                body = payloads[i % len(payloads)]
                i += connections
                started = time.perf_counter_ns()
                try:
                    async with session.post(url, data=body, headers=headers) as response:
                        await response.read()
                        status = response.status
                except (aiohttp.ClientError, TimeoutError, OSError) as exc:
                    errors[type(exc).__name__] += 1
                    continue
                if status == ack_status:
                    histogram.record_value(max(1, (time.perf_counter_ns() - started) // 1000))
                else:
                    errors[str(status)] += 1

        started = time.perf_counter()
        await asyncio.gather(*(client(i) for i in range(connections)))
        elapsed = time.perf_counter() - started
    return Window(histogram, errors, elapsed)


def round_errors(name: str, windows: list[Window]) -> list[SideErrors]:
    """Each round's errors of one side; a window without a single answer (no rate to divide by) is one too."""
    return [SideErrors(name, f"round {number}", window.errors or Counter({"no answer": int(not window.count)}))
            for number, window in enumerate(windows, 1)]


def conclude(windows: dict[str, list[Window]]) -> int:
    """Print the medians, the per-round ratios and `ack_path_ratio` (exit code 0), or, when a side had errors,
    what failed instead (exit code NO_FIGURE)."""
    print()
    if refused(e for name, rows in windows.items() for e in round_errors(name, rows)):
        return NO_FIGURE
    for name, rows in windows.items():
        print(f"{name:>12}: median {statistics.median(w.rate_per_s for w in rows):8.0f} req/s, "
              f"P50 {statistics.median(w.histogram.get_value_at_percentile(50) for w in rows):6.0f} us, "
              f"P99 {statistics.median(w.histogram.get_value_at_percentile(99) for w in rows):6.0f} us"
              " (medians over rounds)")
    ratios = [q.rate_per_s / p.rate_per_s for q, p in zip(windows["queued"], windows["persist-only"], strict=True)]
    print(f"per-round throughput ratios queued/persist-only: {', '.join(f'{r:.2f}' for r in ratios)}")
    print(f"ack_path_ratio: {statistics.median(ratios):.2f}")
    return 0


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
    windows: dict[str, list[Window]] = {side.name: [] for side in SIDES}

    with redis_for_run() as server, Supervisor() as supervisor:
        bases, databases = {}, {}
        for side in SIDES:
            db_url = f"{server.url.rsplit('/', 1)[0]}/{side.database}"
            databases[side.name] = empty_database(db_url, "ack_path")
            _, bases[side.name] = start_service(supervisor, side.design, db_url, side.profile, cpus=service_cpus,
                                                env=side.env)
        print(f"service on cpu {service_cpus}, client on cpu {client_cpus}, {args.connections} connections, "
              f"{args.rounds} rounds x {args.seconds:g} s, interleaved; queued backlog bound {UNREACHABLE_BACKLOG:,} "
              "(unreachable), databases emptied before each side's warm-up")
        for round_index in range(args.rounds):
            order = SIDES if round_index % 2 == 0 else tuple(reversed(SIDES))
            for side in order:
                databases[side.name].flushdb()  # every round from the same state: see the module docstring
                url = bases[side.name] + "/campaigns"
                asyncio.run(closed_loop(url, 1.0, args.connections, payloads, side.ack_status))  # warm-up
                window = asyncio.run(closed_loop(url, args.seconds, args.connections, payloads, side.ack_status))
                windows[side.name].append(window)
                errors = SideErrors(side.name, f"round {round_index + 1}", window.errors)
                print(f"  round {round_index + 1} {side.name:>12}: {window.rate_per_s:8.0f} req/s"
                      f"  P50 {window.histogram.get_value_at_percentile(50):6d} us"
                      f"  P99 {window.histogram.get_value_at_percentile(99):6d} us"
                      f"  n={window.count} errors={errors.total:,}" + (f" ({errors.kinds()})" if errors.total else ""),
                      flush=True)
    return conclude(windows)


if __name__ == "__main__":
    sys.exit(main())
