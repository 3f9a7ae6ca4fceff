"""Regenerate docs/lora-picker.png: the window's prompt panel with its LoRA menu open, a weighted
prompt with BREAK and a LoRA tag, clip skip 2 and the chunk counter.

QT_QPA_PLATFORM=offscreen python -m tests.studio.screenshot_loras [docs/lora-picker.png]
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

from tests.studio.screenshot import wait


def main(target: str = "docs/lora-picker.png") -> None:
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from PIL import Image
    from PySide6.QtCore import QPoint
    from PySide6.QtWidgets import QApplication

    from pipelines.types import GenerationRequest
    from studio.settings import StudioSettings
    from studio.theme import apply_dark_theme
    from studio.widgets.main_window import MainWindow
    from tests.lora_files import save_kohya_lora
    from tests.tiny_models import build_sd1_pipeline, build_sdxl_pipeline

    work = Path(tempfile.mkdtemp(prefix="studio-lora-shot-"))
    sd1, sdxl = build_sd1_pipeline(), build_sdxl_pipeline()
    for name, pipe in (("add_detail", sd1), ("film_grain_v2", sd1), ("watercolor_style", sd1),
                       ("xl_pixel_art", sdxl)):  # fmt: skip
        save_kohya_lora(work / "models" / "Lora" / f"{name}.safetensors", pipe)
    app = QApplication.instance() or QApplication([])
    apply_dark_theme(app)
    settings = StudioSettings(work / "settings.ini")
    settings.model_folders = [str(work / "models")]
    settings.output_folder = str(work / "out")
    settings.last_request = GenerationRequest(
        prompt="a lighthouse on a cliff at dusk, (dramatic sky:1.2), ((detailed)), oil painting "
        "BREAK [blurry] foreground rocks, seagulls <lora:add_detail:0.6>",
        negative_prompt="easynegative, (worst quality:1.4)",
        seed=7, steps=20, width=64, height=64, clip_skip=2,
    ).to_dict()  # fmt: skip
    window = MainWindow(settings)
    window.resize(1400, 860)
    window.show()
    panel = window.prompt_panel
    wait(lambda: window.session.loaded_model is not None and "chunk" in panel.prompt_tokens.text())
    panel.fill_lora_menu()
    wait(lambda: False, 300)
    shot = work / "window.png"
    window.grab().save(str(shot))
    menu = panel.lora_menu
    menu.adjustSize()
    menu_shot = work / "menu.png"
    menu.grab().save(str(menu_shot))
    # Offscreen, a popup is a window of its own: draw it where it opens, below the button.
    origin = panel.lora_button.mapTo(window, QPoint(0, panel.lora_button.height()))
    ratio = window.devicePixelRatioF()
    image = Image.open(shot).convert("RGB")
    image.paste(Image.open(menu_shot).convert("RGB"), (int(origin.x() * ratio),
                                                       int(origin.y() * ratio)))  # fmt: skip
    left = max(0, int((panel.mapTo(window, QPoint(0, 0)).x() - 8) * ratio))
    width = int((panel.width() + 16) * ratio) + menu.width()
    image = image.crop((left, 0, min(image.width, left + width), image.height))
    Path(target).parent.mkdir(parents=True, exist_ok=True)
    image.save(target)
    window.close()
    print(f"wrote {target}")


if __name__ == "__main__":
    main(*sys.argv[1:])
