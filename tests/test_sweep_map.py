"""The decision map on sweep folders generated from known distributions: each point's ratios and intervals, the side
each resolves to, the crossover only where the intervals on both sides exclude 1, and the report that shows it."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pytest

from analysis.reports.map_plots import map_plots
from analysis.reports.render import render
from analysis.stats.decision_map import (
    INLINE,
    MEASURES,
    QUEUE,
    UNRESOLVED,
    PointRatios,
    Ratio,
    crossover_sentence,
    crossovers_along,
    decision_map,
)
from analysis.stats.load import load_run
from foundation.format import MANIFEST_FILE, POINTS_DIR, SCHEMA_VERSION
from tests.analysis_fixtures import CellSpec, Cpu, Latency, Queue, capacity_specs, write_run

RATES = [40, 80, 120, 160, 200]
MEASURE = {m.key: m for m in MEASURES}


def point_specs(inline_holds: int, queued_holds: int, queued_completion_us: float) -> list[CellSpec]:
    """A point: two interleaved steady repetitions (queued's completion against inline's answer, CPU on both sides),
    then each design's capacity search holding up to the given rate."""
    specs = []
    for rep in (1, 2):
        specs.append(CellSpec("inline", "steady", repetition=rep, rate_per_s=100, duration_s=20,
                              latency=Latency(100_000, 0.4), cpu=Cpu(web_per_s=0.5, noise=0.05)))
        specs.append(CellSpec("queued", "steady", repetition=rep, rate_per_s=100, duration_s=20,
                              latency=Latency(3_000, 0.4), cpu=Cpu(web_per_s=0.3, workers_per_s=0.9, noise=0.05),
                              queue=Queue(completion=Latency(queued_completion_us, 0.4))))
    return (specs + capacity_specs("inline", [r for r in RATES if r <= inline_holds + 40], inline_holds)
            + capacity_specs("queued", [r for r in RATES if r <= queued_holds + 40], queued_holds))


def write_sweep(root: Path, points: list[tuple[float | dict[str, float], list[CellSpec]]],
                complete: bool = True) -> Path:
    """A sweep's run folder (over provider_wait_scale, unless a point gives its values): each point written as a
    fixture run under points/<id>/, its manifest folded into the one manifest's points."""
    run_dir = root / "20261130-060000-sweepfix-abcdef"
    records = []
    for number, (given, specs) in enumerate(points, start=1):
        values = given if isinstance(given, dict) else {"provider_wait_scale": given}
        point_id = f"{number:02d}-" + ",".join(f"{k}={v if isinstance(v, str) else format(v, 'g')}"
                                                for k, v in values.items())
        point_dir, _ = write_run(run_dir / POINTS_DIR, specs, run_id=point_id, seed=number,
                                 slo={"p99_ms": 500.0, "error_rate": 0.01})
        manifest = json.loads((point_dir / MANIFEST_FILE).read_text())
        (point_dir / MANIFEST_FILE).unlink()
        records.append({"id": point_id, "values": values, "status": "complete",
                        "experiment": manifest["experiment"], "profile": manifest["profile"], "layout": {},
                        "placement": {}, "cells": manifest["cells"]})
    top = dict(manifest)
    sweep = {name: list(dict.fromkeys(r["values"][name] for r in records)) if isinstance(records[0]["values"][name], str)
             else sorted({r["values"][name] for r in records}) for name in records[0]["values"]}
    top.update(run_id=run_dir.name, kind="sweep", cells=[], points=records, resumes=[],
               experiment=manifest["experiment"] | {"sweep": sweep})
    if not complete:
        records[-1].update(status="incomplete")
        shutil.rmtree(run_dir / POINTS_DIR / records[-1]["id"])
        records[-1]["cells"] = []
        top.update(status="incomplete", error="interrupted by SIGINT")
        (run_dir / "INCOMPLETE").write_text("interrupted by SIGINT\n")
    assert top["schema_version"] == SCHEMA_VERSION
    (run_dir / MANIFEST_FILE).write_text(json.dumps(top, indent=2))
    return run_dir


@pytest.fixture(scope="module")
def crossing_sweep(tmp_path_factory) -> Path:
    """Inline holds 160/s at x0.5, queued only 40/s; at x4 the reverse; x1 is even. Queued's completions take
    60 ms against inline's 100 ms answers at x0.5, and 400 ms at x4."""
    return write_sweep(tmp_path_factory.mktemp("map"), [
        (0.5, point_specs(inline_holds=160, queued_holds=40, queued_completion_us=60_000)),
        (1.0, point_specs(inline_holds=120, queued_holds=120, queued_completion_us=100_000)),
        (4.0, point_specs(inline_holds=40, queued_holds=160, queued_completion_us=400_000)),
    ])


