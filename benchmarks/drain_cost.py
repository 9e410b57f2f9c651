"""What does offpath's drain cost over RQ's own? Worker and Redis CPU per campaign of offpath's two jobs (the `none`
profile: no work, only the mechanics) against RQ's floor, measured side by side in one run, interleaved A B B A.

RQ's floor is two no-op jobs chained the way offpath chains its two: the first enqueues the second (a deterministic id)
in a transaction of its own with `Queue.enqueue_many` on a pipeline; same worker class (SimpleWorker), JSON serializer,
burst mode, and the same job options (timeout, result and failure TTLs, retry policy), so the ratio is what offpath's
job bodies and worker add to what RQ costs anyway. offpath's side is its own worker entry point
(`services.queued.worker.main(["--burst"])`) draining campaigns admitted through the service's own code path.

Each drain is one worker process in burst mode on a queue filled beforehand (the filling is not measured), on a
database emptied before the round; the worker runs on its own CPU(s), the embedded Redis on another:
- worker CPU: the worker process's own user + system time (getrusage, all its threads), from just before the worker
  is built until it exits its burst, so neither the interpreter's start nor the imports count;
- Redis CPU: INFO cpu used_cpu_user + used_cpu_sys of the server, before and after the drain, and the commands it ran
  (INFO commandstats deltas). Nothing else may use that Redis meanwhile: the embedded one, or an idle REDIS_URL.
A side whose drain had a failed job, a campaign not completed or a worker that exited with an error gets no figure
(benchmarks/figure.py): a ratio over failures measures the failure path.

Run: python benchmarks/drain_cost.py [--campaigns 800] [--rounds 6]
Prints, per side, campaigns per worker CPU-second and CPU per campaign, and last `drain_overhead_ratio: N.NN`
(offpath's worker + Redis CPU per campaign / the floor's; median of the per-round ratios), or `no figure: ...` and
exits 1 when a side had failures.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import statistics
import subprocess
import sys
from collections import Counter
from dataclasses import dataclass, field, replace
from pathlib import Path

import redis
from rq import Queue, Retry, SimpleWorker, get_current_job
from rq.queue import EnqueueData
from rq.serializers import JSONSerializer

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.figure import NO_FIGURE, SideErrors, refused  # noqa: E402
from benchmarks.scratch import empty_database  # noqa: E402
from offpath.process import available_cpus, pin  # noqa: E402
from offpath.redis_server import redis_for_run  # noqa: E402
from services.campaign.api import redis_client  # noqa: E402
from services.campaign.schema import CampaignRequest  # noqa: E402
from services.campaign.settings import Settings  # noqa: E402
from services.campaign.store import CampaignStore, campaign_key  # noqa: E402
from services.queued.enqueue import (  # noqa: E402
    FAILURE_TTL_S,
    JOB_TIMEOUT_S,
    RESULT_TTL_S,
    JobPlanner,
    campaign_queue,
    parse_redis_version,
)

SIDES = ("floor", "offpath")
DATABASES = {"floor": 1, "offpath": 2}
FLOOR_FIRST = "benchmarks.drain_cost.floor_first"
FLOOR_SECOND = "benchmarks.drain_cost.floor_second"
_FILL_BATCH = 500


# --- RQ's floor: the two no-op jobs -------------------------------------------------------------------------------

def floor_job(func: str, key: str, step: str, retry: Retry | None) -> EnqueueData:
    return Queue.prepare_data(func, args=[key], job_id=f"{key}-{step}", retry=retry, timeout=JOB_TIMEOUT_S,
                              result_ttl=RESULT_TTL_S, failure_ttl=FAILURE_TTL_S, description=f"{step} {key}")


def floor_first(key: str) -> None:
    """Chain the second job in a transaction of its own, as offpath's generation does with its outcome; nothing else."""
    job = get_current_job()
    assert job is not None and job.connection is not None
    queue = Queue(job.origin, connection=job.connection, serializer=JSONSerializer)
    # The version the worker read once (rq/worker/base.py:1187): without it RQ asks the server on every enqueue.
    queue.redis_server_version = job.redis_server_version
    retry = Retry(max=job.retries_left, interval=job.retry_intervals) if job.retries_left else None
    with job.connection.pipeline() as pipe:
        pipe.multi()
        queue.enqueue_many([floor_job(FLOOR_SECOND, key, "second", retry)], pipeline=pipe)
        pipe.execute()


def floor_second(key: str) -> None:
    """The floor's automation: nothing."""


# --- filling a side's queue (not measured) -------------------------------------------------------------------------

def fill_floor(url: str, settings: Settings, campaigns: int) -> list[str]:
    retry = Retry(max=settings.retries, interval=settings.retry_backoff_s) if settings.retries else None
    connection = redis.Redis.from_url(url)
    queue = Queue(settings.queue_name, connection=connection, serializer=JSONSerializer)
    keys = [f"floor{i}" for i in range(campaigns)]
    for start in range(0, campaigns, _FILL_BATCH):
        with connection.pipeline() as pipe:
            pipe.multi()
            queue.enqueue_many([floor_job(FLOOR_FIRST, key, "first", retry) for key in keys[start:start + _FILL_BATCH]],
                               pipeline=pipe)
            pipe.execute()
    connection.close()
    return keys


