"""The prompt panel's LoRA picker, clip skip and chunk counter; restoring another tool's PNG."""

from __future__ import annotations

from tests.lora_files import save_kohya_lora
from tests.pipelines.test_prompt_metadata import a1111_png
from tests.tiny_models import build_sd1_pipeline, build_sdxl_pipeline


def test_lora_picker_writes_the_tag_and_clip_skip_is_part_of_the_request(qtbot, tmp_path):
    from pipelines.models import ModelInfo
    from pipelines.types import GenerationRequest, ModelFamily
    from studio.widgets.prompt_panel import PromptPanel

    save_kohya_lora(tmp_path / "Lora" / "detail_tweaker.safetensors", build_sd1_pipeline())
    save_kohya_lora(tmp_path / "Lora" / "xl_style.safetensors", build_sdxl_pipeline())
    panel = PromptPanel()
    qtbot.addWidget(panel)
    panel.fill_lora_menu()
    assert [a.text() for a in panel.lora_menu.actions()] == ["No LoRAs found"]
    panel.set_lora_folders([tmp_path])
    panel.fill_lora_menu()
    actions = panel.lora_menu.actions()
    assert [a.text() for a in actions] == [
        "detail_tweaker   (SD 1.x)",
        "xl_style   (SDXL)",
    ]
    assert all(a.isEnabled() for a in actions)  # the model's family is not known yet
    sd1 = ModelInfo(tmp_path / "sd1.safetensors", "sd1", "base", ModelFamily.SD1, "single_file",
                    tmp_path)  # fmt: skip
    panel.set_models([sd1], str(sd1.path))
    panel.fill_lora_menu()
    actions = panel.lora_menu.actions()
    assert [a.isEnabled() for a in actions] == [True, False]
    assert actions[1].toolTip().endswith("for SDXL; the model is SD 1.x.")
    panel.prompt.setPlainText("a castle")
    panel.lora_weight.setValue(0.6)
    actions[0].trigger()
    assert panel.prompt.toPlainText() == "a castle <lora:detail_tweaker:0.6>"
    panel.clip_skip.setValue(2)
    assert panel.values()["clip_skip"] == 2
    panel.apply(GenerationRequest(prompt="x", clip_skip=3))
    assert panel.clip_skip.value() == 3


def test_restoring_a_png_lists_what_is_not_applied(window, tmp_path):
    text = (
        "a castle, (fog:1.2) BREAK night <lora:detail_tweaker:0.5>\n"
        "Negative prompt: easynegative\n"
        "Steps: 12, Sampler: Euler a, CFG scale: 6, Seed: 9, Size: 64x64, Model: tiny-sd1, "
        'Clip skip: 2, Denoising strength: 0.4, Lora hashes: "detail_tweaker: 0123456789ab", '
        "ADetailer model: face_yolov8n.pt"
    )
    assert window.restore_from_files([str(a1111_png(tmp_path / "from-elsewhere.png", text))])
    panel = window.prompt_panel
    assert panel.prompt.toPlainText() == "a castle, (fog:1.2) BREAK night <lora:detail_tweaker:0.5>"
    assert panel.clip_skip.value() == 2
    assert window.current_request().clip_skip == 2
    message = window.message_bar.text()
    assert "Not applied: Denoising strength: 0.4; ADetailer model: face_yolov8n.pt." in message


def test_a_run_with_a_lora_and_clip_skip_is_recorded_and_reused(qtbot, make_window,
                                                                studio_settings, tmp_path):  # fmt: skip
    from pipelines.export import read_request
    from studio.jobs import EventKind
    from tests.studio.events import wait_event

    save_kohya_lora(tmp_path / "Lora" / "detail_tweaker.safetensors", build_sd1_pipeline())
    studio_settings.model_folders = [*studio_settings.model_folders, str(tmp_path)]
    window = make_window(studio_settings)
    panel = window.prompt_panel
    panel.prompt.setPlainText("a castle, (fog:1.2) BREAK night")
    panel.fill_lora_menu()
    panel.lora_weight.setValue(0.5)
    next(a for a in panel.lora_menu.actions() if a.text().startswith("detail_tweaker")).trigger()
    panel.clip_skip.setValue(2)
    with wait_event(qtbot, window.session, EventKind.FINISHED, timeout=60_000) as blocker:
        window.generate_action.trigger()
    result = blocker.args[0].result
    assert result.warnings == ()
    assert result.request.prompt == "a castle, (fog:1.2) BREAK night <lora:detail_tweaker:0.5>"
    assert result.request.clip_skip == 2 and result.request.lora_hashes.startswith("detail_tweaker")
    assert read_request(window.save_shown()) == result.request
    panel.prompt.setPlainText("something else")
    panel.clip_skip.setValue(1)
    window.reuse_settings(0)
    assert panel.prompt.toPlainText() == result.request.prompt
    assert panel.clip_skip.value() == 2


def test_a_controlnet_module_name_survives_restore_and_reuse(window, tmp_path):
    text = (
        "a dancer\nSteps: 4, Sampler: Euler, CFG scale: 7, Seed: 1, Size: 64x64, "
        'ControlNet 0: "Module: openpose_full, Model: control_v11p_sd15_openpose, Weight: 0.8"'
    )
    assert window.restore_from_files([str(a1111_png(tmp_path / "dancer.png", text))])
    (unit,) = window.current_request().controls
    assert (unit.kind.value, unit.preprocess, unit.module) == ("pose", True, "openpose_full")
