"""Does the regression gate discriminate? Against a stored baseline (default) or against a base commit (--against).

Against a base commit (`--against`, issue #14): each pair is one `offpath gate --against BASE` invocation (BASE: HEAD
by default), run from a temporary worktree of BASE that is the candidate: unchanged, or with an injected regression.
Per round every kind runs once, in turn (interleaved, so drift on the machine lands on every kind alike):
  unchanged      the candidate is BASE itself                         -> a regression verdict is a false alarm
  profile        BASE with `--profile 'default*1.1'` (+10% work, candidate only)      -> a regression is a detection
  ack-roundtrip  BASE + one extra Redis round trip (PING) on queued's POST path (services/queued/app.py)
  worker-cpu     BASE + 1 ms of CPU per job in the worker (services/queued/attempts.py, burn_cpu)
The patches are applied inside the temporary worktree (never committed); a patch whose anchor is gone stops the
benchmark. Prints one line per gate, how often each rule failed per kind (with its delta spread), and last
`false_alarms: k/N` and `detections[<kind>]: k/N`; a kind with a harness error gets no figure (benchmarks/figure.py).
Each pair costs one gate --against (~4 min on 2 cores: the base install and 2 x 2 interleaved runs).

    .venv/bin/python benchmarks/gate_discrimination.py --against --pairs 20 --out DIR
    .venv/bin/python benchmarks/gate_discrimination.py --against --pairs 2 --kinds unchanged,profile
    .venv/bin/python benchmarks/gate_discrimination.py --against --pairs 20 --out DIR --resume  # go on where DIR
                                                                                       # stopped (same --base)
    .venv/bin/python benchmarks/gate_discrimination.py --against --judge DIR  # re-judge DIR's pairs, current rules

Against a stored baseline: run the gate N times on the unchanged build and N times with 30% more work.

Each round runs `offpath gate` twice, interleaved (unchanged, then `--profile 'default*1.3'`: every CPU cost and
provider wait of the default profile x1.3), against the same baseline, so drift on the machine lands on both sides
alike. A false alarm is an unchanged run the gate calls a regression; a detection is a regressed run it calls one.
Harness errors (exit 2) are neither: a side with one gets no figure (`no false_alarms figure: unchanged had 1 error
in run 4 (...)`, exit 1), since k/N would count a run the gate never judged as a pass (unchanged) or as a miss
(regressed). A harness error kept by --resume stays one: run the series again in a new --out for a figure.

    .venv/bin/python benchmarks/gate_discrimination.py --runs 20              # committed baseline 'default'
    .venv/bin/python benchmarks/gate_discrimination.py --runs 5 --fresh-baseline
    .venv/bin/python benchmarks/gate_discrimination.py --runs 20 --out DIR --resume  # go on where DIR stopped
    .venv/bin/python benchmarks/gate_discrimination.py --judge DIR            # re-judge the runs of an earlier
                                                                               # invocation with the current rules

Each gate run costs its experiment (~100 s on 2 cores), so --runs 20 takes about 70 minutes. Prints one line per
gate run (with the 1-minute load average before>after it: other work on the machine shows there), how often each
rule failed on each side, and last `false_alarms: k/N` and `detections: k/N` (or why a side has no figure).
Targets: false alarms <= 1/20, detections >= 19/20.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import NoReturn

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from analysis.gate.against_base import judge_against, load_side  # noqa: E402
from analysis.gate.baseline import BaselineError, baseline_path, read_baseline  # noqa: E402
from analysis.gate.judge import judge  # noqa: E402
from analysis.gate.rules import RulesError, load_rules  # noqa: E402
from analysis.gate.verdict import Commit  # noqa: E402
from analysis.gate.verdict_formats import to_json  # noqa: E402
from analysis.stats.load import ResultsFolderError, load_run  # noqa: E402
from benchmarks.figure import NO_FIGURE, SideErrors, refused  # noqa: E402
from foundation.format import MANIFEST_FILE  # noqa: E402
from foundation.manifest_format import RunRecord  # noqa: E402

REGRESSION = "default*1.3"
SIDES = ("unchanged", "regressed")
ROOT = Path(__file__).resolve().parent.parent

# --against: the kinds of candidate, each a change to BASE's tree: (file, anchor, replacement) patches and gate options.
AGAINST_REGRESSION = "default*1.1"
PATCHES: dict[str, list[tuple[str, str, str]]] = {
    "unchanged": [],
    "profile": [],
    "ack-roundtrip": [(
        "services/queued/app.py",
        "    admission = await store.admit(body, idempotency_key, also=planner.buffer)\n",
        "    admission = await store.admit(body, idempotency_key, also=planner.buffer)\n"
        "    await store.ping()  # injected regression: one extra Redis round trip on the acknowledgement path\n",
    )],
    "worker-cpu": [
        ("services/queued/attempts.py",
         "from services.campaign.work import ProviderError, generate_campaign_content, trigger_follow_up_automation\n",
         "from services.campaign.work import ProviderError, burn_cpu, generate_campaign_content, "
         "trigger_follow_up_automation\n"),
        ("services/queued/attempts.py",
         "    try:\n        step(ctx, campaign_id)\n",
         "    burn_cpu(1.0, campaign_id.encode())  # injected regression: +1 ms of CPU per job\n"
         "    try:\n        step(ctx, campaign_id)\n"),
    ],
}
KINDS = tuple(PATCHES)


class BadInput(SystemExit):
    """Bad input on the command line: one line naming what was wrong and what is allowed, exit 2."""

    def __init__(self, message: str) -> None:
        print(f"gate_discrimination.py: {message}", file=sys.stderr)
        super().__init__(2)


class OneLineParser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise BadInput(message)


def verdict_file(out: Path, side: str, number: int) -> Path:
    """Where a gate run's JSON verdict is kept (its log sits next to it); --resume and --judge read these."""
    return out / "verdicts" / f"{side}-{number:02d}.json"


