"""Regenerate docs/screenshot.png: the real window after a generation with tiny models.

QT_QPA_PLATFORM=offscreen python -m tests.studio.screenshot [docs/screenshot.png]
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

from PIL import Image, ImageDraw


def main(target: str = "docs/screenshot.png") -> None:
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from PySide6.QtCore import QEventLoop, QTimer
    from PySide6.QtWidgets import QApplication

    from pipelines.types import ControlKind, ControlUnit, GenerationRequest
    from studio.settings import StudioSettings
    from studio.theme import apply_dark_theme
    from studio.widgets.main_window import MainWindow
    from tests.tiny_models import save_controlnet, save_sd1

    work = Path(tempfile.mkdtemp(prefix="studio-shot-"))
    model = save_sd1(work / "models" / "tiny-sd1")
    controlnet = save_controlnet(work / "models" / "tiny-controlnet-canny", "sd1")
    condition = work / "photo.png"
    image = Image.new("RGB", (64, 64), "white")
    ImageDraw.Draw(image).ellipse((10, 10, 54, 54), outline="black", width=4)
    image.save(condition)

    app = QApplication.instance() or QApplication([])
    apply_dark_theme(app)
    settings = StudioSettings(work / "settings.ini")
    settings.model_folders = [str(work / "models")]
    settings.output_folder = str(work / "out")
    unit = ControlUnit(ControlKind.CANNY, str(controlnet), str(condition), preprocess=True)
    settings.last_request = GenerationRequest(
        prompt="a lighthouse on a cliff at dusk, oil painting", negative_prompt="blurry",
        model=str(model), seed=7, steps=12, width=64, height=64, controls=(unit,),
    ).to_dict()  # fmt: skip
    window = MainWindow(settings)
    window.resize(1400, 860)
    window.show()

    def wait(predicate, timeout_ms=120_000):
        loop, timer = QEventLoop(), QTimer()
        timer.timeout.connect(lambda: predicate() and loop.quit())
        timer.start(50)
        QTimer.singleShot(timeout_ms, loop.quit)
        loop.exec()
        timer.stop()

    wait(lambda: window.session.loaded_model is not None)
    window.generate()
    wait(lambda: bool(window.session.history))
    wait(lambda: False, 300)  # let the final paint happen
    Path(target).parent.mkdir(parents=True, exist_ok=True)
    window.grab().save(target)
    window.close()
    print(f"wrote {target}")


if __name__ == "__main__":
    main(*sys.argv[1:])
