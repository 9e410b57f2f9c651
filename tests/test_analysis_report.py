"""The report: self-contained HTML and a compact Markdown, in the story's order, honest about what is missing."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

from analysis.reports.render import render
from analysis.stats.load import IncompleteRunError
from tests.analysis_fixtures import reference_specs, write_run

CHROMIUM = Path("/usr/bin/chromium")
SCREENSHOT_DIR = Path(__file__).resolve().parent.parent / ".pytest_cache" / "analysis-report"


@pytest.fixture(scope="module")
def rendered(tmp_path_factory):
    run_dir, _ = write_run(tmp_path_factory.mktemp("report"), reference_specs(repetitions=2, duration_s=12,
                                                                              drain_limit_rate=80))
    return run_dir, render(run_dir)


@pytest.mark.fast
def test_render_writes_html_markdown_comparison_and_plots(rendered):
    run_dir, html_path = rendered
    assert html_path == run_dir / "report.html"
    assert (run_dir / "report.md").is_file()
    for name in ("spectrum", "latency-over-time", "throughput-over-time", "queue-over-time", "capacity"):
        assert (run_dir / "plots" / f"{name}.png").stat().st_size > 1000
        assert (run_dir / "plots" / f"{name}.svg").read_text().lstrip().startswith("<?xml")
    comparison = json.loads((run_dir / "comparison.json").read_text())
    assert comparison["headline"].startswith("queued sustains")
    # Per phase: POST /campaigns (throughput, P50, P90, P99, P99.9) and the outcome rows (P50, P90, P99, P99.9).
    assert len(comparison["rows"]) == 9 and comparison["method"].startswith("95% confidence intervals")
    assert comparison["capacity"]["designs"]["queued"]["drain_capacity_per_s"] == 80


@pytest.mark.fast
def test_html_is_self_contained(rendered):
    _, html_path = rendered
    html = html_path.read_text()
    assert not re.search(r"""(src|href)=['"]?(https?:)?//""", html)
    assert "<script" not in html and "stylesheet" not in html
    assert html.count("src='data:image/png;base64,") == 5


@pytest.mark.fast
def test_sections_come_in_the_story_order(rendered):
    run_dir, html_path = rendered
    for text in (html_path.read_text(), (run_dir / "report.md").read_text()):
        positions = [text.index(marker) for marker in ("queued sustains", "queued vs inline", "Percentile spectrum",
                                                       "How it was measured")]
        assert positions == sorted(positions)


@pytest.mark.fast
def test_markdown_fits_a_ci_job_summary(rendered):
    run_dir, _ = rendered
    markdown = (run_dir / "report.md").read_text()
    assert len(markdown.encode()) < 64 * 1024  # GitHub's step summary limit is 1 MiB; stay far below
    assert markdown.splitlines()[2].startswith("**queued sustains")
    assert "data:image" not in markdown and "(plots/spectrum.png)" in markdown


@pytest.mark.fast
def test_moved_pain_is_in_the_headline(rendered):
    run_dir, _ = rendered
    assert "the queue only moved the pain" in (run_dir / "report.md").read_text().splitlines()[2]


@pytest.mark.fast
def test_report_of_one_design_says_what_is_missing(tmp_path):
    run_dir, _ = write_run(tmp_path, reference_specs(repetitions=1, duration_s=6, designs=("queued",)))
    markdown = render(run_dir).with_suffix(".md").read_text()
    assert "No inline cells in this run: the inline side of every comparison is missing." in markdown
    assert "Capacity not compared (inline did not run)" in markdown


@pytest.mark.fast
def test_incomplete_run_is_refused_unless_partial(tmp_path):
    run_dir, _ = write_run(tmp_path, reference_specs(repetitions=1, duration_s=6, capacity=False), complete=False)
    with pytest.raises(IncompleteRunError):
        render(run_dir)
    html = render(run_dir, allow_incomplete=True).read_text()
    assert "This run is INCOMPLETE (interrupted by SIGINT)" in html


@pytest.mark.skipif(not CHROMIUM.exists(), reason=f"{CHROMIUM} is missing: install Debian's chromium to check the "
                                                   "HTML report in a real browser")
def test_report_opens_in_headless_chromium(rendered):
    pytest.importorskip("websocket", reason="websocket-client (the test extra) drives Chromium's DevTools protocol")
    from tests.analysis_browser import check_page

    run_dir, html_path = rendered
    page = check_page(html_path)
    SCREENSHOT_DIR.mkdir(parents=True, exist_ok=True)
    for width, shot in page.screenshots.items():
        (SCREENSHOT_DIR / f"report-{width}.png").write_bytes(shot)
    shutil.copy(html_path, SCREENSHOT_DIR / "report.html")
    assert page.screenshot.startswith(b"\x89PNG") and len(page.screenshot) > 50_000
    assert len(page.images) == 5
    assert all(image["complete"] and image["naturalWidth"] > 0 for image in page.images), page.images
    assert page.console_errors == []
    assert page.title.startswith("offpath — ")
    assert "queued sustains" in page.text and "How it was measured" in page.text
    # comparison, capacity, its steps (folded), what the outcome took, per design and phase: at each width, each with
    # its last column seen
    assert [(t.width_px, t.last_column) for t in page.tables] == [
        (width, last) for width in page.screenshots
        for last in ("n (A / B)", "tested up to", "within SLO", "failed seen", "backlog")]
    assert not (unfit := page.unfit_tables()), "\n".join(unfit)
