"""The generation core stays importable and usable without Qt."""

from __future__ import annotations

import pkgutil
import subprocess
import sys
from pathlib import Path

import pipelines


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
