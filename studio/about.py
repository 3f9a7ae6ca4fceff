"""The About dialog: version, licences, and the bundled model's card.

What the dialog shows comes from :mod:`studio.identity`; the names below are also importable from
here, as the packaging spec and older callers expect.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from studio.desktop_entry import desktop_entry, install_desktop_entry, uninstall_desktop_entry
from studio.identity import (
    APP_ID,
    APP_NAME,
    ICON_SIZES,
    MAIN_DEPENDENCIES,
    PROJECT_LICENCE,
    SUMMARY,
    app_version,
    dependency_licences,
    icon_files,
    model_card_path,
)

if TYPE_CHECKING:
    from PySide6.QtGui import QIcon
    from PySide6.QtWidgets import QDialog, QWidget

__all__ = [
    "APP_ID", "APP_NAME", "ICON_SIZES", "MAIN_DEPENDENCIES", "app_version", "desktop_entry",
    "install_desktop_entry", "uninstall_desktop_entry", "app_icon", "about_dialog", "show_about",
    "licences_html",
]  # fmt: skip


def app_icon() -> QIcon:
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


def about_dialog(parent: QWidget | None = None, log_file: Path | None = None) -> QDialog:
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


def show_about(parent: QWidget | None = None) -> QDialog:
    """Open the About dialog (window-modal, deleted when closed); returns it."""
    from PySide6.QtCore import Qt

    from studio.log_setup import current_log_file

    dialog = about_dialog(parent, current_log_file())
    dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
    dialog.open()
    return dialog