@pytest.mark.fast
def test_capacity_ratios_and_their_intervals_follow_the_search(crossing_sweep):
    dmap = decision_map(load_run(crossing_sweep))
    low, even, high = dmap.points
    ratio = low.ratios["ack_capacity"]
    assert ratio.value == pytest.approx(40 / 160)
    # inline's capacity lies in [160, 200), queued's in [40, 80): the ratio in [40/200, 80/160].
    assert ratio.low == pytest.approx(40 / 200) and ratio.high == pytest.approx(80 / 160)
    assert low.side(MEASURE["ack_capacity"]) == INLINE
    assert even.ratios["ack_capacity"].value == pytest.approx(1.0)
    assert even.side(MEASURE["ack_capacity"]) == UNRESOLVED  # [120/160, 160/120] includes 1
    top = high.ratios["drain_capacity"]
    assert top.value == pytest.approx(160 / 40) and top.low == pytest.approx(160 / 80)
    assert top.high == pytest.approx(200 / 40)
    assert high.side(MEASURE["drain_capacity"]) == QUEUE


@pytest.mark.fast
def test_p99_and_cpu_ratios_come_with_the_comparison_intervals(crossing_sweep):
    dmap = decision_map(load_run(crossing_sweep))
    low, _, high = dmap.points
    assert low.ratios["p99"].value == pytest.approx(0.6, rel=0.15)
    assert low.side(MEASURE["p99"]) == QUEUE and high.side(MEASURE["p99"]) == INLINE
    assert high.ratios["p99"].value == pytest.approx(4.0, rel=0.15)
    cpu = low.ratios["cpu"]
    # queued spends 0.3 + 0.1 + 0.9 CPU-s a second for the campaigns it completes, inline 0.5 + 0.1 for as many.
    assert cpu.low is not None and cpu.low > 1 and low.side(MEASURE["cpu"]) == INLINE


@pytest.mark.fast
def test_a_crossover_is_claimed_only_between_resolved_points(crossing_sweep):
    dmap = decision_map(load_run(crossing_sweep))
    capacity = [c for c in dmap.crossovers if c.measure == "ack_capacity"]
    assert [(c.low, c.high, c.starts) for c in capacity] == [(0.5, 4.0, True)]  # x1 is not resolved: skipped
    assert dmap.sentences["ack_capacity"].startswith(
        "Capacity at the SLO, acknowledgement: the queue starts to win between provider wait scale ×0.5 and ×4")
    assert "undecided at ×1" in dmap.sentences["ack_capacity"]
    p99 = [c for c in dmap.crossovers if c.measure == "p99"]
    assert p99 and not p99[0].starts  # the queue wins at low waits and stops winning as they grow
    assert "the queue never wins in the range" in dmap.sentences["cpu"]


def _points(sides: list[tuple[float, Ratio]]) -> list[PointRatios]:
    return [PointRatios(f"{n:02d}", {"x_scale": x}, "complete", {"p99": r}) for n, (x, r) in enumerate(sides)]


@pytest.mark.fast
def test_sentences_say_not_resolved_rather_than_guess():
    p99 = MEASURE["p99"]
    unresolved = _points([(1, Ratio(0.9, 0.7, 1.1)), (2, Ratio(0.8, 0.6, 1.05)), (4, Ratio(0.5, 0.3, 0.8))])
    found = crossovers_along(p99, "x_scale", unresolved)
    assert found == []
    text = crossover_sentence(p99, "x_scale", unresolved, found)
    assert "the queue wins at ×4" in text and "where it starts to win is not resolved" in text
    few = _points([(1, Ratio(1.5, 1.2, 1.9)), (2, Ratio(0.5, 0.3, 0.8, note="few samples", judged=False))])
    assert crossovers_along(p99, "x_scale", few) == []
    assert "never wins" in crossover_sentence(p99, "x_scale", few, [])
    nothing = _points([(1, Ratio(1.0, 0.5, 2.0)), (2, Ratio(0.5, 0.3, 0.8, note="few samples", judged=False))])
    text = crossover_sentence(p99, "x_scale", nothing, [])
    assert "undecided at every point of x scale ×1 … ×2" in text and "never wins" not in text
    everywhere = _points([(1, Ratio(0.5, 0.4, 0.6)), (2, Ratio(0.4, 0.3, 0.5))])
    assert "wins over the whole range (x scale ×1 … ×2)" in crossover_sentence(p99, "x_scale", everywhere, [])


