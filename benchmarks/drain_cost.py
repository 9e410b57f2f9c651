"""What does offpath's drain cost over its queue library's own, on each queue backend? Worker and Redis CPU per
campaign of offpath's two jobs (the `none` profile: no work, only the mechanics) against the library's floor, measured
side by side in one run, interleaved A B B A, for RQ, Celery and Dramatiq.

A library's floor is two no-op jobs chained the way offpath chains its two on that library, with the same
configuration and the same worker:
- RQ: the first job enqueues the second (a deterministic id) in a transaction of its own with `Queue.enqueue_many` on a
  pipeline; a SimpleWorker, the JSON serializer, the same job options (timeout, result and failure TTLs, retries);
- Celery: a chain of two tasks (`first.si(k) | second.si(k)`), the application configured by offpath's own
  `configure` (late acks, prefetch 1, JSON, visibility timeout, no results), run by offpath's solo-pool `serve`;
- Dramatiq: a pipeline of two actors, on a broker configured by offpath's own `redis_broker` (heartbeat, maintenance,
  retries, time limit), run by offpath's one-thread `serve`.
So each ratio is what offpath's job bodies and worker add to what the library costs anyway. offpath's side is its own
worker of that backend draining campaigns admitted through the service's own code path (CampaignStore.admit with the
backend's admission). For reference, each round also measures offpath's two steps alone, with no queue library
(`steps`: generation then automation of each campaign, run back to back by one process through the same code a worker
runs): what the campaign's state machine costs by itself, so that what offpath adds to a floor can be told apart from
what its wrapping of a library adds.

Each drain is one worker process in burst mode on a queue filled beforehand (the filling is not measured), on a
database emptied before the round; the worker runs on its own CPU(s), the embedded Redis on another:
- worker CPU: the worker process's own user + system time (getrusage, all its threads), from when it consumes (its
  ready line; RQ's floor: the end of RQ's bootstrap) until it exits its burst, so neither the interpreter's start,
  the imports nor the library's start-up count;
- Redis CPU: INFO cpu used_cpu_user + used_cpu_sys of the server, before and after the drain, and the commands it ran
  (INFO commandstats deltas; a script's own commands counted too). Nothing else may use that Redis meanwhile: the
  embedded one, or an idle REDIS_URL.
A side whose drain had a failed job, a campaign (or floor chain) not completed or a worker that exited with an error
gets no figure (benchmarks/figure.py): a ratio over failures measures the failure path.

Run: python benchmarks/drain_cost.py [--campaigns 800] [--rounds 6] [--backends rq,celery,dramatiq]
Prints, per backend and side, campaigns per worker CPU-second and CPU per campaign, and last one line per backend,
`drain_overhead_ratio <backend>: N.NN` (offpath's worker + Redis CPU per campaign / the floor's; median of the
per-round ratios), or `no figure: ...` for a backend with failures (exit 1).
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
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

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
from services.campaign.schema import CampaignRequest, Channel  # noqa: E402
from services.campaign.settings import QUEUE_BACKENDS, Settings  # noqa: E402
from services.campaign.store import CampaignStore, campaign_key  # noqa: E402
from services.queued.backend import queue_backend  # noqa: E402
from services.queued.enqueue import FAILURE_TTL_S, JOB_TIMEOUT_S, RESULT_TTL_S, parse_redis_version  # noqa: E402

SIDES = ("floor", "offpath")
DATABASES = {"floor": 1, "offpath": 2, "steps": 3}
STEPS = "steps"  # offpath's two steps alone, no queue library: a reference, not a ratio
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
    retry = Retry(max=job.retries_left, interval=job.retry_intervals or 0) if job.retries_left else None
    with job.connection.pipeline() as pipe:
        pipe.multi()
        queue.enqueue_many([floor_job(FLOOR_SECOND, key, "second", retry)], pipeline=pipe)
        pipe.execute()


def floor_second(key: str) -> None:
    """The floor's automation: nothing."""


