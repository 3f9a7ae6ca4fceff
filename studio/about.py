"""Who the application is: its id, version, the licences it ships under, the bundled model's card,
its desktop entry, and the About dialog.

Everything above the dialog is Qt-free and torch-free at import, so ``diffusion-studio --version``
and ``--install-desktop-entry`` stay fast and work without a display.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from pipelines.resources import resource_path

# The reverse-DNS id names the desktop file, the AppStream file, the icons and Qt's desktop file name
# (which Wayland compositors use to match a window to its entry).
APP_ID = "io.github.diffusionstudio.DiffusionStudio"
APP_NAME = "Diffusion Studio"
DISTRIBUTION = "diffusion-studio"
SUMMARY = "Generate images with Stable Diffusion and ControlNet on your own GPU"
PROJECT_LICENCE = "Apache-2.0"
ICON_SIZES = (16, 24, 32, 48, 64, 128, 256, 512)
# pipelines.engine.DEFAULT_MODEL_FOLDER; repeated here because importing the engine imports torch.
MODEL_FOLDER = ("models", "toy-world")

# (distribution, what it does here): the dependencies the About dialog credits.
MAIN_DEPENDENCIES = (
    ("torch", "tensor library"),
    ("torchvision", "image operations"),
    ("diffusers", "Stable Diffusion pipelines and samplers"),
    ("transformers", "CLIP text encoders"),
    ("accelerate", "model loading and offload"),
    ("safetensors", "weight files"),
    ("torchsde", "SDE samplers"),
    ("controlnet-aux", "pose and depth detectors"),
    ("opencv-python-headless", "canny edges"),
    ("PySide6-Essentials", "Qt for Python: the window"),
    ("shiboken6", "Qt for Python bindings"),
    ("pillow", "image files"),
    ("numpy", "arrays"),
    ("huggingface-hub", "local model cache"),
    ("tokenizers", "text tokenizers"),
)


def app_version() -> str:
    try:
        return metadata.version(DISTRIBUTION)
    except metadata.PackageNotFoundError:
        return _source_version()


def _source_version() -> str:
    # A checkout run without installing: read pyproject.toml beside the packages.
    import tomllib

    pyproject = Path(__file__).resolve().parent.parent / "pyproject.toml"
    try:
        return tomllib.loads(pyproject.read_text("utf-8"))["project"]["version"] + " (source)"
    except (OSError, KeyError, ValueError):
        return "unknown"


@dataclass(frozen=True)
class Licence:
    name: str
    version: str
    licence: str
    purpose: str


def _licence_of(meta) -> str:
    expression = meta.get("License-Expression")
    if expression:
        return expression
    text = (meta.get("License") or "").strip()
    # Some packages paste the whole licence text into the field: keep its first line.
    if text and len(text) < 80 and "\n" not in text:
        return text
    classifiers = [
        c.rsplit("::", 1)[-1].strip()
        for c in meta.get_all("Classifier") or []
        if c.startswith("License ::")
    ]
    if classifiers:
        return ", ".join(classifiers)
    return text.splitlines()[0] if text else "see the package"


def dependency_licences() -> list[Licence]:
    found = []
    for name, purpose in MAIN_DEPENDENCIES:
        try:
            meta = metadata.metadata(name)
        except metadata.PackageNotFoundError:
            continue
        found.append(Licence(name, meta["Version"] or "?", _licence_of(meta), purpose))
    return found


def model_card_path() -> Path | None:
    path = resource_path(*MODEL_FOLDER, "README.md")
    return path if path.is_file() else None


def icon_files() -> dict[int | str, Path]:
    """Size → PNG, and "svg" → the scalable icon, for those present in the resources."""
    folder = resource_path("icons")
    files: dict[int | str, Path] = {}
    for size in ICON_SIZES:
        png = folder / f"diffusion-studio-{size}.png"
        if png.is_file():
            files[size] = png
    svg = folder / "diffusion-studio.svg"
    if svg.is_file():
        files["svg"] = svg
    return files


# ---- desktop entry (freedesktop.org) ----------------------------------------------------------
def _quote_exec_argument(argument: str) -> str:
    # The Desktop Entry spec's quoting: reserved characters need double quotes, and inside them
    # ", `, $ and \ take a backslash.
    if argument and not any(c in argument for c in " \t\n\"'\\><~|&;$*?#()`="):
        return argument
    escaped = "".join("\\" + c if c in '"`$\\' else c for c in argument)
    return f'"{escaped}"'


def desktop_entry(launcher: tuple[str, ...] = (DISTRIBUTION,)) -> str:
    command = " ".join(_quote_exec_argument(part) for part in launcher)
    return (
        "[Desktop Entry]\n"
        "Type=Application\n"
        f"Name={APP_NAME}\n"
        "GenericName=Image Generator\n"
        f"Comment={SUMMARY}\n"
        f"Exec={command} %f\n"
        f"Icon={APP_ID}\n"
        "Terminal=false\n"
        "Categories=Graphics;2DGraphics;RasterGraphics;\n"
        "Keywords=Stable Diffusion;ControlNet;AI;image;generate;prompt;diffusion;\n"
        # "Open with" on a PNG restores the settings stored in it.
        "MimeType=image/png;\n"
        "StartupNotify=true\n"
    )


def launcher_command() -> tuple[str, ...]:
    """How this copy of the studio starts: the bundle's executable, the installed script, or
    ``python -m studio``."""
    if getattr(sys, "frozen", False):
        executable = Path(sys.executable).resolve()
        sibling = executable.with_name(executable.name.replace("-debug", ""))
        return (str(sibling if sibling.is_file() else executable),)
    script = Path(sys.argv[0]) if sys.argv and sys.argv[0] else None
    if script is not None and script.name.startswith(DISTRIBUTION) and script.is_file():
        script = script.resolve()
        gui = script.with_name(script.name.replace("-debug", "").replace("-cli", ""))
        return (str(gui if gui.is_file() else script),)
    return (sys.executable, "-m", "studio")


def data_home() -> Path:
    return Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share")


def _desktop_targets(home: Path) -> dict[Path, Path | None]:
    """Installed path → source file (None for the generated desktop entry)."""
    targets: dict[Path, Path | None] = {home / "applications" / f"{APP_ID}.desktop": None}
    hicolor = home / "icons" / "hicolor"
    for size, source in icon_files().items():
        folder = "scalable" if size == "svg" else f"{size}x{size}"
        targets[hicolor / folder / "apps" / f"{APP_ID}{source.suffix}"] = source
    return targets


def install_desktop_entry(
    home: Path | None = None, launcher: tuple[str, ...] | None = None
) -> list[Path]:
    home = home or data_home()
    written = []
    for target, source in _desktop_targets(home).items():
        target.parent.mkdir(parents=True, exist_ok=True)
        temporary = target.with_name(target.name + ".tmp")
        if source is None:
            temporary.write_text(desktop_entry(launcher or launcher_command()), encoding="utf-8")
        else:
            shutil.copyfile(source, temporary)
        temporary.replace(target)
        written.append(target)
    _refresh_desktop_caches(home)
    return written


def uninstall_desktop_entry(home: Path | None = None) -> list[Path]:
    home = home or data_home()
    removed = []
    for target in _desktop_targets(home):
        if target.exists():
            target.unlink()
            removed.append(target)
    metainfo = home / "metainfo" / f"{APP_ID}.metainfo.xml"
    if metainfo.exists():
        metainfo.unlink()
        removed.append(metainfo)
    _refresh_desktop_caches(home)
    return removed


def _refresh_desktop_caches(home: Path) -> None:
    # Menus and file managers pick up a new entry sooner with fresh caches; both tools are optional.
    for command in (
        ["update-desktop-database", "-q", str(home / "applications")],
        ["gtk-update-icon-cache", "-q", "-t", "-f", str(home / "icons" / "hicolor")],
    ):
        if shutil.which(command[0]) and Path(command[-1]).is_dir():
            subprocess.run(command, check=False, capture_output=True)


# ---- the About dialog (Qt) ----------------------------------------------------------------------
def app_icon():
    from PySide6.QtGui import QIcon

    icon = QIcon()
    for size, path in icon_files().items():
        if size != "svg":  # PNGs need no SVG image plugin (the bundle leaves QtSvg out)
            icon.addFile(str(path))
    return icon


def _html_escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def licences_html() -> str:
    rows = "".join(
        f"<tr><td><b>{_html_escape(d.name)}</b> {_html_escape(d.version)}</td>"
        f"<td>{_html_escape(d.licence)}</td><td>{_html_escape(d.purpose)}</td></tr>"
        for d in dependency_licences()
    )
    return (
        f"<p>{APP_NAME} is licensed under {PROJECT_LICENCE}. It runs on these libraries, "
        "each under its own licence (as their installed metadata states):</p>"
        "<table cellspacing='6'><tr><th align='left'>Package</th><th align='left'>Licence</th>"
        f"<th align='left'>Used for</th></tr>{rows}</table>"
        "<p>Qt for Python (PySide6) is used under the LGPL-3.0; its libraries are loaded "
        "dynamically and can be replaced.</p>"
    )


def about_dialog(parent=None, log_file: Path | None = None):
    """Build (not show) the About dialog: version, licences, and the bundled model's card."""
    import platform

    from PySide6.QtCore import Qt, qVersion
    from PySide6.QtWidgets import (
        QDialog,
        QDialogButtonBox,
        QHBoxLayout,
        QLabel,
        QTabWidget,
        QTextBrowser,
        QVBoxLayout,
    )

    dialog = QDialog(parent)
    dialog.setObjectName("about_dialog")
    dialog.setWindowTitle(f"About {APP_NAME}")
    dialog.resize(640, 520)

    icon = QLabel()
    icon.setPixmap(app_icon().pixmap(96, 96))
    heading = QLabel(
        f"<h2>{APP_NAME}</h2><p>Version {_html_escape(app_version())}</p><p>{SUMMARY}.</p>"
    )
    heading.setObjectName("about_heading")
    heading.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
    top = QHBoxLayout()
    top.addWidget(icon)
    top.addWidget(heading, 1)

    versions = {d.name: d.version for d in dependency_licences()}
    details = [
        f"Python {platform.python_version()} on {platform.system()} {platform.machine()}",
        f"Qt {qVersion()}",
        f"torch {versions.get('torch', '?')} · diffusers {versions.get('diffusers', '?')}",
        f"Application id: {APP_ID}",
    ]
    if log_file is not None:
        details.append(f"Log file: {log_file}")
    info = QTextBrowser()
    info.setObjectName("about_details")
    info.setOpenExternalLinks(True)
    info.setHtml("<br>".join(_html_escape(line) for line in details))

    licences = QTextBrowser()
    licences.setObjectName("about_licences")
    licences.setHtml(licences_html())

    card = QTextBrowser()
    card.setObjectName("about_model_card")
    card_path = model_card_path()
    if card_path is not None:
        card.setMarkdown(card_path.read_text(encoding="utf-8", errors="replace"))
    else:
        card.setPlainText(
            "The bundled model is not installed: this copy of the studio has no default model.\n\n"
            "Choose a model with the “…” button beside Model, or add a model folder in "
            "File → Settings."
        )

    tabs = QTabWidget()
    tabs.addTab(info, "About")
    tabs.addTab(licences, "Licences")
    tabs.addTab(card, "Bundled model")
    buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
    buttons.rejected.connect(dialog.reject)

    layout = QVBoxLayout(dialog)
    layout.addLayout(top)
    layout.addWidget(tabs, 1)
    layout.addWidget(buttons)
    dialog.tabs = tabs
    return dialog


def show_about(parent=None):
    """Open the About dialog (window-modal, deleted when closed); returns it."""
    from PySide6.QtCore import Qt

    from studio.logs import current_log_file

    dialog = about_dialog(parent, current_log_file())
    dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
    dialog.open()
    return dialog
