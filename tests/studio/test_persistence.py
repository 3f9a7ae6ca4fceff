"""Settings survive a restart of the window; PNGs dropped on the window restore their settings."""

from __future__ import annotations

from PIL import Image
from PySide6.QtCore import QMimeData, QPointF, Qt, QUrl
from PySide6.QtGui import QDropEvent

from pipelines.export import write_png
from pipelines.types import GenerationRequest, MemoryOptions
from studio.settings import StudioSettings


def test_settings_and_panel_values_survive_a_restart(qtbot, make_window, studio_settings):
    first = make_window(studio_settings)
    first.prompt_panel.prompt.setPlainText("a castle in fog")
    first.prompt_panel.negative.setPlainText("people")
    first.prompt_panel.steps.setValue(7)
    first.prompt_panel.cfg.setValue(4.5)
    first.prompt_panel.seed.setText("1234")
    first.sampler_panel.set_sampler("Heun")
    first.sampler_panel.set_compare_mode(True)
    first.sampler_panel.set_compare_entries(["DDIM", ("Heun", 9), "Euler a"])
    first.resize(790, 640)  # within the offscreen screen (800 x 800)
    size = first.size()
    studio_settings.output_folder = "/somewhere/else"
    studio_settings.memory = MemoryOptions(attention_slicing=True)
    first.close()

    reopened = StudioSettings(studio_settings.path)  # a fresh reader of the same file
    second = make_window(reopened)

    assert second.prompt_panel.prompt.toPlainText() == "a castle in fog"
    assert second.prompt_panel.negative.toPlainText() == "people"
    assert second.prompt_panel.steps.value() == 7
    assert second.sampler_panel.steps.value() == 7
    assert second.prompt_panel.cfg.value() == 4.5
    assert second.prompt_panel.seed_value() == 1234
    assert second.sampler_panel.sampler() == "Heun"
    qtbot.waitUntil(lambda: second.sampler_panel.compare_table.rowCount() > 0, timeout=30_000)
    assert second.sampler_panel.compare_mode.isChecked()
    entries = second.sampler_panel.compare_entries()  # in the catalog's order
    assert sorted(entries, key=str) == sorted(["DDIM", ("Heun", 9), "Euler a"], key=str)
    assert second.size() == size
    assert reopened.output_folder == "/somewhere/else"
    assert reopened.memory.attention_slicing
    assert second.current_request().memory.attention_slicing


def drop_files(widget, paths):
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(p)) for p in paths])
    event = QDropEvent(
        QPointF(10, 10), Qt.DropAction.CopyAction, mime, Qt.MouseButton.LeftButton,
        Qt.KeyboardModifier.NoModifier,
    )  # fmt: skip
    # Offscreen Qt has no drag manager to deliver a synthetic drop, so the handler is called as
    # Qt would call it on the widget under the cursor.
    widget.dropEvent(event)
    return event


def test_dropping_a_studio_png_restores_its_settings(qtbot, window, tmp_path):
    request = GenerationRequest(
        prompt="a lighthouse at dusk", negative_prompt="blurry", seed=42, steps=6,
        cfg_scale=6.5, width=64, height=128, sampler="DPM++ 2M", model=window.prompt_panel
        .current_model(),
    )  # fmt: skip
    path = write_png(Image.new("RGB", (64, 128)), request, tmp_path / "made-here.png")

    event = drop_files(window.gallery.strip, [path])

    restored = window.current_request()
    assert restored.prompt == "a lighthouse at dusk" and restored.negative_prompt == "blurry"
    assert (restored.seed, restored.steps, restored.cfg_scale) == (42, 6, 6.5)
    assert (restored.width, restored.height, restored.sampler) == (64, 128, "DPM++ 2M")
    assert "made-here.png" in window.message_bar.text()
    assert event.isAccepted()


def test_dropping_an_automatic1111_png_on_the_canvas_restores_its_settings(qtbot, window, tmp_path):
    from PIL import PngImagePlugin

    info = PngImagePlugin.PngInfo()
    info.add_text(
        "parameters",
        "a red fox in snow\nNegative prompt: ugly\nSteps: 12, Sampler: Euler a, CFG scale: 8, "
        "Seed: 99, Size: 512x768, Model: someModel",
    )
    path = tmp_path / "a1111.png"
    Image.new("RGB", (8, 8)).save(path, pnginfo=info)

    assert not window.canvas.acceptDrops()  # so Qt hands drops on the canvas to the window
    drop_files(window, [path])

    restored = window.current_request()
    assert (restored.prompt, restored.negative_prompt) == ("a red fox in snow", "ugly")
    assert (restored.steps, restored.sampler, restored.cfg_scale) == (12, "Euler a", 8.0)
    assert (restored.seed, restored.width, restored.height) == (99, 512, 768)


def test_dropping_a_png_without_settings_says_so(qtbot, window, tmp_path):
    path = tmp_path / "plain.png"
    Image.new("RGB", (8, 8)).save(path)
    before = window.current_request()

    drop_files(window, [path])

    assert "no generation settings" in window.message_bar.text()
    assert window.current_request() == before


def test_each_test_writes_into_its_own_home_log_and_pictures_folders(tmp_path_factory):
    import os
    from pathlib import Path

    from studio.logs import log_folder

    temp_root = tmp_path_factory.getbasetemp()
    home = Path(os.environ["HOME"])
    assert home.is_relative_to(temp_root)
    assert log_folder().is_relative_to(temp_root)
    for name in ("XDG_CONFIG_HOME", "XDG_DATA_HOME", "XDG_STATE_HOME", "XDG_CACHE_HOME"):
        assert Path(os.environ[name]).is_relative_to(temp_root)
    # The default output folder (~/Pictures/Diffusion Studio) follows HOME.
    assert Path(StudioSettings().output_folder).is_relative_to(temp_root)
