"""Reworking an image through the real window: input picture, strength, mask, outpainting and the
hires pass, from the panels to the request, the run, the result and its history entry."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image
from PySide6.QtCore import QMimeData, Qt, QUrl

from pipelines.export import condition_maps_folder
from pipelines.types import InpaintArea, MaskedContent


def _picture(path, colour=(40, 90, 200), size=(64, 64)):
    Image.new("RGB", size, colour).save(path)
    return path


def _paint_stroke(qtbot, layer, start, end):
    """A left-button drag on the mask view, in picture pixels."""
    view = layer.view
    a, b = view.from_map(start).toPoint(), view.from_map(end).toPoint()
    qtbot.mousePress(view, Qt.MouseButton.LeftButton, pos=a)
    qtbot.mouseMove(view, b)
    qtbot.mouseRelease(view, Qt.MouseButton.LeftButton, pos=b)


def test_input_strength_and_painted_mask_reach_the_request(qtbot, window, tmp_path):
    from PySide6.QtCore import QPointF

    panel = window.rework_panel
    assert window.current_request().source is None  # no input: text-to-image
    assert panel.open_file(_picture(tmp_path / "photo.png"))
    panel.strength.setValue(50)
    window.show_mask_layer()
    qtbot.waitUntil(lambda: window.mask_layer.view.width() > 100)
    _paint_stroke(qtbot, window.mask_layer, QPointF(20, 32), QPointF(44, 32))

    source = window.current_request().source

    folder = condition_maps_folder(window.settings.data_folder)
    assert source.strength == 0.5
    assert source.image.startswith(str(folder)) and source.mask.startswith(str(folder))
    assert (
        np.asarray(Image.open(source.image)).tolist()
        == np.asarray(Image.open(tmp_path / "photo.png")).tolist()
    )
    mask = np.asarray(Image.open(source.mask).convert("L"))
    assert mask.shape == (64, 64)
    assert mask[32, 32] == 255 and mask[5, 5] == 0  # painted where the stroke went only
    assert "spends 2 of 4 steps" in panel.strength_label.text()  # round(0.5 × 4)
    # Unchanged mask: the same file again, not a new one per request.
    assert window.current_request().source.mask == source.mask


def test_undo_and_clear_mask_take_the_mask_out_of_the_request(qtbot, window, tmp_path):
    from PySide6.QtCore import QPointF

    panel = window.rework_panel
    panel.open_file(_picture(tmp_path / "photo.png"))
    window.show_mask_layer()
    _paint_stroke(qtbot, window.mask_layer, QPointF(10, 10), QPointF(30, 30))
    assert window.current_request().source.mask is not None
    window.mask_layer.paint.undo_action.trigger()
    assert window.current_request().source.mask is None
    window.mask_layer.paint.redo_action.trigger()
    assert window.current_request().source.mask is not None
    panel.clear_mask()
    assert window.current_request().source.mask is None


def test_mask_keys_work_in_the_mask_view_and_only_there(qtbot, window, tmp_path):
    from PySide6.QtCore import QPointF

    window.rework_panel.open_file(_picture(tmp_path / "photo.png"))
    window.activateWindow()  # shortcuts act in the active window
    qtbot.waitUntil(window.isActiveWindow)
    window.mask_action.trigger()  # Ctrl+M: the mask tab, its view focused
    layer = window.mask_layer
    assert window.centre_tabs.currentWidget() is layer and layer.view.hasFocus()
    for key, name in ((Qt.Key.Key_E, "eraser"), (Qt.Key.Key_G, "fill"), (Qt.Key.Key_B, "brush")):
        qtbot.keyClick(layer.view, key)
        assert layer.paint.tool_name() == name
    _paint_stroke(qtbot, layer, QPointF(10, 10), QPointF(30, 30))
    qtbot.keyClick(layer.view, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)
    assert layer.empty
    # Ctrl+1 / Ctrl+0 (the window's) act on the mask view while it is shown, then on the canvas.
    qtbot.keyClick(layer.view, Qt.Key.Key_1, Qt.KeyboardModifier.ControlModifier)
    assert layer.view.zoom == 1.0
    qtbot.keyClick(layer.view, Qt.Key.Key_0, Qt.KeyboardModifier.ControlModifier)
    assert layer.view.zoom > 1.0  # 64 px fitted into the view
    window.centre_tabs.setCurrentWidget(window.canvas)
    window.canvas.set_zoom(3.0)
    qtbot.keyClick(window.prompt_panel.prompt, Qt.Key.Key_0, Qt.KeyboardModifier.ControlModifier)
    assert window.canvas._fit
    # Typing B in the prompt types it, the brush stays.
    layer.paint.set_tool("eraser")
    window.prompt_panel.prompt.setFocus()
    qtbot.keyClick(window.prompt_panel.prompt, Qt.Key.Key_B)
    assert layer.paint.tool_name() == "eraser"


def test_options_reach_the_request_and_reuse_restores_them(qtbot, window, tmp_path):
    panel = window.rework_panel
    panel.open_file(_picture(tmp_path / "photo.png"))
    panel.import_mask(_picture(tmp_path / "mask.png", (255, 255, 255), (32, 32)))
    panel.mask_blur.setValue(9)
    panel.masked_content.setCurrentIndex(panel.masked_content.findData("latent noise"))
    panel.inpaint_area.setCurrentIndex(panel.inpaint_area.findData("masked"))
    panel.padding.setValue(16)
    panel.sides[2].setValue(32)
    window.hires_box.setChecked(True)
    window.hires_box.scale.setValue(1.5)
    request = window.current_request()
    source = request.source
    assert (source.mask_blur, source.padding, source.outpaint) == (9, 16, (0, 0, 32, 0))
    assert source.masked_content is MaskedContent.LATENT_NOISE
    assert source.inpaint_area is InpaintArea.MASKED
    assert np.asarray(Image.open(source.mask)).min() == 255  # a 32² mask stretched over 64²
    assert request.hires.scale == 1.5

    panel.clear()
    window.hires_box.setChecked(False)
    assert window.current_request().source is None and window.current_request().hires is None
    window.apply_request(request)

    assert window.current_request().source == source
    assert window.current_request().hires == request.hires
    assert not window.mask_layer.empty and window.mask_layer.saved


def test_automatic1111_settings_apply_to_the_picture_shown(qtbot, window, tmp_path):
    from PIL.PngImagePlugin import PngInfo

    panel = window.rework_panel
    panel.open_file(_picture(tmp_path / "photo.png"))
    picture = window.current_request().source.image
    info = PngInfo()
    info.add_text("parameters", "a fox\nSteps: 4, Sampler: Euler, CFG scale: 5, Seed: 3, "
                  "Size: 64x64, Denoising strength: 0.4, Mask blur: 6")  # fmt: skip
    png = tmp_path / "a1111.png"
    Image.new("RGB", (64, 64)).save(png, pnginfo=info)

    assert window.restore_from_files([str(png)])

    source = window.current_request().source
    assert (source.image, source.strength, source.mask_blur) == (picture, 0.4, 6)
    assert source.mask is None  # nothing painted yet


def test_settings_naming_a_removed_input_say_so_and_keep_the_rest(qtbot, window, tmp_path):
    from dataclasses import replace

    from pipelines.types import ImageInput

    gone = str(tmp_path / "removed.png")
    request = replace(window.current_request(), prompt="kept",
                      source=ImageInput(gone, strength=0.4))  # fmt: skip
    window.apply_request(request)

    assert "removed.png" in window.last_error
    assert window.prompt_panel.prompt.toPlainText() == "kept"
    assert window.current_request().source == ImageInput(gone, strength=0.4)
    assert window.rework_panel.picture_note.text() == "The picture file cannot be read."


def test_corrupt_picture_dropped_shows_a_message_and_keeps_the_input(qtbot, window, tmp_path):
    from PySide6.QtCore import QPointF

    panel = window.rework_panel
    panel.open_file(_picture(tmp_path / "photo.png"))
    window.show_mask_layer()
    _paint_stroke(qtbot, window.mask_layer, QPointF(10, 10), QPointF(30, 30))
    before = window.current_request().source
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n not really a picture")
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(broken))])

    assert not panel.import_mime(mime)

    assert "broken.png" in window.last_error and window.message_bar.isVisible()
    assert window.current_request().source == before
    assert not window.mask_layer.empty and window.mask_layer.has_picture


def test_canvas_and_clipboard_pictures_become_the_input(qtbot, window):
    from PySide6.QtGui import QGuiApplication

    from studio.qt_image import pil_to_qimage

    shown = Image.new("RGB", (48, 40), (200, 30, 30))
    window.canvas.set_image(pil_to_qimage(shown))
    window.canvas.use_as_input_requested.emit()  # what its context menu's "Use as input" does
    assert np.array_equal(np.asarray(window.rework_panel.picture), np.asarray(shown))
    assert window.mask_layer.has_picture and window.mask_layer.document.width == 48

    pasted = Image.new("RGB", (32, 32), (10, 200, 10))
    QGuiApplication.clipboard().setImage(pil_to_qimage(pasted))
    window.paste_input_action.trigger()
    assert np.array_equal(np.asarray(window.rework_panel.picture), np.asarray(pasted))


def test_a_dropped_photo_without_settings_can_become_the_input(qtbot, window, tmp_path):
    photo = _picture(tmp_path / "holiday.png")
    assert not window.restore_from_files([str(photo)])  # no settings in it
    use = next(b for b in window.message_bar._actions if b.text() == "Use as input")
    use.click()
    assert window.current_request().source is not None
    assert np.array_equal(np.asarray(window.rework_panel.picture), np.asarray(Image.open(photo)))


def test_input_and_mask_survive_a_restart(qtbot, make_window, studio_settings, tmp_path):
    from PySide6.QtCore import QPointF

    from studio.settings import StudioSettings

    first = make_window(studio_settings, wait_for_model=False)
    first.rework_panel.open_file(_picture(tmp_path / "photo.png"))
    first.rework_panel.strength.setValue(30)
    first.show_mask_layer()
    _paint_stroke(qtbot, first.mask_layer, QPointF(10, 10), QPointF(30, 30))
    source = first.current_request().source
    first.close()

    second = make_window(StudioSettings(studio_settings.path), wait_for_model=False)

    assert second.current_request().source == source
    assert not second.mask_layer.empty


def test_outpaint_ratio_sets_the_border():
    from studio.source_image import border_for_ratio

    assert border_for_ratio(64, 64, 2.0) == (32, 0, 32, 0)
    assert border_for_ratio(64, 64, 0.5) == (0, 32, 0, 32)
    assert border_for_ratio(512, 512, 16 / 9) == (200, 0, 200, 0)


# ---- runs through the worker on the tiny model (4 steps, 64×64) ------------------------------


def _run(qtbot, window, timeout=60_000):
    from studio.jobs import EventKind
    from tests.studio.events import wait_event

    with wait_event(qtbot, window.session, EventKind.FINISHED, timeout=timeout) as blocker:
        window.generate_action.trigger()
    return blocker.args[0].result


def test_use_a_result_as_input_paint_a_mask_run_and_reuse(qtbot, window):
    from PySide6.QtCore import QPointF

    from studio.jobs import EventKind
    from studio.qt_image import qimage_to_array

    first = _run(qtbot, window)
    assert window.use_entry_as_input(0)
    panel = window.rework_panel
    assert np.array_equal(np.asarray(panel.picture), np.asarray(first.image))
    panel.strength.setValue(50)
    window.mask_action.trigger()
    _paint_stroke(qtbot, window.mask_layer, QPointF(8, 32), QPointF(56, 32))
    totals = []
    window.session.event.connect(
        lambda e: e.kind is EventKind.PREVIEW and totals.extend(f.total for f in e.frames)
    )

    result = _run(qtbot, window)

    source = result.request.source
    assert source is not None and source.strength == 0.5 and source.mask is not None
    assert set(totals) == {2}  # round(0.5 × 4): the previews count the steps really spent
    assert window.progress.maximum() == 2
    entry = window.session.history[-1]
    assert entry.request.source == source  # the history entry carries the input and its mask
    newest = window.gallery.model.index(0)
    assert "inpainted" in window.gallery.model.data(newest, Qt.ItemDataRole.ToolTipRole)
    assert window.gallery.model.data(newest, Qt.ItemDataRole.DisplayRole) == "#2 · inpaint"
    assert (qimage_to_array(window.canvas.image) == np.asarray(result.image)).all()
    # Kept pixels are the input's (far from the stroke and its blur).
    assert np.array_equal(np.asarray(result.image)[:4], np.asarray(first.image)[:4])

    panel.clear()
    assert window.reuse_settings(len(window.session.history) - 1)
    assert window.current_request().source == source
    assert not window.mask_layer.empty

    png = window.save_shown()  # the exported PNG brings the input and the mask back too
    panel.clear()
    assert window.restore_from_files([str(png)])
    assert window.current_request().source == source
    assert not window.mask_layer.empty


def test_outpaint_run_returns_the_bigger_picture(qtbot, window, tmp_path):
    panel = window.rework_panel
    panel.open_file(_picture(tmp_path / "photo.png"))
    panel.sides[0].setValue(16)
    panel.sides[3].setValue(8)
    assert "80×72" in panel.outpaint_note.text()
    # The mask layer shows the grown canvas around the picture, in the picture's pixels.
    where, _canvas = window.mask_layer.view.surround
    assert (where.x(), where.y(), where.width(), where.height()) == (-16, 0, 80, 72)

    result = _run(qtbot, window)

    assert result.image.size == (80, 72)
    assert window.session.history[-1].image.width() == 80
    # The original pixels stay in place, past the seam (16 px) and the blur (4 px) along the
    # extended sides.
    inner = np.asarray(result.image)[:40, 40:].astype(int)
    assert np.abs(inner - (40, 90, 200)).max() <= 2


def test_hires_run_returns_scale_times_the_size(qtbot, window):
    from studio.jobs import EventKind

    box = window.hires_box
    box.setChecked(True)
    box.scale.setValue(2.0)
    box.steps.setValue(2)
    assert "64×64 → 128×128" in box.note.text() and "spends 1 of 2 steps" in box.note.text()
    totals = []
    window.session.event.connect(
        lambda e: e.kind is EventKind.PREVIEW and totals.extend(f.total for f in e.frames)
    )

    result = _run(qtbot, window)

    assert result.image.size == (128, 128)
    assert window.session.history[-1].image.width() == 128
    assert set(totals) == {5}  # 4 steps, then round(0.5 × 2) on one counter
    assert window.progress.maximum() == 5
    assert result.request.hires.scale == 2.0 and result.request.hires.steps == 2


def test_upscaler_files_in_the_model_folders_are_offered(qtbot, window, studio_settings):
    folder = Path(studio_settings.model_folders[0]) / "models" / "ESRGAN"
    folder.mkdir(parents=True)
    (folder / "4x-Sharp.safetensors").write_bytes(b"")
    box = window.hires_box
    box.upscaler.showPopup()  # the list is read again as it opens
    box.upscaler.hidePopup()
    index = box.upscaler.findText("4x-Sharp.safetensors")
    assert index > 0
    box.setChecked(True)
    box.upscaler.setCurrentIndex(index)
    box.upscaler.activated.emit(index)
    assert window.current_request().hires.upscaler == str(folder / "4x-Sharp.safetensors")


def test_compare_samplers_on_an_inpainting_request(qtbot, window, tmp_path):
    from PySide6.QtCore import QPointF

    from studio.jobs import EventKind, JobKind
    from tests.studio.events import wait_event

    panel = window.rework_panel
    panel.open_file(_picture(tmp_path / "photo.png"))
    panel.strength.setValue(50)
    window.show_mask_layer()
    _paint_stroke(qtbot, window.mask_layer, QPointF(8, 32), QPointF(56, 32))
    window.sampler_panel.set_compare_mode(True)
    window.sampler_panel.set_compare_entries(["Euler", "DDIM"])

    with wait_event(qtbot, window.session, EventKind.FINISHED, JobKind.COMPARE, 90_000) as blocker:
        window.compare_action.trigger()
    result = blocker.args[0].result

    assert result.request.source == window.current_request().source  # same input and mask
    assert not result.cancelled and len(result.columns) == 2
    for column in result.columns:  # each column kept the pixels outside the mask
        assert np.abs(np.asarray(column.image)[:4].astype(int) - (40, 90, 200)).max() <= 1


def test_models_round_trip_and_count_the_steps_a_run_spends(qtbot):
    from dataclasses import replace

    from pipelines.types import GenerationRequest, HiresPass, ImageInput
    from studio.source_image import HiresModel, SourceImageModel, planned_steps

    source = ImageInput("in.png", strength=0.3, mask="m.png", mask_blur=2, padding=8,
                        outpaint=(8, 0, 8, 0))  # fmt: skip
    model = SourceImageModel()
    changed = []
    model.changed.connect(changed.append)
    model.apply(source)
    assert model.source() == source and "strength" in changed
    model.clear()
    assert model.source() is None and model.strength == 0.3  # the options stay for the next one
    hires = HiresModel()
    assert hires.hires() is None
    hires.apply(HiresPass(scale=1.5, steps=6, strength=0.5))
    assert hires.hires() == HiresPass(scale=1.5, steps=6, strength=0.5)

    plain = GenerationRequest(prompt="", steps=20)
    assert planned_steps(plain) == 20
    assert planned_steps(replace(plain, source=source)) == 6  # round(0.3 × 20)
    assert planned_steps(replace(plain, source=replace(source, strength=0.01))) == 1
    assert planned_steps(replace(plain, hires=HiresPass(steps=6, strength=0.5))) == 23
