"""App details: the About dialog, "Open with" a PNG, the log file and the debug console."""

from __future__ import annotations

import io
import logging
import sys
import threading
import time
from pathlib import Path

import pytest
from PIL import Image

from pipelines.types import GenerationRequest
from studio import about, debug, identity, log_setup, logs


def test_about_dialog_shows_version_licences_and_model_card(qtbot, tmp_path, monkeypatch):
    card = tmp_path / "README.md"
    card.write_text("# Toy World\n\nA small model trained for the studio's tests.\n", "utf-8")
    monkeypatch.setattr(about, "model_card_path", lambda: card)
    dialog = about.about_dialog(None, log_file=tmp_path / "logs" / "diffusion-studio.log")
    qtbot.addWidget(dialog)
    from PySide6.QtWidgets import QLabel, QTextBrowser

    heading = dialog.findChild(QLabel, "about_heading")
    assert f"Version {identity.app_version()}" in heading.text()

    licences = dialog.findChild(QTextBrowser, "about_licences").toPlainText()
    for name in ("torch", "diffusers", "transformers", "PySide6", "Apache"):
        assert name in licences
    assert "LGPL" in licences  # Qt for Python
    details = dialog.findChild(QTextBrowser, "about_details").toPlainText()
    assert identity.APP_ID in details and "diffusion-studio.log" in details
    model_card = dialog.findChild(QTextBrowser, "about_model_card").toPlainText()
    assert "Toy World" in model_card and "trained for the studio" in model_card


def test_about_dialog_says_when_no_model_is_bundled(qtbot, monkeypatch):
    from PySide6.QtWidgets import QTextBrowser

    monkeypatch.setattr(about, "model_card_path", lambda: None)
    dialog = about.about_dialog()
    qtbot.addWidget(dialog)
    text = dialog.findChild(QTextBrowser, "about_model_card").toPlainText()
    assert "bundled model is not installed" in text


def test_dependency_licences_come_from_package_metadata():
    found = {d.name.lower(): d for d in identity.dependency_licences()}
    assert {"torch", "diffusers", "pyside6-essentials", "pillow"} <= set(found)
    assert found["diffusers"].licence.startswith("Apache")
    assert "LGPL" in found["pyside6-essentials"].licence


def test_help_menu_opens_about(make_window, studio_settings, qtbot):
    from PySide6.QtWidgets import QDialog

    window = make_window(studio_settings, wait_for_model=False)
    menus = [a.text() for a in window.menuBar().actions()]
    assert menus[-1] == "&Help"
    window.about_action.trigger()
    dialog = window.findChild(QDialog, "about_dialog")
    assert dialog is not None and dialog.isVisible()
    assert dialog.windowTitle() == "About Diffusion Studio"
    dialog.close()


def test_open_with_png_restores_its_settings(qtbot, tmp_path, studio_settings, sd1_folder):
    from pipelines.export import write_png
    from studio.app import _parse_gui_args, create_window

    request = GenerationRequest(
        prompt="a lighthouse at dusk", negative_prompt="blurry", model=str(sd1_folder),
        steps=7, cfg_scale=4.5, seed=1234, width=64, height=64, sampler="Euler a",
    )  # fmt: skip
    png = write_png(Image.new("RGB", (64, 64), "navy"), request, tmp_path / "lighthouse.png")
    args = _parse_gui_args(
        ["-platform", "offscreen", str(png), "--settings", str(studio_settings.path)]
    )
    _app, window = create_window(args)
    try:
        restored = window.current_request()
        assert restored.prompt == "a lighthouse at dusk"
        assert restored.negative_prompt == "blurry"
        assert (restored.steps, restored.cfg_scale, restored.seed) == (7, 4.5, 1234)
        assert restored.sampler == "Euler a"
        assert "lighthouse.png" in window.message_bar.text()
    finally:
        window.close()
        window.deleteLater()
    assert not window.session.thread.isRunning()


def test_start_up_sweeps_stale_temp_files_and_says_which_settings_were_reset(qtbot, tmp_path):
    import os

    from studio.app import _parse_gui_args, create_window

    out = tmp_path / "out"
    stale = out / ".diffusion-studio-0123abcd-image.tmp"
    stale.parent.mkdir(parents=True)
    stale.write_bytes(b"half a png")
    os.utime(stale, (1, 1))
    settings_path = tmp_path / "s.ini"
    settings_path.write_text(f"[output]\nfolder={out}\n[engine]\ndevice=tpu\n")
    args = _parse_gui_args(["--settings", str(settings_path)])
    _app, window = create_window(args)
    try:
        assert not stale.exists()
        assert window.settings.output_folder == str(out)
        assert "could not be read and were reset" in window.message_bar.text()
        assert "device" in window.message_bar.text()
    finally:
        window.close()
        window.deleteLater()
    assert not window.session.thread.isRunning()


