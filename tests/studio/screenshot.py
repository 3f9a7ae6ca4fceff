"""Regenerate docs/screenshot.png: the real window after a generation with tiny models.

QT_QPA_PLATFORM=offscreen python -m tests.studio.screenshot [docs/screenshot.png]
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

from PIL import Image, ImageDraw

SHOT_SEED = 10_100_000  # a held-out house (pipelines.toyworld.evaluate's first)
SHOT_PROMPT = "a large yellow square in the center on a blue background"


def wait(predicate, timeout_ms: int = 120_000) -> None:
    """Run the event loop until ``predicate()`` holds or the time is up."""
    from PySide6.QtCore import QEventLoop, QTimer

    loop, timer = QEventLoop(), QTimer()
    timer.timeout.connect(lambda: predicate() and loop.quit())
    timer.start(50)
    QTimer.singleShot(timeout_ms, loop.quit)
    loop.exec()
    timer.stop()


def main(target: str = "docs/screenshot.png") -> None:
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from PySide6.QtWidgets import QApplication

    from pipelines.engine import default_model_path
    from pipelines.types import ControlKind, ControlUnit, GenerationRequest
    from studio.settings import StudioSettings
    from studio.theme import apply_dark_theme
    from studio.widgets.main_window import MainWindow
    from tests.tiny_models import save_controlnet, save_sd1

    work = Path(tempfile.mkdtemp(prefix="studio-shot-"))
    condition = work / "photo.png"
    if default_model_path().exists():
        # The bundled model with its canny ControlNet on an outline painted with a 3 px brush,
        # a house the toy world never draws, under a prompt that names another shape.
        from pipelines.toyworld.outlines import make_outline_sample

        make_outline_sample(SHOT_SEED, "house", "brush").canny.save(condition)
        model = ""
        controlnet = default_model_path().with_name("toy-world-controlnet-canny")
        prompt, kind, preprocess = SHOT_PROMPT, ControlKind.CANNY, False
    else:
        model = str(save_sd1(work / "models" / "tiny-sd1"))
        controlnet = save_controlnet(work / "models" / "tiny-controlnet-canny", "sd1")
        image = Image.new("RGB", (64, 64), "white")
        ImageDraw.Draw(image).ellipse((10, 10, 54, 54), outline="black", width=4)
        image.save(condition)
        prompt, kind, preprocess = "a lighthouse on a cliff at dusk", ControlKind.CANNY, True

    app = QApplication.instance() or QApplication([])
    apply_dark_theme(app)
    settings = StudioSettings(work / "settings.ini")
    settings.model_folders = [str(work / "models")]
    settings.output_folder = str(work / "out")
    unit = ControlUnit(kind, str(controlnet), str(condition), preprocess=preprocess)
    settings.last_request = GenerationRequest(
        prompt=prompt, model=model, seed=7, steps=20, width=64, height=64, controls=(unit,),
    ).to_dict()  # fmt: skip
    window = MainWindow(settings)
    window.resize(1400, 860)
    window.show()

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
