"""Entry point: ``diffusion-studio`` opens the window; ``diffusion-studio generate|models|info …``
runs the command line instead, without importing Qt (it must work on machines with no display).

``diffusion-studio IMAGE.png`` opens the window with the settings stored in that PNG (the desktop
entry's "Open with"). ``--version`` and ``--install-desktop-entry`` import neither Qt nor torch.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from PySide6.QtWidgets import QApplication

    from studio.jobs import JobEvent
    from studio.widgets.main_window import MainWindow

_STARTED = time.monotonic()  # start-up time is reported in the log from here

CLI_COMMANDS = {"generate", "compare", "models", "info"}
# Qt's own command-line options that take a value: QApplication consumes them, argparse must not
# mistake their values for files to open.
QT_VALUE_OPTIONS = {
    "platform", "platformpluginpath", "platformtheme", "plugin", "qmljsdebugger", "style",
    "stylesheet", "session", "display", "geometry", "title", "name", "qwindowgeometry",
    "qwindowtitle", "qwindowicon", "qwindowstyle", "widgetcount",
}  # fmt: skip

log = logging.getLogger("studio")


def _version_text() -> str:
    from studio.identity import app_version

    return f"diffusion-studio {app_version()}"


class _VersionAction(argparse.Action):
    # argparse's own "version" action needs the text when the parser is built; this reads the
    # package metadata only when --version is asked for.
    def __init__(self, option_strings: Sequence[str], dest: str, **kwargs: object) -> None:
        super().__init__(option_strings, dest, nargs=0, help="print the version and exit")

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: object,
        option_string: str | None = None,
    ) -> None:
        print(_version_text())
        parser.exit()


def _build_gui_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="diffusion-studio",
        description="Desktop studio for Stable Diffusion with ControlNet. Subcommands "
        f"({', '.join(sorted(CLI_COMMANDS))}) run the command line instead.",
    )
    parser.add_argument("--version", action=_VersionAction)
    parser.add_argument(
        "--settings",
        default=os.environ.get("DIFFUSION_STUDIO_SETTINGS"),
        help="settings file (INI) to use instead of the user's (also DIFFUSION_STUDIO_SETTINGS)",
    )
    parser.add_argument("--model", help="model file or folder to open with")
    parser.add_argument(
        "files", nargs="*", metavar="IMAGE.png", help="a PNG whose stored settings to restore"
    )
    desktop = parser.add_mutually_exclusive_group()
    desktop.add_argument(
        "--install-desktop-entry",
        action="store_true",
        help="add the studio to this user's application menu and 'Open with' for PNGs (Linux)",
    )
    desktop.add_argument(
        "--uninstall-desktop-entry", action="store_true", help="remove what the above installed"
    )
    return parser


def _without_qt_options(argv: Sequence[str]) -> list[str]:
    kept, skip = [], False
    for argument in argv:
        if skip:
            skip = False
            continue
        name = argument.lstrip("-")
        if argument.startswith("-") and "=" not in name and name in QT_VALUE_OPTIONS:
            skip = True
            continue
        kept.append(argument)
    return kept


def _parse_gui_args(argv: Sequence[str]) -> argparse.Namespace:
    # Qt's own options (-style, -platform …) pass through to QApplication.
    args, _unknown = _build_gui_parser().parse_known_args(_without_qt_options(argv))
    return args


def main(argv: Sequence[str] | None = None, debug: bool = False) -> int:
    from pipelines.cpu import apply_environment  # passive OpenMP waiting: before torch loads

    apply_environment()
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in CLI_COMMANDS:
        if debug:
            logging.basicConfig(level=logging.DEBUG, format="%(levelname)s %(name)s: %(message)s")
        from pipelines.cli import main as cli_main

        return cli_main(argv)
    return run_gui(argv, debug=debug)


def _desktop_entry_command(args: argparse.Namespace) -> int:
    if not sys.platform.startswith("linux"):
        print("Desktop entries are a Linux (freedesktop.org) feature.", file=sys.stderr)
        return 2
    from studio.desktop_entry import install_desktop_entry, uninstall_desktop_entry

    if args.uninstall_desktop_entry:
        paths = uninstall_desktop_entry()
        print("Removed:" if paths else "Nothing to remove.")
    else:
        paths = install_desktop_entry()
        print("Installed:")
    for path in paths:
        print(f"  {path}")
    return 0


def identify_application() -> None:
    """Names and ids Qt uses for settings, standard folders, the taskbar and Wayland's app id."""
    from PySide6.QtCore import QCoreApplication
    from PySide6.QtGui import QGuiApplication

    from studio.identity import APP_ID, app_version
    from studio.settings import APPLICATION, ORGANISATION

    QCoreApplication.setOrganizationName(ORGANISATION)
    QCoreApplication.setApplicationName(APPLICATION)
    QCoreApplication.setApplicationVersion(app_version())
    QGuiApplication.setApplicationDisplayName(APPLICATION)
    QGuiApplication.setDesktopFileName(APP_ID)


