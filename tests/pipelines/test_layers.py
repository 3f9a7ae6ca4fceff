"""The generation core stays importable and usable without Qt."""

from __future__ import annotations

import ast
import pkgutil
import subprocess
import sys
from pathlib import Path

import pipelines
from tests.imports import imported_names


def _core_modules() -> list[str]:
    return [f"pipelines.{m.name}" for m in pkgutil.iter_modules(pipelines.__path__)]


def test_core_modules_import_no_qt_and_no_controlnet_aux():
    modules = _core_modules()
    assert "pipelines.engine" in modules and "pipelines.cli" in modules
    code = (
        "import sys\n"
        f"for name in {modules!r}:\n"
        "    __import__(name)\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in "
        "('PySide6', 'PyQt5', 'PyQt6', 'shiboken6', 'controlnet_aux'))\n"
        "print(','.join(bad))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    assert out.stdout.strip() == "", f"the core imported: {out.stdout.strip()}"


def test_no_qt_import_statement_in_core_sources():
    root = Path(pipelines.__file__).parent
    offenders = [
        str(path)
        for path in root.rglob("*.py")
        for line in path.read_text(encoding="utf-8").splitlines()
        if line.lstrip().startswith(("import PySide6", "from PySide6", "import shiboken6"))
    ]
    assert offenders == []


# ---- the import graph of the whole project ---------------------------------------------------------

ROOT = Path(pipelines.__file__).resolve().parent.parent
PACKAGES = ("pipelines", "studio")


def _module_files() -> dict[str, Path]:
    files = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = path.relative_to(ROOT).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            files[name] = path
    return files


def _import_graph() -> dict[str, set[str]]:
    files = _module_files()
    graph = {}
    for module, path in files.items():
        targets = set()
        for name in imported_names(path, module):
            # "from studio.widgets import x" imports studio.widgets too; keep the longest known.
            while name and name not in files:
                name = name.rpartition(".")[0]
            if name and name != module:
                targets.add(name)
        graph[module] = targets
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected groups of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in graph[node]:
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                found.append(sorted(group))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_the_import_graph_finds_what_it_checks():
    graph = _import_graph()
    assert "studio.session" in graph["studio.widgets.main_window"]
    assert "studio.worker" in graph["studio.session"]
    assert "studio.app" in graph["studio.debug"]  # a function-level import counts
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_import_cycles_in_pipelines_or_studio():
    assert _cycles(_import_graph()) == []


def test_the_core_imports_nothing_from_the_studio():
    graph = _import_graph()
    assert {
        module: sorted(t for t in targets if t.startswith("studio"))
        for module, targets in graph.items()
        if module.startswith("pipelines") and any(t.startswith("studio") for t in targets)
    } == {}


def test_widgets_reach_the_worker_only_through_the_session():
    graph = _import_graph()
    widgets = {m: t for m, t in graph.items() if m.startswith("studio.widgets")}
    assert len(widgets) > 5
    assert {m: "studio.worker" for m, t in widgets.items() if "studio.worker" in t} == {}
    # Nothing outside the session touches its worker (``session.worker.some_signal.connect``).
    files = _module_files()
    reaching = sorted(
        module
        for module, path in files.items()
        if module.startswith(("studio.widgets", "studio.app"))
        for node in ast.walk(ast.parse(path.read_text("utf-8")))
        if isinstance(node, ast.Attribute) and node.attr == "worker"
    )
    assert reaching == []
