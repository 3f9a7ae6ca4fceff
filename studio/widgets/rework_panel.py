"""Rework panel: the input picture a run starts from, its denoising strength, the inpainting options
and the outpaint border; bound to a :class:`~studio.source_image.SourceImageModel`.

Every picture the user chooses (a file, a paste, a drop, a result) is copied as a new PNG into the
app's data folder beside the condition maps, and so is every painted mask once a request is built:
the request, the history and exported PNGs name those files, and "reuse settings" finds them again.
The mask itself is painted on the :class:`~studio.widgets.mask_layer.MaskLayer` over the canvas.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from PIL import Image
from PySide6.QtCore import QMimeData, QRectF, QSignalBlocker, Qt, Signal
from PySide6.QtGui import QGuiApplication, QImage, QPixmap
from PySide6.QtWidgets import (
    QComboBox,
    QFileDialog,
    QFormLayout,
    QGridLayout,
    QGroupBox,
    QLabel,
    QPushButton,
    QSlider,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from pipelines.errors import StudioError
from pipelines.export import condition_maps_folder, save_condition_map
from pipelines.types import (
    MAX_MASK_BLUR,
    MAX_PADDING,
    MAX_SIZE,
    ImageInput,
    InpaintArea,
    MaskedContent,
    ResizeMode,
)
from studio.qt_image import pil_to_qimage, qimage_to_pil
from studio.source_image import SourceImageModel, border_for_ratio
from studio.widgets.control_panel import IMAGE_FILTER, RESIZE_TIPS, THUMBNAIL, ThumbnailLabel
from studio.widgets.layout import row
from studio.widgets.mask_layer import MASK_TINT, MaskLayer
from studio.widgets.mime import mime_picture
from studio.widgets.paint_bar import spin_box

Size = Callable[[], tuple[int, int]]
NO_PICTURE = "Drop a picture here\nor use Open / Paste\n(text-to-image)"
CONTENT_CHOICES = (
    (MaskedContent.ORIGINAL, "Original", "Start the masked part from the input's own pixels."),
    (MaskedContent.FILL, "Fill", "Start from the surroundings' colours, blurred in: for removing "
     "things."),
    (MaskedContent.LATENT_NOISE, "Latent noise", "Start the masked part from pure noise: "
     "something new, unrelated to what was there."),
)  # fmt: skip
AREA_CHOICES = (
    (InpaintArea.WHOLE, "Whole picture", "Redraw the mask in the context of the whole picture."),
    (InpaintArea.MASKED, "Only masked", "Redraw only the masked region (plus padding) at the full "
     "generation size, then paste it back: more detail for small areas."),
)  # fmt: skip
RATIOS = (("1:1", 1.0), ("4:3", 4 / 3), ("3:2", 1.5), ("16:9", 16 / 9), ("3:4", 0.75),
          ("2:3", 2 / 3), ("9:16", 9 / 16))  # fmt: skip
SIDES = ("Left", "Top", "Right", "Bottom")


class ReworkPanel(QWidget):
    changed = Signal()
    problem = Signal(str)
    edit_mask_requested = Signal()  # show the mask layer

    def __init__(
        self,
        data_folder: Path,
        mask_layer: MaskLayer,
        size: Size = lambda: (512, 512),
        parent: QWidget | None = None,
    ) -> None:
        super().__init__(parent)
        self.data_folder = Path(data_folder)
        self.mask_layer = mask_layer
        self.size = size
        self.model = SourceImageModel(self)
        self.picture: Image.Image | None = None  # the input file's pixels, for the previews
        self._mask_shown: str | None = None  # the mask file the layer was loaded from or saved to
        self._steps = 20
        self._build_input()
        self._build_mask()
        self._build_outpaint()
        layout = QVBoxLayout(self)
        layout.setContentsMargins(6, 6, 6, 6)
        for box in (self.input_box, self.mask_box, self.outpaint_box):
            layout.addWidget(box)
        layout.addStretch(1)
        self.model.changed.connect(self._show_field)
        self.mask_layer.pictures_dropped.connect(self.import_mime)
        self._show_all()

    # ---- construction -------------------------------------------------------------------------
    def _build_input(self) -> None:
        self.input_box = QGroupBox("Input picture")
        self.thumbnail = ThumbnailLabel()
        self.thumbnail.setText(NO_PICTURE)
        self.thumbnail.setToolTip("The picture the next run reworks, with its mask in red and the "
                                  "outpaint border. Drop a picture here; double-click to paint "
                                  "the mask.")  # fmt: skip
        self.thumbnail.dropped.connect(self.import_mime)
        self.thumbnail.double_clicked.connect(self.edit_mask_requested)
        self.open_button = _button("Open…", "Use a picture file as the input.", self.open_dialog)
        self.paste_button = _button("Paste", "Use the picture on the clipboard as the input.",
                                    self.paste)  # fmt: skip
        self.clear_button = _button("Clear", "No input: the next run draws from noise "
                                    "(text-to-image).", self.clear)  # fmt: skip
        self.picture_note = QLabel()
        self.picture_note.setWordWrap(True)
        self.strength = QSlider(Qt.Orientation.Horizontal, minimum=0, maximum=100)
        self.strength.setToolTip("Denoising strength: how much of the input changes. 0 keeps it, 1 "
                                 "ignores it; the run spends strength × steps steps.")  # fmt: skip
        self.strength_value = QLabel()
        self.strength_label = QLabel()  # the steps it spends
        self.strength_label.setWordWrap(True)
        resize_choices = tuple((mode, mode.value.capitalize(), RESIZE_TIPS[mode])
                               for mode in ResizeMode)  # fmt: skip
        self.resize_mode = _choices(resize_choices, "How the input is fitted to the image size.")
        # The thumbnail with its buttons beside it, top-aligned, as in a control unit.
        top = QGridLayout()
        top.addWidget(self.thumbnail, 0, 0, 4, 1)
        for number, button in enumerate((self.open_button, self.paste_button, self.clear_button)):
            top.addWidget(button, number, 1)
        top.setRowStretch(3, 1)
        form = QFormLayout()
        form.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.AllNonFixedFieldsGrow)
        form.addRow("Strength", row(self.strength, self.strength_value, stretch_first=True))
        form.addRow("", self.strength_label)
        form.addRow("Resize", self.resize_mode)
        layout = QVBoxLayout(self.input_box)
        layout.addLayout(top)
        layout.addWidget(self.picture_note)
        layout.addLayout(form)
        m = self.model
        self.strength.valueChanged.connect(lambda v: setattr(m, "strength", v / 100))
        self.resize_mode.currentIndexChanged.connect(
            lambda _: setattr(m, "resize_mode", ResizeMode(self.resize_mode.currentData()))
        )

    def _build_mask(self) -> None:
        self.mask_box = QGroupBox("Inpainting")
        self.mask_note = QLabel()
        self.mask_note.setWordWrap(True)
        self.paint_button = _button("Paint mask", "Paint the mask over the input (Ctrl+M).",
                                    self.edit_mask_requested.emit)  # fmt: skip
        self.import_mask_button = _button("Import mask…", "Use a mask file: white is redrawn, "
                                          "black is kept.", self.import_mask_dialog)  # fmt: skip
        self.clear_mask_button = _button("Clear mask", "No mask: the whole picture is reworked.",
                                         self.clear_mask)  # fmt: skip
        self.mask_blur = spin_box(0, MAX_MASK_BLUR, 4, "Soften the mask's edge by this many pixels, so "
                               "the redrawn part blends in.", " px")  # fmt: skip
        self.masked_content = _choices(CONTENT_CHOICES, "What the masked part starts from.")
        self.inpaint_area = _choices(AREA_CHOICES, "Which part of the picture the model sees.")
        self.padding = spin_box(
            0, MAX_PADDING, 32, "Context around the mask for “Only masked”.", " px"
        )
        form = QFormLayout()
        form.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.AllNonFixedFieldsGrow)
        form.addRow("Mask blur", self.mask_blur)
        form.addRow("Masked content", self.masked_content)
        form.addRow("Inpaint area", self.inpaint_area)
        form.addRow("Padding", self.padding)
        layout = QVBoxLayout(self.mask_box)
        layout.addWidget(self.mask_note)
        layout.addWidget(row(self.paint_button, self.import_mask_button))
        layout.addWidget(row(self.clear_mask_button))
        layout.addLayout(form)
        m = self.model
        self.mask_blur.valueChanged.connect(lambda v: setattr(m, "mask_blur", v))
        self.masked_content.currentIndexChanged.connect(lambda _: setattr(
            m, "masked_content", MaskedContent(self.masked_content.currentData())))  # fmt: skip
        self.inpaint_area.currentIndexChanged.connect(lambda _: setattr(
            m, "inpaint_area", InpaintArea(self.inpaint_area.currentData())))  # fmt: skip
        self.padding.valueChanged.connect(lambda v: setattr(m, "padding", v))
        self.mask_layer.edited.connect(self._show_mask_state)

    def _build_outpaint(self) -> None:
        self.outpaint_box = QGroupBox("Outpainting: pixels added")
        self.sides = [spin_box(0, MAX_SIZE, 0, f"Pixels added on the {side.lower()}; the new border is "
                            "pre-filled from the edge and redrawn.") for side in SIDES]  # fmt: skip
        for box in self.sides:
            box.setSingleStep(8)
            box.valueChanged.connect(self._sides_changed)
        self.ratio = QComboBox()
        self.ratio.addItem("Extend to…", 0.0)
        for label, value in RATIOS:
            self.ratio.addItem(label, value)
        self.ratio.setToolTip("Set the border that brings the image to this aspect ratio.")
        self.ratio.activated.connect(self._ratio_chosen)
        self.outpaint_note = QLabel()
        self.outpaint_note.setWordWrap(True)
        grid = QFormLayout()
        grid.addRow("Left / right", row(self.sides[0], self.sides[2]))
        grid.addRow("Top / bottom", row(self.sides[1], self.sides[3]))
        grid.addRow("Ratio", self.ratio)
        layout = QVBoxLayout(self.outpaint_box)
        layout.addLayout(grid)
        layout.addWidget(self.outpaint_note)

    # ---- choosing the picture -----------------------------------------------------------------
    def use_picture(self, image: Image.Image | QImage, label: str = "picture") -> bool:
        """Copy ``image`` into the data folder and make it the input (its mask starts empty)."""
        if isinstance(image, QImage):
            image = qimage_to_pil(image)
        try:
            path = save_condition_map(image, condition_maps_folder(self.data_folder), "input")
        except (StudioError, OSError) as error:
            self.problem.emit(f"The {label} could not be kept as the input: {error}")
            return False
        self.model.mask = None
        self.model.image = str(path)
        return True

    def open_file(self, path: str | Path) -> bool:
        """Use a picture file; an unreadable one leaves everything as it was, with a message."""
        try:
            image = _read_picture(path)
        except StudioError as error:
            self.problem.emit(f"This picture cannot be used as the input: {error}")
            return False
        return self.use_picture(image, Path(path).name)

    def open_dialog(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Open an input picture", "", IMAGE_FILTER)
        if path:
            self.open_file(path)

    def paste(self) -> bool:
        return self.import_mime(QGuiApplication.clipboard().mimeData())

    def import_mime(self, mime: QMimeData | None) -> bool:
        picture = mime_picture(mime)
        if isinstance(picture, str):
            return self.open_file(picture)
        if isinstance(picture, QImage):
            return self.use_picture(picture, "pasted picture")
        self.problem.emit("There is no picture to use as the input (on the clipboard or dropped).")
        return False

    def clear(self) -> None:
        self.model.clear()

    # ---- the mask -----------------------------------------------------------------------------
    def import_mask_dialog(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Import a mask", "", IMAGE_FILTER)
        if path:
            self.import_mask(path)

    def import_mask(self, path: str | Path) -> bool:
        if self.picture is None:
            self.problem.emit("Choose an input picture first; the mask is drawn on it.")
            return False
        try:
            self.mask_layer.import_mask(path)
        except StudioError as error:
            self.problem.emit(f"This mask cannot be used: {error}")
            return False
        return True

    def clear_mask(self) -> None:
        if self.picture is not None and not self.mask_layer.empty:
            self.mask_layer.paint.clear_action.trigger()  # one undo step, like the toolbar's

    def _save_mask(self) -> None:
        """Keep the painted mask as a new PNG when it differs from the file last named."""
        layer = self.mask_layer
        if self.picture is None or layer.saved:
            return
        path = None
        if not layer.empty:
            path = str(save_condition_map(layer.mask_image(), condition_maps_folder(
                self.data_folder), "mask"))  # fmt: skip
        self._mask_shown = path
        layer.mark_saved()
        self.model.mask = path

    def _sync_mask(self) -> None:
        """Load the model's mask file into the layer, unless the layer already shows it."""
        wanted = self.model.mask
        if wanted == self._mask_shown or self.picture is None:
            return
        mask = None
        if wanted:
            try:
                mask = pil_to_qimage(_read_picture(wanted))
            except StudioError as error:
                self.problem.emit(f"The mask cannot be shown: {error}")
        self._mask_shown = wanted
        self.mask_layer.set_picture(self.mask_layer.view.backdrop, mask)

    # ---- request ------------------------------------------------------------------------------
    def source(self) -> ImageInput | None:
        """The request's input, the painted mask saved first; a :class:`StudioError` when the
        mask cannot be written."""
        try:
            self._save_mask()
        except OSError as error:
            raise StudioError(f"The mask could not be saved: {error}") from error
        return self.model.source()

    def apply(self, source: ImageInput | None) -> None:
        if source is not None and not source.image:
            # Settings read from another program's PNG name no files: the options apply to the
            # picture and mask shown now.
            source = replace(source, image=self.model.image or "", mask=self.model.mask)
        self.model.apply(source)
        self._sync_mask()

    def set_steps(self, steps: int) -> None:
        self._steps = steps
        self._show_strength()

    def refresh(self) -> None:
        """The generation size changed: redraw the preview and the sizes."""
        self._show_preview()

    # ---- model → widgets ----------------------------------------------------------------------
    def _show_all(self) -> None:
        for name in ("image", "strength", "resize_mode", "mask_blur", "masked_content",
                     "inpaint_area", "padding", "outpaint"):  # fmt: skip
            self._show_field(name)

    def _show_field(self, name: str) -> None:
        m = self.model
        if name == "image":
            self._load_picture()
        elif name == "mask":
            self._sync_mask()
        elif name == "strength":
            with QSignalBlocker(self.strength):
                self.strength.setValue(round(m.strength * 100))
            self._show_strength()
        elif name == "resize_mode":
            _select(self.resize_mode, m.resize_mode.value)
            self._show_preview()
        elif name == "mask_blur":
            _set_quietly(self.mask_blur, m.mask_blur)
        elif name == "masked_content":
            _select(self.masked_content, m.masked_content.value)
        elif name == "inpaint_area":
            _select(self.inpaint_area, m.inpaint_area.value)
            self.padding.setEnabled(m.inpaint_area is InpaintArea.MASKED)
        elif name == "padding":
            _set_quietly(self.padding, m.padding)
        elif name == "outpaint":
            for box, value in zip(self.sides, m.outpaint, strict=True):
                _set_quietly(box, value)
            self._show_preview()
        self.changed.emit()

    def _load_picture(self) -> None:
        path = self.model.image
        self.picture = None
        if path:
            try:
                self.picture = _read_picture(path)
            except StudioError as error:
                self.problem.emit(f"The input picture cannot be shown: {error}")
        self._mask_shown = None
        self.mask_layer.set_picture(None if self.picture is None else pil_to_qimage(self.picture))
        has = self.picture is not None
        for widget in (self.strength, self.resize_mode, self.mask_box, self.clear_button,
                       self.outpaint_box):  # fmt: skip
            widget.setEnabled(has or bool(path))
        if has:
            w, h = self.picture.size
            self.picture_note.setText(f"{w}×{h} picture")
            self.picture_note.setToolTip(path)
        else:
            self.picture_note.setText(
                "The picture file cannot be read." if path else "No input: text-to-image."
            )
            self.picture_note.setToolTip(path or "")
        self._show_strength()
        self._show_preview()

    def _show_strength(self) -> None:
        m = self.model
        spent = m.spent_steps(self._steps)
        self.strength_value.setText(f"{m.strength:.2f}")
        self.strength_label.setText(f"The run spends {spent} of {self._steps} steps.")

    def _show_mask_state(self) -> None:
        if self.picture is None:
            self.mask_note.setText("Choose an input picture, then paint on it what to redraw.")
        elif self.mask_layer.empty:
            self.mask_note.setText("No mask: the whole picture is reworked. Paint one to redraw "
                                   "only a part.")  # fmt: skip
        else:
            self.mask_note.setText("The red part is redrawn; the rest stays exactly as it is.")
        self._show_preview()

    def _sides_changed(self, _value: int) -> None:
        self.model.outpaint = tuple(box.value() for box in self.sides)

    def _ratio_chosen(self, index: int) -> None:
        ratio = self.ratio.itemData(index)
        self.ratio.setCurrentIndex(0)
        if ratio:
            width, height = self.size()
            self.model.outpaint = border_for_ratio(width, height, ratio)

    def outpaint_preview(self) -> tuple[Image.Image, Image.Image | None] | None:
        """The input as the run will see it, fitted to the size, with the border filled in, and
        the border's mask (None without a border)."""
        if self.picture is None:
            return None
        width, height = self.size()
        from pipelines.conditions import fit_to_size

        fitted = fit_to_size(self.picture, width, height, self.model.resize_mode)
        if not any(self.model.outpaint):
            return fitted, None
        from pipelines.outpaint import extend_canvas

        extended, mask = extend_canvas(fitted, self.model.outpaint)
        return extended, mask

    def _surround_rect(self) -> QRectF:
        """Where the outpainted canvas lies in the input picture's own pixels: the picture is
        scaled and placed on the image size by the resize mode, then the border goes around."""
        from pipelines.conditions import placement

        width, height = self.size()
        left, top, right, bottom = self.model.outpaint
        picture_w, picture_h = self.picture.size
        placed = placement(picture_w, picture_h, width, height, self.model.resize_mode)
        sx, sy = placed.width / picture_w, placed.height / picture_h
        return QRectF(-(left + placed.left) / sx, -(top + placed.top) / sy,
                      (width + left + right) / sx, (height + top + bottom) / sy)  # fmt: skip

    def _show_preview(self) -> None:
        width, height = self.size()
        left, top, right, bottom = self.model.outpaint
        self.outpaint_note.setText(f"Result: {width + left + right}×{height + top + bottom} "
                                   f"(image size {width}×{height})")  # fmt: skip
        if self.picture is None:
            self.thumbnail.setPixmap(QPixmap())
            self.thumbnail.setText(NO_PICTURE)
            return
        surround = None
        try:
            if any(self.model.outpaint):
                shown = pil_to_qimage(_tinted(*self.outpaint_preview()))
                surround = (self._surround_rect(), shown)
            else:
                layer = self.mask_layer
                empty = not layer.has_picture or layer.empty
                shown = pil_to_qimage(_tinted(self.picture, None if empty else layer.mask_image()))
        except (ImportError, StudioError, ValueError) as error:
            shown = pil_to_qimage(self.picture)
            self.outpaint_note.setText(f"{self.outpaint_note.text()} · no preview: {error}")
        self.mask_layer.set_surround(surround)
        pixmap = QPixmap.fromImage(shown).scaled(
            THUMBNAIL, THUMBNAIL, Qt.AspectRatioMode.KeepAspectRatio,
            Qt.TransformationMode.SmoothTransformation,
        )  # fmt: skip
        self.thumbnail.setPixmap(pixmap)


