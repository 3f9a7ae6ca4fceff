"""A ControlNet run through the window: family-filtered picker, live Canny, overlay on the canvas."""

from __future__ import annotations

from PIL import Image, ImageDraw

from studio.jobs import EventKind
from studio.qt_image import qimage_to_array
from tests.studio.events import wait_event


def photo(path):
    image = Image.new("RGB", (96, 64), "white")
    draw = ImageDraw.Draw(image)
    draw.rectangle((20, 10, 70, 50), fill=(40, 40, 160))
    draw.ellipse((5, 30, 30, 60), fill=(200, 40, 40))
    image.save(path)
    return path


def test_controlnet_unit_runs_with_live_canny_and_overlay(
    qtbot, make_window, studio_settings, controlnet_sd1_folder, controlnet_sdxl_folder, tmp_path
):
    studio_settings.model_folders = [*studio_settings.model_folders,
                                     str(controlnet_sdxl_folder.parent)]  # fmt: skip
    window = make_window(studio_settings)
    unit = window.control_panel.units[0]
    qtbot.waitUntil(lambda: unit.model.count() > 1, timeout=30_000)
    offered = [unit.model.itemData(i) for i in range(unit.model.count())]
    assert str(controlnet_sd1_folder) in offered
    assert str(controlnet_sdxl_folder) not in offered  # filtered to the SD 1.x base model

    unit.set_model(str(controlnet_sd1_folder))
    unit.set_image(str(photo(tmp_path / "photo.png")))
    unit.preprocess.setChecked(True)
    assert unit.enabled.isChecked()
    edges_default = qimage_to_array(unit.map_image)
    unit.canny_low.setValue(250)
    unit.canny_high.setValue(255)
    assert not (qimage_to_array(unit.map_image) == edges_default).all()  # thresholds act live
    unit.canny_low.setValue(100)
    unit.canny_high.setValue(200)

    window.prompt_panel.prompt.setPlainText("controlled")
    with wait_event(qtbot, window.session, EventKind.FINISHED, timeout=60_000) as blocker:
        window.generate_action.trigger()

    result = blocker.args[0].result
    (used,) = result.request.active_controls
    assert used.preprocess and used.model == str(controlnet_sd1_folder)
    assert len(result.condition_maps) == 1 and result.condition_maps[0].size == (64, 64)
    window.overlay_action.setChecked(True)
    assert window.canvas.show_condition and window.canvas.condition is not None
    assert "Unit 1" in window.control_panel.tabs.tabText(0)
