"""The house, checked: no module imports from a layer above it, no two modules import each other even by a detour, and
the designs are told apart by data.

Layers, bottom up (DESIGN.md, STYLE.md):
  0  foundation (the error tree, the results format) — every layer may import it; it imports nothing of the project
  1  services (what is measured), analysis (what it means) — neither imports the other, nor anything above
  2  loadtests (what runs inside Locust)
  3  offpath (the harness and the CLI)
  4  benchmarks
Inside analysis, the statistics core (analysis.stats) imports neither the reports nor the gate.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

pytestmark = pytest.mark.fast

ROOT = Path(__file__).resolve().parent.parent
LAYERS = {"foundation": 0, "services": 1, "analysis": 1, "loadtests": 2, "offpath": 3, "benchmarks": 4}
FORBIDDEN = {  # beyond the layer order: siblings that must not know each other, and third parties kept out
    "analysis": {"services", "locust", "gevent", "rq", "redis", "celery", "dramatiq"},
    "analysis.stats": {"analysis.reports", "analysis.gate"},
    "services": {"analysis", "locust", "gevent"},
}


def layer_of(module: str) -> int | None:
    return LAYERS.get(module.split(".")[0])


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path) -> set[str]:
    """Every module imported anywhere in the file, at module level, inside functions or under TYPE_CHECKING; for
    `from package import name`, the submodule `package.name` where there is one."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found |= {f"{node.module}.{alias.name}" for alias in node.names
                      if (ROOT / node.module.replace(".", "/") / f"{alias.name}.py").is_file()}
    return found


def project_files() -> list[Path]:
    return sorted(p for top in LAYERS for p in (ROOT / top).rglob("*.py"))


def project_modules() -> dict[str, set[str]]:
    """Each project module and the project modules it imports."""
    files = {module_name(p): p for p in project_files()}
    return {name: {m for m in imports_of(path) if m in files and m != name} for name, path in files.items()}


@pytest.mark.parametrize("path", project_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_no_module_imports_from_a_layer_above_it(path):
    module = module_name(path)
    own = layer_of(module)
    assert own is not None
    for imported in sorted(imports_of(path)):
        other = layer_of(imported)
        if own == 0:
            assert other is None or other == 0, f"{module} is the foundation: it imports nothing of the project ({imported})"
            continue
        if other is not None:
            assert other <= own, f"{module} (layer {own}) imports {imported} (layer {other}), a layer above it"
        for scope, kept_out in FORBIDDEN.items():
            if module == scope or module.startswith(scope + "."):
                assert not any(imported == k or imported.startswith(k + ".") for k in kept_out), \
                    f"{module} must not import {imported}"


def test_the_services_depend_on_nothing_of_the_harness():
    offenders = [f"{module_name(p)} imports {m}" for p in project_files() if module_name(p).startswith("services")
                 for m in imports_of(p) if m.split(".")[0] in ("offpath", "loadtests", "analysis", "benchmarks")]
    assert not offenders, offenders


def strongly_connected(graph: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's algorithm: the groups of modules that reach each other through their imports."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph[node]):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.append(member)
                if member == node:
                    break
            groups.append(sorted(group))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return groups


def test_no_import_circle():
    """No module reaches itself through imports, function-level and TYPE_CHECKING imports included: a circle held
    together by an import inside a function is still a circle."""
    graph = project_modules()
    # A package's __init__ is imported by each of its modules' imports; it only counts where it imports them back.
    circles = [group for group in strongly_connected(graph) if len(group) > 1]
    assert not circles, circles


def test_the_circle_check_finds_a_circle():
    assert strongly_connected({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"], ["d"]]


DESIGN_BRANCH = re.compile(r'[=!]= "(?:queued|inline)"')


def test_no_branch_on_a_designs_name():
    """The harness asks a design's declaration (offpath/designs.py), never its name."""
    allowed: set[Path] = set()
    offenders = [f"{p.relative_to(ROOT)}:{n}" for p in project_files() if p not in allowed
                 for n, line in enumerate(p.read_text().splitlines(), 1) if DESIGN_BRANCH.search(line)]
    assert not offenders, offenders
