"""Settings survive a restart of the window; PNGs dropped on the window restore their settings."""

from __future__ import annotations

import pytest
from PIL import Image
from PySide6.QtCore import QMimeData, QPointF, Qt, QUrl
from PySide6.QtGui import QDropEvent

from pipelines.errors import StudioError
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


def _ini(tmp_path, text: str):
    path = tmp_path / "hand-written.ini"
    path.write_text(text, encoding="utf-8")
    return StudioSettings(path)


def test_hand_written_settings_of_the_wrong_kind_fall_back_per_key_with_a_note(tmp_path, caplog):
    import logging

    settings = _ini(
        tmp_path,
        "[engine]\n"
        'model_folders="\\"/models\\""\n'  # a JSON string, not a list: not scanned char by char
        "annotator_folders=/a, /b\n"  # read by Qt as a list of two plain strings, not JSON
        "device=tpu\n"
        "precision=@Variant(\\0\\0\\0\\x2\\0\\0\\0\\x5)\n"
        "allow_pickle=a, b\n"  # a list where a boolean is
        'memory="{\\"cpu_offload\\": \\"yes\\", \\"vae_tiling\\": true}"\n'
        "[output]\n"
        "pattern={index:0>4000}.png\n"
        "[session]\n"
        'last_request="{\\"prompt\\": \\"a cat\\", \\"controls\\": 5}"\n'
        "random_seed=maybe\n"
        'comparison="{\\"mode\\": 1, \\"samplers\\": [\\"Euler\\"]}"\n',
    )
    with caplog.at_level(logging.WARNING, logger="studio.settings"):
        assert settings.model_folders == []
        assert settings.annotator_folders == []
        assert settings.device == "auto"
        assert settings.precision == "auto"
        assert settings.allow_pickle is False
        assert settings.memory == MemoryOptions()
        assert settings.file_pattern == "{date}-{index:05d}-{seed}-{prompt}.png"
        assert settings.last_request is None
        assert settings.random_seed is None
        assert settings.comparison == (False, [])
        assert settings.model_folders == []  # a second read notes nothing new
    keys = ("model_folders", "annotator_folders", "device", "precision", "allow_pickle", "memory",
            "pattern", "last_request", "random_seed", "comparison")  # fmt: skip
    assert len(settings.notes) == len(keys)
    for key, note in zip(keys, settings.notes):
        assert key in note and "instead" in note
    assert "Controls must be a list" in settings.notes[7]
    assert [r.getMessage() for r in caplog.records] == settings.notes


def test_hand_written_settings_of_the_right_kind_are_read(tmp_path):
    request = GenerationRequest("a cat", seed=3)
    settings = _ini(tmp_path, "[engine]\nallow_pickle=true\ndevice=cpu\n[session]\nrandom_seed=0\n")
    settings.last_request = request.to_dict()
    settings.model_folders = ["/models", "/more"]
    settings.set_comparison(True, ["Euler", ("DDIM", 9)])
    settings.sync()
    again = StudioSettings(settings.path)
    assert again.allow_pickle is True and again.device == "cpu" and again.random_seed is False
    assert GenerationRequest.from_dict(again.last_request) == request
    assert again.model_folders == ["/models", "/more"]
    assert again.comparison == (True, ["Euler", ("DDIM", 9)])
    assert again.notes == []


def test_a_window_opens_on_a_settings_file_full_of_wrong_kinds(qtbot, make_window, tmp_path):
    settings = _ini(
        tmp_path,
        "[engine]\nmodel_folders=5\nmemory=[1]\n[session]\n"
        'last_request="{\\"prompt\\": 1, \\"steps\\": \\"abc\\"}"\nrandom_seed=a, b\n'
        'comparison="[1, 2]"\n[output]\nfolder=a, b\npattern=x\\0y\n',
    )
    window = make_window(settings, wait_for_model=False)
    assert window.isVisible()
    assert window.prompt_panel.prompt.toPlainText() == ""
    assert settings.output_folder.endswith("Diffusion Studio")


