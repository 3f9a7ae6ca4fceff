"""The OpenPose skeleton editor: people as 18 keypoints, edited by dragging, with undo.

The map is never painted by hand here: every change re-renders the people through
:func:`pipelines.conditions.render_pose`, the same controlnet-aux code the core uses, so the editor
shows exactly the skeleton the ControlNet receives. An imported pose *image* (no keypoints) is kept
as it is until a person is added or a pose is detected or loaded.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from PySide6.QtCore import QLineF, QObject, QPointF, Qt, Signal
from PySide6.QtGui import QColor, QImage, QPainter, QPen, QUndoCommand
from PySide6.QtWidgets import (
    QComboBox,
    QGridLayout,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from pipelines.conditions import (
    KEYPOINT_NAMES,
    POSE_LIMBS,
    POSE_PRESETS,
    PosePerson,
    fit_pose_to_size,
    pose_from_openpose_json,
    pose_to_openpose_json,
    preset_pose,
    render_pose,
)
from pipelines.errors import ValidationError
from pipelines.export import write_atomically
from pipelines.types import ResizeMode
from studio.qt_image import pil_to_qimage
from studio.widgets.paint_tools import MapDocument, Tool, ToolOptions

HANDLE_PX = 6  # joint handle radius on screen, whatever the zoom
MIRROR_PAIRS = ((2, 5), (3, 6), (4, 7), (8, 11), (9, 12), (10, 13), (14, 15), (16, 17))
NEW_PERSON_SCALE = 0.6


# ---------------------------------------------------------------------------------------------
# Geometry on one person


def person_centre(person: PosePerson) -> QPointF:
    points = person.visible
    if not points:
        return QPointF(0, 0)
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    return QPointF((min(xs) + max(xs)) / 2, (min(ys) + max(ys)) / 2)


def moved(person: PosePerson, dx: float, dy: float) -> PosePerson:
    return person.transformed(1.0, 1.0, dx, dy)


def scaled(person: PosePerson, factor: float) -> PosePerson:
    c = person_centre(person)
    return person.transformed(factor, factor, c.x() * (1 - factor), c.y() * (1 - factor))


def mirrored(person: PosePerson) -> PosePerson:
    """Flipped left to right about its centre. Left and right joints swap names too: a detector
    looking at the flipped picture would call the arm now on the viewer's left the right arm."""
    c = person_centre(person)
    flipped = [None if p is None else (2 * c.x() - p[0], p[1]) for p in person.keypoints]
    for right, left in MIRROR_PAIRS:
        flipped[right], flipped[left] = flipped[left], flipped[right]
    return PosePerson(flipped)


# ---------------------------------------------------------------------------------------------
# State and undo


@dataclass
class PoseState:
    people: list[PosePerson]
    raster: QImage | None = None  # an imported pose image shown instead of a rendering


class PoseCommand(QUndoCommand):
    def __init__(self, editor: PoseEditor, before: PoseState, after: PoseState, text: str) -> None:
        super().__init__(text)
        self.editor, self.before, self.after = editor, before, after

    def redo(self) -> None:
        self.editor.show_state(self.after)

    def undo(self) -> None:
        self.editor.show_state(self.before)


