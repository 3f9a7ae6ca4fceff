"""Entry point: ``diffusion-studio`` opens the window; ``diffusion-studio generate|models|info …``
runs the command line instead, without importing Qt (it must work on machines with no display)."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence

CLI_COMMANDS = {"generate", "models", "info"}


def _parse_gui_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="diffusion-studio",
        description="Desktop studio for Stable Diffusion with ControlNet. Subcommands "
        f"({', '.join(sorted(CLI_COMMANDS))}) run the command line instead.",
    )
    parser.add_argument(
        "--settings",
        default=os.environ.get("DIFFUSION_STUDIO_SETTINGS"),
        help="settings file (INI) to use instead of the user's (also DIFFUSION_STUDIO_SETTINGS)",
    )
    parser.add_argument("--model", help="model file or folder to open with")
    # Qt's own options (-style, -platform …) pass through to QApplication.
    args, _unknown = parser.parse_known_args(list(argv))
    return args


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in CLI_COMMANDS:
        from pipelines.cli import main as cli_main

        return cli_main(argv)
    return run_gui(argv)


def run_gui(argv: Sequence[str]) -> int:
    args = _parse_gui_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    # Before anything imports huggingface_hub, which reads these once.
    from pipelines.offline import set_offline_environment

    set_offline_environment()

    from PySide6.QtWidgets import QApplication

    from studio.settings import APPLICATION, ORGANISATION, StudioSettings
    from studio.theme import apply_dark_theme
    from studio.widgets.main_window import MainWindow

    app = QApplication.instance() or QApplication([sys.argv[0], *argv])
    app.setOrganizationName(ORGANISATION)
    app.setApplicationName(APPLICATION)
    app.setApplicationDisplayName(APPLICATION)
    apply_dark_theme(app)
    settings = StudioSettings(args.settings)
    window = MainWindow(settings)
    # Quitting by any route (menu, session end) goes through closeEvent: cancel, stop the thread.
    app.aboutToQuit.connect(window.close)
    if args.model:
        window.prompt_panel.set_model(args.model)
    window.show()
    app.processEvents()
    return app.exec()


if __name__ == "__main__":
    sys.exit(main())
