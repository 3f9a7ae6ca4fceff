"""Sampler panel: the core's sampler registry with descriptions, steps, and the preview decoder.

Compare mode swaps the single choice for a checkable table: 2-8 samplers, each with its own step
count or the shared one, run side by side by :func:`pipelines.compare.compare`.
"""

from __future__ import annotations

from collections.abc import Sequence

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QAbstractItemView,
    QCheckBox,
    QComboBox,
    QFormLayout,
    QHeaderView,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QPushButton,
    QSpinBox,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from pipelines.types import MAX_BATCH_SIZE, MAX_STEPS, PreviewMode
from studio.jobs import SamplerEntry, SamplerInfo, sampler_entry

PREVIEW_CHOICES = (
    (PreviewMode.AUTO, "Auto", "Chosen for the loaded model from what each decoder costs: the "
     "full VAE when it is cheap enough, else the tiny decoder when there is one, else the "
     "approximate map. The last step always shows the final image."),
    (PreviewMode.APPROXIMATE, "Approximate (fast)", "A linear map from latents to colours: "
     "nearly free, blurry."),
    (PreviewMode.TINY, "Tiny decoder", "TAESD: sharp previews at little cost, when its weights "
     "are configured; otherwise falls back to approximate."),
    (PreviewMode.FULL, "Full VAE (exact, slow)", "The model's own decoder at every step: exact "
     "but costs about one extra step each time."),
    (PreviewMode.NONE, "No previews", "Only show the final image (fastest)."),
)  # fmt: skip

# pipelines.compare.MAX_COLUMNS; not imported so that the window opens before torch is loaded.
COMPARE_MIN, COMPARE_MAX = 2, 8
DEFAULT_COMPARISON = ("Euler", "DPM++ 2M Karras")
SHARED_STEPS = "shared"  # the steps spin box's text for "the Steps value below"