class PoseEditor(QObject):
    """The people of a pose map, the selection, and the edits (each one undo step)."""

    selection_changed = Signal()
    people_changed = Signal()

    def __init__(
        self,
        document: MapDocument,
        resize_mode: ResizeMode = ResizeMode.FIT,
        parent: QObject | None = None,
    ) -> None:
        super().__init__(parent)
        self.document = document
        self.resize_mode = resize_mode
        self.people: list[PosePerson] = []
        self.raster: QImage | None = None
        self.selected: int | None = None
        self.selected_joint: int | None = None

    @property
    def size(self) -> tuple[int, int]:
        return self.document.width, self.document.height

    def render(self, people: list[PosePerson] | None = None) -> QImage:
        return pil_to_qimage(render_pose(self.people if people is None else people, *self.size))

    def state(self) -> PoseState:
        return PoseState(copy.deepcopy(self.people), self.raster)

    def show_state(self, state: PoseState) -> None:
        self.people = copy.deepcopy(state.people)
        self.raster = state.raster
        if self.selected is not None and self.selected >= len(self.people):
            self.selected = len(self.people) - 1 if self.people else None
        self.document.set_image(self.raster if self.raster is not None else self.render())
        self.people_changed.emit()
        self.selection_changed.emit()

    def preview(self, people: list[PosePerson]) -> None:
        """Show ``people`` during a drag; the drag's end records it with :meth:`commit`."""
        self.people = people
        self.raster = None
        self.document.set_image(self.render())
        self.people_changed.emit()

    def commit(self, before: PoseState, text: str) -> None:
        after = self.state()
        if _same(before, after):
            return
        self.document.undo_stack.push(PoseCommand(self, before, after, text))

    def set_people(self, people: list[PosePerson], text: str, raster: QImage | None = None) -> None:
        before = self.state()
        self.document.undo_stack.push(
            PoseCommand(self, before, PoseState(copy.deepcopy(people), raster), text)
        )

    def set_raster(self, image: QImage, text: str) -> None:
        self.set_people([], text, raster=image.convertToFormat(QImage.Format.Format_RGB32))

    def select(self, person: int | None, joint: int | None = None) -> None:
        self.selected, self.selected_joint = person, joint
        self.selection_changed.emit()

    # ---- edits of the selected person ---------------------------------------------------------
    def _edit_selected(self, change: Callable[[PosePerson], PosePerson], text: str) -> None:
        if self.selected is None:
            return
        people = copy.deepcopy(self.people)
        try:
            people[self.selected] = change(people[self.selected])
        except ValidationError:
            return  # the edit would move joints out of the drawable range: it is not taken
        self.set_people(people, text)

    def add_person(self) -> None:
        width, height = self.size
        figure = scaled(preset_pose("standing", width, height)[0], NEW_PERSON_SCALE)
        # Side by side rather than on top of each other, so each new person can be grabbed.
        step = width * 0.18 * len(self.people)
        figure = moved(figure, (step + width / 2) % width - width / 2, 0)
        self.set_people([*copy.deepcopy(self.people), figure], "Add person")
        self.select(len(self.people) - 1)

    def remove_person(self) -> None:
        if self.selected is None:
            return
        people = copy.deepcopy(self.people)
        del people[self.selected]
        self.set_people(people, "Remove person")
        self.select(min(self.selected, len(people) - 1) if people else None)

    def duplicate_person(self) -> None:
        if self.selected is None:
            return
        copy_of = moved(self.people[self.selected], self.size[0] * 0.08, 0)
        self.set_people([*copy.deepcopy(self.people), copy_of], "Duplicate person")
        self.select(len(self.people) - 1)

    def mirror_person(self) -> None:
        self._edit_selected(mirrored, "Mirror person")

    def scale_person(self, factor: float) -> None:
        self._edit_selected(lambda p: scaled(p, factor), "Scale person")

    def move_person(self, dx: float, dy: float) -> None:
        self._edit_selected(lambda p: moved(p, dx, dy), "Move person")

    def set_joint_visible(self, joint: int, visible: bool) -> None:
        if self.selected is None:
            return
        person = self.people[self.selected]
        if (person.keypoints[joint] is not None) == visible:
            return

        def change(p: PosePerson) -> PosePerson:
            points = list(p.keypoints)
            if visible:
                c = person_centre(p)  # a hidden joint has no place left; start at the middle
                points[joint] = (c.x(), c.y())
            else:
                points[joint] = None
            return PosePerson(points)

        self._edit_selected(change, ("Show " if visible else "Hide ") + KEYPOINT_NAMES[joint])

    def apply_preset(self, name: str) -> None:
        self.set_people(preset_pose(name, *self.size), f"Preset: {name}")
        self.select(0)

    # ---- OpenPose JSON ------------------------------------------------------------------------
    def load_json(self, source: Path | str | dict) -> None:
        """Load people from OpenPose JSON, fitted to the map like a photo of the JSON's canvas."""
        people, width, height = pose_from_openpose_json(source, default_size=self.size)
        if (width, height) != self.size:
            people = fit_pose_to_size(people, width, height, *self.size, self.resize_mode)
        self.set_people(people, "Load pose")
        self.select(0 if people else None)

    def to_json(self) -> dict:
        return pose_to_openpose_json(self.people, *self.size)

    def save_json(self, path: Path) -> None:
        text = json.dumps(self.to_json(), indent=1)
        try:
            write_atomically(Path(path), lambda handle: handle.write(text.encode("utf-8")),
                             overwrite=True, suffixes=(Path(path).suffix.lower(),))  # fmt: skip
        except OSError as exc:
            raise ValidationError(f"Could not write {path}: {exc}") from None