async def _admit(settings: Settings, campaigns: int) -> list[str]:
    client = redis_client(settings)
    try:
        store = CampaignStore(client, settings.idempotency_ttl_s)
        await store.prepare()
        info = await client.info("server")
        planner = JobPlanner(campaign_queue(settings), settings, parse_redis_version(info["redis_version"]))
        request = CampaignRequest(name="drain", audience={"segment": "vip", "size": 1000},  # type: ignore[arg-type]
                                  channels=["email", "push"], follow_ups=2)
        return [(await store.admit(request, also=planner.buffer)).campaign_id for _ in range(campaigns)]
    finally:
        await client.aclose()


def fill_offpath(url: str, settings: Settings, campaigns: int) -> list[str]:
    """Campaigns admitted the way the queued service admits them (state and generation job in one transaction)."""
    return asyncio.run(_admit(settings, campaigns))


# --- one drain ----------------------------------------------------------------------------------------------------

@dataclass
class Drain:
    """One side's drain in one round: what it cost, and what went wrong, by kind."""

    side: str
    round: int
    campaigns: int
    worker_cpu_s: float
    redis_cpu_s: float
    commands: Counter[str]  # Redis commands the drain ran, by name (scripts' commands counted too)
    errors: Counter[str] = field(default_factory=Counter)

    @property
    def cpu_ms_per_campaign(self) -> float:
        return 1000 * (self.worker_cpu_s + self.redis_cpu_s) / self.campaigns

    @property
    def campaigns_per_worker_cpu_s(self) -> float:
        return self.campaigns / self.worker_cpu_s if self.worker_cpu_s > 0 else 0.0

    def line(self) -> str:
        per = 1000 / self.campaigns
        return (f"{self.side:>8}: {self.campaigns_per_worker_cpu_s:6.0f} campaigns per worker CPU-second; per campaign "
                f"worker {self.worker_cpu_s * per:5.2f} ms + Redis {self.redis_cpu_s * per:5.2f} ms "
                f"= {self.cpu_ms_per_campaign:5.2f} ms CPU, {self.commands.total() / self.campaigns:5.1f} Redis commands")


def redis_cpu_and_commands(client: redis.Redis) -> tuple[float, Counter[str]]:
    cpu = client.info("cpu")
    stats = client.info("commandstats")
    return (float(cpu["used_cpu_user"]) + float(cpu["used_cpu_sys"]),
            Counter({name.removeprefix("cmdstat_"): int(row["calls"]) for name, row in stats.items()}))


def drain(side: str, url: str, round_number: int, ids: list[str], profile: str) -> Drain:
    client = redis.Redis.from_url(url)
    env = {**os.environ, "REDIS_URL": url, "OFFPATH_PROFILE": profile}
    cpu_before, calls_before = redis_cpu_and_commands(client)
    worker = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--drain", side], env=env, cwd=ROOT,
                            capture_output=True, text=True, timeout=3600)
    cpu_after, calls_after = redis_cpu_and_commands(client)
    calls = calls_after - calls_before
    calls -= Counter({"info": calls["info"]})  # our own two INFOs
    errors = outcome_errors(side, client, ids)
    if worker.returncode != 0:
        errors[f"worker exit code {worker.returncode}"] += 1
        sys.stderr.write(worker.stderr[-2000:])
    measured = json.loads(worker.stdout.strip().splitlines()[-1]) if worker.returncode == 0 else {"cpu_s": 0.0}
    client.close()
    return Drain(side, round_number, len(ids), measured["cpu_s"], cpu_after - cpu_before, calls, errors)


def outcome_errors(side: str, client: redis.Redis, ids: list[str]) -> Counter[str]:
    """Failed jobs, and campaigns not completed (the floor's: second job not finished)."""
    queue = Queue(Settings.from_env().queue_name, connection=client, serializer=JSONSerializer)
    errors: Counter[str] = Counter({"failed job": queue.failed_job_registry.count})
    pipe = client.pipeline(transaction=False)
    for key in ids:
        if side == "floor":
            pipe.hget(f"rq:job:{key}-second", "status")
        else:
            pipe.hget(campaign_key(key), "status")
    done = b"finished" if side == "floor" else b"completed"
    errors["campaign not completed"] = sum(1 for status in pipe.execute() if status != done)
    return +errors


def worker_process(side: str) -> int:
    """The child: build the side's worker, drain its queue in burst mode, print the CPU it took as JSON."""
    # Import what the jobs run before the clock starts: RQ imports a job's function by name on its first call.
    if side == "offpath":
        from services.queued.worker import main as offpath_worker  # imports services.queued.jobs
    else:
        import benchmarks.drain_cost  # noqa: F401  (this file, under the name the floor's jobs are enqueued with)
    started = resource.getrusage(resource.RUSAGE_SELF)
    if side == "offpath":
        code = offpath_worker(["--burst"])
    else:
        connection = redis.Redis.from_url(os.environ["REDIS_URL"])
        queue = Queue(Settings.from_env().queue_name, connection=connection, serializer=JSONSerializer)
        SimpleWorker([queue], connection=connection, serializer=JSONSerializer).work(burst=True,
                                                                                     logging_level="WARNING")
        code = 0
    ended = resource.getrusage(resource.RUSAGE_SELF)
    cpu_s = (ended.ru_utime - started.ru_utime) + (ended.ru_stime - started.ru_stime)
    print(json.dumps({"cpu_s": cpu_s}))
    return code


