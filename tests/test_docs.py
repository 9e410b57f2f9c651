"""The front page stays a front page (STYLE.md: "a short front page, a folder behind it ... every page linked from the
front"): the README is short, every page of docs/ is linked from it, and no link of the README or of docs/ points at
a file that is not there. The Quickstart's second line stays the test command, which .ci/run runs."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

pytestmark = pytest.mark.fast

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
DOCS = ROOT / "docs"
MAX_README_LINES = 160
MAX_LINE_CHARS = 125  # the project's line length (pyproject.toml, ruff)

# [text](target) and ![alt](target); the target up to a space (a title) or the closing parenthesis.
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)(?:\s[^)]*)?\)")


def local_targets(page: Path) -> list[str]:
    """The page's links to files of this repository (no URLs, no links within the page)."""
    targets = [t for t in LINK.findall(page.read_text()) if not re.match(r"^[a-z][a-z0-9+.-]*:", t)]
    return [t.split("#", 1)[0] for t in targets if not t.startswith("#")]


def doc_pages() -> list[Path]:
    return sorted(DOCS.glob("*.md"))


def test_the_readme_is_a_short_front_page():
    lines = README.read_text().splitlines()
    assert len(lines) <= MAX_README_LINES, f"README.md has {len(lines)} lines (at most {MAX_README_LINES}): move the " \
                                           "detail to a page of docs/ and link it"
    long = [n for n, line in enumerate(lines, 1) if len(line) > MAX_LINE_CHARS]
    assert not long, f"README.md lines over {MAX_LINE_CHARS} characters: {long}"


def test_every_docs_page_is_linked_from_the_readme():
    linked = {(README.parent / t).resolve() for t in local_targets(README)}
    unlinked = [p.name for p in doc_pages() if p.resolve() not in linked]
    assert doc_pages(), "docs/ holds no page"
    assert not unlinked, f"docs/ pages the README does not link: {unlinked}"


@pytest.mark.parametrize("page", [README, *doc_pages()], ids=lambda p: str(p.relative_to(ROOT)))
def test_every_link_points_at_a_file_that_exists(page):
    missing = [t for t in local_targets(page) if not (page.parent / t).exists()]
    assert not missing, f"{page.relative_to(ROOT)} links files that do not exist: {missing}"


def test_the_quickstart_second_line_is_the_test_command():
    """.ci/run takes the second line of the first ``` block after '## Quickstart' and runs it as CI's test command."""
    after = README.read_text().split("## Quickstart", 1)[1]
    block = after.split("```", 2)[1].strip("\n").splitlines()
    assert len(block) >= 2 and block[1].rstrip().endswith("just test"), f"Quickstart block: {block}"


def test_links_to_files_are_told_from_urls_and_anchors(tmp_path):
    page = tmp_path / "page.md"
    page.write_text("See [the guide](docs/guide.md#part), ![a map](docs/map.png \"map\"), [the site](https://example.org)"
                    " and [below](#below).\n")
    assert local_targets(page) == ["docs/guide.md", "docs/map.png"]
