"""The log: a rotating file in the user's state folder (Qt's standard locations), the console when
there is one, uncaught exceptions and Qt's own warnings included.

``diffusion-studio-debug`` runs the studio with debug logging shown live in its console, or with
``--follow`` shows the log of a studio started elsewhere as it grows.
"""

from __future__ import annotations

import logging
import logging.handlers
import os
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path

LOG_FILE_NAME = "diffusion-studio.log"
LOG_FORMAT = "%(asctime)s %(levelname)-7s %(threadName)s %(name)s: %(message)s"
CONSOLE_FORMAT = "%(levelname)s %(name)s: %(message)s"
MAX_BYTES = 2_000_000
BACKUPS = 3
# Libraries that narrate every chunk they read at DEBUG: kept at INFO even in debug mode.
CHATTY = ("PIL", "urllib3", "filelock", "matplotlib", "h5py", "fsspec")

log = logging.getLogger(__name__)


def log_folder() -> Path:
    """DIFFUSION_STUDIO_LOG_DIR when set, else the app's state folder (XDG_STATE_HOME on Linux)."""
    override = os.environ.get("DIFFUSION_STUDIO_LOG_DIR")
    if override:
        return Path(override)
    from PySide6.QtCore import QCoreApplication, QStandardPaths

    from studio.settings import APPLICATION, ORGANISATION

    # The location depends on the names; set them when nothing has (e.g. diffusion-studio-debug
    # --follow runs without an application object).
    if not QCoreApplication.organizationName():
        QCoreApplication.setOrganizationName(ORGANISATION)
    if not QCoreApplication.applicationName() or QCoreApplication.instance() is None:
        QCoreApplication.setApplicationName(APPLICATION)
    location = getattr(QStandardPaths.StandardLocation, "StateLocation", None)
    if location is None:  # Qt < 6.7
        location = QStandardPaths.StandardLocation.AppLocalDataLocation
    return Path(QStandardPaths.writableLocation(location)) / "logs"


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
    def on_exception(kind, value, traceback) -> None:
        if issubclass(kind, KeyboardInterrupt):
            sys.__excepthook__(kind, value, traceback)
            return
        logging.getLogger("studio").critical(
            "uncaught exception", exc_info=(kind, value, traceback)
        )

    def on_thread_exception(args) -> None:
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
    from PySide6.QtCore import QtMsgType, qInstallMessageHandler

    qt_log = logging.getLogger("qt")
    levels = {
        QtMsgType.QtDebugMsg: logging.DEBUG,
        QtMsgType.QtInfoMsg: logging.INFO,
        QtMsgType.QtWarningMsg: logging.WARNING,
        QtMsgType.QtCriticalMsg: logging.ERROR,
        QtMsgType.QtFatalMsg: logging.CRITICAL,
    }

    def handler(kind, context, message) -> None:
        qt_log.log(levels.get(kind, logging.WARNING), "%s", message)

    qInstallMessageHandler(handler)


def follow(path: Path, lines: int = 40, poll: float = 0.25, stop=None, out=None) -> int:
    """Print the last ``lines`` of the log, then new lines as they are written (like tail -F).

    Survives rotation: when the file is replaced or shrinks, it starts again at the new file's
    beginning. ``stop`` (a threading.Event) ends it; Ctrl+C too."""
    out = out or sys.stdout
    print(f"Following {path} (Ctrl+C to stop)", file=out, flush=True)
    handle = None
    identity = None
    try:
        while stop is None or not stop.is_set():
            if handle is None:
                try:
                    handle = open(path, encoding="utf-8", errors="replace")  # noqa: SIM115
                except FileNotFoundError:
                    time.sleep(poll)
                    continue
                identity = os.fstat(handle.fileno()).st_ino
                tail = handle.readlines()[-lines:] if lines else []
                lines = 0  # after a rotation, show the new file from its start
                out.write("".join(tail))
                out.flush()
            chunk = handle.read()
            if chunk:
                out.write(chunk)
                out.flush()
                continue
            try:
                current = os.stat(path)
                replaced = current.st_ino != identity or current.st_size < handle.tell()
            except FileNotFoundError:
                replaced = True
            if replaced:
                handle.close()
                handle = None
                continue
            time.sleep(poll)
    except KeyboardInterrupt:
        pass
    finally:
        if handle is not None:
            handle.close()
    return 0


