"""The opt-in compiled mode is a stored setting that reaches the engine's settings."""

from __future__ import annotations

from studio.settings import StudioSettings


def test_the_compile_setting_is_off_by_default_and_reaches_the_engine(tmp_path):
    settings = StudioSettings(tmp_path / "studio.ini")
    assert settings.compile is False and settings.engine_config().compile is False
    settings.compile = True
    settings.sync()
    assert StudioSettings(tmp_path / "studio.ini").engine_config().compile is True