def gate(out: Path, side: str, number: int, baseline: str, regression: str, rules: str | None) -> dict:
    """One `offpath gate` run as CI runs it; its JSON verdict (exit code included), kept in verdict_file()."""
    verdict_path = verdict_file(out, side, number)
    argv = [sys.executable, "-m", "offpath.cli", "gate", "--baseline", baseline, "--out", str(out / side),
            "--json", str(verdict_path)]
    argv += ["--profile", regression] if side == "regressed" else []
    argv += ["--rules", rules] if rules else []
    return gate_command(argv, verdict_path)


def gate_command(argv: list[str], verdict_path: Path, cwd: Path | None = None) -> dict:
    """Run one gate command; its JSON verdict, or a harness error carrying its output when it wrote none."""
    with open(verdict_path.with_suffix(".log"), "w") as log:
        completed = subprocess.run(argv, cwd=cwd, stdout=subprocess.PIPE, stderr=log, text=True)
    if verdict_path.is_file():
        verdict = json.loads(verdict_path.read_text())
    else:  # the gate crashed before it could write a verdict: a harness error, with its output as the reason
        verdict = {"status": "error", "exit_code": completed.returncode, "errors": [completed.stdout[-500:]],
                   "rules": []}
        verdict_path.write_text(json.dumps(verdict))
    if verdict["exit_code"] != completed.returncode:
        raise SystemExit(f"gate exit code {completed.returncode} disagrees with its verdict {verdict['exit_code']}")
    return verdict


def kept(out: Path, side: str, number: int) -> dict | None:
    """The verdict an earlier invocation kept for this gate run (--resume), or None if it has none."""
    path = verdict_file(out, side, number)
    return json.loads(path.read_text()) if path.is_file() else None


def kept_verdict(out: Path, side: str, number: int, baseline: str, regression: str) -> dict | None:
    """The verdict an earlier invocation kept for this gate run, if it was judged the way this one would be."""
    verdict = kept(out, side, number)
    if verdict is None or verdict["status"] == "error":  # a harness error is counted as it was
        return verdict
    record = RunRecord.from_dict(json.loads((Path(verdict["run_dir"]) / MANIFEST_FILE).read_text()))
    profile = record.profile.name if record.profile is not None else None
    if verdict["baseline"] != baseline_path(baseline).stem or (side == "regressed") != (profile == regression):
        raise BadInput(f"--resume: {verdict_file(out, side, number)} was judged against baseline "
                       f"{verdict['baseline']!r} with profile "
                         f"{profile!r}; this invocation uses {baseline!r} and --regression {regression!r}")
    return verdict


