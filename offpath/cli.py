"""The `offpath` command: thin wiring of the parts; the justfile's recipes call it."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import time
from pathlib import Path

from loadtests.redis_server import RedisUnavailable, redis_for_run
from loadtests.supervisor import NotReady, ProcessDied, Supervisor, start_service, start_workers
from services.campaign.profile import ProfileError, load_profile

log = logging.getLogger("offpath")


class _Stop(Exception):
    pass


def _raise_stop(signum: int, frame: object) -> None:
    raise _Stop(signal.Signals(signum).name)


def cmd_up(args: argparse.Namespace) -> int:
    load_profile(args.profile)  # a wrong profile name fails here, with the list of valid ones
    signal.signal(signal.SIGTERM, _raise_stop)
    signal.signal(signal.SIGINT, _raise_stop)
    try:
        with redis_for_run(aof=args.aof) as redis, Supervisor() as supervisor:
            origin = "embedded redis-server" if redis.embedded else "REDIS_URL"
            log.info("redis %s (%s, version %s)", redis.url, origin, redis.version())
            _, url = start_service(
                supervisor, args.design, redis.url, args.profile, port=args.port,
                processes=args.processes, log_level="info",
            )
            if args.design == "queued":
                start_workers(supervisor, args.workers, redis.url, args.profile)
                log.info("%d RQ workers running", args.workers)
            log.info("%s service serving on %s (profile %s); docs at %s/docs; Ctrl-C stops everything",
                     args.design, url, args.profile, url)
            while True:
                supervisor.check()
                time.sleep(0.5)
    except _Stop as stop:
        log.info("%s: stopped everything offpath started", stop)
        return 0
    except (ProcessDied, NotReady, RedisUnavailable, ProfileError) as exc:
        log.error("%s", exc)
        return 2


def cmd_bench(args: argparse.Namespace) -> int:
    from loadtests.experiment import ExperimentError, load_experiment
    from loadtests.runner import main_bench

    try:
        experiment = load_experiment(args.experiment)
    except ExperimentError as exc:
        log.error("%s", exc)
        return 2
    return main_bench(experiment, Path(args.out))


def cmd_chaos(args: argparse.Namespace) -> int:
    from loadtests.chaos import load_chaos, run_chaos
    from loadtests.experiment import ExperimentError

    if os.environ.get("REDIS_URL"):
        log.warning("chaos starts its own redis-server per fault (it crashes and restarts it); REDIS_URL is ignored")
    try:
        chaos = load_chaos(args.experiment)
    except ExperimentError as exc:
        log.error("%s", exc)
        return 2
    run_dir, ok = run_chaos(chaos, Path(args.out), only=args.fault or None,
                            say=lambda line: print(line, file=sys.stderr, flush=True))
    print(run_dir)
    return 0 if ok else 1


def cmd_report(args: argparse.Namespace) -> int:
    from analysis.load import ResultsFolderError
    from analysis.report import render

    try:
        path = render(Path(args.run), allow_incomplete=args.partial)
    except ResultsFolderError as exc:
        log.error("%s", exc)
        return 2
    print(path)
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    from analysis.compare import compare_runs, format_comparison
    from analysis.load import ResultsFolderError

    try:
        comparison = compare_runs(Path(args.a), Path(args.b))
    except ResultsFolderError as exc:
        log.error("%s", exc)
        return 2
    print(format_comparison(comparison, color=sys.stdout.isatty()))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="offpath", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    up = sub.add_parser("up", help="serve one design on 127.0.0.1 (with Redis and, for queued, RQ workers)")
    up.add_argument("design", choices=["inline", "queued"])
    up.add_argument("--port", type=int, default=8000)
    up.add_argument("--workers", type=int, default=4, help="RQ worker processes (queued design)")
    up.add_argument("--processes", type=int, default=1, help="uvicorn worker processes")
    up.add_argument("--profile", default="default", help="workload profile name or .toml path")
    up.add_argument("--aof", choices=["off", "everysec", "always"], default="everysec",
                    help="append-only file mode of the embedded Redis")
    up.set_defaults(func=cmd_up)

    bench = sub.add_parser("bench", help="run an experiment and write results/<run-id>/ (prints its path last)")
    bench.add_argument("experiment", nargs="?", default="seed", help="experiment name or .toml path (default: seed)")
    bench.add_argument("--out", default="results", help="folder that receives the run folder (default: results)")
    bench.set_defaults(func=cmd_bench)

    chaos = sub.add_parser("chaos", help="inject faults under load and audit every acknowledged campaign")
    chaos.add_argument("experiment", nargs="?", default="chaos", help="chaos experiment name or .toml path")
    chaos.add_argument("--fault", action="append", help="run only this fault (repeatable)")
    chaos.add_argument("--out", default="results")
    chaos.set_defaults(func=cmd_chaos)

    report = sub.add_parser("report", help="(re)render RUN/report.html and RUN/report.md; prints the HTML path last")
    report.add_argument("run", help="a results folder")
    report.add_argument("--partial", action="store_true", help="render an incomplete run from what it measured")
    report.set_defaults(func=cmd_report)

    compare = sub.add_parser("compare", help="compare two runs: deltas with 95% confidence intervals")
    compare.add_argument("a", help="baseline results folder")
    compare.add_argument("b", help="candidate results folder")
    compare.set_defaults(func=cmd_compare)
    return parser


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=os.environ.get("OFFPATH_LOG_LEVEL", "INFO"),
                        format="%(asctime)s offpath %(levelname)s %(message)s", datefmt="%H:%M:%S")
    args = build_parser().parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