# --- the run ------------------------------------------------------------------------------------------------------

def conclude(drains: list[Drain]) -> int:
    """Print medians, per-round ratios and `drain_overhead_ratio` (exit code 0), or, when a side had failures, what
    failed instead (exit code NO_FIGURE)."""
    print()
    if refused(SideErrors(d.side, f"round {d.round}", d.errors) for d in drains):
        return NO_FIGURE
    by_side = {side: [d for d in drains if d.side == side] for side in SIDES}
    for side, rows in by_side.items():
        median = statistics.median
        print(f"{side:>8}: median {median(d.campaigns_per_worker_cpu_s for d in rows):6.0f} campaigns per worker "
              f"CPU-second; per campaign worker {median(1000 * d.worker_cpu_s / d.campaigns for d in rows):5.2f} ms, "
              f"Redis {median(1000 * d.redis_cpu_s / d.campaigns for d in rows):5.2f} ms, "
              f"{median(d.commands.total() / d.campaigns for d in rows):5.1f} commands (medians over {len(rows)} rounds)")
    pairs = list(zip(by_side["offpath"], by_side["floor"], strict=True))
    offpath, floor = pairs[0]
    extra = {name: offpath.commands[name] / offpath.campaigns - floor.commands[name] / floor.campaigns
             for name in offpath.commands | floor.commands}
    print("offpath's Redis commands per campaign over the floor's: " + ", ".join(
        f"{name} {delta:+.1f}" for name, delta in sorted(extra.items(), key=lambda kv: -abs(kv[1])) if abs(delta) >= 0.05))
    worker = [o.worker_cpu_s / o.campaigns / (f.worker_cpu_s / f.campaigns) for o, f in pairs]
    redis_only = [o.redis_cpu_s / o.campaigns / (f.redis_cpu_s / f.campaigns) for o, f in pairs]
    ratios = [o.cpu_ms_per_campaign / f.cpu_ms_per_campaign for o, f in pairs]
    print(f"per-round offpath/floor: worker CPU {', '.join(f'{r:.2f}' for r in worker)}; "
          f"Redis CPU {', '.join(f'{r:.2f}' for r in redis_only)}; both {', '.join(f'{r:.2f}' for r in ratios)}")
    print(f"drain_overhead_ratio: {statistics.median(ratios):.2f}")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--campaigns", type=int, default=800, help="campaigns (two jobs each) per drain")
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--profile", default="none",
                        help="offpath's workload profile (default: none, the mechanics alone)")
    parser.add_argument("--drain", choices=SIDES, help=argparse.SUPPRESS)  # the worker child
    args = parser.parse_args()
    if args.drain:
        return worker_process(args.drain)

    settings = Settings.from_env()
    drains: list[Drain] = []
    with redis_for_run() as server:
        # Redis on one CPU, the worker (a child of this process, which fills the queues only between drains) on the
        # others: neither side's drain shares a CPU with its own Redis, and fewer migrations, less noise.
        cpus = available_cpus()
        redis_cpus, worker_cpus = cpus[:1], cpus[1:] or cpus
        if server.process is not None:
            pin(server.process.pid, redis_cpus)
        pin(os.getpid(), worker_cpus)
        base = server.url.rsplit("/", 1)[0]
        urls = {side: f"{base}/{DATABASES[side]}" for side in SIDES}
        databases = {side: empty_database(url, "drain_cost") for side, url in urls.items()}
        print(f"{args.campaigns:,} campaigns per drain, {args.rounds} rounds interleaved; offpath profile "
              f"{args.profile}; one burst-mode worker process per drain on cpu {worker_cpus}, "
              f"{'embedded Redis on cpu ' + str(redis_cpus) if server.process is not None else 'Redis at REDIS_URL'}",
              flush=True)
        for round_number in range(1, args.rounds + 1):
            for side in SIDES if round_number % 2 else tuple(reversed(SIDES)):
                databases[side].flushdb()  # every round from the same state
                side_settings = replace(settings, redis_url=urls[side])
                fill = fill_floor if side == "floor" else fill_offpath
                ids = fill(urls[side], side_settings, args.campaigns)
                result = drain(side, urls[side], round_number, ids, args.profile)
                drains.append(result)
                problems = SideErrors(side, f"round {round_number}", result.errors)
                print(f"  round {round_number} {result.line()}" + (f"  ({problems})" if problems.total else ""),
                      flush=True)
        for client in databases.values():
            client.flushdb()
    return conclude(drains)


if __name__ == "__main__":
    sys.exit(main())
