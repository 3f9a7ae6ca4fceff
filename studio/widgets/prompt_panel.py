"""Prompt panel: prompts with token counts, seed, steps, CFG, size, model picker, Generate/Cancel."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

from PySide6.QtCore import QRegularExpression, Qt, QTimer, Signal
from PySide6.QtGui import (
    QFont,
    QKeyEvent,
    QRegularExpressionValidator,
    QStandardItem,
    QStandardItemModel,
)
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QLabel,
    QLineEdit,
    QMenu,
    QPlainTextEdit,
    QPushButton,
    QSpinBox,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from pipelines.types import (
    MAX_CFG,
    MAX_CLIP_SKIP,
    MAX_PROMPT_CHARS,
    MAX_SEED,
    MAX_SIZE,
    MAX_STEPS,
    MIN_CLIP_SKIP,
    MIN_SIZE,
    GenerationRequest,
    snap_size,
)
from studio.settings import MAX_PANEL_BATCH
from studio.widgets.layout import row

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

    from pipelines.models import ModelInfo
    from pipelines.types import ModelFamily

NATIVE = "Model's native size"
CUSTOM = "Custom"
SIZE_PRESETS = {
    "512 × 512 (SD 1.x)": (512, 512),
    "512 × 768 (portrait)": (512, 768),
    "768 × 512 (landscape)": (768, 512),
    "768 × 768": (768, 768),
    "1024 × 1024 (SDXL)": (1024, 1024),
    "832 × 1216 (SDXL portrait)": (832, 1216),
    "1216 × 832 (SDXL landscape)": (1216, 832),
}
MODEL_PATH_ROLE = Qt.ItemDataRole.UserRole
DEFAULT_MODEL_LABEL = "Bundled default model"


snap8 = snap_size  # the core's rule, under the name the panel's callers know


class PromptEdit(QPlainTextEdit):
    """Multi-line prompt box; Ctrl+Enter is left to the window's Generate shortcut."""

    def __init__(self, placeholder: str, tooltip: str) -> None:
        super().__init__()
        self.setPlaceholderText(placeholder)
        self.setToolTip(tooltip)
        self.setTabChangesFocus(True)
        self.setMinimumHeight(52)

    def keyPressEvent(self, event: QKeyEvent) -> None:  # noqa: N802
        enter = event.key() in (Qt.Key.Key_Return, Qt.Key.Key_Enter)
        if enter and event.modifiers() & Qt.KeyboardModifier.ControlModifier:
            event.ignore()  # propagate to the window's shortcut
            return
        super().keyPressEvent(event)