def _same(a: PoseState, b: PoseState) -> bool:
    return a.raster is b.raster and [p.keypoints for p in a.people] == [
        p.keypoints for p in b.people
    ]


# ---------------------------------------------------------------------------------------------
# The mouse tool


class PoseTool(Tool):
    """Drag a joint to move it; Shift+drag (or drag a limb) moves the whole person; right-click a
    joint hides it."""

    name = "Pose"

    def __init__(self, document: MapDocument, options: ToolOptions, editor: PoseEditor) -> None:
        super().__init__(document, options)
        self.editor = editor
        self._drag: tuple[int, int | None, QPointF, PoseState] | None = None

    def hit(self, pos: QPointF) -> tuple[int, int] | None:
        """The (person, joint) whose handle is under ``pos``, the selected person first."""
        radius = (HANDLE_PX + 2) / self.zoom
        best, best_distance = None, radius
        order = list(range(len(self.editor.people)))
        if self.editor.selected is not None:
            order.insert(0, order.pop(self.editor.selected))
        for person_index in order:
            for joint, p in enumerate(self.editor.people[person_index].keypoints):
                if p is None:
                    continue
                distance = QLineF(pos, QPointF(*p)).length()
                if distance < best_distance - 1e-9:
                    best, best_distance = (person_index, joint), distance
        return best

    def hit_limb(self, pos: QPointF) -> int | None:
        for person_index, person in enumerate(self.editor.people):
            for a, b in POSE_LIMBS:
                pa, pb = person.keypoints[a], person.keypoints[b]
                if pa is None or pb is None:
                    continue
                if _distance_to_segment(pos, QPointF(*pa), QPointF(*pb)) <= 5 / self.zoom:
                    return person_index
        return None

    def press(self, pos: QPointF, modifiers: Qt.KeyboardModifier) -> None:
        found = self.hit(pos)
        whole = bool(modifiers & Qt.KeyboardModifier.ShiftModifier)
        if found is None:
            limb = self.hit_limb(pos)
            if limb is None:
                self.editor.select(None)
                return
            found, whole = (limb, None), True
        person, joint = found
        self.editor.select(person, None if whole else joint)
        self._drag = (person, None if whole else joint, pos, self.editor.state())

    def move(self, pos: QPointF) -> None:
        if self._drag is None:
            return
        person, joint, start, before = self._drag
        people = copy.deepcopy(before.people)
        if joint is None:
            people[person] = moved(people[person], pos.x() - start.x(), pos.y() - start.y())
        else:
            points = list(people[person].keypoints)
            points[joint] = (pos.x(), pos.y())
            people[person] = PosePerson(points)
        self.editor.preview(people)

    def release(self, pos: QPointF) -> None:
        if self._drag is None:
            return
        self.move(pos)
        _, joint, _, before = self._drag
        self._drag = None
        self.editor.commit(before, "Move person" if joint is None else "Move joint")

    def context_click(self, pos: QPointF) -> None:
        found = self.hit(pos)
        if found is not None:
            self.editor.select(found[0], found[1])
            self.editor.set_joint_visible(found[1], False)

    def paint_overlay(self, painter: QPainter, zoom: float) -> None:
        radius = HANDLE_PX / zoom
        for index, person in enumerate(self.editor.people):
            selected = index == self.editor.selected
            for joint, p in enumerate(person.keypoints):
                if p is None:
                    continue
                current = selected and joint == self.editor.selected_joint
                colour = QColor(255, 220, 0) if current else QColor(255, 255, 255)
                painter.setPen(QPen(colour, (2.0 if selected else 1.0) / zoom))
                painter.setBrush(QColor(255, 255, 255, 70) if selected else Qt.BrushStyle.NoBrush)
                painter.drawEllipse(QPointF(*p), radius, radius)


