"""Settings: model folders, device and precision, memory options, output folder and file names."""

from __future__ import annotations

from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QFileDialog,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QListWidget,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from pipelines.errors import StudioError, ValidationError
from pipelines.export import check_file_pattern
from pipelines.types import MemoryOptions
from studio.settings import DEVICES, MAX_HISTORY_LIMIT, PRECISIONS, StudioSettings
from studio.widgets.layout import row


class FolderList(QWidget):
    def __init__(self, tooltip: str) -> None:
        super().__init__()
        self.list = QListWidget()
        self.list.setToolTip(tooltip)
        self.list.setMinimumHeight(70)
        add = QPushButton("Add…")
        add.setToolTip("Add a folder to search.")
        add.clicked.connect(self._add)
        remove = QPushButton("Remove")
        remove.setToolTip("Remove the selected folder from the list (nothing is deleted).")
        remove.clicked.connect(lambda: self.list.takeItem(self.list.currentRow()))
        buttons = QVBoxLayout()
        buttons.addWidget(add)
        buttons.addWidget(remove)
        buttons.addStretch(1)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.list, 1)
        layout.addLayout(buttons)

    def _add(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Add a folder")
        if folder:
            self.list.addItem(folder)

    def folders(self) -> list[str]:
        return [self.list.item(i).text() for i in range(self.list.count())]

    def set_folders(self, folders: list[str]) -> None:
        self.list.clear()
        self.list.addItems(folders)


class SettingsDialog(QDialog):
    def __init__(self, settings: StudioSettings, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Settings")
        self.settings = settings
        self.model_folders = FolderList(
            "Folders searched for models: diffusers folders, .safetensors files, and the model "
            "folders of AUTOMATIC1111, Forge or ComfyUI installs."
        )
        self.annotator_folders = FolderList(
            "Folders holding preprocessor weights (OpenPose, MiDaS) for pose and depth maps."
        )
        self.device = QComboBox()
        self.device.addItems(DEVICES)
        self.device.setToolTip("Where models run: auto picks CUDA, then Apple MPS, then the CPU.")
        self.precision = QComboBox()
        self.precision.addItems(PRECISIONS)
        self.precision.setToolTip(
            "Number format: auto uses fp16 on GPUs, bf16 on CPUs with bf16 units and fp32 on other CPUs."
        )
        self.allow_pickle = QCheckBox("Allow .ckpt / .pt model files (they can run code)")
        self.allow_pickle.setToolTip("Pickled checkpoints execute code when loaded: only enable "
                                     "this for files you trust.")  # fmt: skip
        self.attention_slicing = QCheckBox("Attention slicing")
        self.attention_slicing.setToolTip("Less GPU memory, a little slower.")
        self.vae_tiling = QCheckBox("VAE tiling")
        self.vae_tiling.setToolTip("Decode large images in tiles to save GPU memory.")
        self.cpu_offload = QCheckBox("CPU offload")
        self.cpu_offload.setToolTip("Keep model parts in system memory until needed: much less "
                                    "GPU memory, slower (CUDA only).")  # fmt: skip
        self.output_folder = QLineEdit()
        self.output_folder.setToolTip("Where Ctrl+S and “Save all” write images.")
        browse = QPushButton("Browse…")
        browse.setToolTip("Choose the output folder.")
        browse.clicked.connect(self._browse_output)
        self.file_pattern = QLineEdit()
        self.file_pattern.setToolTip(
            "File names: {date} {time} {index} {seed} {sampler} {steps} {prompt}. Existing files "
            "are never overwritten; a free name is chosen."
        )
        # Checked as it is typed, so OK can only store a pattern that gives a file name.
        self.pattern_problem = QLabel()
        self.pattern_problem.setWordWrap(True)
        self.pattern_problem.setStyleSheet("color: #e06c6c;")
        self.pattern_problem.hide()
        self.file_pattern.textChanged.connect(self._check_pattern)
        self.output_folder.textChanged.connect(self._check_pattern)

        self.history_limit = QSpinBox(minimum=0, maximum=MAX_HISTORY_LIMIT, singleStep=100)
        self.history_limit.setSpecialValueText("No limit")
        self.history_limit.setToolTip("How many finished images the history folder keeps; past "
                                      "it the oldest are removed for good.")  # fmt: skip
        self.comparison_limit = QSpinBox(minimum=0, maximum=MAX_HISTORY_LIMIT)
        self.comparison_limit.setSpecialValueText("No limit")
        self.comparison_limit.setToolTip("How many finished sampler comparisons (with their step "
                                         "histories) are kept to reopen; oldest first out.")  # fmt: skip

        models = QGroupBox("Models")
        form = QFormLayout(models)
        form.addRow("Model folders", self.model_folders)
        form.addRow("Preprocessor folders", self.annotator_folders)
        form.addRow("", self.allow_pickle)
        device = QGroupBox("Device and memory")
        form = QFormLayout(device)
        form.addRow("Device", self.device)
        form.addRow("Precision", self.precision)
        form.addRow("Memory", row(self.attention_slicing, self.vae_tiling, self.cpu_offload))
        output = QGroupBox("Output")
        form = QFormLayout(output)
        form.addRow("Folder", row(self.output_folder, browse))
        form.addRow("File names", self.file_pattern)
        form.addRow("", self.pattern_problem)
        history = QGroupBox("History")
        form = QFormLayout(history)
        form.addRow("Images kept", self.history_limit)
        form.addRow("Comparisons kept", self.comparison_limit)
        note = QLabel("Device, precision and model folders apply to the next run.")
        note.setWordWrap(True)
        buttons = QDialogButtonBox(
            QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel
        )
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        for widget in (models, device, output, history, note, buttons):
            layout.addWidget(widget)
        self.load()

    def _browse_output(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Output folder", self.output_folder.text())
        if folder:
            self.output_folder.setText(folder)

    def _check_pattern(self) -> bool:
        try:
            check_file_pattern(self.file_pattern.text().strip() or self.settings.file_pattern)
            if "\0" in self.output_folder.text():
                raise ValidationError("The output folder's name contains a NUL character.")
        except StudioError as problem:
            self.pattern_problem.setText(str(problem))
            self.pattern_problem.show()
            return False
        self.pattern_problem.hide()
        return True

    def load(self) -> None:
        s = self.settings
        self.model_folders.set_folders(s.model_folders)
        self.annotator_folders.set_folders(s.annotator_folders)
        self.device.setCurrentText(s.device)
        self.precision.setCurrentText(s.precision)
        self.allow_pickle.setChecked(s.allow_pickle)
        memory = s.memory
        self.attention_slicing.setChecked(memory.attention_slicing)
        self.vae_tiling.setChecked(memory.vae_tiling)
        self.cpu_offload.setChecked(memory.cpu_offload)
        self.output_folder.setText(s.output_folder)
        self.file_pattern.setText(s.file_pattern)
        self.history_limit.setValue(s.history_limit)
        self.comparison_limit.setValue(s.comparison_limit)

    def save(self) -> None:
        s = self.settings
        s.model_folders = self.model_folders.folders()
        s.annotator_folders = self.annotator_folders.folders()
        s.device = self.device.currentText()
        s.precision = self.precision.currentText()
        s.allow_pickle = self.allow_pickle.isChecked()
        s.memory = MemoryOptions(
            attention_slicing=self.attention_slicing.isChecked(),
            vae_tiling=self.vae_tiling.isChecked(),
            cpu_offload=self.cpu_offload.isChecked(),
        )
        s.output_folder = self.output_folder.text().strip() or s.output_folder
        s.file_pattern = self.file_pattern.text().strip() or s.file_pattern
        s.history_limit = self.history_limit.value()
        s.comparison_limit = self.comparison_limit.value()
        s.sync()

    def accept(self) -> None:
        if not self._check_pattern():
            self.file_pattern.setFocus()
            return  # the message under the field says what to change
        self.save()
        super().accept()
