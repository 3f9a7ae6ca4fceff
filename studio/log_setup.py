"""The log: a rotating file in the user's state folder (where Qt puts state, found without Qt so the
command line writes to the same file), the console when there is one, uncaught exceptions and Qt's
own warnings included."""

from __future__ import annotations

import logging
import logging.handlers
import sys
import threading
from pathlib import Path
from types import TracebackType

LOG_FILE_NAME = "diffusion-studio.log"
LOG_FORMAT = "%(asctime)s %(levelname)-7s %(threadName)s %(name)s: %(message)s"
CONSOLE_FORMAT = "%(levelname)s %(name)s: %(message)s"
MAX_BYTES = 2_000_000
BACKUPS = 3
# Libraries that narrate every chunk they read at DEBUG: kept at INFO even in debug mode.
CHATTY = ("PIL", "urllib3", "filelock", "matplotlib", "h5py", "fsspec")

log = logging.getLogger(__name__)


def log_folder() -> Path:
    """DIFFUSION_STUDIO_LOG_DIR when set, else the app's state folder (XDG_STATE_HOME on Linux);
    the command line writes its log there too."""
    from pipelines.export import default_log_folder

    return default_log_folder()


def log_file() -> Path:
    return log_folder() / LOG_FILE_NAME


_installed: list[logging.Handler] = []
_current: list[Path] = []


def current_log_file() -> Path | None:
    """The file setup_logging writes to, if it has run."""
    return _current[0] if _current else None


def setup_logging(debug: bool = False, console: bool = True, folder: Path | None = None) -> Path:
    """Send the root logger to the log file (and the console); returns the file's path.

    Calling it again replaces the handlers it installed before."""
    root = logging.getLogger()
    for handler in _installed:
        root.removeHandler(handler)
        handler.close()
    _installed.clear()
    level = logging.DEBUG if debug else logging.INFO
    root.setLevel(level)
    for name in CHATTY:
        logging.getLogger(name).setLevel(logging.INFO)

    path = (folder or log_folder()) / LOG_FILE_NAME
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        file_handler = logging.handlers.RotatingFileHandler(
            path, maxBytes=MAX_BYTES, backupCount=BACKUPS, encoding="utf-8", delay=False
        )
    except OSError as error:
        file_handler = None
        problem = f"cannot write the log file {path}: {error}"
    else:
        file_handler.setFormatter(logging.Formatter(LOG_FORMAT))
        file_handler.setLevel(level)
        _installed.append(file_handler)
        _current[:] = [path]
        problem = ""
    # A windowed app on Windows (pythonw, the bundle) has no stderr at all.
    if console and sys.stderr is not None:
        stream = logging.StreamHandler(sys.stderr)
        stream.setFormatter(logging.Formatter(LOG_FORMAT if debug else CONSOLE_FORMAT))
        stream.setLevel(level)
        _installed.append(stream)
    for handler in _installed:
        root.addHandler(handler)
    _capture_uncaught()
    if problem:
        log.warning(problem)
    log.info("log file: %s", path)
    return path


def _capture_uncaught() -> None:
    def on_exception(
        kind: type[BaseException], value: BaseException, traceback: TracebackType | None
    ) -> None:
        if issubclass(kind, KeyboardInterrupt):
            sys.__excepthook__(kind, value, traceback)
            return
        logging.getLogger("studio").critical(
            "uncaught exception", exc_info=(kind, value, traceback)
        )

    def on_thread_exception(args: threading.ExceptHookArgs) -> None:
        if args.exc_type is SystemExit:
            return
        logging.getLogger("studio").critical(
            "uncaught exception in thread %s",
            getattr(args.thread, "name", "?"),
            exc_info=(args.exc_type, args.exc_value, args.exc_traceback),
        )

    sys.excepthook = on_exception
    threading.excepthook = on_thread_exception


def capture_qt_messages() -> None:
    """Route qDebug/qWarning/… (Qt's own diagnostics) into the log."""
    from PySide6.QtCore import QMessageLogContext, QtMsgType, qInstallMessageHandler

    qt_log = logging.getLogger("qt")
    levels = {
        QtMsgType.QtDebugMsg: logging.DEBUG,
        QtMsgType.QtInfoMsg: logging.INFO,
        QtMsgType.QtWarningMsg: logging.WARNING,
        QtMsgType.QtCriticalMsg: logging.ERROR,
        QtMsgType.QtFatalMsg: logging.CRITICAL,
    }

    def handler(kind: QtMsgType, context: QMessageLogContext, message: str) -> None:
        qt_log.log(levels.get(kind, logging.WARNING), "%s", message)

    qInstallMessageHandler(handler)
