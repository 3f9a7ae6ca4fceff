"""What a module imports, read from its source: the layer and packaging tests check the code's
shape without importing it."""

from __future__ import annotations

import ast
from pathlib import Path


def imported_names(path: Path, module: str, *, with_strings: bool = False) -> set[str]:
    """Every module named by an import anywhere in the file: top level, in functions, and under
    ``if TYPE_CHECKING`` (an annotation-only import still ties the two modules together), with
    relative imports resolved. ``with_strings`` adds every string constant, since one could name
    a module for importlib."""
    names: set[str] = set()
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text("utf-8"), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            names.add(base)
            names.update(f"{base}.{alias.name}" for alias in node.names)  # from a import module
        elif with_strings and isinstance(node, ast.Constant) and isinstance(node.value, str):
            names.add(node.value)
    return names