def fill_rq_floor(settings: Settings, campaigns: int) -> list[str]:
    retry = Retry(max=settings.retries, interval=settings.retry_backoff_s) if settings.retries else None
    connection = redis.Redis.from_url(settings.redis_url)
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


def drain_rq_floor(settings: Settings, on_ready: Callable[[], None]) -> Counter[str]:
    class FloorWorker(SimpleWorker):
        def bootstrap(self, *args: Any, **kwargs: Any) -> None:
            super().bootstrap(*args, **kwargs)
            on_ready()

    connection = redis.Redis.from_url(settings.redis_url)
    queue = Queue(settings.queue_name, connection=connection, serializer=JSONSerializer)
    FloorWorker([queue], connection=connection, serializer=JSONSerializer).work(burst=True, logging_level="WARNING")
    return Counter()  # its outcome is read from RQ's registries (outcome_errors)


# --- Celery's floor: a chain of two no-op tasks -------------------------------------------------------------------

def celery_floor(settings: Settings) -> Any:
    from celery import Celery

    from services.queued.celery_backend.application import configure

    app = configure(Celery("floor", set_as_current=False), settings)
    app.task(name="floor.first", shared=False)(_noop)
    app.task(name="floor.second", shared=False)(_noop)
    return app


def _noop(key: str) -> None:
    """A floor's job: nothing."""


def fill_celery_floor(settings: Settings, campaigns: int) -> list[str]:
    from celery import chain

    app = celery_floor(settings)
    first, second = app.tasks["floor.first"], app.tasks["floor.second"]
    keys = [f"floor{i}" for i in range(campaigns)]
    for key in keys:
        chain(first.si(key).set(task_id=f"{key}-first"), second.si(key).set(task_id=f"{key}-second")).apply_async()
    app.close()
    return keys


def drain_celery_floor(settings: Settings, on_ready: Callable[[], None]) -> Counter[str]:
    from celery import signals

    from services.queued.celery_backend.worker import serve

    outcome: Counter[str] = Counter()

    def finished(task: Any = None, state: str | None = None, **_: Any) -> None:
        outcome[f"{task.name} {state}"] += 1

    signals.task_postrun.connect(finished, weak=False)
    serve(celery_floor(settings), None, True, on_ready)
    return outcome


# --- Dramatiq's floor: a pipeline of two no-op actors -------------------------------------------------------------

def dramatiq_floor(settings: Settings) -> Any:
    import dramatiq

    from services.queued.dramatiq_backend.broker import redis_broker

    broker = redis_broker(settings)
    for name in ("floor_first", "floor_second"):
        dramatiq.actor(broker=broker, actor_name=name, queue_name=settings.queue_name,
                       max_retries=settings.retries)(_noop)
    return broker


def fill_dramatiq_floor(settings: Settings, campaigns: int) -> list[str]:
    from dramatiq import pipeline

    broker = dramatiq_floor(settings)
    first, second = broker.get_actor("floor_first"), broker.get_actor("floor_second")
    keys = [f"floor{i}" for i in range(campaigns)]
    for key in keys:
        pipeline([first.message(key), second.message_with_options(args=(key,), pipe_ignore=True)],
                 broker=broker).run()
    broker.client.close()
    return keys


def drain_dramatiq_floor(settings: Settings, on_ready: Callable[[], None]) -> Counter[str]:
    from dramatiq import Middleware

    from services.queued.dramatiq_backend.worker import serve

    outcome: Counter[str] = Counter()

    class Count(Middleware):
        def after_process_message(self, broker: Any, message: Any, *, result: Any = None,
                                  exception: Any = None) -> None:
            outcome[f"{message.actor_name} {'FAILURE' if exception is not None else 'SUCCESS'}"] += 1

    broker = dramatiq_floor(settings)
    broker.add_middleware(Count())
    serve(broker, {settings.queue_name}, True, on_ready)
    return outcome


# --- offpath's side, on any backend: campaigns admitted as the queued service admits them --------------------------

