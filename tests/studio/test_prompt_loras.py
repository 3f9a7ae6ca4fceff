"""The prompt panel's LoRA picker, clip skip and chunk counter; restoring another tool's PNG."""

from __future__ import annotations

from PIL import Image, PngImagePlugin

from tests.lora_files import save_kohya_lora
from tests.tiny_models import build_sd1_pipeline, build_sdxl_pipeline


def test_lora_picker_writes_the_tag_and_clip_skip_is_part_of_the_request(qtbot, tmp_path):
    from pipelines.types import GenerationRequest
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
    info = PngImagePlugin.PngInfo()
    info.add_text("parameters", text)
    png = tmp_path / "from-elsewhere.png"
    Image.new("RGB", (8, 8)).save(png, pnginfo=info)
    assert window.restore_from_files([str(png)])
    panel = window.prompt_panel
    assert panel.prompt.toPlainText() == "a castle, (fog:1.2) BREAK night <lora:detail_tweaker:0.5>"
    assert panel.clip_skip.value() == 2
    assert window.current_request().clip_skip == 2
    message = window.message_bar.text()
    assert "Not applied: Denoising strength: 0.4; ADetailer model: face_yolov8n.pt." in message
