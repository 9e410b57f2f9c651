"""The house, checked: no module imports from a layer above it, and the designs are told apart by data.

Layers, bottom up (DESIGN.md, STYLE.md):
  0  offpath.errors (the error tree), results.format (the results format) — every layer may import them
  1  services (what is measured), analysis (what it means) — neither imports the other
  2  loadtests (what runs inside Locust)
  3  offpath (the harness and the CLI)
  4  benchmarks
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
FOUNDATION = {"offpath.errors", "results.format", "results"}
LAYERS = {"services": 1, "analysis": 1, "loadtests": 2, "offpath": 3, "benchmarks": 4}
FORBIDDEN = {  # beyond the layer order: siblings that must not know each other, and third parties kept out
    "analysis": {"services", "locust", "gevent", "rq", "redis"},
    "services": {"analysis", "locust", "gevent"},
}


def layer_of(module: str) -> int | None:
    if module in FOUNDATION or module.startswith("results."):
        return 0
    return LAYERS.get(module.split(".")[0])


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path) -> set[str]:
    """Every module imported anywhere in the file, at module level or inside functions."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found |= {f"{node.module}.{alias.name}" for alias in node.names if node.module in ("results", "offpath")}
    return found


def project_files() -> list[Path]:
    return sorted(p for top in LAYERS for p in (ROOT / top).rglob("*.py"))


@pytest.mark.parametrize("path", project_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_no_module_imports_from_a_layer_above_it(path):
    module = module_name(path)
    own = layer_of(module)
    assert own is not None
    top = module.split(".")[0]
    for imported in sorted(imports_of(path)):
        other = layer_of(imported)
        if own == 0:
            assert other is None, f"{module} is the foundation: it imports nothing of the project ({imported})"
            continue
        if other is not None and other != 0:
            assert other <= own, f"{module} (layer {own}) imports {imported} (layer {other}), a layer above it"
        assert imported.split(".")[0] not in FORBIDDEN.get(top, set()), f"{module} must not import {imported}"


def test_foundation_modules_import_nothing_of_the_project():
    for name in ("offpath/errors.py", "results/format.py"):
        path = ROOT / name
        imported = {m for m in imports_of(path) if layer_of(m) is not None and m not in FOUNDATION}
        assert not imported, f"{name} imports {imported}"


DESIGN_BRANCH = re.compile(r'"POST_campaigns"|[=!]= "(?:queued|inline)"')


def test_designs_and_endpoint_keys_are_named_in_one_place():
    """A branch on a design's name, or the create endpoint's key spelled out, only in the registry and the format."""
    allowed = {ROOT / "offpath" / "designs.py", ROOT / "results" / "format.py"}
    offenders = [f"{p.relative_to(ROOT)}:{n}" for p in project_files() if p not in allowed
                 for n, line in enumerate(p.read_text().splitlines(), 1) if DESIGN_BRANCH.search(line)]
    assert not offenders, offenders