def record_baseline(out: Path, resume: bool) -> str:
    """A baseline recorded on this machine now (or, resuming, the one the kept verdicts were judged against)."""
    path = out / "baseline.json"
    if resume and path.is_file():
        return str(path)
    argv = [sys.executable, "-m", "offpath.cli", "gate", "--update-baseline", "--baseline", str(path), "--out",
            str(out / "baseline-run")]
    with open(out / "baseline.log", "w") as log:
        code = subprocess.run(argv, stdout=log, stderr=subprocess.STDOUT).returncode
    if code != 0 or not path.is_file():
        raise SystemExit(f"recording the baseline failed (exit {code}); see {out / 'baseline.log'}")
    return str(path)


def load_average() -> str:
    """The 1-minute load average: another busy process on a 2-core machine shows here (0 where unknown)."""
    try:
        return Path("/proc/loadavg").read_text().split()[0]
    except OSError:
        return "0"


def line(side: str, number: int, runs: int, verdict: dict, seconds: float, load: str = "") -> str:
    failing = [f"{r['name']} ({_delta(r)})" for r in verdict["rules"] if r["status"] == "fail"]
    errors = [r["name"] for r in verdict["rules"] if r["status"] == "error"] or verdict.get("errors", [])[:1]
    detail = "; ".join(failing) if failing else ("; ".join(str(e)[:120] for e in errors) if errors else "")
    return f"{side:9} {number:2d}/{runs}: {verdict['status']:10} {seconds:5.0f} s {load:>11}  {detail}".rstrip()


def _delta(rule: dict) -> str:
    figures = rule.get("figures") or {}
    if figures.get("delta_per_campaign") is not None:  # a count rule: commands per campaign, not percent
        return f"delta {figures['delta_per_campaign']:+.2f}/campaign"
    for key in ("delta_pct", "advantage_pct", "held_pct", "error_rate"):
        if figures.get(key) is not None:
            return f"{figures[key]:.2%} errors" if key == "error_rate" else f"{key} {figures[key]:+.1f}"
    return rule["measured"]


def harness_errors(side: str, verdicts: list[dict]) -> SideErrors:
    """The runs of one side the gate could not judge (exit 2), counted by their first reason."""
    numbers, reasons = [], Counter[str]()
    for number, verdict in enumerate(verdicts, 1):
        if verdict["status"] == "error":
            numbers.append(str(number))
            unjudged = [f"{r['name']}: {r['measured']}" for r in verdict["rules"] if r["status"] == "error"]
            reason = (verdict.get("errors") or unjudged or [f"exit {verdict.get('exit_code')}"])[0]
            reasons[f"harness error: {str(reason)[:100]}"] += 1
    return SideErrors(side, f"run{'s' if len(numbers) > 1 else ''} {', '.join(numbers)}", reasons)


def report(results: dict[str, list[dict]], runs: int) -> int:
    """Print the rule failures and the two figures; NO_FIGURE when a side had harness errors (its figure is not
    printed), else 0."""
    print("\nrule failures (unchanged | regressed):")
    names = list(dict.fromkeys(r["name"] for side in SIDES for v in results[side] for r in v["rules"]))
    for name in names:
        counts = [sum(any(r["name"] == name and r["status"] == "fail" for r in v["rules"]) for v in results[side])
                  for side in SIDES]
        deltas = {side: [r["figures"].get("delta_pct") for v in results[side] for r in v["rules"]
                         if r["name"] == name and (r.get("figures") or {}).get("delta_pct") is not None]
                  for side in SIDES}
        spread = "  ".join(f"{side} delta {min(d):+.1f}..{max(d):+.1f}%" for side, d in deltas.items() if d)
        print(f"  {name:34} {counts[0]:2d} | {counts[1]:2d}   {spread}")
    statuses = {side: Counter(v["status"] for v in results[side]) for side in SIDES}
    errors = statuses["unchanged"]["error"] + statuses["regressed"]["error"]
    print(f"\nharness_errors: {errors}/{2 * runs}")
    code = 0
    for figure, side in (("false_alarms", "unchanged"), ("detections", "regressed")):
        if refused([harness_errors(side, results[side])], figure):
            code = NO_FIGURE
        else:
            print(f"{figure}: {statuses[side]['regression']}/{len(results[side])}")
    return code


