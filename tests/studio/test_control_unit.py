"""A control unit's model: observable fields, the request's ControlUnit, and the widget bound to it."""

from __future__ import annotations

import numpy as np

from pipelines.conditions import detect_map
from pipelines.types import ControlKind, ControlUnit, ResizeMode
from studio.control_unit import ControlUnitModel
from studio.qt_image import qimage_to_array
from studio.widgets.control_panel import ControlPanel, ControlUnitWidget, EditorContext
from tests.studio.test_condition_editor import photo


def test_the_model_reports_each_real_change_and_builds_the_request_unit(qtbot):
    model = ControlUnitModel()
    changes = []
    model.changed.connect(changes.append)
    assert model.unit() is None  # nothing chosen: left out of the request

    model.kind = ControlKind.POSE
    model.kind = ControlKind.POSE  # the same value again: no signal
    model.canny = (220, 90)
    model.image = "/maps/pose.png"
    assert changes == ["kind", "canny", "image"]

    unit = model.unit()
    assert unit.kind is ControlKind.POSE and unit.image == "/maps/pose.png"
    assert (unit.canny_low, unit.canny_high) == (90, 220)  # ordered for the preprocessor
    assert not unit.enabled and unit.resize_mode is ResizeMode.FIT


def test_apply_takes_every_field_and_none_resets(qtbot):
    unit = ControlUnit(ControlKind.DEPTH, "/cn/depth", "/maps/d.png", preprocess=True,
                       strength=0.55, start=0.1, end=0.8, resize_mode=ResizeMode.CROP,
                       canny_low=10, canny_high=20, enabled=True)  # fmt: skip
    model = ControlUnitModel()
    model.apply(unit)
    assert model.unit() == unit
    model.apply(None)
    assert model.unit() is None and model.kind is ControlKind.CANNY


def test_the_widget_and_its_model_follow_each_other(qtbot, tmp_path):
    widget = ControlUnitWidget(1, tmp_path)
    qtbot.addWidget(widget)
    changes = []
    widget.control.changed.connect(changes.append)

    widget.strength.setValue(0.5)  # an edit in the widget reaches the model ...
    widget.resize_mode.setCurrentIndex(widget.resize_mode.findData("stretch"))
    assert widget.control.strength == 0.5 and widget.control.resize_mode is ResizeMode.STRETCH
    widget.control.kind = ControlKind.DEPTH  # ... and a change of the model shows in the widget
    widget.control.end = 0.7
    widget.control.preprocess = True
    assert widget.kind.currentData() == "depth" and widget.end.value() == 0.7
    assert widget.preprocess.isChecked() and not widget.canny_low.isEnabled()  # canny only
    assert changes == ["strength", "resize_mode", "kind", "end", "preprocess"]  # no echoes
    widget.set_model("/cn/depth")
    assert widget.model.currentData() == "/cn/depth" and widget.unit().model == "/cn/depth"


def test_the_canny_thumbnail_is_the_core_map_at_the_size_the_window_gives(qtbot, tmp_path):
    panel = ControlPanel(tmp_path / "data")
    qtbot.addWidget(panel)
    panel.set_editor_context(EditorContext(size=lambda: (80, 48)))
    unit = panel.units[0]
    path = photo(tmp_path / "photo.png")
    unit.set_image(str(path))
    unit.preprocess.setChecked(True)

    from PIL import Image

    expected = detect_map(ControlKind.CANNY, Image.open(path), 80, 48, "fit").image
    np.testing.assert_array_equal(qimage_to_array(unit.map_image), np.asarray(expected))
    assert unit.enabled.isChecked() and panel.controls()[0].image == str(path)
