"""The `offpath` command: thin wiring of the parts; the justfile's recipes call it."""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

# Only what is quick to import is imported here; each command imports what it runs inside its own function, since
# the runner, the gate and the analysis with their libraries (numpy, pandas, matplotlib, aiohttp) take ~1.4 s to
# import, and `offpath --help` or a mistyped option should answer at once (~0.25 s).
from foundation.errors import EXIT_ERROR, EXIT_OK, CheckFailed, ConfigurationError, OffpathError, exit_code
from offpath.designs import built_in_names
from offpath.redis_server import RedisUnavailable, redis_for_run
from offpath.serving import Conditions, built_in, serve
from offpath.session import Interrupted, stop_signals
from offpath.supervisor import Restart, Supervisor
from services.campaign.profile import ProfileSpec
from services.campaign.settings import Settings

if TYPE_CHECKING:
    from analysis.gate.verdict import Verdict

log = logging.getLogger("offpath")

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
# Commands that start services: they check the services' environment variables before starting anything.
STARTS_SERVICES = {"up", "bench", "chaos", "gate"}
# The queue libraries offpath's queued design runs on (services/queued/: OFFPATH_QUEUE_BACKEND).
QUEUE_BACKENDS = ("rq", "celery", "dramatiq")


def _say(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def cmd_up(args: argparse.Namespace) -> int:
    design = built_in(args.design, **({"backend": args.queue} if args.queue else {}))
    if args.queue and "backend" not in design.declaration.params:
        raise ConfigurationError(f"--queue {args.queue}: the {args.design} design has no queue; allowed with: "
                                 + ", ".join(n for n in built_in_names() if "backend" in built_in(n).declaration.params))
    profile = ProfileSpec.parse(args.profile)
    profile.load()  # a wrong name or a bad profile file fails here, in one line, before anything starts
    try:
        # The children's logs go to files (a worker's readiness is the line it writes there) and, followed, to this
        # terminal.
        with stop_signals(), redis_for_run(aof=args.aof) as redis, tempfile.TemporaryDirectory(
                prefix="offpath-up-") as logs, Supervisor(log_dir=Path(logs), echo=sys.stderr) as supervisor:
            origin = "embedded redis-server" if redis.embedded else "REDIS_URL"
            log.info("redis %s (%s, version %s)", redis.url, origin, redis.version())
            # A crashed worker is replaced and the service keeps serving; the queue runs its job again.
            served = serve(supervisor, design, Conditions(
                redis_url=redis.url, profile=str(profile), processes=args.processes, concurrency=args.concurrency,
                workers=args.workers, log_level="info", port=args.port, worker_restart=Restart()))
            if served.workers:
                log.info("%d %s workers running", len(served.workers), design.declaration.params.get("backend", ""))
            log.info("%s service serving on %s (profile %s); docs at %s/docs; Ctrl-C stops everything",
                     design.name, served.url, profile, served.url)
            while True:
                supervisor.check()  # the service's death stops everything; a worker's is repaired
                if redis.process is not None and redis.process.poll() is not None:
                    raise RedisUnavailable(f"redis-server ({redis.url}) died with code {redis.process.returncode}")
                time.sleep(0.5)
    except Interrupted as stop:
        log.info("%s: stopped everything offpath started", stop)
        return EXIT_OK


def cmd_bench(args: argparse.Namespace) -> int:
    from analysis.reports.render import render
    from offpath.experiment import load_experiment
    from offpath.runner import Runner

    experiment = load_experiment(args.experiment)
    if args.until_decided is not None:
        experiment = experiment.until_decided(args.until_decided)
    runner = Runner(experiment, Path(args.out), say=_say, resume=Path(args.resume) if args.resume else None)
    complete = runner.run()
    # The report is the main job's last step; an incomplete run gets one too, from what it measured.
    rendered = _print_report(lambda: render(runner.run_dir, allow_incomplete=not complete))
    print(runner.run_dir)
    return EXIT_OK if complete and rendered else EXIT_ERROR


def cmd_chaos(args: argparse.Namespace) -> int:
    from analysis.reports.chaos_report import render_chaos
    from offpath.chaos import load_chaos, run_chaos

    if os.environ.get("REDIS_URL"):
        log.warning("chaos starts its own redis-server per fault (it crashes and restarts it); REDIS_URL is ignored")
    chaos = load_chaos(args.experiment)
    unknown = sorted(set(args.fault or ()) - {f.name for f in chaos.faults})
    if unknown:
        raise ConfigurationError(f"--fault {', '.join(unknown)}: not a fault of experiment {chaos.name!r}; allowed: "
                                 f"{', '.join(f.name for f in chaos.faults)}")
    outcome = run_chaos(chaos, Path(args.out), only=args.fault or None, say=_say)
    rendered = _print_report(lambda: render_chaos(outcome.run_dir))
    print(outcome.run_dir)
    if not outcome.complete or not rendered:
        return EXIT_ERROR
    if outcome.broken:
        raise CheckFailed(f"acknowledged work was not kept in {', '.join(outcome.broken)} (see the report)")
    return EXIT_OK


def _print_report(render: Callable[[], Path]) -> bool:
    """Render a run's report and print its path; False (with the reason logged) when there was nothing to render."""
    from analysis.stats.load import ResultsFolderError

    try:
        path = render()
    except ResultsFolderError as exc:
        log.error("no report: %s", exc)
        return False
    print(f"report: {path}")
    return True


def cmd_report(args: argparse.Namespace) -> int:
    from analysis.reports.render import render

    print(render(Path(args.run), allow_incomplete=args.partial))
    return EXIT_OK


def cmd_compare(args: argparse.Namespace) -> int:
    from analysis.stats.compare import compare_runs, comparison_document, format_comparison

    comparison = compare_runs(Path(args.a), Path(args.b))
    if sys.stdout.isatty():
        print(format_comparison(comparison, width=shutil.get_terminal_size().columns, color=True))
    else:
        print(comparison_document(comparison), end="")  # piped: complete rows, nothing cut to fit a width
    return EXIT_OK


def cmd_gate(args: argparse.Namespace) -> int:
    from analysis.gate.verdict_formats import text, write_verdict
    from offpath.gate import GateOptions, VerdictContext, run_gate

    def publish(verdict: Verdict) -> None:
        write_verdict(verdict, junit_path=args.junit, summary_path=args.summary, json_path=args.json)
        print(text(verdict), end="")

    context = VerdictContext()
    try:
        verdict = run_gate(GateOptions(
            experiment=args.experiment, profile=args.profile, rules=Path(args.rules) if args.rules else None,
            out=Path(args.out), run=Path(args.run) if args.run else None, baseline=args.baseline,
            update_baseline=args.update_baseline, against=args.against,
        ), context, say=_say)
    except OffpathError as exc:  # CI reads the verdict files whatever happened: a harness-error verdict, exit 2
        publish(context.harness_error(exc))
        raise  # and, as for every command, one line on stderr (main)
    publish(verdict)
    return verdict.exit_code


class OneLineParser(argparse.ArgumentParser):
    """Argument errors as one line naming what was wrong and what is allowed, exit 2 (no usage dump)."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_ERROR, f"{self.prog}: {message} (see {self.prog} --help)\n")


def whole_number(low: int, high: int | None = None) -> Callable[[str], int]:
    allowed = f"a whole number >= {low}" if high is None else f"a whole number from {low} to {high}"

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = None
        if value is None or value < low or (high is not None and value > high):
            raise argparse.ArgumentTypeError(f"{text!r} is not allowed; allowed: {allowed}")
        return value

    return parse


def positive_seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not value > 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not allowed; allowed: seconds > 0")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog="offpath", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    up = sub.add_parser("up", help="serve one design on 127.0.0.1 (with Redis and, for queued, RQ workers)")
    up.add_argument("design", choices=built_in_names())
    up.add_argument("--port", type=whole_number(1, 65535), default=8000)
    up.add_argument("--workers", type=whole_number(1), default=4, help="worker processes (queued design)")
    up.add_argument("--queue", choices=QUEUE_BACKENDS, default=None,
                    help="the queued design's queue library (default rq)")
    up.add_argument("--processes", type=whole_number(1), default=1, help="uvicorn worker processes")
    up.add_argument("--concurrency", type=whole_number(0), default=0,
                    help="requests in progress per service process: 0 unbounded asyncio (default), N the model of a "
                    "sync server with N workers or threads; more wait for a slot")
    up.add_argument("--profile", default="default", help="workload profile name or .toml path")
    up.add_argument("--aof", choices=["off", "everysec", "always"], default="everysec",
                    help="append-only file mode of the embedded Redis")
    up.set_defaults(func=cmd_up)

    bench = sub.add_parser("bench", help="run an experiment and write results/<run-id>/ (prints its path last)")
    bench.add_argument("experiment", nargs="?", default="seed", help="experiment name or .toml path (default: seed)")
    bench.add_argument("--out", default="results", help="folder that receives the run folder (default: results)")
    bench.add_argument("--resume", metavar="RUN", help="go on with an interrupted sweep's run folder: points that "
                       "finished are kept, any other is run again from scratch")
    bench.add_argument("--until-decided", type=positive_seconds, metavar="SECONDS",
                       help="after the experiment's repetitions, add interleaved ones while a headline row is "
                       "undecided, for at most SECONDS (and 4 more repetitions); the confidence is corrected for the "
                       "looks (the experiment's [sequential], which this sets)")
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

    compare = sub.add_parser("compare", help="compare two runs: deltas with 95%% confidence intervals")
    compare.add_argument("a", help="baseline results folder")
    compare.add_argument("b", help="candidate results folder")
    compare.set_defaults(func=cmd_compare)

    gate = sub.add_parser("gate", help="performance regression gate: run the gate experiment (or take --run) and "
                          "judge it against a baseline or, with --against, against a base commit measured in the same "
                          "job; exit 0 pass, 1 regression, 2 harness error")
    gate.add_argument("--against", nargs="?", const="", metavar="REF",
                      help="judge this checkout against git REF (default: the merge base with main; on main, "
                      "HEAD~1), both measured here, interleaved: REF is checked out and installed into a temporary "
                      "venv, its services run under this checkout's harness. Any machine; the way to gate in CI")
    gate.add_argument("--baseline", default=None, metavar="NAME",
                      help="results/baselines/NAME.json (default: default), or a .json path; 'none' judges the "
                      "within-run rules only. Stored baselines hold only on the machine that recorded them")
    gate.add_argument("--run", metavar="RUN", help="judge this results folder instead of running the gate experiment")
    gate.add_argument("--junit", metavar="FILE", help="write JUnit XML (one test case per rule)")
    gate.add_argument("--summary", metavar="FILE", help="write a Markdown summary (e.g. $GITHUB_STEP_SUMMARY)")
    gate.add_argument("--json", metavar="FILE", help="write the verdict as JSON")
    gate.add_argument("--update-baseline", action="store_true",
                      help="write the baseline from this run (only if it passes the within-run rules)")
    gate.add_argument("--profile", metavar="SPEC",
                      help="override the gate experiment's profile, e.g. 'default*1.3' (30%% more work: the gate "
                      "should fail)")
    gate.add_argument("--experiment", default="gate", help="experiment name or .toml path (default: gate)")
    gate.add_argument("--rules", metavar="FILE", help="rules file (default: analysis/gate/rules.toml)")
    gate.add_argument("--out", default="results", help="folder that receives the run folder (default: results)")
    gate.set_defaults(func=cmd_gate)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run one command; every error ends as one line on stderr and an exit code from foundation/errors.py."""
    level = os.environ.get("OFFPATH_LOG_LEVEL", "INFO").upper()
    if level not in LOG_LEVELS:
        print(f"offpath: environment variable OFFPATH_LOG_LEVEL has value {level!r}; allowed: "
              f"{', '.join(LOG_LEVELS)}", file=sys.stderr)
        return EXIT_ERROR
    logging.basicConfig(level=level, format="%(asctime)s offpath %(levelname)s %(message)s", datefmt="%H:%M:%S")
    args = build_parser().parse_args(argv)
    try:
        if args.command in STARTS_SERVICES:
            Settings.from_env()  # a service would fail on the same variable later, inside a child process
        return int(args.func(args))
    except OffpathError as exc:
        print(f"offpath {args.command}: {exc}", file=sys.stderr)
        return exit_code(exc)
    except Exception as exc:  # noqa: BLE001 - a crash is no answer: exit 2, one line, the traceback on request
        log.debug("offpath %s crashed", args.command, exc_info=True)
        print(f"offpath {args.command} crashed: {type(exc).__name__}: {exc} (OFFPATH_LOG_LEVEL=DEBUG shows where)",
              file=sys.stderr)
        return EXIT_ERROR


if __name__ == "__main__":
    sys.exit(main())