def test_the_settings_dialog_refuses_a_pattern_that_cannot_give_a_name(qtbot, tmp_path):
    from studio.widgets.settings_dialog import SettingsDialog

    settings = StudioSettings(tmp_path / "s.ini")
    dialog = SettingsDialog(settings)
    qtbot.addWidget(dialog)
    for pattern, message in (("{index:0>4000}.png", "wider"), ("a\0b", "control character")):
        dialog.file_pattern.setText(pattern)
        assert message in dialog.pattern_problem.text()
        dialog.accept()  # refused: stays open, nothing stored
        assert dialog.result() != dialog.DialogCode.Accepted
        assert settings.file_pattern == "{date}-{index:05d}-{seed}-{prompt}.png"
    dialog.file_pattern.setText("{index}-{seed}.png")
    assert dialog.pattern_problem.isHidden()
    dialog.accept()
    assert StudioSettings(settings.path).file_pattern == "{index}-{seed}.png"
    with pytest.raises(StudioError):
        settings.file_pattern = "{index:0>4000}"


def test_stale_temp_files_are_swept_from_the_output_and_data_folders(tmp_path):
    import os

    settings = StudioSettings(tmp_path / "s.ini")
    settings.output_folder = str(tmp_path / "out")
    folders = [tmp_path / "out", settings.data_folder / "condition-maps"]
    left = []
    for folder in folders:
        folder.mkdir(parents=True)
        path = folder / ".diffusion-studio-0123abcd-image.tmp"
        path.write_bytes(b"half a png")
        os.utime(path, (1, 1))
        left.append(path)
    keep = tmp_path / "out" / "image.png"
    keep.write_bytes(b"png")
    os.utime(keep, (1, 1))
    assert sorted(settings.sweep_stale_temp_files()) == sorted(left)
    assert keep.exists() and not any(p.exists() for p in left)


def test_an_output_folder_name_with_a_nul_is_refused_when_set(qtbot, tmp_path):
    from studio.widgets.settings_dialog import SettingsDialog

    settings = StudioSettings(tmp_path / "s.ini")
    with pytest.raises(StudioError, match="NUL"):
        settings.output_folder = "/tmp/a\0b"
    dialog = SettingsDialog(settings)
    qtbot.addWidget(dialog)
    dialog.output_folder.setText("/tmp/a\0b")
    assert "NUL" in dialog.pattern_problem.text()
    dialog.accept()
    assert dialog.result() != dialog.DialogCode.Accepted


def test_the_command_line_keeps_its_maps_in_the_windows_data_folder(qapp):
    import sys

    from PySide6.QtCore import QCoreApplication

    from pipelines.export import default_data_folder
    from studio.settings import APPLICATION, ORGANISATION

    if not sys.platform.startswith("linux"):
        pytest.skip("the Qt-free path is checked against Qt where the tests run")
    names = QCoreApplication.organizationName(), QCoreApplication.applicationName()
    QCoreApplication.setOrganizationName(ORGANISATION)
    QCoreApplication.setApplicationName(APPLICATION)
    try:
        assert StudioSettings().data_folder == default_data_folder()
    finally:
        QCoreApplication.setOrganizationName(names[0])
        QCoreApplication.setApplicationName(names[1])


def test_the_batch_count_survives_a_restart_and_a_bad_one_falls_back_to_one(
    qtbot, make_window, studio_settings, tmp_path
):
    first = make_window(studio_settings)
    first.prompt_panel.batch_count.setValue(5)
    first.close()
    assert make_window(StudioSettings(studio_settings.path)).prompt_panel.batch_count.value() == 5

    for text in ("0", "101", "many", "true"):
        (tmp_path / text).mkdir()
        settings = _ini(tmp_path / text, f"[session]\nbatch_count={text}\n")
        assert settings.batch_count == 1
        assert len(settings.notes) == 1 and "batch_count" in settings.notes[0]