class SamplerPanel(QWidget):
    compare_clicked = Signal()
    choice_changed = Signal()  # the sampler, the compare mode or the ticked samplers changed

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._wanted = "Euler"  # kept until the registry arrives from the worker
        self._wanted_comparison: list = list(DEFAULT_COMPARISON)  # likewise, for the table
        self._family = ""  # the loaded model's family: which samplers are shown
        self.samplers = QListWidget()
        self.samplers.setToolTip("The sampler (scheduler) that walks from noise to the image.")
        self.samplers.currentItemChanged.connect(self._show_description)
        self.samplers.currentItemChanged.connect(self.choice_changed)
        self.description = QLabel("Loading samplers…")
        self.description.setWordWrap(True)
        self.description.setToolTip("What the selected sampler does.")
        self.steps = QSpinBox(minimum=1, maximum=MAX_STEPS, value=20)
        self.steps.setToolTip("Sampler steps (the same value as in the prompt panel).")
        self.preview = QComboBox()
        for mode, label, tip in PREVIEW_CHOICES:
            self.preview.addItem(label, mode.value)
            self.preview.setItemData(self.preview.count() - 1, tip, Qt.ItemDataRole.ToolTipRole)
        self.preview.setToolTip("How the live preview is decoded at every step.")
        self.batch_size = QSpinBox(minimum=1, maximum=MAX_BATCH_SIZE, value=1)
        self.batch_size.setToolTip("Images denoised together in one model call per step, with the "
                                   "seeds seed, seed+1, …: faster per image on a GPU with memory "
                                   "to spare. Each image is its own history entry.")  # fmt: skip
        self._build_compare()

        layout = QVBoxLayout(self)
        layout.setContentsMargins(6, 6, 6, 6)
        layout.addWidget(self.compare_mode)
        layout.addWidget(self.samplers, 1)
        layout.addWidget(self.description)
        layout.addWidget(self.compare_table, 1)
        layout.addWidget(self.compare_count)
        layout.addWidget(self.compare_button)
        form = QFormLayout()
        form.addRow("Steps", self.steps)
        form.addRow("Preview", self.preview)
        form.addRow("Batch size", self.batch_size)
        layout.addLayout(form)
        self._set_compare_mode(False)

    # ---- compare mode -------------------------------------------------------------------------
    def _build_compare(self) -> None:
        self._busy = False
        self.compare_mode = QCheckBox("Compare samplers")
        self.compare_mode.setToolTip(
            f"Run the same prompt, seed, size and controls through {COMPARE_MIN}–{COMPARE_MAX} "
            "samplers and watch them denoise side by side."
        )
        self.compare_mode.toggled.connect(self._set_compare_mode)
        self.compare_mode.toggled.connect(self.choice_changed)
        self.compare_table = QTableWidget(0, 2)
        self.compare_table.setHorizontalHeaderLabels(["Sampler", "Steps"])
        self.compare_table.verticalHeader().hide()
        header = self.compare_table.horizontalHeader()
        header.setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
        header.setSectionResizeMode(1, QHeaderView.ResizeMode.ResizeToContents)
        self.compare_table.setSelectionMode(QAbstractItemView.SelectionMode.NoSelection)
        self.compare_table.setToolTip(
            f"Tick {COMPARE_MIN}–{COMPARE_MAX} samplers to compare. Steps: “{SHARED_STEPS}” uses "
            "the Steps value below; another number gives that sampler its own step count."
        )
        self.compare_table.itemChanged.connect(self._update_compare_count)
        self.compare_table.itemChanged.connect(self.choice_changed)
        self.compare_count = QLabel()
        self.compare_count.setToolTip(
            f"How many samplers are ticked; a comparison needs {COMPARE_MIN} to {COMPARE_MAX}."
        )
        self.compare_button = QPushButton("Compare")
        self.compare_button.setToolTip(
            "Run the ticked samplers side by side from the same noise (Ctrl+Shift+Enter)."
        )
        self.compare_button.clicked.connect(self.compare_clicked)

    def _set_compare_mode(self, on: bool) -> None:
        for widget in (self.compare_table, self.compare_count, self.compare_button):
            widget.setVisible(on)
        for widget in (self.samplers, self.description):
            widget.setVisible(not on)
        if on != self.compare_mode.isChecked():
            self.compare_mode.setChecked(on)

    def set_compare_mode(self, on: bool) -> None:
        self._set_compare_mode(on)

    def _fill_compare_table(self, samplers: Sequence[SamplerInfo]) -> None:
        chosen = self.compare_entries() or self._wanted_comparison
        self.compare_table.blockSignals(True)
        self.compare_table.setRowCount(0)
        for info in samplers:
            row = self.compare_table.rowCount()
            self.compare_table.insertRow(row)
            item = QTableWidgetItem(info.name)
            item.setFlags(Qt.ItemFlag.ItemIsEnabled | Qt.ItemFlag.ItemIsUserCheckable)
            item.setCheckState(Qt.CheckState.Unchecked)
            cost = "" if info.evaluations_per_step == 1 else (
                f" Costs {info.evaluations_per_step} model evaluations per step."
            )  # fmt: skip
            item.setToolTip(info.description + cost)
            self.compare_table.setItem(row, 0, item)
            spin = QSpinBox(minimum=0, maximum=MAX_STEPS, value=0)
            spin.setSpecialValueText(SHARED_STEPS)
            spin.setToolTip(
                f"Steps for {info.name}: “{SHARED_STEPS}” (0) uses the Steps value below."
            )
            self.compare_table.setCellWidget(row, 1, spin)
        self.compare_table.blockSignals(False)
        self.set_compare_entries(chosen)

    def _rows(self):
        for row in range(self.compare_table.rowCount()):
            yield self.compare_table.item(row, 0), self.compare_table.cellWidget(row, 1)

    def compare_entries(self) -> list[SamplerEntry]:
        """The ticked samplers in table order: a name, or (name, steps) with its own steps."""
        entries: list[SamplerEntry] = []
        for item, spin in self._rows():
            if item.checkState() == Qt.CheckState.Checked:
                steps = spin.value()
                entries.append((item.text(), steps) if steps else item.text())
        return entries

    def set_compare_entries(self, entries: Sequence[SamplerEntry]) -> None:
        """Tick these samplers (names, or (name, steps)); before the catalog arrives they wait."""
        self._wanted_comparison = list(entries)
        wanted = dict(sampler_entry(entry) for entry in entries)
        self.compare_table.blockSignals(True)
        for item, spin in self._rows():
            checked = item.text() in wanted
            state = Qt.CheckState.Checked if checked else Qt.CheckState.Unchecked
            item.setCheckState(state)
            spin.setValue(wanted.get(item.text(), 0) or 0)
        self.compare_table.blockSignals(False)
        self._update_compare_count()
        self.choice_changed.emit()

    def wanted_comparison(self) -> list[SamplerEntry]:
        """What to tick next time: the table once filled, else what is waiting for it."""
        return self.compare_entries() if self.compare_table.rowCount() else self._wanted_comparison

    def chosen_samplers(self) -> list[str]:
        """The samplers the next run uses: the ticked ones in compare mode, else the selected."""
        if self.compare_mode.isChecked():
            return [sampler_entry(entry)[0] for entry in self.compare_entries()]
        return [self.sampler()]

    def compare_ready(self) -> bool:
        return COMPARE_MIN <= len(self.compare_entries()) <= COMPARE_MAX

    def _update_compare_count(self, _item: object = None) -> None:
        count = len(self.compare_entries())
        if count < COMPARE_MIN:
            text = f"{count} ticked: tick at least {COMPARE_MIN}."
        elif count > COMPARE_MAX:
            text = f"{count} ticked: at most {COMPARE_MAX} can be compared."
        else:
            text = f"{count} samplers ticked."
        self.compare_count.setText(text)
        self.compare_button.setEnabled(self.compare_ready() and not self._busy)

    def set_busy(self, busy: bool) -> None:
        self._busy = busy
        self._update_compare_count()

    def set_samplers(self, samplers: Sequence[SamplerInfo], default: str) -> None:
        """Fill from the worker's catalog (name, description, evaluations per step)."""
        wanted = self._wanted or default
        self.samplers.clear()
        for info in samplers:
            item = QListWidgetItem(info.name)
            cost = "" if info.evaluations_per_step == 1 else f" ({info.evaluations_per_step}× cost)"
            item.setToolTip(info.description + cost)
            item.setData(Qt.ItemDataRole.UserRole, info.description + cost)
            self.samplers.addItem(item)
        self.set_sampler(wanted if self._find(wanted) else default)
        self._fill_compare_table(samplers)
        if self._family:  # the model loaded before the catalog came
            self.set_family(self._family)

    def set_family(self, family: str) -> None:
        """Show only the samplers a model of ``family`` (a ModelFamily value) can run."""
        from pipelines.flow_samplers import sampler_names_for
        from pipelines.types import ModelFamily

        self._family = family
        valid = set(sampler_names_for(ModelFamily(family)))
        for index in range(self.samplers.count()):
            item = self.samplers.item(index)
            item.setHidden(item.text() not in valid)
        for row, (item, _spin) in enumerate(self._rows()):
            self.compare_table.setRowHidden(row, item.text() not in valid)
            if item.text() not in valid:
                item.setCheckState(Qt.CheckState.Unchecked)  # a hidden tick would still count
        current = self.samplers.currentItem()
        if current is None or current.isHidden():
            shown = [self.samplers.item(i) for i in range(self.samplers.count())]
            first = next((item for item in shown if not item.isHidden()), None)
            if first is not None:
                self.samplers.setCurrentItem(first)

    def _find(self, name: str) -> QListWidgetItem | None:
        matches = self.samplers.findItems(name, Qt.MatchFlag.MatchExactly)
        return matches[0] if matches else None

    def set_sampler(self, name: str) -> None:
        self._wanted = name
        item = self._find(name)
        if item is not None:
            self.samplers.setCurrentItem(item)

    def sampler(self) -> str:
        item = self.samplers.currentItem()
        return item.text() if item is not None else self._wanted

    def _show_description(
        self, item: QListWidgetItem | None, _previous: QListWidgetItem | None = None
    ) -> None:
        if item is not None:
            self._wanted = item.text()
            self.description.setText(f"<b>{item.text()}</b>: {item.data(Qt.ItemDataRole.UserRole)}")

    def preview_mode(self) -> PreviewMode:
        return PreviewMode(self.preview.currentData())

    def set_preview_mode(self, mode: PreviewMode) -> None:
        self.preview.setCurrentIndex(max(0, self.preview.findData(mode.value)))

    def set_preview_note(self, note: str) -> None:
        """What the loaded model's previews cost and how true the approximate map's colours are."""
        tip = "How the live preview is decoded at every step."
        self.preview.setToolTip(f"{tip}\n{note}" if note else tip)
