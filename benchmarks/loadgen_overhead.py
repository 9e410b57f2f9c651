"""How much CPU does offpath's HDR recording plugin add to the load generator? CPU microseconds per request
of the Locust driver with the plugin (--hdr-dir) against the same locustfile without it, in the open model
(the way offpath measures) and closed-loop at full speed; a bare FastHttpUser locustfile and wrk (when on
PATH) as references. All against one trivial loopback endpoint (POST /campaigns -> 201), in one run,
with and without the plugin measured back to back in alternating order, round after round.

CPU is read from /proc for the driver's whole process tree (schedstat run time) over a window that starts
after a warm-up, and divided by the requests the endpoint answered in the same window: start-up and
shutdown costs stay out of the figure. The driver and the endpoint are pinned to different CPUs.

A driver's CPU per answered request means something only if the endpoint answered all it sent: a failed request
costs the driver CPU the endpoint never counts, and a driver that ended inside its window took its CPU with it (a dead
process tree reads 0 s). So each run's errors are read, by kind, from Locust's error report and exit code (1 on
failures, 2 on an unhandled exception), with "sent nothing", "ended during the window" and "nothing
answered in the window" as errors of their own; a variant with any gets no figure (benchmarks/figure.py). wrk
prints its errors only when it runs to its end, not when stopped: its reference figure is shown as unchecked.

Run: python benchmarks/loadgen_overhead.py [--rate 500] [--seconds 5] [--rounds 4]   (about 3 minutes)
Prints `plugin_cpu_overhead: 0.NN` last: the median over rounds of (plugin / plain - 1) CPU per request,
open model, each round measuring the two back to back; or `no figure: ...` and exit code 1 when a side had errors.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.figure import NO_FIGURE, SideErrors, refused  # noqa: E402
from offpath.ports import free_port  # noqa: E402
from offpath.process import available_cpus, die_with_parent  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
LOCUSTFILE = ROOT / "loadtests" / "locustfile.py"
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
WARM_S = 1.5
# The plugin's exit code when its interval logs miss their last requests (EXIT_LOGS_INCOMPLETE in
# loadtests/locustfile.py, not imported: importing Locust monkey-patches this process). Every plugin run here ends
# that way, since SIGTERM fires Locust's `quitting` before `test_stop`; the logs are thrown away and the window closed
# before the signal, so it is no error of the measurement. It also hides exit code 1: failures are read from the
# error report, which Locust prints either way.
PLUGIN_CUT_SHORT = 3
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


def locust_errors(output: str, exit_code: int | None) -> Counter[str]:
    """Locust's failures by error, from the error report it prints at exit; its exit code when it failed without
    one (exit_code None: the driver ended on its own, an error already counted)."""
    errors: Counter[str] = Counter()
    if "Error report" in output:  # a header, a separator, `<occurrences> <error>` rows, a separator
        table = output.split("Error report", 1)[1].split("\n------------------|")
        for line in (table[1].splitlines()[1:] if len(table) > 1 else []):
            if match := re.match(r"(\d+)\s+(\S.*?)\s*$", line):
                errors[match[2]] += int(match[1])
    if not errors and exit_code not in (None, 0, PLUGIN_CUT_SHORT):
        errors[f"locust exit code {exit_code}"] += 1
    return errors


@dataclass
class Variant:
    name: str
    argv: Callable[[str, float], list[str]]  # (url, seconds to run) -> command line
    # How the driver's own errors are read from its output and exit code once stopped; None: they cannot be.
    errors: Callable[[str, int | None], Counter[str]] | None = locust_errors


@dataclass
class Window:
    """One variant's measured window: driver CPU µs per answered request, and the errors of its run by kind."""

    cpu_us_per_request: float
    errors: Counter[str] = field(default_factory=Counter)


def measure(variant: Variant, url: str, seconds: float, cpus: list[int]) -> Window:
    """CPU µs per answered request of the variant's process tree over `seconds` after a warm-up."""
    errors: Counter[str] = Counter()
    cpu_us = 0.0
    with tempfile.TemporaryFile() as output:
        process = subprocess.Popen(variant.argv(url, WARM_S + seconds + 30), cwd=ROOT, stdout=output,
                                   stderr=subprocess.STDOUT, preexec_fn=pinned(cpus))
        try:
            start, deadline = answered(url), time.monotonic() + 30
            while answered(url) == start:  # wait for the load to begin
                if process.poll() is not None or time.monotonic() > deadline:
                    errors[f"sent nothing (exit code {process.poll()})"] += 1
                    break
                time.sleep(0.1)
            else:
                time.sleep(WARM_S)
                cpu0, n0 = tree_cpu_s(process.pid), answered(url)
                time.sleep(seconds)
                cpu1, n1 = tree_cpu_s(process.pid), answered(url)
                if process.poll() is not None:
                    errors[f"ended during the window (exit code {process.returncode})"] += 1
                elif n1 == n0:
                    errors["nothing answered in the window"] += 1
                cpu_us = (cpu1 - cpu0) / max(n1 - n0, 1) * 1e6
        finally:
            ended_on_its_own = process.poll() is not None
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if variant.errors is not None:
            output.seek(0)
            errors += variant.errors(output.read().decode(errors="replace"),
                                     None if ended_on_its_own else process.returncode)
    return Window(cpu_us, errors)


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
                                                             f"{url}/campaigns"], errors=None))
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


