"""Regenerate docs/compare.png: the window after a sampler comparison on the bundled model.

QT_QPA_PLATFORM=offscreen python -m tests.studio.screenshot_compare [docs/compare.png]
"""

import os
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
from PySide6.QtWidgets import QApplication

from pipelines.types import GenerationRequest
from studio.settings import StudioSettings
from studio.theme import apply_dark_theme
from studio.widgets.main_window import MainWindow
from tests.studio.screenshot import wait


def main() -> None:
    target = sys.argv[1] if len(sys.argv) > 1 else "docs/compare.png"
    work = Path(tempfile.mkdtemp(prefix="studio-compare-shot-"))
    app = QApplication.instance() or QApplication([])
    apply_dark_theme(app)
    settings = StudioSettings(work / "settings.ini")
    settings.model_folders = []
    settings.output_folder = str(work / "out")
    settings.last_request = GenerationRequest(
        prompt="a large yellow star in the center on a blue background",
        model="",  # the bundled default
        seed=7,
        steps=20,
        width=64,
        height=64,
    ).to_dict()
    window = MainWindow(settings)
    window.resize(1400, 860)
    window.show()

    wait(
        lambda: (
            window.session.loaded_model is not None
            and window.sampler_panel.compare_table.rowCount() > 0
        )
    )
    window.side_tabs.setCurrentWidget(window.sampler_panel)
    window.sampler_panel.set_compare_mode(True)
    window.sampler_panel.set_compare_entries(["Euler", "DDIM", "Heun", "DPM++ 2M Karras"])
    window.compare()
    wait(lambda: bool(window.session.comparisons))
    view = window.compare_view
    view.set_align_mode("evaluations")
    view.final_check.setChecked(True)
    wait(lambda: False, 300)
    Path(target).parent.mkdir(parents=True, exist_ok=True)
    window.grab().save(target)
    view.difference_check.setChecked(True)
    wait(lambda: False, 300)
    window.grab().save(str(Path(target).with_name("compare-difference.png")))
    window.close()
    print("wrote", target)


if __name__ == "__main__":
    main()