async def _admit(settings: Settings, campaigns: int) -> list[str]:
    client = redis_client(settings)
    try:
        store = CampaignStore(client, settings.idempotency_ttl_s)
        await store.prepare()
        info = await client.info("server")
        admission = queue_backend(settings.queue_backend).admission(settings, parse_redis_version(info["redis_version"]))
        request = CampaignRequest(name="drain", audience={"segment": "vip", "size": 1000},  # type: ignore[arg-type]
                                  channels=[Channel.email, Channel.push], follow_ups=2)
        try:
            return [(await store.admit(request, also=admission.buffer)).campaign_id for _ in range(campaigns)]
        finally:
            admission.close()
    finally:
        await client.aclose()


def fill_offpath(settings: Settings, campaigns: int) -> list[str]:
    """Campaigns admitted the way the queued service admits them (state and generation job in one transaction)."""
    return asyncio.run(_admit(settings, campaigns))


def drain_offpath(settings: Settings, on_ready: Callable[[], None]) -> Counter[str]:
    """offpath's own worker of the backend, in burst mode: what `python -m services.queued.worker --burst` runs."""
    code = queue_backend(settings.queue_backend).run_worker(settings, None, True, on_ready)
    return Counter({f"worker exit code {code}": 1} if code else {})


async def _admit_only(settings: Settings, campaigns: int) -> list[str]:
    client = redis_client(settings)
    try:
        store = CampaignStore(client, settings.idempotency_ttl_s)
        request = CampaignRequest(name="drain", audience={"segment": "vip", "size": 1000},  # type: ignore[arg-type]
                                  channels=[Channel.email, Channel.push], follow_ups=2)
        return [(await store.admit(request)).campaign_id for _ in range(campaigns)]
    finally:
        await client.aclose()


def fill_steps(settings: Settings, campaigns: int) -> list[str]:
    """Campaigns admitted with no job: the steps side runs them itself."""
    return asyncio.run(_admit_only(settings, campaigns))


def run_steps(settings: Settings, on_ready: Callable[[], None], ids: list[str]) -> Counter[str]:
    """Generation then automation of each campaign, through the code a worker runs them with, no queue library."""
    from services.queued.attempts import (
        Attempt,
        StepContext,
        automation_attempt,
        generation_attempt,
        no_chain,
        run_attempt,
    )

    context = StepContext(settings, lambda settings, redis: no_chain)
    first = Attempt(number=1, of=settings.retries + 1, backoff_s=settings.backoff_s(1))
    failed: Counter[str] = Counter()
    on_ready()
    try:
        for campaign_id in ids:
            for step in (generation_attempt, automation_attempt):
                try:
                    run_attempt(context, step, campaign_id, first)
                except Exception:  # noqa: BLE001 - counted: the figure is refused (outcome_errors)
                    failed[f"{step.__name__} FAILURE"] += 1
                    break
    finally:
        context.close()
    return failed


FILLS: dict[str, Callable[[Settings, int], list[str]]] = {
    "rq": fill_rq_floor, "celery": fill_celery_floor, "dramatiq": fill_dramatiq_floor}
DRAINS: dict[str, Callable[[Settings, Callable[[], None]], Counter[str]]] = {
    "rq": drain_rq_floor, "celery": drain_celery_floor, "dramatiq": drain_dramatiq_floor}


# --- one drain ----------------------------------------------------------------------------------------------------

