"""How much CPU does offpath's HDR recording plugin add to the load generator? CPU microseconds per request
of the Locust driver with the plugin (--hdr-dir) against the same locustfile without it, in the open model
(the way offpath measures) and closed-loop at full speed; a bare FastHttpUser locustfile and wrk (when on
PATH) as references. All against one trivial loopback endpoint (POST /campaigns -> 201), in one run,
with and without the plugin measured back to back in alternating order, round after round.

CPU is read from /proc for the driver's whole process tree (schedstat run time) over a window that starts
after a warm-up, and divided by the requests the endpoint answered in the same window: start-up and
shutdown costs stay out of the figure. The driver and the endpoint are pinned to different CPUs.

Run: python benchmarks/loadgen_overhead.py [--rate 500] [--seconds 5] [--rounds 4]   (about 3 minutes)
Prints `plugin_cpu_overhead: 0.NN` last: the median over rounds of (plugin / plain - 1) CPU per request,
open model, each round measuring the two back to back.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from loadtests.ports import free_port  # noqa: E402
from loadtests.process import available_cpus, die_with_parent  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
LOCUSTFILE = ROOT / "loadtests" / "locustfile.py"
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
WARM_S = 1.5
BODY = b'{"name":"Spring sale #1","audience":{"segment":"trial-users","size":1200},"channels":["email"],"follow_ups":2}'

BARE_LOCUSTFILE = f'''
from locust import FastHttpUser, constant, task

class Bare(FastHttpUser):
    wait_time = constant(0)

    @task
    def create(self):
        self.client.post("/campaigns", data={BODY!r}, headers={{"Content-Type": "application/json"}})
'''

WRK_SCRIPT = f'''
wrk.method = "POST"
wrk.body = {BODY.decode()!r}
wrk.headers["Content-Type"] = "application/json"
'''


def serve(port: int) -> None:
    """The trivial endpoint: answers POST /campaigns at once and counts; GET /count tells the count."""
    from aiohttp import web

    answered = 0

    async def create(request: web.Request) -> web.Response:
        nonlocal answered
        await request.read()
        answered += 1
        return web.json_response({"id": f"c{answered}", "status": "completed"}, status=201)

    async def count(request: web.Request) -> web.Response:
        return web.json_response({"count": answered})

    app = web.Application()
    app.add_routes([web.post("/campaigns", create), web.get("/count", count)])
    web.run_app(app, host="127.0.0.1", port=port, access_log=None, print=None)


def answered(url: str) -> int:
    with urllib.request.urlopen(f"{url}/count", timeout=5) as response:
        import json
        return int(json.loads(response.read())["count"])


def tree_cpu_s(root: int) -> float:
    """CPU time used so far by a process and all its descendants, every thread, in seconds."""
    parents: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                parents[int(entry)] = int(Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[1])
            except (FileNotFoundError, ProcessLookupError):
                continue
    tree, frontier = {root}, [root]
    while frontier:
        pid = frontier.pop()
        children = [p for p, parent in parents.items() if parent == pid and p not in tree]
        tree.update(children)
        frontier.extend(children)
    return sum(_process_cpu_s(pid) for pid in tree)


def _process_cpu_s(pid: int) -> float:
    # schedstat's run time is in nanoseconds, where stat's utime/stime are sampled at the clock tick
    # (10 ms): a driver that wakes up for 100 µs at a time is charged far more evenly this way.
    try:
        return sum(int(Path(f"/proc/{pid}/task/{tid}/schedstat").read_text().split()[0])
                   for tid in os.listdir(f"/proc/{pid}/task")) / 1e9
    except (FileNotFoundError, ProcessLookupError):
        return 0.0
    except OSError:  # no schedstat in this kernel: fall back to the clock-tick counts
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def pinned(cpus: list[int]) -> Callable[[], None]:
    """preexec_fn: the child runs on `cpus` (all its threads and children too) and dies with this process."""
    def preexec() -> None:
        die_with_parent()
        if cpus:
            os.sched_setaffinity(0, cpus)
    return preexec


@dataclass
class Variant:
    name: str
    argv: Callable[[str, float], list[str]]  # (url, seconds to run) -> command line


def measure(variant: Variant, url: str, seconds: float, cpus: list[int]) -> float:
    """CPU µs per answered request of the variant's process tree over `seconds` after a warm-up."""
    process = subprocess.Popen(variant.argv(url, WARM_S + seconds + 30), cwd=ROOT, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL, preexec_fn=pinned(cpus))
    try:
        start, deadline = answered(url), time.monotonic() + 30
        while answered(url) == start:  # wait for the load to begin
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{variant.name} sent nothing (exit code {process.poll()})")
            time.sleep(0.1)
        time.sleep(WARM_S)
        cpu0, n0 = tree_cpu_s(process.pid), answered(url)
        time.sleep(seconds)
        cpu1, n1 = tree_cpu_s(process.pid), answered(url)
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    return (cpu1 - cpu0) / max(n1 - n0, 1) * 1e6


