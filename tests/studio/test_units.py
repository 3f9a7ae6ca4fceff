"""Smaller pieces: CLI dispatch without Qt, image conversion, stale-preview dropping, panels."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np

from pipelines.types import StepPreview
from studio.qt_image import array_to_qimage, qimage_to_array, qimage_to_pil

ROOT = Path(__file__).resolve().parents[2]


def test_subcommands_dispatch_to_the_cli_without_importing_qt(tmp_path):
    code = (
        "import sys; from studio.app import main; rc = main(['info', sys.argv[1]]); "
        "print('qt-imported' if any(m.startswith('PySide6') for m in sys.modules) else 'no-qt', rc)"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path / "missing.png")],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.stdout.split() == ["no-qt", "2"], done.stderr
    assert "missing.png" in done.stderr  # the CLI's one-line error


def test_numpy_qimage_round_trip():
    rgb = np.random.default_rng(0).integers(0, 256, (5, 7, 3), dtype=np.uint8)  # odd stride
    image = array_to_qimage(rgb)
    del rgb  # the QImage owns its pixels
    back = qimage_to_array(image)
    assert back.shape == (5, 7, 3)
    assert (np.asarray(qimage_to_pil(image)) == back).all()


def test_worker_keeps_only_the_newest_preview(qtbot):
    from studio.worker import GenerationWorker

    worker = GenerationWorker()
    signals = []
    worker.preview_ready.connect(lambda: signals.append(1))
    for step in (1, 2, 3):
        image = np.full((8, 8, 3), step * 10, np.uint8)
        worker._on_step(StepPreview(step, 3, "Euler", image, 0.1 * step, step))

    assert len(signals) == 1  # one pending notification, not three queued frames
    frame = worker.take_preview()
    assert frame.step == 3 and qimage_to_array(frame.image)[0, 0, 0] == 30
    assert worker.take_preview() is None


def test_prompt_panel_sizes_snap_to_8_and_keep_the_aspect(qtbot):
    from studio.widgets.prompt_panel import CUSTOM, PromptPanel

    panel = PromptPanel()
    qtbot.addWidget(panel)
    panel.preset.setCurrentText("512 × 768 (portrait)")
    panel.aspect_lock.setChecked(True)
    panel.width_box.setValue(256)
    assert panel.size_value() == (256, 384)
    assert panel.preset.currentText() == CUSTOM
    panel.aspect_lock.setChecked(False)
    panel.width_box.setValue(301)
    panel.width_box.editingFinished.emit()
    assert panel.size_value() == (304, 384)


def test_token_counter_counts_chunks(qtbot):
    from transformers import CLIPTokenizer

    from pipelines.resources import resource_path
    from studio.widgets.prompt_panel import PromptPanel

    panel = PromptPanel()
    qtbot.addWidget(panel)
    panel.set_tokenizer(CLIPTokenizer.from_pretrained(resource_path("tokenizers", "clip")))
    panel.prompt.setPlainText("a cat")
    panel.update_token_counts()
    assert panel.prompt_tokens.text() == "2 / 75 · 1 chunk"
    panel.prompt.setPlainText("cat " * 119 + "finale")
    panel.update_token_counts()
    assert panel.prompt_tokens.text() == "120 / 150 · 2 chunks"
    panel.prompt.setPlainText("(a cat:1.3) <lora:detail:0.5> BREAK a dog")
    panel.update_token_counts()
    assert panel.prompt_tokens.text() == "4 / 150 · 2 chunks"


def test_main_opens_the_window_and_quits_cleanly(qtbot, tmp_path):
    from PySide6.QtCore import QCoreApplication, QEvent, QEventLoop, QTimer
    from PySide6.QtWidgets import QApplication

    from studio.app import main
    from studio.widgets.main_window import MainWindow

    app = QApplication.instance()
    QTimer.singleShot(1500, app.quit)
    try:
        assert main(["--settings", str(tmp_path / "s.ini")]) == 0
        # Closing the last window on quit must not post a second Quit: left in the queue, it
        # would end the next event loop at once.
        loop, fired = QEventLoop(), []
        QTimer.singleShot(50, lambda: (fired.append(True), loop.quit()))
        loop.exec()
        assert fired, "a Quit event survived the app's quit and ended the next event loop at once"
    finally:
        QCoreApplication.removePostedEvents(None, QEvent.Type.Quit)  # spare later tests if it did
        app.setQuitOnLastWindowClosed(True)

    (window,) = [
        w
        for w in app.topLevelWidgets()
        if isinstance(w, MainWindow) and w.settings.path == tmp_path / "s.ini"
    ]
    assert window.windowTitle() == "Diffusion Studio"
    assert not window.session.thread.isRunning()
    assert (tmp_path / "s.ini").exists()  # state saved to the injected file only
    window.deleteLater()


class CountingTokenizer:
    """The real CLIP tokenizer, counting its calls and the characters it was given."""

    def __init__(self) -> None:
        from transformers import CLIPTokenizer

        from pipelines.resources import resource_path

        self.real = CLIPTokenizer.from_pretrained(resource_path("tokenizers", "clip"))
        self.model_max_length = self.real.model_max_length
        self.calls: list[int] = []

    def __call__(self, text, **kwargs):
        self.calls.append(len(text))
        return self.real(text, **kwargs)

    def __getattr__(self, name):
        return getattr(self.real, name)


def test_typing_into_a_megabyte_prompt_tokenizes_little_and_rarely(qtbot):
    from pipelines.prompts import COUNTED_CHARS
    from studio.widgets.prompt_panel import PromptPanel

    panel = PromptPanel()
    qtbot.addWidget(panel)
    tokenizer = CountingTokenizer()
    panel.set_tokenizer(tokenizer)
    tokenizer.calls.clear()
    panel.prompt.setPlainText("a castle in fog, " * 60_000)  # about 1 MB
    panel.prompt.moveCursor(panel.prompt.textCursor().MoveOperation.End)
    qtbot.keyClicks(panel.prompt, " and a dragon")  # 13 keystrokes in quick succession
    qtbot.waitUntil(lambda: bool(tokenizer.calls))
    qtbot.wait(300)  # any timer still pending would fire here
    # One count after the typing stops, of the prompt only (the negative box did not change),
    # and of a bounded prefix, not the megabyte.
    assert tokenizer.calls == [COUNTED_CHARS]
    assert "+ / " in panel.prompt_tokens.text() and panel.prompt_tokens.text().endswith("chunks")
    assert "Generate refuses prompts over 10,000 characters" in panel.prompt_tokens.toolTip()