def rejudge(root: Path, baseline: str, rules: str | None) -> dict[str, list[dict]]:
    """The verdicts the current rules give the runs an earlier invocation judged (no load is run).

    The runs are the ones its kept verdicts name, in their order: a run folder an interruption cut short has no
    verdict and is not one of the series."""
    rule_set = load_rules(Path(rules)) if rules else load_rules()
    try:
        base = read_baseline(baseline_path(baseline))
    except BaselineError as exc:
        raise SystemExit(str(exc)) from None
    results: dict[str, list[dict]] = {side: [] for side in SIDES}
    for side in SIDES:
        kept = [json.loads(path.read_text()) for path in sorted((root / "verdicts").glob(f"{side}-*.json"))]
        for verdict in kept:
            if verdict.get("run_dir"):  # else the gate crashed before judging: that harness error stands
                try:
                    verdict = to_json(judge(load_run(Path(verdict["run_dir"])), rule_set, base))
                except ResultsFolderError as exc:
                    verdict = {"status": "error", "exit_code": 2, "errors": [str(exc)], "rules": []}
            results[side].append(verdict)
            print(line(side, len(results[side]), len(kept), verdict, 0.0), flush=True)
    return results


def git(*args: str, cwd: Path = ROOT) -> str:
    done = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"git {' '.join(args)} failed: {done.stderr.strip()}")
    return done.stdout.strip()


def candidate_tree(out: Path, base: str, kind: str) -> Path:
    """A worktree of `base` with the kind's patch applied (uncommitted): the candidate `offpath gate` runs from."""
    tree = out / "trees" / kind
    if not tree.exists():
        git("worktree", "add", "--detach", "--quiet", str(tree), base)
    for relative, anchor, replacement in PATCHES[kind]:
        path = tree / relative
        source = path.read_text()
        if replacement in source:
            continue
        if source.count(anchor) != 1:
            raise SystemExit(f"{kind}: the anchor of its patch is not (once) in {relative} at {base[:10]}; update "
                             "PATCHES in benchmarks/gate_discrimination.py")
        path.write_text(source.replace(anchor, replacement))
    return tree


def gate_against(out: Path, kind: str, number: int, base: str, tree: Path, rules: str | None) -> dict:
    """One `offpath gate --against BASE`, run from the candidate's tree with this interpreter; its JSON verdict."""
    verdict_path = verdict_file(out, kind, number)
    argv = [sys.executable, "-m", "offpath.cli", "gate", "--against", base, "--out", str(out / "runs" / kind),
            "--json", str(verdict_path)]
    argv += ["--profile", AGAINST_REGRESSION] if kind == "profile" else []
    argv += ["--rules", str(Path(rules).resolve())] if rules else []
    return gate_command(argv, verdict_path, cwd=tree)


def kept_against(out: Path, kind: str, number: int, base: str) -> dict | None:
    """The verdict an earlier --against invocation kept for this pair, if it judged the same base (--resume)."""
    verdict = kept(out, kind, number)
    if verdict is None or verdict["status"] == "error":  # a harness error is counted as it was
        return verdict
    if (verdict.get("base") or {}).get("sha") != base:
        judged = (verdict.get("base") or {}).get("sha", "?")
        raise BadInput(f"--resume: {verdict_file(out, kind, number)} was judged against base {judged[:10]}; this "
                       f"invocation's base is {base[:10]} (name it with --base)")
    return verdict


def report_against(results: dict[str, list[dict]]) -> int:
    """Rule failures per kind, then false alarms (unchanged) and detections per injected kind; a kind with a harness
    error gets no figure (NO_FIGURE)."""
    kinds = [k for k in KINDS if k in results]
    print("\nrule failures per kind (" + " | ".join(kinds) + "), delta spread per kind:")
    names = list(dict.fromkeys(r["name"] for k in kinds for v in results[k] for r in v["rules"]))
    for name in names:
        counts = [sum(any(r["name"] == name and r["status"] == "fail" for r in v["rules"]) for v in results[k])
                  for k in kinds]
        # A count rule's spread in commands per campaign, every other rule's in percent.
        key, unit, digits = ("delta_per_campaign", "/campaign", 2) if any(
            (r.get("figures") or {}).get("delta_per_campaign") is not None
            for k in kinds for v in results[k] for r in v["rules"] if r["name"] == name) else ("delta_pct", "%", 1)
        deltas = {k: [r["figures"].get(key) for v in results[k] for r in v["rules"]
                      if r["name"] == name and (r.get("figures") or {}).get(key) is not None] for k in kinds}
        spread = "  ".join(f"{k} {min(d):+.{digits}f}..{max(d):+.{digits}f}{unit}" for k, d in deltas.items() if d)
        print(f"  {name:34} {' | '.join(f'{c:2d}' for c in counts)}   {spread}")
    code = 0
    for kind in kinds:
        figure = "false_alarms" if kind == "unchanged" else f"detections[{kind}]"
        if refused([harness_errors(kind, results[kind])], figure):
            code = NO_FIGURE
        else:
            print(f"{figure}: {sum(v['status'] == 'regression' for v in results[kind])}/{len(results[kind])}")
    return code