# What the studio imports by name at run time (and an app bundle's analysis cannot see), and the
# resources an installed copy must carry: ``diffusion-studio-debug --self-check`` loads them all.
SELF_CHECK_MODULES = (
    "PySide6.QtWidgets", "cv2", "torch", "torchvision", "torchsde", "safetensors.torch",
    "controlnet_aux.util", "controlnet_aux.open_pose", "controlnet_aux.open_pose.body",
    "controlnet_aux.open_pose.util", "controlnet_aux.midas",
)  # fmt: skip
SELF_CHECK_NAMES = {
    "diffusers": (
        "StableDiffusionPipeline", "StableDiffusionXLPipeline", "StableDiffusionControlNetPipeline",
        "StableDiffusionXLControlNetPipeline", "ControlNetModel", "AutoencoderTiny",
        "AutoencoderKL", "UNet2DConditionModel",
    ),
    "transformers": ("CLIPTokenizer", "CLIPTextModel", "CLIPTextModelWithProjection"),
}  # fmt: skip
SELF_CHECK_RESOURCES = (
    ("configs", "sd1", "model_index.json"), ("configs", "sdxl", "model_index.json"),
    ("configs", "controlnet-sd1", "config.json"), ("tokenizers", "clip", "vocab.json"),
    ("icons", "diffusion-studio-256.png"),
)  # fmt: skip


def self_check(out=None) -> int:
    """Import what the studio loads lazily and look for its resources; 0 when all is there."""
    import importlib

    out = out or sys.stdout
    problems = 0

    def report(name: str, error: BaseException | None) -> None:
        nonlocal problems
        problems += error is not None
        print(
            f"{'ok  ' if error is None else 'FAIL'} {name}{f': {error}' if error else ''}", file=out
        )

    for name in SELF_CHECK_MODULES:
        try:
            importlib.import_module(name)
            report(name, None)
        except Exception as error:  # noqa: BLE001 - reported, the check goes on
            report(name, error)
    for module, names in SELF_CHECK_NAMES.items():
        for name in names:
            try:
                getattr(importlib.import_module(module), name)
                report(f"{module}.{name}", None)
            except Exception as error:  # noqa: BLE001
                report(f"{module}.{name}", error)
    try:
        from pipelines.samplers import get_sampler, sampler_names

        diffusers = importlib.import_module("diffusers")
        for name in sampler_names():
            getattr(diffusers, get_sampler(name).scheduler)
        report(f"samplers ({len(sampler_names())})", None)
    except Exception as error:  # noqa: BLE001
        report("samplers", error)
    from pipelines.resources import resource_path, resource_root

    print(f"     resources: {resource_root()}", file=out)
    for parts in SELF_CHECK_RESOURCES:
        path = resource_path(*parts)
        report("/".join(parts), None if path.is_file() else FileNotFoundError(path))
    model = resource_path("models", "toy-world", "model_index.json")
    print(f"     bundled model: {'yes' if model.is_file() else 'not installed'}", file=out)
    torch = sys.modules.get("torch")
    if torch is not None:
        print(
            f"     torch {torch.__version__}, CUDA available: {torch.cuda.is_available()}", file=out
        )
    print("all present" if not problems else f"{problems} problem(s)", file=out)
    return 1 if problems else 0


def debug_main(argv: Sequence[str] | None = None) -> int:
    """``diffusion-studio-debug``: the studio with its log shown live in this console."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if "--self-check" in argv:
        import warnings

        from pipelines.offline import set_offline_environment

        set_offline_environment()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # third-party deprecation noise hides the report
            return self_check()
    if "--follow" in argv or "--where" in argv:
        path = Path(argv[argv.index("--file") + 1]) if "--file" in argv else log_file()
        if "--where" in argv:
            print(path)
            return 0
        return follow(path)
    if argv and argv[0] in ("-h", "--help"):
        print(
            "usage: diffusion-studio-debug [--follow | --where | --self-check] "
            "[diffusion-studio arguments…]\n\n"
            "Runs the studio (or one of its subcommands) with debug logging shown live here.\n"
            "  --follow   show the log of a studio started elsewhere, as it is written\n"
            "  --where    print the log file's path\n"
            "  --self-check  import what the studio loads at run time, look for its resources\n\n"
            "Everything else is passed to diffusion-studio (see diffusion-studio --help)."
        )
        return 0
    from studio.app import main

    return main(argv, debug=True)
