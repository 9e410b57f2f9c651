"""What does a worker cost while it has nothing to do, on each queue backend? CPU of the worker process (and of anything it
forked), Redis CPU and Redis commands, per second of idling, measured apart from the cost per campaign
(benchmarks/drain_cost.py), so that a run at a low rate can tell the two apart instead of charging the idling to its
few campaigns.

Each backend's worker (`python -m services.queued.worker`, the deployment's own entry point) is started on an empty,
private database, and measured from its ready line for --seconds: the process tree's user + system time from /proc
(RQ's polling, its abandonment watch and pulse; Celery's BRPOP loop and restore sweeps;
Dramatiq's two consumer threads polling every worker_timeout, each poll a script call with a chance of maintenance),
and the server's INFO cpu and commandstats. Nothing else may use that Redis meanwhile: the embedded one, or an idle
REDIS_URL.

Run: python benchmarks/worker_idle.py [--seconds 20] [--backends rq,celery,dramatiq]
Prints one line per backend: `idle <backend>: worker X ms CPU/s, Redis Y ms CPU/s, Z commands/s`.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import redis

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.drain_cost import redis_cpu_and_commands  # noqa: E402
from benchmarks.scratch import empty_database  # noqa: E402
from offpath.process import available_cpus, pin  # noqa: E402
from offpath.redis_server import redis_for_run  # noqa: E402
from services.campaign.settings import QUEUE_BACKENDS  # noqa: E402
from services.queued.lifetime import READY  # noqa: E402

TICKS_PER_S = os.sysconf("SC_CLK_TCK")


def tree_cpu_s(root: int) -> float:
    """User + system time of `root` and its descendants, from /proc (its children's own, while they run)."""
    total, todo = 0.0, [root]
    while todo:
        pid = todo.pop()
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / TICKS_PER_S  # utime, stime
        todo += [int(child) for child in children]
    return total


def idle(backend: str, url: str, seconds: float) -> str:
    env = {**os.environ, "REDIS_URL": url, "OFFPATH_QUEUE_BACKEND": backend, "OFFPATH_PROFILE": "none"}
    worker = subprocess.Popen([sys.executable, "-m", "services.queued.worker", "--name", f"idle-{backend}"], cwd=ROOT,
                              env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        assert worker.stderr is not None
        for line in worker.stderr:
            if READY in line:
                break
        else:
            return f"idle {backend}: no figure: the worker exited with code {worker.wait()} before it was ready"
        time.sleep(1.0)  # past the start-up's own traffic (registration, first sweeps)
        client = redis.Redis.from_url(url)
        cpu_before, calls_before = redis_cpu_and_commands(client)
        worker_before, started = tree_cpu_s(worker.pid), time.monotonic()
        time.sleep(seconds)
        worker_after, elapsed = tree_cpu_s(worker.pid), time.monotonic() - started
        cpu_after, calls_after = redis_cpu_and_commands(client)
        calls = calls_after - calls_before
        calls -= Counter({"info": calls["info"]})  # our own INFOs
        client.close()
        return (f"idle {backend}: worker {1000 * (worker_after - worker_before) / elapsed:5.2f} ms CPU/s, Redis "
                f"{1000 * (cpu_after - cpu_before) / elapsed:5.2f} ms CPU/s, {calls.total() / elapsed:6.1f} commands/s "
                f"({', '.join(f'{name} {n / elapsed:.1f}' for name, n in calls.most_common(4))})")
    finally:
        worker.send_signal(signal.SIGTERM)
        try:
            worker.wait(timeout=15)
        except subprocess.TimeoutExpired:
            worker.kill()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=20.0, help="idling measured per backend")
    parser.add_argument("--backends", default=",".join(QUEUE_BACKENDS),
                        help=f"comma-separated, of {', '.join(QUEUE_BACKENDS)} (default: all)")
    args = parser.parse_args()
    backends = [name.strip() for name in args.backends.split(",") if name.strip()]
    if not backends or any(name not in QUEUE_BACKENDS for name in backends):
        parser.error(f"--backends {args.backends!r}: allowed a comma-separated list of {', '.join(QUEUE_BACKENDS)}")
    with redis_for_run() as server:
        cpus = available_cpus()
        if server.process is not None:
            pin(server.process.pid, cpus[:1])
        url = server.url.rsplit("/", 1)[0] + "/4"
        database = empty_database(url, "worker_idle")
        print(f"one idle worker per backend for {args.seconds:g} s each, from its ready line; "
              f"{'embedded Redis on cpu ' + str(cpus[:1]) if server.process is not None else 'Redis at REDIS_URL'}",
              flush=True)
        for backend in backends:
            database.flushdb()
            print(idle(backend, url, args.seconds), flush=True)
        database.flushdb()
    return 0


if __name__ == "__main__":
    sys.exit(main())
