"""``diffusion-studio-debug``: the studio with debug logging shown live in its console, the log of a
studio started elsewhere followed as it grows (``--follow``), and a check that an installed copy
has everything it loads at run time (``--self-check``).
"""

from __future__ import annotations

import os
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TextIO

from studio.log_setup import log_file


def follow(
    path: Path,
    lines: int = 40,
    poll: float = 0.25,
    stop: threading.Event | None = None,
    out: TextIO | None = None,
) -> int:
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


def self_check(out: TextIO | None = None) -> int:
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
