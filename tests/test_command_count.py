"""Redis commands per campaign: counted on a real Redis around a real service (the harness's own commands not
charged), carried into summary.json, the report and the comparison, and judged by the gate's count rule."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import redis

from analysis.gate.baseline import baseline_from_run
from analysis.gate.judge import judge
from analysis.reports.render import render
from analysis.stats.commands import phase_commands
from analysis.stats.compare import COMMANDS_METRIC, compare_designs
from analysis.stats.load import load_run
from analysis.stats.summary import summarize
from foundation.format import CommandCounts
from offpath.command_count import CommandCount, harness_redis, unmeasured_reason
from offpath.designs import declare
from offpath.redis_server import start_redis
from offpath.serving import built_in
from tests.analysis_fixtures import CellSpec, Commands, write_run
from tests.conftest import project_root, valid_body
from tests.test_gate import rules_of
from tests.test_gate_against import BASE, CANDIDATE, side_runs

REQUESTS = 30


# -- counted on a real Redis -----------------------------------------------------------------------------------------


@pytest.fixture
def private_redis():
    """A Redis of the test's own: Redis counts commands for the whole server, every database, and the session's shared
    one has other tests' workers polling it."""
    server = start_redis()
    yield server
    server.stop()


def test_one_more_command_per_request_counts_one_more_per_campaign(launch_for_test, profiles, tmp_path, private_redis):
    """The inline service, driven one request at a time, twice: the second time each request is followed by one more
    command on its Redis from a client that is not the harness's (as a design's extra round trip would be), and by a
    read from one of the harness's own clients (as the queue probe's are), which must not be charged."""
    running = launch_for_test("inline", profiles["none"], redis_url=private_redis.url)
    design_side = redis.Redis.from_url(running.redis_url)
    harness_side = harness_redis(running.redis_url)
    with running.client() as client:
        # Connections opened (the service's pool, both clients' handshakes) before anything is counted.
        assert client.post("/campaigns", json=valid_body()).status_code == 201
        design_side.ping()
        harness_side.ping()

        def counted(extra: bool) -> CommandCounts:
            with CommandCount(running.redis_url, tmp_path / f"commands-{extra}.json") as count:
                for _ in range(REQUESTS):
                    assert client.post("/campaigns", json=valid_body()).status_code == 201
                    harness_side.llen("offpath:test:anything")
                    if extra:
                        design_side.ping()
            assert count.counts is not None
            return count.counts

        plain, more = counted(False), counted(True)
    assert plain.commands is not None and more.commands is not None
    assert plain.commands % REQUESTS == 0 and plain.commands > 0, plain.by_kind  # the same commands for every request
    assert (more.commands - plain.commands) / REQUESTS == 1
    assert more.by_kind["ping"] == REQUESTS and "ping" not in plain.by_kind
    for counts in (plain, more):
        assert "llen" not in counts.by_kind and "info" not in counts.by_kind
        assert counts.harness_by_kind == {"llen": REQUESTS, "info": 1}  # its reads, and the INFO at the start
        assert counts.processed == counts.commands + counts.harness_commands
    written = json.loads((tmp_path / "commands-True.json").read_text())
    assert CommandCounts.from_dict(written) == more


