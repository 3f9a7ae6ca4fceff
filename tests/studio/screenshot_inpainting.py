"""Regenerate docs/inpainting.png: the real window inpainting a result of the bundled model.

QT_QPA_PLATFORM=offscreen python -m tests.studio.screenshot_inpainting [docs/inpainting.png]
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

from tests.studio.screenshot import wait


def main(target: str = "docs/inpainting.png") -> None:
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from PySide6.QtCore import QPointF
    from PySide6.QtWidgets import QApplication

    from pipelines.toyworld.world import make_sample
    from pipelines.types import GenerationRequest
    from studio.settings import StudioSettings
    from studio.theme import apply_dark_theme
    from studio.widgets.main_window import MainWindow
    from studio.widgets.paint_tools import paint_segment

    work = Path(tempfile.mkdtemp(prefix="studio-shot-"))
    app = QApplication.instance() or QApplication([])
    apply_dark_theme(app)
    settings = StudioSettings(work / "settings.ini")
    settings.model_folders = [str(work / "models")]
    settings.output_folder = str(work / "out")
    first = make_sample(3).caption  # a small orange ring at the top on a blue background
    second = "a small orange ring at the top and a small red circle at the bottom right on a blue background"
    settings.last_request = GenerationRequest(
        prompt=first, model="", seed=7, steps=20, width=64, height=64
    ).to_dict()
    window = MainWindow(settings)
    window.resize(1400, 860)
    window.show()
    wait(lambda: window.session.loaded_model is not None)

    window.generate()
    wait(lambda: len(window.session.history) == 1)
    window.use_shown_as_input()
    # A stroke across the middle, as a person would paint it with a soft brush.
    layer = window.mask_layer
    document = layer.document
    document.begin_edit()
    area = paint_segment(document.image, QPointF(40, 44), QPointF(48, 50), 26, 0.7, 255)
    document.commit_edit("Brush", area)
    panel = window.rework_panel
    panel.strength.setValue(100)
    window.prompt_panel.prompt.setPlainText(second)
    window.generate()
    wait(lambda: len(window.session.history) == 2)
    window.show_mask_layer()
    layer.view.fit()
    wait(lambda: False, 300)  # let the final paint happen
    Path(target).parent.mkdir(parents=True, exist_ok=True)
    window.grab().save(target)
    window.close()
    print(f"wrote {target}")


if __name__ == "__main__":
    main(*sys.argv[1:])
