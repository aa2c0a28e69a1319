"""The package layout: every import points down the layers, no import cycle, no oversized file, and no
comment or docstring citing a document outside the repository.

Layers, lowest first (a module may import from its own layer or a lower one):
shared leaves (spec, io, checkpoint, metrics, plots, errors) < data, models < training < experiments, extract,
inference, report < serve < cli < __main__.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src" / "emodistill"
LAYER = {
    "spec": 0, "io": 0, "checkpoint": 0, "metrics": 0, "plots": 0, "errors": 0,
    "data": 1, "models": 1,
    "training": 2,
    "experiments": 3, "extract": 3, "inference": 3, "report": 3,
    "serve": 4,
    "cli": 5, "__main__": 6,
}
MAX_LINES = 450


def _modules() -> dict[str, Path]:
    mods = {}
    for path in SRC.rglob("*.py"):
        parts = path.relative_to(SRC.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        mods[name] = path
    return mods


MODULES = _modules()


def _imports(name: str, path: Path) -> set[str]:
    """Modules of the package that ``name`` imports anywhere in its body (functions included)."""
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative import
                pkg = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
                pkg = pkg[: len(pkg) - node.level + 1]
                base = ".".join(pkg + ([base] if base else []))
            targets = [base] + [f"{base}.{a.name}" for a in node.names]
        for t in targets:
            if t in MODULES and t != name and t != "emodistill" and not name.startswith(t + "."):
                out.add(t)
    return out


GRAPH = {name: _imports(name, path) for name, path in MODULES.items()}


def _layer(name: str) -> int:
    top = name.split(".")[1] if "." in name else None
    if top not in LAYER:
        raise AssertionError(f"{name}: top-level module {top!r} has no layer; add it to LAYER in {__file__}")
    return LAYER[top]


def test_every_source_folder_is_a_regular_package():
    """A folder without ``__init__.py`` works in an editable install but is left out of wheels."""
    folders = {p.parent for p in SRC.rglob("*.py")}
    missing = sorted(str(f.relative_to(SRC)) for f in folders if not (f / "__init__.py").is_file())
    assert not missing, f"folders without __init__.py: {missing}"


def test_every_module_has_a_layer():
    for name in MODULES:
        if name != "emodistill":
            _layer(name)


def test_imports_only_point_down():
    upward = [f"{m} -> {t}" for m, ts in GRAPH.items() if m != "emodistill" for t in ts if _layer(t) > _layer(m)]
    assert not upward, "upward imports:\n" + "\n".join(sorted(upward))


def test_models_and_data_import_nothing_above_them():
    above = {"training", "experiments", "extract", "inference", "report", "serve", "cli"}
    bad = [f"{m} -> {t}" for m, ts in GRAPH.items() if m.split(".")[1:2] in (["models"], ["data"])
           for t in ts if t.split(".")[1] in above]
    assert not bad, bad


def test_no_import_cycle():
    state: dict[str, int] = {}  # 1 on the current path, 2 done
    cycles: list[list[str]] = []

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(GRAPH[node]):
            if state.get(nxt) == 1:
                cycles.append(path[path.index(nxt):] + [nxt])
            elif nxt not in state:
                visit(nxt, [*path, nxt])
        state[node] = 2

    for name in sorted(GRAPH):
        if name not in state:
            visit(name, [name])
    assert not cycles, "import cycles: " + "; ".join(" -> ".join(c) for c in cycles)


def test_the_checker_sees_a_cycle_and_an_upward_import():
    """The graph above is built from the real import statements: a module known to import another is seen."""
    assert "emodistill.training.fit" in GRAPH["emodistill.experiments.tune"]
    assert "emodistill.models.registry" in GRAPH["emodistill.training.fit"] or any(
        t.startswith("emodistill.models") for t in GRAPH["emodistill.training.fit"])


@pytest.mark.parametrize("path", sorted(SRC.rglob("*.py")), ids=lambda p: str(p.relative_to(SRC)))
def test_source_file_is_short_and_cites_only_the_repository(path):
    text = path.read_text()
    assert text.count("\n") <= MAX_LINES, f"{path.name}: {text.count(chr(10))} lines > {MAX_LINES}"
    # absolute paths of a development machine, and the notes folder that lives beside the repository
    outside = re.compile(r"(?<![\w.:])/(home|tmp|root|mnt|srv|work)/|(?<![\w/])(shared/)?reference/|\.\./shared")
    for n, line in enumerate(text.splitlines(), 1):
        assert not outside.search(line), f"{path.name}:{n} names a path outside the repository: {line.strip()}"


CITATION = re.compile(r"docs/([\w-]+\.md)`*\s*§\s*(\d+(?:\.\d+)*)")


def test_cited_document_sections_exist():
    """Every ``docs/X.md §N`` cited in the sources and tests is a heading of that document."""
    cited: set[tuple[str, str]] = set()
    for path in [*SRC.rglob("*.py"), *(ROOT / "tests").glob("*.py"), *(ROOT / "benchmarks").glob("*.py")]:
        cited |= set(CITATION.findall(path.read_text()))
    assert cited, "no citation of docs/ found: the pattern or the sources changed"
    missing = []
    for doc, section in sorted(cited):
        text = (ROOT / "docs" / doc).read_text() if (ROOT / "docs" / doc).is_file() else ""
        if not re.search(rf"^#+\s*§?{re.escape(section)}[\s.)]", text, re.M):
            missing.append(f"docs/{doc} §{section}")
    assert not missing, f"cited but not a heading: {missing}"
