"""Regenerate docs/flux-window.png: the window with a (tiny) Flux.1-dev model loaded, its sampler
list cut to the flow samplers and the CFG field named Guidance, after one generation.

QT_QPA_PLATFORM=offscreen python -m tests.studio.screenshot_flux [docs/flux-window.png]
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

from tests.studio.screenshot import wait


def main(target: str = "docs/flux-window.png") -> None:
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from PySide6.QtWidgets import QApplication

    from pipelines.types import GenerationRequest
    from studio.settings import StudioSettings
    from studio.theme import apply_dark_theme
    from studio.widgets.main_window import MainWindow
    from tests.flow_models import build_flux_pipeline, save_pipeline, train_t5_tokenizer

    work = Path(tempfile.mkdtemp(prefix="studio-flux-shot-"))
    tokenizer = train_t5_tokenizer(work / "t5")
    model = save_pipeline(build_flux_pipeline(tokenizer), work / "models" / "flux1-dev-tiny")
    app = QApplication.instance() or QApplication([])
    apply_dark_theme(app)
    settings = StudioSettings(work / "settings.ini")
    settings.model_folders = [str(work / "models")]
    settings.output_folder = str(work / "out")
    settings.last_request = GenerationRequest(
        prompt="a lighthouse on a cliff at dusk", model=str(model), seed=7, steps=8,
        cfg_scale=3.5, width=128, height=128, sampler="DPM++ 2M",
    ).to_dict()  # fmt: skip
    window = MainWindow(settings)
    window.resize(1400, 860)
    window.show()
    wait(lambda: window.session.loaded_model is not None)
    window.generate()
    wait(lambda: len(window.session.history) == 1)
    tabs = window.sampler_panel.parentWidget().parentWidget()  # the QTabWidget around its stack
    tabs.setCurrentWidget(window.sampler_panel)
    wait(lambda: False, 300)
    Path(target).parent.mkdir(parents=True, exist_ok=True)
    window.grab().save(target)
    window.close()
    print(f"wrote {target}")


if __name__ == "__main__":
    main(*sys.argv[1:])