@pytest.fixture
def clean_logging(monkeypatch):
    """setup_logging changes process-wide state: give it back after the test."""
    root = logging.getLogger()
    level = root.level
    monkeypatch.setattr(sys, "excepthook", sys.excepthook)
    monkeypatch.setattr(threading, "excepthook", threading.excepthook)
    yield
    for handler in log_setup._installed:
        root.removeHandler(handler)
        handler.close()
    log_setup._installed.clear()
    log_setup._current.clear()
    root.setLevel(level)


def test_log_file_gets_messages_and_uncaught_exceptions(tmp_path, clean_logging):
    path = log_setup.setup_logging(folder=tmp_path, console=False)
    assert path == tmp_path / log_setup.LOG_FILE_NAME == log_setup.current_log_file()
    logging.getLogger("studio.test").info("hello from the test")
    logging.getLogger("studio.test").debug("not at INFO")
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        sys.excepthook(*sys.exc_info())
    text = path.read_text("utf-8")
    assert "hello from the test" in text
    assert "not at INFO" not in text
    assert "uncaught exception" in text and "RuntimeError: boom" in text

    log_setup.setup_logging(debug=True, folder=tmp_path, console=False)
    logging.getLogger("studio.test").debug("now at DEBUG")
    assert "now at DEBUG" in path.read_text("utf-8")


def test_log_folder_is_a_standard_location_shared_with_the_command_line(monkeypatch):
    from PySide6.QtCore import QCoreApplication, QStandardPaths

    from pipelines import cli
    from studio.settings import APPLICATION, ORGANISATION

    monkeypatch.delenv("DIFFUSION_STUDIO_LOG_DIR", raising=False)
    names = QCoreApplication.organizationName(), QCoreApplication.applicationName()
    QCoreApplication.setOrganizationName(ORGANISATION)
    QCoreApplication.setApplicationName(APPLICATION)
    try:
        state = QStandardPaths.writableLocation(QStandardPaths.StandardLocation.StateLocation)
    finally:
        QCoreApplication.setOrganizationName(names[0])
        QCoreApplication.setApplicationName(names[1])
    assert log_setup.log_folder() == Path(state) / "logs" == cli.log_folder()
    monkeypatch.setenv("DIFFUSION_STUDIO_LOG_DIR", "/somewhere/else")
    assert log_setup.log_file() == Path("/somewhere/else") / log_setup.LOG_FILE_NAME


@pytest.mark.parametrize(
    ("platform", "data", "logs"),
    [
        ("win32", "roaming/Diffusion Studio/Diffusion Studio",
         "local/Diffusion Studio/Diffusion Studio/logs"),
        ("darwin", "home/Library/Application Support/Diffusion Studio/Diffusion Studio",
         "home/Library/Preferences/Diffusion Studio/Diffusion Studio/logs"),
        ("linux", "xdg-data/Diffusion Studio/Diffusion Studio",
         "xdg-state/Diffusion Studio/Diffusion Studio/logs"),
    ],
)  # fmt: skip
def test_the_data_and_log_folders_follow_each_platforms_rules(
    monkeypatch, tmp_path, platform, data, logs
):
    from pipelines.export import default_data_folder, default_log_folder

    monkeypatch.setattr(sys, "platform", platform)
    monkeypatch.setattr(Path, "home", classmethod(lambda cls: tmp_path / "home"))
    monkeypatch.delenv("DIFFUSION_STUDIO_LOG_DIR", raising=False)
    for variable, folder in (("APPDATA", "roaming"), ("LOCALAPPDATA", "local"),
                             ("XDG_DATA_HOME", "xdg-data"), ("XDG_STATE_HOME", "xdg-state")):  # fmt: skip
        monkeypatch.setenv(variable, str(tmp_path / folder))
    assert default_data_folder() == tmp_path / data
    assert default_log_folder() == tmp_path / logs


def test_follow_shows_the_log_live_across_rotation(tmp_path):
    path = tmp_path / "studio.log"
    path.write_text("old 1\nold 2\n", "utf-8")
    out, stop = io.StringIO(), threading.Event()
    follower = threading.Thread(target=debug.follow, args=(path, 1, 0.02, stop, out))
    follower.start()
    try:

        def wait_for(text: str) -> None:
            deadline = time.monotonic() + 5
            while text not in out.getvalue():
                assert time.monotonic() < deadline, out.getvalue()
                time.sleep(0.02)

        wait_for("old 2")
        with path.open("a", encoding="utf-8") as handle:
            handle.write("new line\n")
        wait_for("new line")
        path.rename(tmp_path / "studio.log.1")  # what RotatingFileHandler does
        path.write_text("after rotation\n", "utf-8")
        wait_for("after rotation")
    finally:
        stop.set()
        follower.join(5)
    assert "old 1" not in out.getvalue()  # only the last line of the history was asked for


def test_debug_console_prints_the_log_path(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("DIFFUSION_STUDIO_LOG_DIR", str(tmp_path))
    assert logs.debug_main(["--where"]) == 0
    assert capsys.readouterr().out.strip() == str(tmp_path / log_setup.LOG_FILE_NAME)
