"""The high-resolution pass ("hires fix") controls, bound to a
:class:`~studio.source_image.HiresModel`: draw at the model's size, upscale, then rework at the
bigger size with its own steps and strength."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path

from PySide6.QtCore import QSignalBlocker, Qt, Signal
from PySide6.QtWidgets import (
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QGroupBox,
    QLabel,
    QWidget,
)

from pipelines.types import (
    MAX_HIRES_SCALE,
    MAX_STEPS,
    MIN_HIRES_SCALE,
    HiresPass,
    hires_size,
    run_steps,
)
from studio.source_image import HiresModel
from studio.widgets.paint_bar import spin_box
from studio.widgets.refreshing_combo import RefreshingComboBox

UPSCALER_FILTER = "Upscaler models (*.safetensors *.pth *.pt *.ckpt *.bin);;All files (*)"
BUILT_IN = (
    ("lanczos", "Lanczos", "Resize the pixels with a Lanczos filter: sharp, no extra model."),
    ("latent", "Latent", "Resize the latents before decoding: fastest; needs a strength of "
     "about 0.5 or more to clean up."),
)  # fmt: skip
CHOOSE = "\0choose"  # the "Choose file…" entry's data


class HiresBox(QGroupBox):
    changed = Signal()

    def __init__(
        self, size: Callable[[], tuple[int, int]] = lambda: (512, 512),
        find_upscalers: Callable[[], Iterable[str | Path]] = lambda: (),
        parent: QWidget | None = None,
    ) -> None:  # fmt: skip
        """``find_upscalers`` lists the upscaler model files on disk; it is asked again each
        time the list opens, so files added meanwhile appear."""
        super().__init__("High-resolution pass", parent)
        self.size = size
        self.find_upscalers = find_upscalers
        self.model = HiresModel(self)
        self._steps = 20
        self.setCheckable(True)
        self.setToolTip("Draw at the image size, upscale, then redraw at the bigger size: more "
                        "detail than drawing big at once, without doubled subjects.")  # fmt: skip
        self.scale = QDoubleSpinBox(minimum=MIN_HIRES_SCALE, maximum=MAX_HIRES_SCALE,
                                    singleStep=0.25, decimals=2, suffix=" ×")  # fmt: skip
        self.scale.setToolTip("How much bigger the final image is than the image size.")
        self.steps = spin_box(0, MAX_STEPS, 0, "Steps of the second pass; “same” uses the run's "
                              "steps. The pass spends strength × these steps.")  # fmt: skip
        self.steps.setSpecialValueText("same")
        self.strength = QDoubleSpinBox(minimum=0.0, maximum=1.0, singleStep=0.05, decimals=2)
        self.strength.setToolTip("Denoising strength of the second pass: how much it may change.")
        self.upscaler = RefreshingComboBox(self.refresh_upscalers)
        self.upscaler.setToolTip("How the first image is enlarged: a filter, the latents, or an "
                                 "upscaler model file (ESRGAN, Real-ESRGAN, SwinIR …).")  # fmt: skip
        self._files: list[str] = []
        self._fill_upscalers()
        self.note = QLabel()
        self.note.setWordWrap(True)
        form = QFormLayout(self)
        form.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.AllNonFixedFieldsGrow)
        form.addRow("Scale", self.scale)
        form.addRow("Steps", self.steps)
        form.addRow("Strength", self.strength)
        form.addRow("Upscaler", self.upscaler)
        form.addRow(self.note)
        m = self.model
        self.toggled.connect(lambda on: setattr(m, "enabled", on))
        self.scale.valueChanged.connect(lambda v: setattr(m, "scale", round(v, 3)))
        self.steps.valueChanged.connect(lambda v: setattr(m, "steps", v))
        self.strength.valueChanged.connect(lambda v: setattr(m, "strength", round(v, 3)))
        self.upscaler.activated.connect(self._upscaler_chosen)
        m.changed.connect(self._show_field)
        for name in ("enabled", "scale", "steps", "strength", "upscaler"):
            self._show_field(name)

    # ---- upscalers ----------------------------------------------------------------------------
    def refresh_upscalers(self) -> None:
        """Offer the upscaler model files found now beside the filters."""
        try:
            self._files = [str(f) for f in self.find_upscalers()]
        except OSError:  # an unreadable folder: the files already listed stay
            pass
        self._fill_upscalers()

    def _fill_upscalers(self) -> None:
        wanted = self.model.upscaler
        with QSignalBlocker(self.upscaler):
            self.upscaler.clear()
            for value, label, tip in BUILT_IN:
                self.upscaler.addItem(label, value)
                self.upscaler.setItemData(self.upscaler.count() - 1, tip,
                                          Qt.ItemDataRole.ToolTipRole)  # fmt: skip
            for path in dict.fromkeys([*self._files, wanted]):
                if path not in {value for value, _, _ in BUILT_IN}:
                    self.upscaler.addItem(Path(path).name, path)
                    self.upscaler.setItemData(self.upscaler.count() - 1, path,
                                              Qt.ItemDataRole.ToolTipRole)  # fmt: skip
            self.upscaler.addItem("Choose file…", CHOOSE)
            self.upscaler.setCurrentIndex(max(0, self.upscaler.findData(wanted)))

    def _upscaler_chosen(self, index: int) -> None:
        value = self.upscaler.itemData(index)
        if value == CHOOSE:
            path, _ = QFileDialog.getOpenFileName(self, "Choose an upscaler model", "",
                                                  UPSCALER_FILTER)  # fmt: skip
            if not path:
                self._fill_upscalers()  # back to the one chosen before
                return
            value = path
        self.model.upscaler = value

    # ---- request ------------------------------------------------------------------------------
    def hires(self) -> HiresPass | None:
        return self.model.hires()

    def apply(self, hires: HiresPass | None) -> None:
        self.model.apply(hires)

    def set_steps(self, steps: int) -> None:
        self._steps = steps
        self._show_note()

    def refresh(self) -> None:
        self._show_note()

    def _show_field(self, name: str) -> None:
        m = self.model
        if name == "enabled":
            with QSignalBlocker(self):
                self.setChecked(m.enabled)
        elif name in ("scale", "strength"):
            box = getattr(self, name)
            with QSignalBlocker(box):
                box.setValue(getattr(m, name))
        elif name == "steps":
            with QSignalBlocker(self.steps):
                self.steps.setValue(m.steps)
        elif name == "upscaler":
            self._fill_upscalers()
        self._show_note()
        self.changed.emit()

    def _show_note(self) -> None:
        width, height = self.size()
        scale = self.model.scale
        steps = self.model.steps or self._steps
        spent = run_steps(self.model.strength, steps)
        self.note.setText(f"{width}×{height} → {hires_size(width, scale)}×"
                          f"{hires_size(height, scale)}; the second pass spends {spent} of "
                          f"{steps} steps.")  # fmt: skip