def rejudge_against(root: Path, rules: str | None) -> dict[str, list[dict]]:
    """The verdicts the current rules give the pairs an earlier --against invocation measured (no load is run): each
    side's kept runs merged and judged again. A pair whose gate stopped before it measured both sides stays as it was."""
    rule_set = load_rules(Path(rules)) if rules else load_rules()
    results: dict[str, list[dict]] = {}
    for kind in KINDS:
        kept = [json.loads(path.read_text()) for path in sorted((root / "verdicts").glob(f"{kind}-*.json"))]
        for verdict in kept:
            run_dir = Path(verdict.get("run_dir") or "")
            if run_dir.name == "candidate" and verdict.get("base") and verdict.get("candidate"):
                commits = {side: Commit(**{key: verdict[side][key] for key in ("sha", "subject", "ref", "dirty")})
                           for side in ("base", "candidate")}
                try:
                    sides = {side: load_side(side, sorted(p.parent for p in (run_dir.parent / side).glob(
                        "*/manifest.json")), commits[side]) for side in commits}
                    verdict = to_json(judge_against(sides["base"], sides["candidate"], rule_set, commits["base"],
                                                    commits["candidate"]))
                except ResultsFolderError as exc:
                    verdict = {"status": "error", "exit_code": 2, "errors": [str(exc)], "rules": []}
            results.setdefault(kind, []).append(verdict)
            print(line(kind, len(results[kind]), len(kept), verdict, 0.0), flush=True)
    return results


def run_against(args: argparse.Namespace) -> int:
    kinds = [k.strip() for k in args.kinds.split(",") if k.strip()]
    unknown = sorted(set(kinds) - set(KINDS))
    if unknown or not kinds:
        raise BadInput(f"--kinds {args.kinds!r}: {', '.join(unknown) or 'none given'}; allowed: {', '.join(KINDS)}")
    found = subprocess.run(["git", "rev-parse", "--verify", "--quiet", f"{args.base}^{{commit}}"], cwd=ROOT,
                           capture_output=True, text=True)
    if found.returncode != 0 or args.base.startswith("-"):
        raise BadInput(f"--base {args.base!r}: no such commit in {ROOT}; allowed: a commit, branch or tag, e.g. HEAD")
    base = found.stdout.strip()
    out = Path(args.out).resolve() if args.out else Path(tempfile.mkdtemp(prefix="gate-discrimination-against-"))
    (out / "verdicts").mkdir(parents=True, exist_ok=True)
    print(f"runs and verdicts in {out}; base {base[:10]} {git('log', '-1', '--format=%s', base)}", file=sys.stderr)
    results: dict[str, list[dict]] = {kind: [] for kind in kinds}
    started, ran = time.monotonic(), 0
    try:
        trees = {kind: candidate_tree(out, base, kind) for kind in kinds}
        for number in range(1, args.pairs + 1):
            for kind in kinds:
                earlier = kept_against(out, kind, number, base) if args.resume else None
                if earlier:
                    results[kind].append(earlier)
                    print(line(kind, number, args.pairs, earlier, 0.0, "kept"), flush=True)
                    continue
                began, load_before = time.monotonic(), load_average()
                verdict = gate_against(out, kind, number, base, trees[kind], args.rules)
                results[kind].append(verdict)
                ran += 1
                print(line(kind, number, args.pairs, verdict, time.monotonic() - began,
                           f"load {load_before}>{load_average()}"), flush=True)
    finally:
        for kind in kinds:
            if (out / "trees" / kind).exists():
                git("worktree", "remove", "--force", str(out / "trees" / kind))
    total = sum(map(len, results.values()))
    kept_note = f" ({total - ran} kept from the earlier invocation)" if ran < total else ""
    print(f"\n{ran} gate --against runs in {(time.monotonic() - started) / 60:.1f} min{kept_note} against base "
          f"{base[:10]}; kinds {', '.join(kinds)}")
    return report_against(results)