class PromptPanel(QWidget):
    generate_clicked = Signal()
    cancel_clicked = Signal()
    model_chosen = Signal(str)  # path ("" = bundled default)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._tokenizer = None
        self._counted: dict[QLabel, tuple[object, str]] = {}  # what each label last counted
        self._native: tuple[int, int] | None = None
        self._ratio = 1.0
        self._syncing = False
        self._last_seed: int | None = None

        self.prompt = PromptEdit(
            "What to show, e.g. “a lighthouse on a cliff at dusk, oil painting”",
            "Prompt: what the image should show. (word:1.2) weights words, [word] tones them "
            "down, BREAK starts a new 75-token chunk, <lora:name:0.8> applies a LoRA.",
        )
        self.prompt_tokens = QLabel("– tokens")
        self.negative = PromptEdit(
            "What to avoid, e.g. “blurry, low contrast”",
            "Negative prompt: what the image should not show (used when CFG scale > 1).",
        )
        self.negative_tokens = QLabel("– tokens")
        for label in (self.prompt_tokens, self.negative_tokens):
            label.setAlignment(Qt.AlignmentFlag.AlignRight)
            label.setToolTip("Tokens used out of what the prompt's 75-token chunks hold.")
        self._token_timer = QTimer(self, singleShot=True, interval=150)
        self._token_timer.timeout.connect(self.update_token_counts)
        self.prompt.textChanged.connect(self._token_timer.start)
        self.negative.textChanged.connect(self._token_timer.start)

        self.model = QComboBox()
        self.model.setToolTip(
            "Base model. Models are found in the folders set in Settings → Model folders; use "
            "“…” to open a model file or diffusers folder directly."
        )
        self.model.setMinimumContentsLength(16)
        self.model.setSizeAdjustPolicy(
            QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon
        )
        self.model.activated.connect(self._on_model_activated)
        self.browse_model = QToolButton(text="…")
        self.browse_model.setToolTip("Open a model file (.safetensors) or a diffusers folder.")
        self.browse_model.setPopupMode(QToolButton.ToolButtonPopupMode.InstantPopup)
        menu = QMenu(self.browse_model)
        menu.addAction("Model file…", self._browse_model_file)
        menu.addAction("Diffusers folder…", self._browse_model_folder)
        self.browse_model.setMenu(menu)
        self.set_models([], "")

        self.seed = QLineEdit()
        self.seed.setValidator(QRegularExpressionValidator(QRegularExpression(r"\d{0,10}"), self))
        self.seed.setPlaceholderText("random")
        self.seed.setToolTip(f"Seed (0 to {MAX_SEED}): the same seed and settings give the same "
                             "image.")  # fmt: skip
        self.random_seed = QCheckBox("Random")
        self.random_seed.setToolTip("Draw a new random seed for every run (it is recorded).")
        self.random_seed.toggled.connect(lambda on: self.seed.setEnabled(not on))
        self.reuse_seed = QPushButton("Reuse last")
        self.reuse_seed.setToolTip("Fill in the seed of the last finished image.")
        self.reuse_seed.setEnabled(False)
        self.reuse_seed.clicked.connect(self._reuse_last_seed)

        self.steps = QSpinBox(minimum=1, maximum=MAX_STEPS, value=20)
        self.steps.setToolTip("Sampler steps: more steps refine more but take longer.")
        self.cfg = QDoubleSpinBox(minimum=0.0, maximum=MAX_CFG, value=7.0, singleStep=0.5)
        self.cfg.setDecimals(1)
        self.cfg.setToolTip("CFG scale: how strongly the prompt steers the image (1 = ignore it).")

        self.preset = QComboBox()
        self.preset.addItems([NATIVE, *SIZE_PRESETS, CUSTOM])
        self.preset.setToolTip(
            "Image size presets; “native” uses the size the model was trained at."
        )
        self.preset.currentTextChanged.connect(self._on_preset)
        self.width_box = self._size_box("Width in pixels (a multiple of 8).")
        self.height_box = self._size_box("Height in pixels (a multiple of 8).")
        self.aspect_lock = QCheckBox("Lock")
        self.aspect_lock.setToolTip("Keep the width:height ratio when changing either side.")
        self.aspect_lock.toggled.connect(self._remember_ratio)
        self.width_box.valueChanged.connect(lambda v: self._size_changed(self.width_box, v))
        self.height_box.valueChanged.connect(lambda v: self._size_changed(self.height_box, v))

        self.lora_button = QToolButton(text="Add LoRA")
        self.lora_button.setToolTip(
            "Add a LoRA to the prompt as <lora:name:weight>. LoRAs are found in the Lora, "
            "LyCORIS and loras folders of the model folders (Settings → Model folders)."
        )
        self.lora_button.setPopupMode(QToolButton.ToolButtonPopupMode.InstantPopup)
        self.lora_menu = QMenu(self.lora_button)
        self.lora_menu.aboutToShow.connect(self.fill_lora_menu)
        self.lora_button.setMenu(self.lora_menu)
        self.lora_weight = QDoubleSpinBox(minimum=-4.0, maximum=4.0, value=1.0, singleStep=0.05)
        self.lora_weight.setDecimals(2)
        self.lora_weight.setToolTip("Weight of the next LoRA added (edit it in the tag later).")
        self._lora_folders: list[Path] = []
        self._families: dict[str, ModelFamily | None] = {}  # model path -> family, for the picker
        self.clip_skip = QSpinBox(minimum=MIN_CLIP_SKIP, maximum=MAX_CLIP_SKIP, value=1)
        self.clip_skip.setToolTip(
            "Clip skip: read the text encoder's N-th layer from the end (1 = the last). Some SD "
            "1.x models (anime ones often) are made for 2. SDXL always reads its penultimate layer."
        )

        self.batch_count = QSpinBox(minimum=1, maximum=MAX_PANEL_BATCH, value=1)
        self.batch_count.setToolTip(
            "Batch count: how many images one Generate queues, each its own job, with the seeds "
            "seed, seed+1, … (or a random seed each when Random is ticked)."
        )

        self.generate_button = QPushButton("Generate")
        self.generate_button.setToolTip("Generate an image with these settings (Ctrl+Enter).")
        self.generate_button.setDefault(True)
        font = QFont(self.generate_button.font())
        font.setBold(True)
        self.generate_button.setFont(font)
        self.generate_button.clicked.connect(self.generate_clicked)
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setToolTip("Stop the run after the current step (Esc).")
        self.cancel_button.setEnabled(False)
        self.cancel_button.clicked.connect(self.cancel_clicked)

        layout = QVBoxLayout(self)
        layout.setContentsMargins(6, 6, 6, 6)
        layout.addWidget(QLabel("Prompt"))
        layout.addWidget(self.prompt, 3)
        layout.addWidget(self.prompt_tokens)
        layout.addWidget(QLabel("Negative prompt"))
        layout.addWidget(self.negative, 2)
        layout.addWidget(self.negative_tokens)
        form = QFormLayout()
        form.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.AllNonFixedFieldsGrow)
        form.addRow("Model", row(self.model, self.browse_model, stretch_first=True))
        form.addRow("Seed", row(self.seed, self.random_seed, self.reuse_seed, stretch_first=True))
        self.cfg_label = QLabel("CFG")
        form.addRow("Steps", row(self.steps, self.cfg_label, self.cfg))
        form.addRow(
            "LoRA",
            row(self.lora_button, self.lora_weight, QLabel("Clip skip"), self.clip_skip,
                stretch_first=True),
        )  # fmt: skip
        form.addRow("Size", self.preset)
        form.addRow("", row(self.width_box, QLabel("×"), self.height_box, self.aspect_lock))
        form.addRow("Batch count", row(self.batch_count, stretch_first=True))
        layout.addLayout(form)
        layout.addWidget(row(self.generate_button, self.cancel_button, stretch_first=True))
        self.random_seed.setChecked(True)
        self._on_preset(NATIVE)

    def _size_box(self, tooltip: str) -> QSpinBox:
        box = QSpinBox(minimum=MIN_SIZE, maximum=MAX_SIZE, value=512, singleStep=8)
        box.setToolTip(tooltip)
        box.setKeyboardTracking(False)
        box.editingFinished.connect(lambda: box.setValue(snap8(box.value())))
        return box

    # ---- models -------------------------------------------------------------------------------
    def set_models(self, models: Iterable[ModelInfo], current: str) -> None:
        """Fill the picker from discovered base models (ModelInfo), grouped by family."""
        models = list(models)
        store = QStandardItemModel(self.model)
        store.appendRow(_model_item(DEFAULT_MODEL_LABEL, ""))
        groups: dict[str, list] = {}
        for info in models:
            label = info.family.label if info.family else "Unknown family"
            groups.setdefault(label, []).append(info)
        known = {""}
        self._families = {str(info.path): info.family for info in models}
        for label in sorted(groups):
            header = QStandardItem(label)
            header.setFlags(Qt.ItemFlag.NoItemFlags)  # a group title, not a choice
            font = QFont()
            font.setBold(True)
            header.setFont(font)
            store.appendRow(header)
            for info in sorted(groups[label], key=lambda m: m.name.lower()):
                item = _model_item(f"  {info.name}", str(info.path))
                item.setToolTip(str(info.path))
                store.appendRow(item)
                known.add(str(info.path))
        if current and current not in known:
            store.appendRow(_model_item(Path(current).name, current))
        self.model.setModel(store)
        self.set_model(current)

    def set_model(self, path: str) -> None:
        index = self.model.findData(path, MODEL_PATH_ROLE)
        if index < 0:
            store = self.model.model()
            store.appendRow(_model_item(Path(path).name or DEFAULT_MODEL_LABEL, path))
            index = self.model.count() - 1
        self.model.setCurrentIndex(index)

    def current_model(self) -> str:
        return str(self.model.currentData(MODEL_PATH_ROLE) or "")

    def _on_model_activated(self, _index: int) -> None:
        self.model_chosen.emit(self.current_model())

    def _browse_model_file(self) -> None:
        path, _ = QFileDialog.getOpenFileName(
            self, "Open a model file", "", "Model files (*.safetensors *.ckpt);;All files (*)"
        )
        if path:
            self.set_model(path)
            self.model_chosen.emit(path)

    def _browse_model_folder(self) -> None:
        path = QFileDialog.getExistingDirectory(self, "Open a diffusers model folder")
        if path:
            self.set_model(path)
            self.model_chosen.emit(path)

    def set_distilled_guidance(self, distilled: bool) -> None:
        """Flux.1 takes its guidance value as an input of the model, not as CFG's second pass."""
        self.cfg_label.setText("Guidance" if distilled else "CFG")
        self.cfg.setToolTip(
            "Guidance (Distilled CFG Scale): how closely Flux.1-dev follows the prompt; around 3.5."
            if distilled
            else "CFG scale: how strongly the prompt steers the image (1 = ignore it)."
        )

    def set_native_size(self, size: tuple[int, int] | None) -> None:
        self._native = size
        if self.preset.currentText() == NATIVE and size:
            self._set_size(*size)

    # ---- tokens -------------------------------------------------------------------------------
    def set_tokenizer(self, tokenizer: PreTrainedTokenizerBase | None) -> None:
        self._tokenizer = tokenizer
        self.update_token_counts()

    def update_token_counts(self) -> None:
        if self._tokenizer is None:
            return
        from pipelines.prompts import prompt_report

        for edit, label in (
            (self.prompt, self.prompt_tokens),
            (self.negative, self.negative_tokens),
        ):
            text = edit.toPlainText()
            if self._counted.get(label) == (self._tokenizer, text):
                continue  # typing in one box does not recount the other
            self._counted[label] = (self._tokenizer, text)
            report = prompt_report(self._tokenizer, text)
            label.setText(report.label)
            label.setStyleSheet("")
            label.setToolTip(
                "Tokens used out of what the prompt's 75-token chunks hold. Each chunk is encoded "
                "on its own (BREAK starts a new one); no text is dropped."
            )
            if len(text) > MAX_PROMPT_CHARS:
                label.setStyleSheet("color: #ff8060;")
                label.setToolTip(
                    f"{len(text):,} characters: Generate refuses prompts over "
                    f"{MAX_PROMPT_CHARS:,} characters."
                )

    # ---- LoRAs --------------------------------------------------------------------------------
    def set_lora_folders(self, folders: Iterable[Path]) -> None:
        self._lora_folders = list(folders)

    def fill_lora_menu(self) -> None:
        """The LoRAs in the model folders, read when the menu opens (headers only: fast)."""
        from pipelines.loras import discover_loras, lora_folders

        self.lora_menu.clear()
        model = self.current_model()
        found = discover_loras(lora_folders(self._lora_folders, Path(model) if model else None))
        if not found.loras:
            action = self.lora_menu.addAction("No LoRAs found")
            action.setEnabled(False)
            action.setToolTip(f"Looked in: {found.searched_text()}")
            self.lora_menu.setToolTipsVisible(True)
            return
        family = self._families.get(model)
        for info in sorted(found.loras, key=lambda i: (i.family_label, i.name.lower())):
            action = self.lora_menu.addAction(f"{info.name}   ({info.family_label})")
            action.setToolTip(str(info.path))
            if family is not None and info.family not in (None, family):
                action.setEnabled(False)  # listed, so it is not a mystery where it went
                action.setToolTip(f"{info.path}: for {info.family_label}; the model is "
                                  f"{family.label}.")  # fmt: skip
            action.triggered.connect(lambda _=False, name=info.name: self.add_lora(name))
        self.lora_menu.setToolTipsVisible(True)

    def add_lora(self, name: str) -> None:
        """Write ``<lora:name:weight>`` at the end of the prompt, as a user would type it."""
        from pipelines.prompt_syntax import lora_tag

        text = self.prompt.toPlainText().rstrip()
        tag = lora_tag(name, round(self.lora_weight.value(), 2))
        self.prompt.setPlainText(f"{text} {tag}" if text else tag)
        self.prompt.moveCursor(self.prompt.textCursor().MoveOperation.End)

    # ---- seed ---------------------------------------------------------------------------------
    def set_last_seed(self, seed: int) -> None:
        self._last_seed = seed
        self.reuse_seed.setEnabled(True)
        self.reuse_seed.setToolTip(f"Use the last image's seed ({seed}).")

    def _reuse_last_seed(self) -> None:
        if self._last_seed is not None:
            self.random_seed.setChecked(False)
            self.seed.setText(str(self._last_seed))

    def seed_value(self) -> int | None:
        if self.random_seed.isChecked() or not self.seed.text():
            return None
        return min(int(self.seed.text()), MAX_SEED)

    # ---- size ---------------------------------------------------------------------------------
    def _on_preset(self, name: str) -> None:
        native = name == NATIVE
        self.width_box.setEnabled(not native)
        self.height_box.setEnabled(not native)
        if native and self._native:
            self._set_size(*self._native)
        elif name in SIZE_PRESETS:
            self._set_size(*SIZE_PRESETS[name])

    def _set_size(self, width: int, height: int) -> None:
        self._syncing = True
        self.width_box.setValue(width)
        self.height_box.setValue(height)
        self._syncing = False
        self._remember_ratio()

    def _remember_ratio(self, *_args: object) -> None:
        self._ratio = self.width_box.value() / max(1, self.height_box.value())

    def _size_changed(self, box: QSpinBox, value: int) -> None:
        if self._syncing:
            return
        self._syncing = True
        if self.aspect_lock.isChecked():
            if box is self.width_box:
                self.height_box.setValue(snap8(value / self._ratio))
            else:
                self.width_box.setValue(snap8(value * self._ratio))
        else:
            self._remember_ratio()
        current = (self.width_box.value(), self.height_box.value())
        match = next((n for n, s in SIZE_PRESETS.items() if s == current), CUSTOM)
        if self.preset.currentText() != NATIVE:
            self.preset.setCurrentText(match)
        self._syncing = False

    def size_value(self) -> tuple[int | None, int | None]:
        if self.preset.currentText() == NATIVE:
            return None, None
        return snap8(self.width_box.value()), snap8(self.height_box.value())

    # ---- request ------------------------------------------------------------------------------
    def values(self) -> dict:
        width, height = self.size_value()
        return dict(
            prompt=self.prompt.toPlainText().strip(),
            negative_prompt=self.negative.toPlainText().strip(),
            model=self.current_model(),
            seed=self.seed_value(),
            steps=self.steps.value(),
            cfg_scale=round(self.cfg.value(), 2),
            width=width,
            height=height,
            clip_skip=self.clip_skip.value(),
        )

    def apply(self, request: GenerationRequest) -> None:
        self.prompt.setPlainText(request.prompt)
        self.negative.setPlainText(request.negative_prompt)
        self.set_model(request.model)
        if request.seed is None:
            self.random_seed.setChecked(True)
        else:
            self.random_seed.setChecked(False)
            self.seed.setText(str(request.seed))
        self.steps.setValue(request.steps)
        self.cfg.setValue(request.cfg_scale)
        self.clip_skip.setValue(request.clip_skip)
        if request.width is None or request.height is None:
            self.preset.setCurrentText(NATIVE)
        else:
            self.preset.setCurrentText(CUSTOM)
            self._set_size(request.width, request.height)
            self._size_changed(self.width_box, request.width)

    def set_running(self, running: bool) -> None:
        """Cancel stops the running job; Generate queues whether a job runs or not."""
        self.cancel_button.setEnabled(running)


def _model_item(text: str, path: str) -> QStandardItem:
    item = QStandardItem(text)
    item.setData(path, MODEL_PATH_ROLE)
    return item
