"""Window fixtures: a settings file in tmp_path (never the user's) and tiny real models."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

FAST = dict(steps=4, width=64, height=64, seed=1, cfg_scale=5.0)


@pytest.fixture
def settings_path(tmp_path):
    return tmp_path / "settings" / "studio.ini"


@pytest.fixture
def studio_settings(settings_path, tmp_path, sd1_folder, controlnet_sd1_folder):
    from pipelines.types import GenerationRequest
    from studio.settings import StudioSettings

    settings = StudioSettings(settings_path)
    settings.model_folders = [str(sd1_folder.parent), str(controlnet_sd1_folder.parent)]
    settings.output_folder = str(tmp_path / "out")
    settings.last_request = GenerationRequest(prompt="", model=str(sd1_folder), **FAST).to_dict()
    settings.random_seed = False
    settings.sync()
    return settings


@pytest.fixture
def make_window(qtbot):
    """Opens real main windows; closes them (stopping their worker threads) at the end."""
    from studio.widgets.main_window import MainWindow

    windows = []

    def make(settings, wait_for_model: bool = True):
        window = MainWindow(settings)
        windows.append(window)
        window.show()
        if wait_for_model:
            wait_ready(qtbot, window)
        return window

    yield make
    for window in windows:
        window.close()
        assert not window.session.thread.isRunning()
        window.deleteLater()


def wait_ready(qtbot, window, timeout: int = 60_000) -> None:
    qtbot.waitUntil(
        lambda: (
            window.session.loaded_model is not None
            and window.sampler_panel.samplers.count() > 0
            and window.prompt_panel.prompt_tokens.text() != "– tokens"
        ),
        timeout=timeout,
    )


@pytest.fixture
def window(make_window, studio_settings):
    return make_window(studio_settings)


@pytest.fixture
def no_user_annotators(tmp_path_factory, monkeypatch):
    # The default annotator places (HF cache, ~/ComfyUI, ...) must not find a developer's weights.
    home = tmp_path_factory.mktemp("home")
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("HF_HUB_CACHE", str(home / "hf-cache"))


@pytest.fixture(scope="session")
def pose_renderer_imported():
    # A pose editor imports controlnet-aux in a background thread; done here first, on the main
    # thread, that import is a no-op and its warnings do not leak into other tests' reports.
    from pipelines.conditions import render_pose

    render_pose([], 8, 8)