def variants(rate: float, work: Path) -> tuple[list[tuple[Variant, Variant]], list[Variant]]:
    """(with plugin, without) pairs for the open and the closed model, and the references."""
    locust = [sys.executable, "-m", "locust", "--headless", "--only-summary", "--loglevel", "ERROR"]

    def ours(*extra: str, hdr: bool) -> Callable[[str, float], list[str]]:
        def argv(url: str, run_s: float) -> list[str]:
            cell = ["--hdr-dir", str(work / f"cell-{time.monotonic_ns()}")] if hdr else []
            return [*locust, "-f", str(LOCUSTFILE), "--host", url, "-t", f"{run_s:.0f}s", *extra, *cell]
        return argv

    open_model = ("--arrival-rate", f"{rate:g}", "-u", "1", "-r", "1", "--poll-interval", "0")
    closed = ("-u", "8", "-r", "8", "--wait-s", "0", "--poll-interval", "0")
    pairs = [(Variant("open, plugin", ours(*open_model, hdr=True)), Variant("open, plain", ours(*open_model, hdr=False))),
             (Variant("closed, plugin", ours(*closed, hdr=True)), Variant("closed, plain", ours(*closed, hdr=False)))]
    bare = work / "bare_locustfile.py"
    bare.write_text(BARE_LOCUSTFILE)
    references = [Variant("bare FastHttpUser", lambda url, run_s: [*locust, "-f", str(bare), "--host", url, "-u", "8",
                                                                   "-r", "8", "-t", f"{run_s:.0f}s"])]
    if shutil.which("wrk"):
        script = work / "post.lua"
        script.write_text(WRK_SCRIPT)
        references.append(Variant("wrk", lambda url, run_s: ["wrk", "-t1", "-c8", f"-d{run_s:.0f}s", "-s", str(script),
                                                             f"{url}/campaigns"]))
    return pairs, references


def wait_until_up(url: str) -> None:
    deadline = time.monotonic() + 15
    while True:
        try:
            answered(url)
            return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=500.0, help="open-model arrival rate (requests/s)")
    parser.add_argument("--seconds", type=float, default=5.0, help="measured window per variant and round")
    parser.add_argument("--rounds", type=int, default=4, help="paired rounds (plugin and plain back to back)")
    parser.add_argument("--serve", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve is not None:
        serve(args.serve)
        return
    cpus = available_cpus()
    server_cpus, driver_cpus = (cpus[:1], cpus[-1:]) if len(cpus) > 1 else ([], [])
    port = free_port()
    server = subprocess.Popen([sys.executable, __file__, "--serve", str(port)], stdout=subprocess.DEVNULL,
                              preexec_fn=pinned(server_cpus))
    url = f"http://127.0.0.1:{port}"
    cpu_us: dict[str, list[float]] = {}
    ratios: dict[str, list[float]] = {}
    try:
        wait_until_up(url)
        with tempfile.TemporaryDirectory(prefix="offpath-overhead-") as work:
            pairs, references = variants(args.rate, Path(work))
            if not shutil.which("wrk"):
                print("wrk not on PATH: skipping it (apt-get install wrk)", file=sys.stderr)
            for round_number in range(1, args.rounds + 1):
                for with_plugin, without in pairs:
                    # Back to back, in alternating order: drift on a shared machine then cancels in the ratio.
                    order = (with_plugin, without) if round_number % 2 else (without, with_plugin)
                    measured = {v.name: measure(v, url, args.seconds, driver_cpus) for v in order}
                    for name, value in measured.items():
                        cpu_us.setdefault(name, []).append(value)
                    ratio = measured[with_plugin.name] / measured[without.name]
                    ratios.setdefault(with_plugin.name.split(",")[0], []).append(ratio)
                    print(f"round {round_number}: {with_plugin.name} {measured[with_plugin.name]:.1f} µs, "
                          f"{without.name} {measured[without.name]:.1f} µs CPU/request: x{ratio:.3f}", file=sys.stderr)
            for variant in references:
                cpu_us[variant.name] = [measure(variant, url, args.seconds, driver_cpus)]
    finally:
        server.terminate()
        server.wait(timeout=10)
    print(f"driver CPU per request (median over rounds, {args.seconds:g} s windows; open model at {args.rate:g}/s, "
          "closed model and references at full speed with 8 connections):")
    for name, values in cpu_us.items():
        print(f"  {name:<20} {statistics.median(values):8.1f} µs")
    for model, values in ratios.items():
        print(f"{model}-model plugin overhead per round: {', '.join(f'{r - 1:+.3f}' for r in values)}")
    print(f"closed-model plugin overhead: {statistics.median(ratios['closed']) - 1:+.2f}")
    print(f"plugin_cpu_overhead: {statistics.median(ratios['open']) - 1:.2f}")


if __name__ == "__main__":
    main()