@pytest.mark.fast
def test_a_design_whose_commands_are_not_on_the_runs_redis_has_no_count_and_says_why(tmp_path):
    assert unmeasured_reason(built_in("inline")) is None and unmeasured_reason(built_in("queued")) is None
    deployed = declare("theirs", {"url": "http://127.0.0.1:1", "request": {"path": "/orders"},
                                  "outcome": {"finished": [201]}}, source="test", base_dir=tmp_path,
                       where="designs.theirs")
    assert "already running" in (unmeasured_reason(deployed) or "")
    own_broker = declare("own", {"web": {"command": "serve --port {port}", "env": {"BROKER": "redis://other:6379"}},
                                 "request": {"path": "/orders"}, "outcome": {"finished": [201]}},
                         source="test", base_dir=tmp_path, where="designs.own")
    assert "{redis_url}" in (unmeasured_reason(own_broker) or "")
    elsewhere = declare("elsewhere", {"use": "queued", "queue": {"redis_url": "redis://broker:6379/0"}},
                        source="test", base_dir=tmp_path, where="designs.elsewhere")
    assert "broker of its own" in (unmeasured_reason(elsewhere) or "")
    # Nothing is read for it (this URL answers nothing): the file says why, and holds no counts.
    with CommandCount("redis://127.0.0.1:1/0", tmp_path / "commands.json", unmeasured_reason(deployed)):
        pass
    written = CommandCounts.from_dict(json.loads((tmp_path / "commands.json").read_text()))
    assert not written.measured and "already running" in (written.unmeasured or "")


# -- in the results and the report -----------------------------------------------------------------------------------


def specs(design: str, per_campaign: dict[str, int], repetitions: int = 2, per_s: dict[str, int] | None = None,
          unmeasured: str | None = None) -> list[CellSpec]:
    return [CellSpec(design, "steady", repetition=rep, rate_per_s=20, duration_s=10,
                     commands=Commands(per_campaign=per_campaign, per_s=dict(per_s or {}), unmeasured=unmeasured))
            for rep in range(1, repetitions + 1)]


INLINE = {"hset": 7, "multi": 2, "exec": 2, "hincrby": 2, "evalsha": 1, "hget": 1}  # 15 a campaign


@pytest.mark.fast
def test_summary_json_and_the_report_show_commands_per_campaign_by_kind(tmp_path):
    run_dir, _ = write_run(tmp_path, specs("inline", INLINE, per_s={"llen": 10}) + specs("queued", INLINE | {"ping": 1}))
    run = load_run(run_dir)
    summary = summarize(run.cells[0])["commands"]
    # 200 campaigns a cell; 10 LLENs a second for 10 s come to 0.5 a campaign.
    assert summary["campaigns"] == 200 and summary["per_campaign"] == 15.5
    assert list(summary["by_kind_per_campaign"])[:2] == ["hset", "exec"] and summary["by_kind_per_campaign"]["llen"] == 0.5
    assert summary["harness_commands"] == 1
    phases = {r["design"]: r for r in phase_commands(run)}
    assert phases["queued"]["per_campaign"] == 16 and phases["queued"]["repetitions"] == 2
    assert phases["queued"]["commands"] == 2 * 200 * 16
    render(run_dir)
    markdown = (run_dir / "report.md").read_text()
    assert "Redis commands per campaign" in markdown and "hset 7.00" in markdown and "+2 more" in markdown
    comparison = json.loads((run_dir / "comparison.json").read_text())
    assert {r["design"] for r in comparison["commands"]} == {"inline", "queued"}
    assert "Redis commands per campaign" in (run_dir / "report.html").read_text()


@pytest.mark.fast
def test_a_design_without_counts_is_shown_with_its_reason(tmp_path):
    run_dir, _ = write_run(tmp_path, specs("inline", INLINE) + specs("queued", {}, unmeasured="its own broker"))
    render(run_dir)
    row = next(line for line in (run_dir / "report.md").read_text().splitlines() if "not measured" in line)
    assert "queued" in row and "its own broker" in row
    assert compare_designs(load_run(run_dir)).row(COMMANDS_METRIC, endpoint="Redis commands") is None


