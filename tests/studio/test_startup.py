"""Start-up: the window opens before the heavy libraries load, and a Generate pressed before the
model is ready says it waits for the model."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from studio.jobs import EventKind
from tests.studio.events import wait_event

HEAVY = ("torch", "diffusers", "transformers", "controlnet_aux")

_SHOW_WINDOW = """
import sys
import studio.app
from studio.app import _parse_gui_args, create_window

imported = [m for m in {heavy!r} if m in sys.modules]
app, window = create_window(_parse_gui_args(["--settings", sys.argv[1]]))
shown = [m for m in {heavy!r} if m in sys.modules]
import pipelines.samplers
from pipelines.samplers import SAMPLERS
catalog = [m for m in {heavy!r} if m in sys.modules]
# The token counter imports this in the GUI thread while the worker imports torch: a module-level
# torch import there made the window wait for the worker's import to finish.
import pipelines.prompts
counter = [m for m in {heavy!r} if m in sys.modules]
print("visible", window.isVisible(), "after-import", imported, "shown", shown, "catalog", catalog,
      "counter", counter)
window.close()
"""


def test_the_window_shows_before_any_heavy_library_is_imported(tmp_path):
    root = Path(__file__).resolve().parents[2]
    completed = subprocess.run(
        [sys.executable, "-c", _SHOW_WINDOW.format(heavy=HEAVY), str(tmp_path / "s.ini")],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=root,
        env={**os.environ, "PYTHONPATH": str(root)},
    )
    assert completed.returncode == 0, completed.stderr
    expected = "visible True after-import [] shown [] catalog [] counter []"
    assert expected in completed.stdout, completed.stdout


def test_generate_pressed_before_the_model_is_ready_says_it_waits(
    qtbot, make_window, studio_settings
):
    window = make_window(studio_settings, wait_for_model=False)
    statuses = []
    window.session.event.connect(
        lambda event: event.kind is EventKind.LOADING and statuses.append(window.canvas.status_text)
    )
    window.prompt_panel.prompt.setPlainText("right away")
    with wait_event(qtbot, window.session, EventKind.FINISHED, timeout=60_000):
        window.generate()
    assert any(text.startswith("Waiting for the model…") for text in statuses), statuses
    assert "Done" in window.canvas.status_text
    assert window.progress.format() == "step %v / %m"