def round_line(round_number: int, measured: dict[str, Window]) -> str:
    parts = [f"{name} {w.cpu_us_per_request:.1f} µs" if not w.errors else str(SideErrors(name, "the run", w.errors))
             for name, w in measured.items()]
    clean = [w.cpu_us_per_request for w in measured.values() if not w.errors]
    ratio = f" CPU/request: x{clean[0] / clean[1]:.3f}" if len(clean) == 2 else ""
    return f"round {round_number}: {', '.join(parts)}{ratio}"


def cpu_line(variant: Variant, windows: list[Window]) -> str:
    """The variant's median CPU per request, or the errors that leave it without one."""
    failed = [number for number, w in enumerate(windows, 1) if w.errors]
    if failed:
        merged = sum((w.errors for w in windows), Counter())
        where = f"round{'s' if len(failed) > 1 else ''} {', '.join(map(str, failed))}"
        return f"  {variant.name:<20} no figure: {SideErrors(variant.name, where, merged)}"
    unchecked = "  (errors unchecked: wrk reports them only when it runs to its end)" if variant.errors is None else ""
    return f"  {variant.name:<20} {statistics.median(w.cpu_us_per_request for w in windows):8.1f} µs{unchecked}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=500.0, help="open-model arrival rate (requests/s)")
    parser.add_argument("--seconds", type=float, default=5.0, help="measured window per variant and round")
    parser.add_argument("--rounds", type=int, default=4, help="paired rounds (plugin and plain back to back)")
    parser.add_argument("--serve", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve is not None:
        serve(args.serve)
        return 0
    cpus = available_cpus()
    server_cpus, driver_cpus = (cpus[:1], cpus[-1:]) if len(cpus) > 1 else ([], [])
    port = free_port()
    server = subprocess.Popen([sys.executable, __file__, "--serve", str(port)], stdout=subprocess.DEVNULL,
                              preexec_fn=pinned(server_cpus))
    url = f"http://127.0.0.1:{port}"
    windows: dict[str, tuple[Variant, list[Window]]] = {}
    errors: dict[str, list[SideErrors]] = {}  # by model: both sides, every round
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
                    model = with_plugin.name.split(",")[0]
                    for variant in order:
                        window = measured[variant.name]
                        windows.setdefault(variant.name, (variant, []))[1].append(window)
                        errors.setdefault(model, []).append(SideErrors(variant.name, f"round {round_number}",
                                                                       window.errors))
                    if not any(w.errors for w in measured.values()):
                        ratios.setdefault(model, []).append(measured[with_plugin.name].cpu_us_per_request
                                                            / measured[without.name].cpu_us_per_request)
                    print(round_line(round_number, {v.name: measured[v.name] for v in (with_plugin, without)}),
                          file=sys.stderr)
            for variant in references:
                windows[variant.name] = (variant, [measure(variant, url, args.seconds, driver_cpus)])
    finally:
        server.terminate()
        server.wait(timeout=10)
    print(f"driver CPU per request (median over rounds, {args.seconds:g} s windows; open model at {args.rate:g}/s, "
          "closed model and references at full speed with 8 connections):")
    for variant, rows in windows.values():
        print(cpu_line(variant, rows))
    for model, values in ratios.items():
        print(f"{model}-model plugin overhead per round: {', '.join(f'{r - 1:+.3f}' for r in values)}")
    code = 0
    if refused(errors["closed"], "closed-model plugin overhead"):
        code = NO_FIGURE
    else:
        print(f"closed-model plugin overhead: {statistics.median(ratios['closed']) - 1:+.2f}")
    if refused(errors["open"]):
        return NO_FIGURE
    print(f"plugin_cpu_overhead: {statistics.median(ratios['open']) - 1:.2f}")
    return code


if __name__ == "__main__":
    sys.exit(main())