def _read_picture(path: str | Path) -> Image.Image:
    from pipelines.conditions import load_image  # OpenCV loads only once a picture is used

    return load_image(path)


def _tinted(picture: Image.Image, mask: Image.Image | None) -> Image.Image:
    """``picture`` with ``mask`` (white: redrawn) tinted over it as the mask layer shows it."""
    if mask is None:
        return picture
    colour = Image.new("RGB", picture.size, MASK_TINT.getRgb()[:3])
    half = mask.point(lambda value: value // 2)
    return Image.composite(colour, picture, half.resize(picture.size))


def _button(text: str, tip: str, slot: Callable[[], object]) -> QPushButton:
    button = QPushButton(text)
    button.setToolTip(tip)
    button.clicked.connect(lambda _=False: slot())
    return button


def _choices(choices: tuple, tip: str) -> QComboBox:
    combo = QComboBox()
    for value, label, item_tip in choices:
        combo.addItem(label, value.value)
        combo.setItemData(combo.count() - 1, item_tip, Qt.ItemDataRole.ToolTipRole)
    combo.setToolTip(tip)
    return combo


def _select(combo: QComboBox, value: str) -> None:
    with QSignalBlocker(combo):
        combo.setCurrentIndex(max(0, combo.findData(value)))


def _set_quietly(box: QSpinBox, value: int) -> None:
    with QSignalBlocker(box):
        box.setValue(value)