@pytest.mark.fast
def test_the_comparison_row_has_the_range_of_the_repetitions_as_its_interval(tmp_path):
    # The queued side's second repetition ran 20 more commands a second (a longer drain, a busier machine): 1 more
    # command a campaign in that repetition only.
    queued = specs("queued", INLINE | {"ping": 1}, repetitions=1) + [
        CellSpec("queued", "steady", repetition=2, rate_per_s=20, duration_s=10,
                 commands=Commands(per_campaign=INLINE | {"ping": 1}, per_s={"expire": 20}))]
    run_dir, _ = write_run(tmp_path, specs("inline", INLINE) + queued)
    row = compare_designs(load_run(run_dir)).row(COMMANDS_METRIC, endpoint="Redis commands")
    assert row is not None and row.a == 15 and row.b == 16.5
    # Repetitions of 16 and 17 against two of 15: from +6.7% to +13.3%.
    assert row.delta_pct == 10.0 and (row.ci_low_pct, row.ci_high_pct) == (6.67, 13.33)
    assert row.verdict == "worse" and row.note == "range of repetitions"
    once, _ = write_run(tmp_path / "once", specs("inline", INLINE, 1) + specs("queued", INLINE, 1))
    row = compare_designs(load_run(once)).row(COMMANDS_METRIC, endpoint="Redis commands")
    assert row is not None and row.verdict == "undecided" and row.ci_low_pct is None and "one repetition" in row.note


# -- the gate's count rule -------------------------------------------------------------------------------------------

COUNT_RULE = ('[[rules]]\nname = "queued Redis commands"\nkind = "count"\ndesign = "queued"\nmax_increase = 0.5\n')


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    from analysis.gate.against_base import merge_runs

    return merge_runs(side_runs(tmp_path_factory.mktemp("base"), "base", (11, 12), commands=Commands(INLINE)))


def judged(tmp_path, base, rule: str, per_campaign: dict[str, int], per_s: dict[str, int] | None = None):
    from analysis.gate.against_base import judge_against, merge_runs

    candidate = merge_runs(side_runs(tmp_path, "candidate", (21, 22),
                                     commands=Commands(per_campaign, per_s=dict(per_s or {}))))
    return judge_against(base, candidate, rules_of(rule), BASE, CANDIDATE).outcomes[0]


@pytest.mark.fast
def test_the_same_commands_per_campaign_pass_the_count_rule(tmp_path, base):
    outcome = judged(tmp_path, base, COUNT_RULE, INLINE)
    assert outcome.status == "pass" and outcome.figures["delta_per_campaign"] == 0, outcome.measured


@pytest.mark.fast
def test_one_more_command_per_campaign_fails_the_count_rule(tmp_path, base):
    outcome = judged(tmp_path, base, COUNT_RULE, INLINE | {"ping": 1})
    assert outcome.status == "fail", outcome.measured
    assert outcome.figures["delta_per_campaign"] == 1 and outcome.figures["range_low"] == 1
    assert "16.00 vs 15.00 Redis commands per campaign base (+1.00" in outcome.measured
    assert outcome.rule.limit_text() == "≤ +0.5 Redis commands per campaign vs base"


@pytest.mark.fast
def test_commands_that_come_with_time_not_campaigns_stay_within_the_limit(tmp_path, base):
    # 10 more commands a second (heartbeats of a busier machine) over 600 campaigns in 20 s and a 3 s drain: +0.38.
    assert judged(tmp_path, base, COUNT_RULE, INLINE, per_s={"expire": 10}).status == "pass"


@pytest.mark.fast
def test_a_count_rule_of_one_command_kind_judges_that_kind_only(tmp_path, base):
    rule = COUNT_RULE.replace('max_increase = 0.5', 'command = "ping"\nmax_increase = 0.5')
    assert judged(tmp_path, base, rule, INLINE | {"ping": 1}).status == "fail"
    assert judged(tmp_path / "hset", base, rule, INLINE | {"hset": 8}).status == "pass"


EACH_RULE = COUNT_RULE.replace('max_increase = 0.5', 'command = "each"\nmax_increase = 0.5')


