"""A gate verdict (analysis/gate/verdict.py) in the formats CI and people read: a Markdown job summary, JUnit XML (one
test case per rule), JSON and text."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

from analysis.gate.verdict import Commit, Outcome, Verdict
from analysis.stats.bootstrap import METHOD

HEADLINES = {"pass": "✅ PASS — no regression", "regression": "❌ REGRESSION",
             "error": "⚠️ HARNESS ERROR — not judged (not a pass)"}
MARKS = {"pass": "✅ pass", "fail": "❌ **fail**", "error": "⚠️ error", "skipped": "➖ skipped"}
DECISIONS = (
    "A rule against the baseline fails when its point delta is worse than its limit *and* the 95% CI of the delta "
    "excludes 0; the CI covers the noise inside a run, the limit absorbs drift between runs (calibrated with "
    "`benchmarks/gate_discrimination.py`). The advantage rule compares the designs inside this run, side by side "
    "(immune to drift between runs), and fails when the measured advantage is below its minimum. "
    "Exit codes: 0 pass, 1 regression, 2 harness error (the run or the baseline could not be judged).")
DECISIONS_AGAINST = (
    "Base and candidate were measured in this job, interleaved (base, candidate, candidate, base: a steady drift "
    "of the machine moves both alike), on the same CPUs, "
    "by the candidate's harness; only the services came from each commit. A regression rule fails when the "
    "candidate's point delta against the base is worse than its limit *and* the 95% CI of the delta excludes 0; a "
    "count rule (Redis commands per campaign, counted, not sampled) when the increase is past its limit in commands "
    "per campaign *and* every candidate repetition counted more than every base one. The "
    "other rules judge the candidate's runs on their own. Exit codes: 0 pass, 1 regression, 2 harness error (a side "
    "could not be built, started or measured).")
LABELS = {"pass": "PASS", "regression": "REGRESSION", "error": "HARNESS ERROR"}
HARNESS_CASE = "harness: run complete, baseline matches"


def markdown(verdict: Verdict) -> str:
    """A summary fit for $GITHUB_STEP_SUMMARY: headline, one row per rule, notes, then how it was decided."""
    lines = [f"## offpath gate: {HEADLINES[verdict.status]}", ""]
    if verdict.base is not None and verdict.candidate is not None:
        lines += [f"- candidate: `{verdict.candidate.short}` {_md(_subject(verdict.candidate))}",
                  f"- base: `{verdict.base.short}` {_md(_subject(verdict.base))}", ""]
        where = f"runs `{verdict.run_id}` (candidate)" if verdict.run_id else "no run"
        where += " against the base, interleaved in one job"
    else:
        where = f"run `{verdict.run_id}`" if verdict.run_id else "no run"
        where += f" against baseline `{verdict.baseline}`" if verdict.baseline else \
            " (no baseline: within-run rules only)"
    counts = ", ".join(f"{verdict.count(s)} {s}" for s in ("pass", "fail", "error", "skipped") if verdict.count(s))
    lines += [f"{where}, phase `{verdict.phase}`: {counts or 'no rules'}.", ""]
    for error in verdict.errors:
        lines += [f"> **Harness error:** {_md(error)}", ""]
    if _judged(verdict):
        lines += ["| rule | verdict | measured | limit |", "|---|---|---|---|"]
        lines += [f"| {_md(o.rule.name)} | {MARKS[o.status]} | {_md(o.measured)} | {_md(o.rule.limit_text())} |"
                  for o in verdict.outcomes]
        lines.append("")
    for note in verdict.notes:
        lines.append(f"- {_md(note)}")
    if verdict.notes:
        lines.append("")
    whys = [o for o in verdict.outcomes if o.rule.why]
    lines += ["<details><summary>Why these rules, and how they are decided</summary>", ""]
    lines += [f"- **{_md(o.rule.name)}**: {_md(o.rule.why)}" for o in whys]
    lines += ["", DECISIONS_AGAINST if verdict.base is not None else DECISIONS, "", METHOD, "", "</details>", ""]
    return "\n".join(lines)


def _subject(commit: Commit) -> str:
    return f'"{commit.subject}"' + (" + uncommitted changes" if commit.dirty else "") + \
        (f" ({commit.ref})" if commit.ref and commit.ref != "HEAD" else "")


def against_text(verdict: Verdict) -> str:
    """`candidate 1a2b3c4d5e "subject" against base 0f9e8d7c6b "subject"`; empty when not judged against a base."""
    if verdict.base is None or verdict.candidate is None:
        return ""
    return f"candidate {verdict.candidate.label} against base {verdict.base.label}"


def _judged(verdict: Verdict) -> bool:
    """False when the harness failed before any rule could be looked at (then the rules are not listed)."""
    return bool(verdict.outcomes) and not (verdict.errors and {o.status for o in verdict.outcomes} == {"error"})


def _md(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def junit(verdict: Verdict) -> str:
    """JUnit XML: a harness test case, then one per rule; a failing rule is a <failure>, an unjudged one an
    <error> (CI tools count and show the two apart, as the exit codes do)."""
    suite = ET.Element("testsuite", name="offpath gate", tests=str(len(verdict.outcomes) + 1),
                       failures=str(verdict.count("fail")),
                       errors=str(verdict.count("error") + (1 if verdict.errors else 0)),
                       skipped=str(verdict.count("skipped")), time="0")
    properties = ET.SubElement(suite, "properties")
    commits = {f"{side}_commit": f"{commit.sha} {commit.subject}" for side, commit in
               (("base", verdict.base), ("candidate", verdict.candidate)) if commit is not None}
    for name, value in (("run_id", verdict.run_id), ("baseline", verdict.baseline), ("status", verdict.status),
                        *commits.items()):
        ET.SubElement(properties, "property", name=name, value=str(value or ""))
    harness = ET.SubElement(suite, "testcase", classname="offpath.gate", name=HARNESS_CASE)
    if verdict.errors:
        error = ET.SubElement(harness, "error", message=verdict.errors[0], type="HarnessError")
        error.text = "\n".join(verdict.errors)
    for outcome in verdict.outcomes:
        _case(suite, outcome)
    root = ET.Element("testsuites", name="offpath gate", tests=suite.get("tests", "0"),
                      failures=suite.get("failures", "0"), errors=suite.get("errors", "0"))
    root.append(suite)
    ET.indent(root)
    return ET.tostring(root, encoding="unicode", xml_declaration=True) + "\n"


def _case(suite: ET.Element, outcome: Outcome) -> None:
    case = ET.SubElement(suite, "testcase", classname=f"offpath.gate.{outcome.rule.kind}", name=outcome.rule.name)
    detail = f"{outcome.measured}; limit {outcome.rule.limit_text()}"
    if outcome.status == "fail":
        ET.SubElement(case, "failure", message=detail, type="Regression").text = outcome.rule.why or None
    elif outcome.status == "error":
        ET.SubElement(case, "error", message=detail, type="NotJudged")
    elif outcome.status == "skipped":
        ET.SubElement(case, "skipped", message=outcome.measured)
    ET.SubElement(case, "system-out").text = detail


def text(verdict: Verdict) -> str:
    """The verdict for a terminal: one line per rule, harness errors, notes; the last line is the verdict."""
    width = max((len(o.rule.name) for o in verdict.outcomes), default=0)
    lines = [f"{o.status.upper():7}  {o.rule.name.ljust(width)}  {o.measured}  (limit {o.rule.limit_text()})"
             for o in verdict.outcomes] if _judged(verdict) else []
    lines += [f"harness error: {error}" for error in verdict.errors]
    lines += [f"note: {note}" for note in verdict.notes]
    if verdict.base is not None:
        lines.append(f"gate: {LABELS[verdict.status]} (exit {verdict.exit_code}) — {against_text(verdict)}")
    else:
        against = f" against baseline {verdict.baseline!r}" if verdict.baseline else ""
        lines.append(f"gate: {LABELS[verdict.status]} (exit {verdict.exit_code}) — run {verdict.run_id or '-'}{against}")
    return "\n".join(lines) + "\n"


def to_json(verdict: Verdict) -> dict[str, Any]:
    """The verdict as CI tooling reads it (exit code, status, one entry per rule)."""
    return {
        "status": verdict.status, "exit_code": verdict.exit_code, "run_id": verdict.run_id,
        "run_dir": verdict.run_dir, "baseline": verdict.baseline, "phase": verdict.phase,
        "errors": list(verdict.errors), "notes": list(verdict.notes),
        "base": verdict.base.to_dict() if verdict.base else None,
        "candidate": verdict.candidate.to_dict() if verdict.candidate else None,
        "counts": {s: verdict.count(s) for s in ("pass", "fail", "error", "skipped")},
        "rules": [{"name": o.rule.name, "kind": o.rule.kind, "design": o.rule.design, "endpoint": o.rule.endpoint,
                   "metric": o.rule.metric if o.rule.kind in ("regression", "advantage") else None,
                   "limit": o.rule.limit, "limit_text": o.rule.limit_text(), "status": o.status,
                   "measured": o.measured, "figures": o.figures} for o in verdict.outcomes],
    }


def write_verdict(verdict: Verdict, *, junit_path: str | None = None, summary_path: str | None = None,
                  json_path: str | None = None) -> None:
    """Write the verdict to each file asked for: JUnit XML, the Markdown summary, JSON."""
    for target, render in ((junit_path, junit), (summary_path, markdown), (json_path, _json_text)):
        if target:
            Path(target).parent.mkdir(parents=True, exist_ok=True)
            Path(target).write_text(render(verdict))


def _json_text(verdict: Verdict) -> str:
    return json.dumps(to_json(verdict), indent=2) + "\n"
