"""The engine options of the Settings dialog: compiled mode, the SD 3 / Flux memory options and the
embedding folders are stored, checked when read back, and reach the next run."""

from __future__ import annotations

from pipelines.types import MemoryOptions
from studio.jobs import EventKind
from studio.settings import StudioSettings
from tests.lora_files import save_embedding
from tests.studio.events import wait_event
from tests.tiny_models import TEXT_DIM


def test_the_dialog_stores_the_engine_options_and_the_next_run_uses_them(
    qtbot, window, studio_settings, tmp_path
):
    save_embedding(tmp_path / "tis" / "shiny-style.safetensors", (TEXT_DIM,))
    window.prompt_panel.prompt.setPlainText("a red car, shiny-style")
    with wait_event(qtbot, window.session, EventKind.FINISHED):
        window.generate_action.trigger()
    assert window.session.history[-1].request.ti_hashes == ""  # not found in any folder yet

    dialog = window.open_settings()
    assert not dialog.compile.isChecked() and not dialog.fp8_weights.isChecked()
    dialog.embedding_folders.set_folders([str(tmp_path / "tis")])
    dialog.sequential_offload.setChecked(True)
    dialog.fp8_weights.setChecked(True)
    dialog.accept()

    stored = StudioSettings(studio_settings.path)
    assert stored.embedding_folders == [str(tmp_path / "tis")]
    assert stored.engine_config().embedding_folders == (tmp_path / "tis",)
    memory = window.current_request().memory
    assert memory.sequential_offload and memory.fp8_weights and not memory.cpu_offload
    with wait_event(qtbot, window.session, EventKind.FINISHED):
        window.generate_action.trigger()  # the weight options only act on SD 3 / Flux models
    assert window.session.history[-1].request.ti_hashes.startswith("shiny-style: ")


def test_compiled_mode_is_a_checkbox_that_reaches_the_engine_settings(qtbot, tmp_path):
    from studio.widgets.settings_dialog import SettingsDialog

    settings = StudioSettings(tmp_path / "s.ini")
    dialog = SettingsDialog(settings)
    qtbot.addWidget(dialog)
    assert "minutes" in dialog.compile.toolTip()
    dialog.compile.setChecked(True)
    dialog.accept()
    assert StudioSettings(settings.path).engine_config().compile is True
    assert SettingsDialog(StudioSettings(settings.path)).compile.isChecked()


def test_bad_stored_engine_options_fall_back_with_a_note(tmp_path):
    path = tmp_path / "s.ini"
    path.write_text(
        "[engine]\n"
        "compile=sometimes\n"
        'embedding_folders="[\\"ok\\", 3]"\n'
        'memory="{\\"fp8_weights\\": \\"yes please\\"}"\n',
        encoding="utf-8",
    )
    settings = StudioSettings(path)
    config = settings.engine_config()
    assert config.compile is False and config.embedding_folders == ()
    assert settings.memory == MemoryOptions()
    notes = "\n".join(settings.notes)
    for key in ("engine/compile", "engine/embedding_folders", "engine/memory"):
        assert f"The setting {key} in" in notes


def test_the_memory_options_survive_a_restart(tmp_path):
    settings = StudioSettings(tmp_path / "s.ini")
    settings.memory = MemoryOptions(sequential_offload=True, fp8_weights=True)
    settings.sync()
    assert StudioSettings(settings.path).memory == MemoryOptions(
        sequential_offload=True, fp8_weights=True
    )
