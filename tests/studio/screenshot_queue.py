"""Regenerate docs/queue.png: the window with a generation paused and branched at step 40, and
three jobs waiting in the queue tab (one of them a batch of 4).

QT_QPA_PLATFORM=offscreen python -m tests.studio.screenshot_queue [docs/queue.png]
"""

from __future__ import annotations

import os
import sys
import tempfile
from dataclasses import replace
from pathlib import Path

from tests.studio.screenshot import wait


def main(target: str = "docs/queue.png") -> None:
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from PySide6.QtWidgets import QApplication

    from pipelines.types import GenerationRequest
    from studio.jobs import EventKind
    from studio.settings import StudioSettings
    from studio.theme import apply_dark_theme
    from studio.widgets.main_window import MainWindow

    work = Path(tempfile.mkdtemp(prefix="studio-queue-shot-"))
    app = QApplication.instance() or QApplication([])
    apply_dark_theme(app)
    settings = StudioSettings(work / "settings.ini")
    settings.output_folder = str(work / "out")
    settings.last_request = GenerationRequest(
        prompt="a small red circle at the top left on a blue background", seed=7, steps=200,
    ).to_dict()  # fmt: skip
    window = MainWindow(settings)
    window.resize(1400, 860)
    window.show()
    wait(lambda: window.session.loaded_model is not None)
    previews = []
    window.session.event.connect(lambda e: e.kind is EventKind.PREVIEW and previews.append(e))
    window.generate()
    wait(lambda: len(previews) >= 40)
    window.session.pause()
    wait(lambda: window.session.held_at is not None)
    window.prompt_panel.prompt.setPlainText(
        "a small blue circle at the top left on a red background"
    )
    window.branch()
    for prompt, sampler, seed, batch in (
        ("a large green square in the middle on a white background", "DDIM", 21, 4),
        ("a small yellow triangle at the bottom right", "Euler a", 5, 1),
        ("a person standing with arms up", "DPM++ 2M Karras", 99, 1),
    ):
        request = replace(window.current_request(), prompt=prompt, sampler=sampler, seed=seed,
                          steps=25, batch_size=batch)  # fmt: skip
        window.session.generate(request)
    window.show_queue()
    window.queue_panel.select_job(window.session.waiting[1].id)
    wait(lambda: False, 500)
    Path(target).parent.mkdir(parents=True, exist_ok=True)
    window.grab().save(target)
    window.session.clear_queue()
    window.session.resume()
    window.close()
    print(f"wrote {target}")


if __name__ == "__main__":
    main(*sys.argv[1:])