def create_window(
    args: argparse.Namespace, argv: Sequence[str] = ()
) -> tuple[QApplication, MainWindow]:
    """The QApplication (made if there is none), themed and named, and the main window, shown,
    with the files and model of the command line applied."""
    from PySide6.QtWidgets import QApplication

    from studio.about import app_icon
    from studio.settings import StudioSettings
    from studio.theme import apply_dark_theme
    from studio.widgets.main_window import MainWindow

    app = QApplication.instance() or QApplication([sys.argv[0] if sys.argv else "", *argv])
    identify_application()
    app.setWindowIcon(app_icon())
    apply_dark_theme(app)
    settings = StudioSettings(args.settings)
    # Temp files of saves killed half-way (a crash, kill -9) are removed once they are stale.
    settings.sweep_stale_temp_files()
    notes = list(settings.check_all())
    window = MainWindow(settings)

    def close_on_quit() -> None:
        # Quitting by any route (menu, session end) goes through closeEvent: cancel, stop the
        # thread. Closing the last window would post a second Quit event, left for the next loop.
        app.setQuitOnLastWindowClosed(False)
        window.close()

    app.aboutToQuit.connect(close_on_quit)
    if notes:
        window.message_bar.show_message(
            "Some settings could not be read and were reset: " + " ".join(notes),
            error=False,
        )
    _log_model_events(window)
    if args.files:
        # The desktop's "Open with": restore the PNG's settings (a bad file shows its message).
        window.restore_from_files([os.path.abspath(f) for f in args.files])
    if args.model:
        window.prompt_panel.set_model(args.model)
    window.show()
    return app, window


def _log_model_events(window: MainWindow) -> None:
    # The log says when the window became usable (packaging/measure-startup reads it) and why not.
    from studio.jobs import EventKind

    def on_event(event: JobEvent) -> None:
        if event.kind is EventKind.LOADED:
            summary = event.result
            log.info("model %s (%s) ready %.2f s after start", summary.path,
                     summary.family_label, time.monotonic() - _STARTED)  # fmt: skip
        elif event.kind is EventKind.LOAD_FAILED:
            log.warning("model not loaded: %s", event.error)
        elif event.kind is EventKind.FAILED:
            log.warning("%s job failed: %s", event.job.kind.value, event.error)
        elif event.kind is EventKind.NOTICE:
            log.warning("%s", event.error)

    window.session.event.connect(on_event)


def run_gui(argv: Sequence[str], debug: bool = False) -> int:
    args = _parse_gui_args(argv)
    if args.install_desktop_entry or args.uninstall_desktop_entry:
        return _desktop_entry_command(args)
    # Before anything imports huggingface_hub, which reads these once.
    from pipelines.offline import set_offline_environment

    set_offline_environment()
    identify_application()  # the log folder's location depends on the names
    from studio.log_setup import capture_qt_messages, setup_logging

    setup_logging(debug=debug or bool(os.environ.get("DIFFUSION_STUDIO_DEBUG")))
    capture_qt_messages()
    log.info("%s starting (%s)", _version_text(), sys.executable)
    app, window = create_window(args, argv)
    app.processEvents()
    log.info("window shown %.2f s after start", time.monotonic() - _STARTED)
    code = app.exec()
    log.info("exited with status %s", code)
    return code


if __name__ == "__main__":
    sys.exit(main())
