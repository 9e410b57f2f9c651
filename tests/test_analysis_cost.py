"""Cost accounting: CPU per campaign per tier from cpu.csv, exact on known CPU; repetitions summed, never ratios
averaged; a design that costs twice as much found at +100% with a CI excluding 0; old folders without cpu.csv
still load and report, without cost."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from analysis.reports.render import render
from analysis.stats.capacity import capacity
from analysis.stats.compare import COST_METRIC, compare_designs, compare_runs, comparison_markdown
from analysis.stats.cost import COST_SCOPE, cell_cost, cost_series, merged_cost, phase_costs
from analysis.stats.fixed_cost import fixed_costs
from analysis.stats.load import ResultsFolderError, load_run
from analysis.stats.summary import figures, format_table, summarize
from foundation.format import COMPLETION, COMPLETION_FILE, CPU_FILE, SYSTEM_TIERS, CellSummary
from tests.analysis_fixtures import CellSpec, Cpu, Latency, Queue, reference_specs, write_run

CHROMIUM = Path("/usr/bin/chromium")
KNOWN = Cpu(web_per_s=0.4, redis_per_s=0.1, workers_per_s=0.0, load_per_s=0.2, others_per_s=0.02)


def cell(design: str, rep: int = 1, rate: int = 100, duration: int = 10, cpu: Cpu | None = KNOWN,
         queue: Queue | None = None) -> CellSpec:
    return CellSpec(design, "steady", repetition=rep, rate_per_s=rate, duration_s=duration, send_lag=None,
                    queue=queue, cpu=cpu)


@pytest.mark.fast
def test_cost_per_campaign_is_exact_on_known_cpu(tmp_path):
    run_dir, _ = write_run(tmp_path, [cell("inline")])
    cost = cell_cost(load_run(run_dir).cells[0])
    assert cost is not None
    # 100 successful POSTs a second for 10 s; web 0.4 CPU-s/s, redis 0.1, workers 0, load 0.2
    assert cost.campaigns == 1000 and cost.campaigns_source == "create"
    assert cost.cpu_s == pytest.approx({"web": 4.0, "redis": 1.0, "workers": 0.0, "load": 2.0})
    assert cost.cpu_ms_per_campaign == pytest.approx({"web": 4.0, "redis": 1.0, "workers": 0.0, "load": 2.0})
    assert cost.total_cpu_ms_per_campaign == pytest.approx(5.0)  # the load generator is not charged
    assert cost.campaigns_per_cpu_s == pytest.approx(200.0)
    assert cost.machine_cpu_s == pytest.approx(7.2) and cost.others_cpu_s == pytest.approx(0.2)
    assert cost.others_share == pytest.approx(0.2 / 7.2, abs=1e-4)
    assert cost.unaccounted_share == 0 and not cost.accounting_gap
    assert cost.wall_s == 10 and cost.samples == 11


@pytest.mark.fast
def test_summary_json_gains_cost_and_keeps_every_other_key(tmp_path):
    run_dir, _ = write_run(tmp_path, [cell("inline"), cell("inline", rep=2, cpu=None)])
    with_cpu, without = (summarize(c) for c in load_run(run_dir).cells)
    assert list(with_cpu) == list(without)
    assert list(with_cpu)[-2:] == ["cost", "commands"] and without["cost"] is None
    assert set(with_cpu["cost"]) >= {"campaigns", "cpu_s", "cpu_ms_per_campaign", "total_cpu_ms_per_campaign",
                                     "campaigns_per_cpu_s", "machine_cpu_s", "others_share", "accounting_gap"}
    data = json.loads(json.dumps(with_cpu))
    assert CellSummary.from_dict(data).to_dict() == data
    assert CellSummary.from_dict(data).cost == figures(load_run(run_dir).cells[0]).cost


@pytest.mark.fast
def test_queued_design_is_charged_per_completed_campaign_through_its_drain(tmp_path):
    queue = Queue(drain_s=3)
    run_dir, truth = write_run(tmp_path, [cell("queued", queue=queue, cpu=Cpu(web_per_s=0.1, redis_per_s=0.1,
                                                                                workers_per_s=0.6))])
    loaded = load_run(run_dir).cells[0]
    completed = len(truth[loaded.id][COMPLETION])
    cost = cell_cost(loaded)
    assert cost.campaigns == completed and cost.campaigns_source == "completion_log"
    assert cost.wall_s == 13  # 10 s of load, then the 3 s drain
    assert cost.total_cpu_ms_per_campaign == pytest.approx(1000 * 0.8 * 13 / completed, rel=1e-3)
    census = {"started_at": 0.0, "stopped_at": 13.0, "accepted": completed, "completed": completed - 40, "failed": 10,
              "pending": 30}
    (loaded.dir / COMPLETION_FILE).write_text(json.dumps(census))
    cost = cell_cost(load_run(run_dir).cells[0])
    assert cost.campaigns == completed - 40 and cost.campaigns_source == "census"  # completed, not accepted
    assert cost.total_cpu_ms_per_campaign == pytest.approx(1000 * 0.8 * 13 / (completed - 40), rel=1e-3)


@pytest.mark.fast
def test_each_second_holds_the_campaigns_served_in_it(tmp_path):
    run_dir, _ = write_run(tmp_path, [cell("queued", queue=Queue(drain_s=3), cpu=Cpu(workers_per_s=0.5))])
    loaded = load_run(run_dir).cells[0]
    series = cost_series(loaded)
    assert len(series.cpu_s) == 13 and series.cpu_s == pytest.approx(np.full(13, 0.4 + 0.1 + 0.5))
    assert series.campaigns.sum() == pytest.approx(cell_cost(loaded).campaigns)
    assert series.campaigns[:10] == pytest.approx(np.full(10, 100)) and not series.campaigns[10:].any()


@pytest.mark.fast
def test_repetitions_are_summed_not_averaged(tmp_path):
    run_dir, _ = write_run(tmp_path, [cell("inline", rep=1, rate=100), cell("inline", rep=2, rate=25)])
    (record,) = phase_costs(load_run(run_dir))
    # 5 CPU-s for 1000 campaigns, then 5 CPU-s for 250: 10 / 1250 = 8 ms, not the mean of 5 and 20 ms
    assert record["repetitions"] == 2 and record["campaigns"] == 1250
    assert record["total_cpu_ms_per_campaign"] == pytest.approx(8.0)
    assert record["cpu_ms_per_campaign"]["web"] == pytest.approx(6.4)


@pytest.mark.fast
def test_cpu_nobody_accounts_for_is_flagged(tmp_path):
    run_dir, _ = write_run(tmp_path, [cell("inline", cpu=replace(KNOWN, unseen_per_s=0.2))])
    cost = cell_cost(load_run(run_dir).cells[0])
    assert cost.unaccounted_share == pytest.approx(0.2 / 0.92, abs=1e-4) and cost.accounting_gap
    markdown = render(run_dir).with_suffix(".md").read_text()
    assert "CPU accounting: the machine's CPU and the tiers' plus other processes' differ by more than 10%" in markdown
    assert "GAP: others" in markdown


@pytest.mark.fast
def test_a_busy_machine_is_reported(tmp_path):
    run_dir, _ = write_run(tmp_path, [cell("inline", cpu=replace(KNOWN, others_per_s=0.3))])
    markdown = render(run_dir).with_suffix(".md").read_text()
    assert "Processes outside the tiers used more than 10% of the machine's CPU in inline.steady.r1 (30%)" in markdown


def noisy_pair(tmp_path, b_factor: float, seed: int):
    cost = Cpu(web_per_s=0.5, redis_per_s=0.1, workers_per_s=0.2, noise=0.25)
    doubled = replace(cost, web_per_s=0.5 * b_factor, redis_per_s=0.1 * b_factor, workers_per_s=0.2 * b_factor)
    specs = [cell(design, rep=rep, rate=100, duration=30, cpu=cost if design == "inline" else doubled)
             for rep in (1, 2) for design in ("inline", "queued")]
    return write_run(tmp_path, specs, seed=seed)[0]


@pytest.mark.fast
def test_twice_the_cost_is_about_plus_100_percent_and_worse(tmp_path):
    row = compare_designs(noisy_pair(tmp_path, 2.0, seed=3)).row(COST_METRIC, endpoint=COST_SCOPE)
    assert row is not None and row.group == "steady"
    assert row.a == pytest.approx(8.0, rel=0.05) and row.b == pytest.approx(16.0, rel=0.05)
    assert row.delta_pct == pytest.approx(100, abs=6)
    assert 0 < row.ci_low_pct <= row.delta_pct <= row.ci_high_pct
    assert row.ci_low_pct <= 100 <= row.ci_high_pct
    assert row.verdict == "worse" and row.n_a == row.n_b == 6000  # lower is better


@pytest.mark.fast
def test_same_cost_is_never_better_or_worse(tmp_path):
    row = compare_designs(noisy_pair(tmp_path, 1.0, seed=4)).row(COST_METRIC, endpoint=COST_SCOPE)
    assert row.ci_low_pct <= 0 <= row.ci_high_pct and row.margin_pct == 5
    # 25% noise a second over 60 seconds a side leaves an interval wider than the ±5% CPU margin: undecided, with
    # the repetitions that would make it narrow enough.
    assert row.verdict == "undecided" and row.need is not None and row.need.more_repetitions >= 1


@pytest.mark.fast
def test_cheaper_design_is_better(tmp_path):
    row = compare_designs(noisy_pair(tmp_path, 0.5, seed=5)).row(COST_METRIC, endpoint=COST_SCOPE)
    assert row.delta_pct == pytest.approx(-50, abs=4) and row.verdict == "better"


@pytest.mark.fast
def test_old_folders_without_cpu_csv_load_and_report_without_cost(tmp_path):
    run_dir, _ = write_run(tmp_path, reference_specs(repetitions=1, duration_s=6))
    loaded = load_run(run_dir)
    assert all(c.cpu is None and cell_cost(c) is None for c in loaded.cells)
    assert merged_cost(loaded.cells) is None and phase_costs(loaded) == []
    assert summarize(loaded.cells[0])["cost"] is None
    assert format_table([summarize(c) for c in loaded.cells]).splitlines()[2].endswith("-")
    assert compare_designs(loaded).row(COST_METRIC, endpoint=COST_SCOPE) is None
    html = render(run_dir).read_text()
    assert "Cost per campaign" not in html and "No CPU accounting" not in html
    assert json.loads((run_dir / "comparison.json").read_text())["cost"] == []


@pytest.mark.fast
def test_a_cpu_csv_without_its_columns_is_refused(tmp_path):
    run_dir, _ = write_run(tmp_path, [cell("inline")])
    loaded = load_run(run_dir).cells[0]
    (loaded.dir / CPU_FILE).write_text("t_s,web,redis\n0,0,0\n1,0.1,0.1\n")
    with pytest.raises(ResultsFolderError, match="missing column.*machine"):
        _ = load_run(run_dir).cells[0].cpu


@pytest.fixture(scope="module")
def costed(tmp_path_factory):
    cpu = {"inline": Cpu(web_per_s=0.6, redis_per_s=0.1, noise=0.2),
           "queued": Cpu(web_per_s=0.2, redis_per_s=0.15, workers_per_s=0.5, noise=0.2)}
    specs = [replace(s, cpu=cpu[s.design])
             for s in reference_specs(repetitions=2, duration_s=12, drain_limit_rate=80)]
    run_dir, _ = write_run(tmp_path_factory.mktemp("costed"), specs)
    return run_dir, render(run_dir)


@pytest.mark.fast
def test_report_shows_the_cost_table_and_the_stacked_bar(costed):
    run_dir, html_path = costed
    html, markdown = html_path.read_text(), (run_dir / "report.md").read_text()
    assert (run_dir / "plots" / "cost.png").stat().st_size > 1000
    assert html.count("src='data:image/png;base64,") == 6 and "alt='CPU per campaign'" in html
    for text in (html, markdown):
        assert "Cost per campaign" in text and "campaigns / CPU-s" in text and "load (not charged)" in text
        assert text.index("Cost per campaign") < text.index("Percentile spectrum")
    costs = {r["design"]: r for r in phase_costs(load_run(run_dir)) if r["kind"] == "steady"}
    for design, counted in (("inline", "successful POSTs"), ("queued", "completed")):
        (row,) = [line for line in markdown.splitlines() if line.startswith(f"| steady | {design} | 2 | 2,400 {counted} |")]
        assert f"| {costs[design]['total_cpu_ms_per_campaign']:.2f} |" in row
    assert "Capacity steps:" in markdown and "capacity-0200 (capacity)" in markdown
    comparison = json.loads((run_dir / "comparison.json").read_text())
    (row,) = [r for r in comparison["rows"] if r["metric"] == COST_METRIC]
    assert row["endpoint"] == COST_SCOPE and row["a"] == costs["inline"]["total_cpu_ms_per_campaign"]
    assert "| steady | web + redis + workers | CPU per campaign |" in markdown
    assert {r["design"] for r in comparison["cost"]} == {"inline", "queued"}


@pytest.mark.skipif(not CHROMIUM.exists(), reason=f"{CHROMIUM} is missing: install Debian's chromium to check the "
                                                   "HTML report in a real browser")
def test_cost_bar_loads_in_headless_chromium(costed):
    pytest.importorskip("websocket", reason="websocket-client (the test extra) drives Chromium's DevTools protocol")
    from tests.analysis_browser import check_page

    _, html_path = costed
    page = check_page(html_path)
    assert len(page.images) == 6 and page.console_errors == []
    assert all(image["complete"] and image["naturalWidth"] > 0 for image in page.images), page.images
    assert "Cost per campaign" in page.text and "CPU per campaign" in page.text
    cost_tables = [t for t in page.tables if t.section == "Cost per campaign"]
    # steady, the fixed and per-campaign CPU (a line through the capacity steps), the capacity steps
    assert [t.last_column for t in cost_tables] == ["machine check", "steady: CPU per campaign", "machine check"] * \
        len(page.screenshots)
    assert not (unfit := page.unfit_tables()), "\n".join(unfit)


def test_offpath_compare_shows_cpu_per_campaign(tmp_path):
    a = write_run(tmp_path / "a", [cell("inline", duration=20, cpu=replace(KNOWN, noise=0.2))], run_id="run-a")[0]
    b = write_run(tmp_path / "b", [cell("inline", duration=20, cpu=replace(KNOWN, web_per_s=1.2, noise=0.2))],
                  run_id="run-b", seed=2)[0]
    row = compare_runs(a, b).row(COST_METRIC, "inline steady", endpoint=COST_SCOPE)
    assert row.verdict == "worse" and row.delta_pct > 50
    result = subprocess.run([sys.executable, "-m", "offpath.cli", "compare", str(a), str(b)], capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert comparison_markdown(compare_runs(a, b)) in result.stdout
    assert f"| inline steady | {COST_SCOPE} | CPU per campaign |" in result.stdout


@pytest.mark.fast
def test_system_tiers_are_what_is_charged():
    assert COST_SCOPE == " + ".join(SYSTEM_TIERS) and "load" not in SYSTEM_TIERS


@pytest.mark.fast
def test_report_states_what_each_tier_got_and_how_it_was_counted(tmp_path):
    run_dir, _ = write_run(tmp_path, [cell("inline")])
    manifest = json.loads((run_dir / "manifest.json").read_text())
    granted = {"declared": {"shared": False, "cpus": [], "cpu_budget": 0.5}, "processes": 2, "cpus_allowed": [0, 1],
               "cpu_budget": 0.5, "accounting": "cgroup /sys/fs/cgroup/cpuacct/offpath/web"}
    manifest["placement"] = {"inline.r1": {"web": granted, "redis": {**granted, "cpu_budget": None},
                                           "workers": {**granted, "processes": 0, "cpus_allowed": None}}}
    manifest["cpu_accounting"] = {"web": "cgroup", "redis": "cgroup", "workers": "cgroup", "load": "proc"}
    (run_dir / "manifest.json").write_text(json.dumps(manifest))
    markdown = render(run_dir).with_suffix(".md").read_text()
    assert ("**Placement**: inline.r1: web CPUs [0, 1], budget 0.5 CPU; redis CPUs [0, 1]; workers CPUs any"
            in markdown)
    assert "**CPU accounting**: web by cgroup, redis by cgroup, workers by cgroup, load by proc" in markdown


def _idle_plus_work(rate: int) -> Cpu:
    """Workers that spend 0.12 CPU-s a second idle and 3 ms a campaign; a web tier at 1 ms a campaign, no fixed cost."""
    return Cpu(web_per_s=0.001 * rate, redis_per_s=0.01 + 0.0005 * rate, workers_per_s=0.12 + 0.003 * rate)


def fixed_cost_run(tmp_path: Path) -> Path:
    specs = [cell("inline", rep=rep, rate=15, cpu=_idle_plus_work(15)) for rep in (1, 2)]
    for rate in (10, 20, 40, 80, 160):  # 160/s breaks the SLO: its step is left out of the line
        latency = Latency(30_000, 0.5) if rate < 160 else Latency(900_000, 0.5)
        specs.append(CellSpec("inline", f"capacity-{rate:04d}", kind="capacity", rate_per_s=rate, duration_s=8,
                              latency=latency, send_lag=None, cpu=_idle_plus_work(rate)))
    return write_run(tmp_path, specs, designs=("inline",))[0]


@pytest.mark.fast
def test_the_fixed_cost_is_told_apart_from_the_cost_per_campaign(tmp_path):
    run = load_run(fixed_cost_run(tmp_path))
    (line,) = fixed_costs(run, capacity(run))
    assert line.design == "inline" and line.steps == 4 and (line.low_per_s, line.high_per_s) == (10, 80)
    assert line.fixed_ms_per_s == pytest.approx({"web": 0.0, "redis": 10.0, "workers": 120.0, "system": 130.0},
                                                abs=0.01)
    assert line.marginal_ms == pytest.approx({"web": 1.0, "redis": 0.5, "workers": 3.0, "system": 4.5}, abs=1e-3)
    assert line.r2 == pytest.approx(1.0)
    # At 15/s each campaign carries 130 / 15 = 8.67 ms of the fixed cost, of the 13.17 ms it is charged.
    html = render(run.dir).read_text()
    text = (run.dir / "report.md").read_text()
    assert "Fixed and per-campaign CPU:" in text and "steady (15.0/s): 13.17, of it 8.67 fixed" in text
    assert "<h3>Fixed and per-campaign CPU</h3>" in html and "of it 8.67 fixed" in html


@pytest.mark.fast
def test_no_line_through_fewer_than_three_steps_that_held(tmp_path):
    specs = [CellSpec("inline", f"capacity-{rate:04d}", kind="capacity", rate_per_s=rate, duration_s=8,
                      latency=Latency(30_000, 0.5), send_lag=None, cpu=_idle_plus_work(rate)) for rate in (10, 20)]
    run = load_run(write_run(tmp_path, specs, designs=("inline",))[0])
    assert fixed_costs(run, capacity(run)) == []