def _distance_to_segment(p: QPointF, a: QPointF, b: QPointF) -> float:
    ab = b - a
    length2 = QPointF.dotProduct(ab, ab)
    t = 0.0 if length2 == 0 else max(0.0, min(1.0, QPointF.dotProduct(p - a, ab) / length2))
    return QLineF(p, a + ab * t).length()


# ---------------------------------------------------------------------------------------------
# The side panel


class PosePanel(QWidget):
    """Buttons for the people and their joints; detection and JSON files are the dialog's."""

    def __init__(self, editor: PoseEditor, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.editor = editor
        self.preset = QComboBox()
        self.preset.addItems(list(POSE_PRESETS))
        self.preset.setToolTip("A ready pose; Apply replaces every person with it.")
        self.apply_preset = _button("Apply preset", "Replace the people with the chosen preset.")
        self.add = _button("Add", "Add a standing person.")
        self.remove = _button("Remove", "Remove the selected person (Delete).")
        self.duplicate = _button("Duplicate", "Copy the selected person beside it.")
        self.mirror = _button("Mirror", "Flip the selected person left to right.")
        self.bigger = _button("Bigger", "Scale the selected person up by 10 %.")
        self.smaller = _button("Smaller", "Scale the selected person down by 10 %.")
        self.joints = QListWidget()
        self.joints.setToolTip("Joints of the selected person; untick one to hide it (a joint the "
                               "picture does not show). Right-click a joint on the map does the "
                               "same.")  # fmt: skip
        for name in KEYPOINT_NAMES:
            item = QListWidgetItem(name)
            item.setFlags(item.flags() | Qt.ItemFlag.ItemIsUserCheckable)
            item.setCheckState(Qt.CheckState.Checked)
            self.joints.addItem(item)
        self.hint = QLabel("Drag a joint to move it · Shift+drag or drag a limb: move the person "
                           "· right-click a joint: hide it")  # fmt: skip
        self.hint.setWordWrap(True)

        grid = QGridLayout()
        grid.addWidget(self.preset, 0, 0)
        grid.addWidget(self.apply_preset, 0, 1)
        for i, button in enumerate((self.add, self.remove, self.duplicate, self.mirror,
                                    self.bigger, self.smaller)):  # fmt: skip
            grid.addWidget(button, 1 + i // 2, i % 2)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addLayout(grid)
        layout.addWidget(QLabel("Joints"))
        layout.addWidget(self.joints, 1)
        layout.addWidget(self.hint)

        self.apply_preset.clicked.connect(lambda: editor.apply_preset(self.preset.currentText()))
        self.add.clicked.connect(editor.add_person)
        self.remove.clicked.connect(editor.remove_person)
        self.duplicate.clicked.connect(editor.duplicate_person)
        self.mirror.clicked.connect(editor.mirror_person)
        self.bigger.clicked.connect(lambda: editor.scale_person(1.1))
        self.smaller.clicked.connect(lambda: editor.scale_person(1 / 1.1))
        self.joints.itemChanged.connect(self._joint_toggled)
        editor.selection_changed.connect(self.refresh)
        editor.people_changed.connect(self.refresh)
        self.refresh()

    def refresh(self) -> None:
        person = None
        if self.editor.selected is not None and self.editor.selected < len(self.editor.people):
            person = self.editor.people[self.editor.selected]
        for button in (self.remove, self.duplicate, self.mirror, self.bigger, self.smaller):
            button.setEnabled(person is not None)
        self.joints.setEnabled(person is not None)
        self.joints.blockSignals(True)
        for joint in range(self.joints.count()):
            shown = person is None or person.keypoints[joint] is not None
            self.joints.item(joint).setCheckState(
                Qt.CheckState.Checked if shown else Qt.CheckState.Unchecked
            )
        if self.editor.selected_joint is not None:
            self.joints.setCurrentRow(self.editor.selected_joint)
        self.joints.blockSignals(False)

    def _joint_toggled(self, item: QListWidgetItem) -> None:
        joint = self.joints.row(item)
        self.editor.set_joint_visible(joint, item.checkState() == Qt.CheckState.Checked)


def _button(text: str, tip: str) -> QPushButton:
    button = QPushButton(text)
    button.setToolTip(tip)
    return button