def main() -> int:
    parser = OneLineParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--against", action="store_true",
                        help="judge candidates against a base commit measured in the same job (offpath gate --against)")
    parser.add_argument("--pairs", type=int, default=20, help="--against: gate invocations per kind (default 20)")
    parser.add_argument("--base", default="HEAD", help="--against: the base commit (default HEAD)")
    parser.add_argument("--kinds", default=",".join(KINDS), help=f"--against: kinds to run (default {','.join(KINDS)})")
    parser.add_argument("--runs", type=int, default=20, help="gate runs per side (default 20)")
    parser.add_argument("--baseline", default="default", help="baseline name or .json path (default: default)")
    parser.add_argument("--fresh-baseline", action="store_true", help="record a baseline on this machine first")
    parser.add_argument("--regression", default=REGRESSION, help=f"profile of the regressed side ({REGRESSION})")
    parser.add_argument("--rules", help="rules file (default: analysis/gate/rules.toml)")
    parser.add_argument("--out", help="keep the runs and verdicts here (default: a temporary folder)")
    parser.add_argument("--resume", action="store_true",
                        help="with --out: keep the verdicts already in it and run only the missing ones")
    parser.add_argument("--judge", metavar="DIR", help="re-judge the runs kept in DIR by an earlier --out")
    args = parser.parse_args()
    if args.resume and not args.out:
        parser.error("--resume needs --out (the folder of the invocation to go on with)")
    for option, count in (("--pairs", args.pairs), ("--runs", args.runs)):
        if count < 1:  # a figure over no gate at all would read as 0 false alarms
            parser.error(f"{option} {count}: allowed: a whole number >= 1")
    if args.rules:
        try:
            load_rules(Path(args.rules))
        except RulesError as exc:
            parser.error(f"--rules: {exc}")
    if args.judge and not list(Path(args.judge).glob("verdicts/*.json")):
        parser.error(f"--judge {args.judge}: no kept verdicts in it (DIR/verdicts/*.json); allowed: the --out folder "
                     "of an earlier invocation")
    if args.against and args.judge:
        return report_against(rejudge_against(Path(args.judge), args.rules))
    if args.against:
        return run_against(args)
    if args.judge:
        rejudged = rejudge(Path(args.judge), args.baseline, args.rules)
        return report(rejudged, max(len(v) for v in rejudged.values()))
    out = Path(args.out) if args.out else Path(tempfile.mkdtemp(prefix="gate-discrimination-"))
    (out / "verdicts").mkdir(parents=True, exist_ok=True)
    print(f"runs and verdicts in {out}", file=sys.stderr)
    baseline = record_baseline(out, args.resume) if args.fresh_baseline else args.baseline
    results: dict[str, list[dict]] = {side: [] for side in SIDES}
    started, ran = time.monotonic(), 0
    for number in range(1, args.runs + 1):
        for side in SIDES:
            earlier = kept_verdict(out, side, number, baseline, args.regression) if args.resume else None
            if earlier:
                results[side].append(earlier)
                print(line(side, number, args.runs, earlier, 0.0, "kept"), flush=True)
                continue
            began, load_before = time.monotonic(), load_average()
            verdict = gate(out, side, number, baseline, args.regression, args.rules)
            results[side].append(verdict)
            ran += 1
            print(line(side, number, args.runs, verdict, time.monotonic() - began,
                       f"load {load_before}>{load_average()}"), flush=True)
    kept_note = f" ({2 * args.runs - ran} kept from the earlier invocation)" if ran < 2 * args.runs else ""
    print(f"\n{ran} gate runs in {(time.monotonic() - started) / 60:.1f} min{kept_note} against baseline {baseline}; "
          f"regression injected with --profile '{args.regression}'")
    return report(results, args.runs)


if __name__ == "__main__":
    sys.exit(main())