@pytest.mark.fast
def test_the_sweep_report_shows_a_map_per_ratio_and_each_points_report(crossing_sweep):
    html = render(crossing_sweep)
    text = (crossing_sweep / "report.md").read_text()
    for measure in MEASURES:
        assert (crossing_sweep / "plots" / f"map-{measure.key.replace('_', '-')}.png").stat().st_size > 5000
        assert measure.title in text
    assert "the queue starts to win between provider wait scale ×0.5 and ×4" in text
    assert html.read_text().count("data:image/png;base64,") == len(MEASURES)
    for point in json.loads((crossing_sweep / "manifest.json").read_text())["points"]:
        assert (crossing_sweep / POINTS_DIR / point["id"] / "report.html").is_file()
        assert f"{POINTS_DIR}/{point['id']}/report.html" in html.read_text()
    saved = json.loads((crossing_sweep / "decision_map.json").read_text())
    assert [p["ratios"]["ack_capacity"]["side"] for p in saved["points"]] == [INLINE, UNRESOLVED, QUEUE]
    assert saved["crossovers"][0]["between"] == [0.5, 4.0]
    assert not any(isinstance(v, float) and math.isinf(v) for p in saved["points"] for r in p["ratios"].values()
                   for v in r.values())


@pytest.mark.fast
def test_an_incomplete_sweep_maps_what_it_measured(tmp_path):
    run_dir = write_sweep(tmp_path, [(0.5, point_specs(160, 40, 60_000)), (4.0, point_specs(40, 160, 400_000))],
                          complete=False)
    html = render(run_dir, allow_incomplete=True)
    text = (run_dir / "report.md").read_text()
    assert "INCOMPLETE" in text and "Points not finished: 02-provider_wait_scale=4" in text
    dmap = json.loads((run_dir / "decision_map.json").read_text())
    assert dmap["points"][1]["ratios"]["p99"]["note"] == "not measured"
    assert html.is_file()


def test_the_sweep_notebook_redraws_the_map_from_a_run_folder(crossing_sweep, monkeypatch):
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    notebook_path = Path(__file__).resolve().parent.parent / "analysis" / "reports" / "notebooks" / "sweep.ipynb"
    monkeypatch.setenv("OFFPATH_RUN", str(crossing_sweep))
    notebook = nbformat.read(notebook_path, as_version=4)
    nbclient.NotebookClient(notebook, timeout=120, kernel_name="python3",
                            resources={"metadata": {"path": str(notebook_path.parent)}}).execute()
    outputs = [o for cell in notebook.cells if cell.cell_type == "code" for o in cell.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    markdown = "\n".join(o["data"]["text/markdown"] for o in outputs if "text/markdown" in o.get("data", {}))
    assert "the queue starts to win between provider wait scale ×0.5 and ×4" in markdown
    assert sum("image/png" in o.get("data", {}) for o in outputs) == len(MEASURES)


@pytest.mark.fast
def test_two_parameters_draw_heat_maps_and_a_sentence_per_value_of_the_second(tmp_path):
    grid = [({"provider_wait_scale": x, "concurrency": c}, point_specs(*holds, queued_completion_us=100_000))
            for c, row in ((4, ((160, 40), (40, 160))), (16, ((160, 40), (160, 40))))
            for x, holds in zip((0.5, 4.0), row, strict=True)]
    run_dir = write_sweep(tmp_path, grid)
    # The map alone: drawing each point's report is test_the_sweep_report_shows_a_map_per_ratio_and_each_points_report's.
    found = decision_map(load_run(run_dir))
    map_plots(found, run_dir / "plots")
    dmap = found.to_dict()
    crossings = [c for c in dmap["crossovers"] if c["measure"] == "ack_capacity"]
    assert crossings == [{"measure": "ack_capacity", "between": [0.5, 4.0], "queue": "starts to win",
                          "at": {"concurrency": 4.0}}]
    sentence = dmap["sentences"]["ack_capacity"]
    assert "at concurrency 4: the queue starts to win between provider wait scale ×0.5 and ×4" in sentence
    assert "at concurrency 16: the queue never wins in the range" in sentence
    assert (run_dir / "plots" / "map-ack-capacity.png").stat().st_size > 5000


def test_a_sweep_over_queue_backends_says_which_wins_on_each_and_draws_no_crossover(tmp_path):
    """A parameter of names has no order: a verdict per name, in the sweep's own order, and no crossover."""
    run_dir = write_sweep(tmp_path, [
        ({"backend": "rq"}, point_specs(inline_holds=160, queued_holds=40, queued_completion_us=400_000)),
        ({"backend": "celery"}, point_specs(inline_holds=80, queued_holds=200, queued_completion_us=100_000)),
        ({"backend": "dramatiq"}, point_specs(inline_holds=80, queued_holds=200, queued_completion_us=100_000)),
    ])
    dmap = decision_map(load_run(run_dir))
    assert [p.values["backend"] for p in dmap.points] == ["rq", "celery", "dramatiq"] and not dmap.crossovers
    sides = {p.values["backend"]: p.side(MEASURE["drain_capacity"]) for p in dmap.points}
    assert sides == {"rq": INLINE, "celery": QUEUE, "dramatiq": QUEUE}
    assert dmap.sentences["drain_capacity"].endswith(": the queue wins on celery, dramatiq; inline wins on rq.")
    plots = map_plots(dmap, tmp_path / "plots")
    assert len(plots) == len(MEASURES) and all(p.png.stat().st_size > 0 for p in plots)