@dataclass
class Drain:
    """One side's drain on one backend in one round: what it cost, and what went wrong, by kind."""

    side: str
    round: int
    campaigns: int
    worker_cpu_s: float
    redis_cpu_s: float
    commands: Counter[str]  # Redis commands the drain ran, by name (scripts' commands counted too)
    errors: Counter[str] = field(default_factory=Counter)
    backend: str = "rq"

    @property
    def cpu_ms_per_campaign(self) -> float:
        return 1000 * (self.worker_cpu_s + self.redis_cpu_s) / self.campaigns

    @property
    def campaigns_per_worker_cpu_s(self) -> float:
        return self.campaigns / self.worker_cpu_s if self.worker_cpu_s > 0 else 0.0

    @property
    def label(self) -> str:
        return "steps alone" if self.side == STEPS else f"{self.backend} {self.side}"

    def line(self) -> str:
        per = 1000 / self.campaigns
        return (f"{self.label:>17}: {self.campaigns_per_worker_cpu_s:6.0f} campaigns per worker CPU-second; per "
                f"campaign worker {self.worker_cpu_s * per:5.2f} ms + Redis {self.redis_cpu_s * per:5.2f} ms "
                f"= {self.cpu_ms_per_campaign:5.2f} ms CPU, {self.commands.total() / self.campaigns:5.1f} Redis commands")


def redis_cpu_and_commands(client: redis.Redis) -> tuple[float, Counter[str]]:
    cpu = client.info("cpu")
    stats = client.info("commandstats")
    return (float(cpu["used_cpu_user"]) + float(cpu["used_cpu_sys"]),
            Counter({name.removeprefix("cmdstat_"): int(row["calls"]) for name, row in stats.items()}))


def drain(backend: str, side: str, url: str, round_number: int, ids: list[str], profile: str) -> Drain:
    client = redis.Redis.from_url(url)
    env = {**os.environ, "REDIS_URL": url, "OFFPATH_PROFILE": profile}  # the backend: in --drain
    cpu_before, calls_before = redis_cpu_and_commands(client)
    worker = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--drain", f"{backend}:{side}"], env=env,
                            cwd=ROOT, capture_output=True, text=True, timeout=3600,
                            input="\n".join(ids) if side == STEPS else None)
    cpu_after, calls_after = redis_cpu_and_commands(client)
    calls = calls_after - calls_before
    calls -= Counter({"info": calls["info"]})  # our own two INFOs
    measured: dict[str, Any] = {"cpu_s": 0.0}
    if worker.returncode == 0:
        measured = json.loads(worker.stdout.strip().splitlines()[-1])
    errors = outcome_errors(backend, side, client, ids, Counter(measured.get("outcome", {})))
    if worker.returncode != 0:
        errors[f"worker exit code {worker.returncode}"] += 1
        sys.stderr.write(worker.stderr[-2000:])
    client.close()
    return Drain(side, round_number, len(ids), measured["cpu_s"], cpu_after - cpu_before, calls, errors, backend)


def outcome_errors(backend: str, side: str, client: redis.Redis, ids: list[str], outcome: Counter[str]) -> Counter[str]:
    """Failed jobs, and campaigns (the floor's: chains) not completed."""
    queue_name = Settings.from_env().queue_name
    errors: Counter[str] = Counter({kind: n for kind, n in outcome.items() if "exit code" in kind})
    if backend == "rq":
        errors["failed job"] = Queue(queue_name, connection=client, serializer=JSONSerializer).failed_job_registry.count
    elif backend == "dramatiq":
        errors["failed job"] = int(client.zcard(f"dramatiq:{queue_name}.XQ"))  # Dramatiq's dead letters
    if side == STEPS:
        errors["failed job"] += sum(n for kind, n in outcome.items() if kind.endswith("FAILURE"))
    if side in ("offpath", STEPS):
        pipe = client.pipeline(transaction=False)
        for key in ids:
            pipe.hget(campaign_key(key), "status")
        errors["campaign not completed"] = sum(1 for status in pipe.execute() if status != b"completed")
    elif backend == "rq":
        pipe = client.pipeline(transaction=False)
        for key in ids:
            pipe.hget(f"rq:job:{key}-second", "status")
        errors["chain not completed"] = sum(1 for status in pipe.execute() if status != b"finished")
    else:  # Celery and Dramatiq keep no record of a finished job: the floor's worker counted them
        errors["failed job"] += sum(n for kind, n in outcome.items() if kind.endswith("FAILURE"))
        second = "floor.second" if backend == "celery" else "floor_second"
        errors["chain not completed"] = len(ids) - outcome[f"{second} SUCCESS"]
    return +errors