@pytest.mark.fast
def test_each_kind_on_its_own_passes_commands_that_come_with_time_and_fails_one_more_of_a_kind(tmp_path, base):
    # 10 more commands a second of each of 4 kinds (pulses and polls of a busier machine), over 600 campaigns served
    # in 20 s and a drain of 3: +1.53 a campaign in all, past the total's limit, but +0.38 in any one kind.
    busier = {kind: 10 for kind in ("hset", "expire", "get", "set")}
    assert judged(tmp_path / "all", base, COUNT_RULE, INLINE, per_s=busier).status == "fail"
    outcome = judged(tmp_path / "each", base, EACH_RULE, INLINE, per_s=busier)
    assert outcome.status == "pass" and outcome.figures["delta_per_campaign"] == pytest.approx(23 / 60, abs=1e-3)
    assert "the largest increase of 9 kinds" in outcome.measured
    extra = judged(tmp_path / "hset", base, EACH_RULE, INLINE | {"hset": 8}, per_s=busier)
    assert extra.status == "fail" and extra.figures["command"] == "hset" and extra.figures["past_limit"] == ["hset"]
    assert extra.rule.limit_text() == "≤ +0.5 commands of any one kind per campaign vs base"


@pytest.mark.fast
def test_a_count_rule_is_skipped_against_a_stored_baseline_which_keeps_no_counts(base):
    outcome = judge(base, rules_of(COUNT_RULE), baseline_from_run(base, "stored")).outcomes[0]
    assert outcome.status == "skipped" and "--against" in outcome.measured


@pytest.mark.fast
def test_a_side_without_counts_cannot_be_judged(tmp_path, base):
    from analysis.gate.against_base import judge_against, merge_runs

    uncounted = merge_runs(side_runs(tmp_path, "candidate", (21, 22),
                                     commands=Commands(unmeasured="a deployment already running")))
    outcome = judge_against(base, uncounted, rules_of(COUNT_RULE), BASE, CANDIDATE).outcomes[0]
    assert outcome.status == "error" and "already running" in outcome.measured


@pytest.mark.parametrize(("line", "message"), [
    ("max_increase = -1", "key 'rules[0].max_increase' has value -1; allowed: commands per campaign >= 0"),
    ('max_increase = "half"', "key 'rules[0].max_increase' has value 'half'; allowed: commands per campaign >= 0"),
    ("max_increase_pct = 5", "unknown key 'rules[0].max_increase_pct'"),
    ('max_increase = 1\ncommand = "PING"', "key 'rules[0].command' has value 'PING'; allowed: all, each, or a command"),
])
def test_a_bad_count_rule_is_one_line_and_exit_2(tmp_path, line, message):
    rules = tmp_path / "rules.toml"
    rules.write_text('[[rules]]\nname = "x"\nkind = "count"\ndesign = "queued"\n' + line + "\n")
    result = subprocess.run([sys.executable, "-m", "offpath.cli", "gate", "--rules", str(rules), "--run",
                             str(tmp_path / "no-run")], capture_output=True, text=True, timeout=60,
                            cwd=project_root())
    assert result.returncode == 2, result.stderr
    lines = [line for line in result.stderr.splitlines() if "fontManager" not in line]
    assert len(lines) == 1 and message in lines[0] and "Traceback" not in result.stderr, result.stderr


CHROMIUM = Path("/usr/bin/chromium")


@pytest.mark.skipif(not CHROMIUM.exists(), reason=f"{CHROMIUM} is missing: install Debian's chromium to check the "
                                                   "HTML report in a real browser")
def test_the_commands_table_fits_the_page(tmp_path):
    pytest.importorskip("websocket", reason="websocket-client (the test extra) drives Chromium's DevTools protocol")
    from tests.analysis_browser import check_page

    # As many kinds as offpath's queued design on RQ runs (38), with its longest names.
    many = {kind: 2 for kind in ("zremrangebyscore", "hincrbyfloat", "zrangebyscore", "smembers", "persist", "hsetnx",
                                 "evalsha", "hgetall", "hexists", "blmove", "lrem", "srem", "xadd", "watch")}
    run_dir, _ = write_run(tmp_path, specs("inline", INLINE) + specs("queued", INLINE | many))
    page = check_page(render(run_dir))
    assert "Redis commands per campaign" in page.text
    assert not (unfit := page.unfit_tables()), "\n".join(unfit)