def worker_process(backend: str, side: str) -> int:
    """The child: build the side's worker, drain its queue in burst mode, print the CPU it took from when it consumed
    (and, for a floor that keeps no record, what it ran) as JSON."""
    settings = replace(Settings.from_env(), queue_backend=backend)
    # Import what the jobs run before the clock starts: RQ imports a job's function by name on its first call.
    import benchmarks.drain_cost  # noqa: F401  (this file, under the name RQ's floor jobs are enqueued with)
    import services.queued.jobs  # noqa: F401
    ready: list[resource.struct_rusage] = []

    def on_ready() -> None:
        ready.append(resource.getrusage(resource.RUSAGE_SELF))

    if side == STEPS:
        outcome = run_steps(settings, on_ready, sys.stdin.read().split())
    else:
        outcome = (drain_offpath if side == "offpath" else DRAINS[backend])(settings, on_ready)
    ended = resource.getrusage(resource.RUSAGE_SELF)
    started = ready[0] if ready else ended
    cpu_s = (ended.ru_utime - started.ru_utime) + (ended.ru_stime - started.ru_stime)
    print(json.dumps({"cpu_s": cpu_s, "outcome": outcome}))
    return 0


# --- the run ------------------------------------------------------------------------------------------------------

def conclude(drains: list[Drain]) -> int:
    """Print medians, per-round ratios and `drain_overhead_ratio <backend>` per backend (exit code 0), or, for each
    backend a side of which had failures, what failed instead of its figure (exit code NO_FIGURE)."""
    print()
    steps = [d for d in drains if d.side == STEPS]
    steps_ms = None
    if steps and not refused(SideErrors(d.label, f"round {d.round}", d.errors) for d in steps):
        steps_ms = statistics.median(d.cpu_ms_per_campaign for d in steps)
        print(f"offpath's two steps alone, no queue library: per campaign worker "
              f"{statistics.median(1000 * d.worker_cpu_s / d.campaigns for d in steps):5.2f} ms, Redis "
              f"{statistics.median(1000 * d.redis_cpu_s / d.campaigns for d in steps):5.2f} ms, "
              f"{statistics.median(d.commands.total() / d.campaigns for d in steps):5.1f} commands "
              f"(medians over {len(steps)} rounds)")
    backends = list(dict.fromkeys(d.backend for d in drains if d.side != STEPS))
    figures: dict[str, float] = {}
    for backend in backends:
        ours = [d for d in drains if d.backend == backend and d.side != STEPS]
        if refused(SideErrors(d.label, f"round {d.round}", d.errors) for d in ours):
            continue
        figures[backend] = _summarize(backend, ours, steps_ms)
    for backend, ratio in figures.items():
        print(f"drain_overhead_ratio {backend}: {ratio:.2f}")
    return 0 if len(figures) == len(backends) else NO_FIGURE


def _summarize(backend: str, drains: list[Drain], steps_ms: float | None = None) -> float:
    by_side = {side: [d for d in drains if d.side == side] for side in SIDES}
    median = statistics.median
    for side, rows in by_side.items():
        print(f"{backend + ' ' + side:>17}: median {median(d.campaigns_per_worker_cpu_s for d in rows):6.0f} campaigns "
              f"per worker CPU-second; per campaign worker {median(1000 * d.worker_cpu_s / d.campaigns for d in rows):5.2f}"
              f" ms, Redis {median(1000 * d.redis_cpu_s / d.campaigns for d in rows):5.2f} ms, "
              f"{median(d.commands.total() / d.campaigns for d in rows):5.1f} commands (medians over {len(rows)} rounds)")
    pairs = list(zip(by_side["offpath"], by_side["floor"], strict=True))
    offpath, floor = pairs[0]
    extra = {name: offpath.commands[name] / offpath.campaigns - floor.commands[name] / floor.campaigns
             for name in offpath.commands | floor.commands}
    print(f"{backend}: offpath's Redis commands per campaign over the floor's: " + ", ".join(
        f"{name} {delta:+.1f}" for name, delta in sorted(extra.items(), key=lambda kv: -abs(kv[1])) if abs(delta) >= 0.05))
    worker = [o.worker_cpu_s / o.campaigns / (f.worker_cpu_s / f.campaigns) for o, f in pairs]
    redis_only = [o.redis_cpu_s / o.campaigns / (f.redis_cpu_s / f.campaigns) for o, f in pairs]
    ratios = [o.cpu_ms_per_campaign / f.cpu_ms_per_campaign for o, f in pairs]
    print(f"{backend}: per-round offpath/floor: worker CPU {', '.join(f'{r:.2f}' for r in worker)}; "
          f"Redis CPU {', '.join(f'{r:.2f}' for r in redis_only)}; both {', '.join(f'{r:.2f}' for r in ratios)}")
    if steps_ms is not None:
        added = median(o.cpu_ms_per_campaign - f.cpu_ms_per_campaign for o, f in pairs)
        print(f"{backend}: offpath adds {added:.2f} ms of worker + Redis CPU per campaign to the floor; its two steps "
              f"alone cost {steps_ms:.2f} ms")
    return statistics.median(ratios)


def _backends(text: str) -> list[str]:
    names = [name.strip() for name in text.split(",") if name.strip()]
    unknown = [name for name in names if name not in QUEUE_BACKENDS]
    if unknown or not names:
        raise argparse.ArgumentTypeError(f"{text!r}: allowed a comma-separated list of {', '.join(QUEUE_BACKENDS)}")
    return names


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--campaigns", type=int, default=800, help="campaigns (two jobs each) per drain")
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--backends", type=_backends, default=list(QUEUE_BACKENDS),
                        help=f"comma-separated, of {', '.join(QUEUE_BACKENDS)} (default: all)")
    parser.add_argument("--profile", default="none",
                        help="offpath's workload profile (default: none, the mechanics alone)")
    parser.add_argument("--drain", help=argparse.SUPPRESS)  # the worker child: BACKEND:SIDE
    args = parser.parse_args()
    if args.drain:
        backend, _, side = args.drain.partition(":")
        return worker_process(backend, side)

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
        urls = {side: f"{base}/{database}" for side, database in DATABASES.items()}
        databases = {side: empty_database(url, "drain_cost") for side, url in urls.items()}
        print(f"{args.campaigns:,} campaigns per drain, {args.rounds} rounds interleaved, backends "
              f"{', '.join(args.backends)}; offpath profile {args.profile}; one burst-mode worker process per drain on "
              f"cpu {worker_cpus}, "
              f"{'embedded Redis on cpu ' + str(redis_cpus) if server.process is not None else 'Redis at REDIS_URL'}",
              flush=True)
        for round_number in range(1, args.rounds + 1):
            databases[STEPS].flushdb()
            ids = fill_steps(replace(settings, redis_url=urls[STEPS]), args.campaigns)
            result = drain("none", STEPS, urls[STEPS], round_number, ids, args.profile)
            drains.append(result)
            print(f"  round {round_number} {result.line()}", flush=True)
            for backend in args.backends:
                for side in SIDES if round_number % 2 else tuple(reversed(SIDES)):
                    databases[side].flushdb()  # every round from the same state
                    side_settings = replace(settings, redis_url=urls[side], queue_backend=backend)
                    fill = fill_offpath if side == "offpath" else FILLS[backend]
                    ids = fill(side_settings, args.campaigns)
                    result = drain(backend, side, urls[side], round_number, ids, args.profile)
                    drains.append(result)
                    problems = SideErrors(result.label, f"round {round_number}", result.errors)
                    print(f"  round {round_number} {result.line()}" + (f"  ({problems})" if problems.total else ""),
                          flush=True)
        for client in databases.values():
            client.flushdb()
    return conclude(drains)


if __name__ == "__main__":
    sys.exit(main())
