"""Command line: ``diffusion-studio generate|compare|models|info``.

Errors the user can fix (bad sizes, missing files, unknown samplers, a damaged model) print one
line on stderr and exit with status 2, before any long work where they can be known up front:
outputs, device and condition images are checked before a model loads. Tracebacks go to the log
file (and to the console with ``--verbose``), never to the console before the message.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from pipelines.errors import StudioError, ValidationError
from pipelines.rework_cli import add_rework_options, keep_source_copies, rework_fields
from pipelines.samplers import DEFAULT_SAMPLER, sampler_names
from pipelines.types import (
    MAX_STEPS,
    MIN_STEPS,
    Branch,
    ControlKind,
    ControlUnit,
    GenerationRequest,
    MemoryOptions,
    StepPreview,
)

if TYPE_CHECKING:  # the engine pulls in torch; argument parsing and --help stay quick without it
    from pipelines.engine import Engine, ProgressCallback

EXIT_USAGE = 2
EXIT_FAILURE = 1
LOG_FILE_NAME = "diffusion-studio-cli.log"
LOG_FORMAT = "%(asctime)s %(levelname)-7s %(threadName)s %(name)s: %(message)s"

log = logging.getLogger(__name__)


def parse_size(text: str) -> tuple[int, int]:
    try:
        width, height = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise ValidationError(f"Size {text!r} is not WIDTHxHEIGHT, e.g. 512x512.") from None
    return width, height


def parse_control(text: str, preprocess: bool) -> tuple[ControlKind, str, float]:
    """KIND:IMAGE[:STRENGTH]; IMAGE may itself contain colons (Windows drive letters)."""
    kind_text, _, rest = text.partition(":")
    try:
        kind = ControlKind(kind_text.strip().lower())
    except ValueError:
        kinds = ", ".join(k.value for k in ControlKind)
        raise ValidationError(
            f"Unknown control kind {kind_text!r} in {text!r}; use {kinds}."
        ) from None
    if not rest:
        raise ValidationError(f"{text!r} has no image: use KIND:IMAGE[:STRENGTH].")
    image, strength = rest, 1.0
    head, sep, tail = rest.rpartition(":")
    if sep:
        try:
            strength, image = float(tail), head
        except ValueError:
            pass
    if preprocess and kind is ControlKind.CUSTOM:
        raise ValidationError("A custom control has no preprocessor; pass it with --control-map.")
    return kind, image, strength


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="diffusion-studio", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=_version())
    _add_verbose(parser, False)
    sub = parser.add_subparsers(dest="command", required=True)

    gen = sub.add_parser("generate", help="generate one image, or a batch")
    _add_request_options(gen)
    gen.add_argument("--out", required=True, type=Path,
                     help="PNG file to write; a batch writes OUT-0001.png, OUT-0002.png, …")  # fmt: skip
    gen.add_argument("--overwrite", action="store_true", help="replace existing files")
    gen.add_argument("--batch-count", type=int, default=1, metavar="N",
                     help="N images, with seeds SEED, SEED+1, … (or N random seeds)")  # fmt: skip
    gen.add_argument("--batch-size", type=int, default=1, metavar="B",
                     help="B images per model call (for GPUs), seeds SEED … SEED+B-1")  # fmt: skip
    gen.add_argument("--branch", action="append", default=[], metavar="STEP:KEY=VALUE",
                     help="from STEP on, change KEY (prompt, negative, cfg, sampler, "
                          "control-strength) to VALUE (repeatable)")  # fmt: skip

    comparison = sub.add_parser("compare", help="run several samplers on one request, side by side")
    _add_request_options(comparison)
    comparison.add_argument(
        "--samplers", required=True, metavar="NAMES",
        help='comma-separated, e.g. "Euler,DDIM,DPM++ 2M Karras"; NAME:STEPS sets its own steps',
    )  # fmt: skip
    comparison.add_argument("--out", required=True, type=Path, help="labelled grid PNG to write")
    comparison.add_argument("--animation", type=Path, help="animated .webp or .gif of the steps")
    comparison.add_argument("--columns", type=Path, help="folder for each sampler's final image")
    comparison.add_argument("--overwrite", action="store_true", help="replace existing files")
    comparison.add_argument("--batch-count", type=int, default=1, metavar="N",
                            help="N comparisons, seeds SEED, SEED+1, …: OUT-0001.png, …")  # fmt: skip

    models = sub.add_parser("models", help="list the models found and where the studio looked")
    models.add_argument("--model-dir", action="append", type=Path, default=[])
    models.add_argument("--embedding-dir", action="append", type=Path, default=[])
    _add_verbose(models, argparse.SUPPRESS)

    info = sub.add_parser("info", help="print the settings stored in a PNG")
    info.add_argument("file", type=Path)
    info.add_argument("--json", action="store_true", help="print the full request as JSON")
    _add_verbose(info, argparse.SUPPRESS)
    return parser


def _add_request_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--prompt", required=True)
    parser.add_argument("--negative", default="")
    parser.add_argument("--model", default="", help="model file/folder or name (default: bundled)")
    parser.add_argument("--model-dir", action="append", type=Path, default=[])
    parser.add_argument("--sampler", default=DEFAULT_SAMPLER, help=", ".join(sampler_names()))
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--cfg", type=float, default=7.0)
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument(
        "--size", default=None, help="WIDTHxHEIGHT (default: the model's native size)"
    )
    # Both go into one list, so ControlNet units keep the order of the command line.
    parser.add_argument(
        "--control", action="append", default=[], dest="controls", metavar="KIND:IMAGE[:STRENGTH]",
        type=lambda text: (True, text), help="run KIND's preprocessor on a photo (repeatable)",
    )  # fmt: skip
    parser.add_argument(
        "--control-map", action="append", dest="controls", metavar="KIND:MAP[:STRENGTH]",
        type=lambda text: (False, text), help="use a ready-made condition map (repeatable)",
    )  # fmt: skip
    parser.add_argument(
        "--controlnet", action="append", default=[], metavar="KIND=PATH",
        help="ControlNet model for KIND (default: found beside the model or in the model folders)",
    )  # fmt: skip
    parser.add_argument("--annotator-dir", action="append", type=Path, default=[])
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda", "mps"])
    parser.add_argument("--allow-pickle", action="store_true", help="allow .ckpt files (runs code)")
    parser.add_argument("--cpu-offload", action="store_true", help="keep idle parts in RAM (CUDA)")
    parser.add_argument(
        "--sequential-offload",
        action="store_true",
        help="stream the weights to the GPU layer by layer: least VRAM, slowest",
    )
    parser.add_argument("--fp8-weights", action="store_true",
                        help="keep the denoiser's weights in fp8, upcast per layer as it runs")  # fmt: skip
    _add_prompt_options(parser)
    parser.add_argument(
        "--compile", action="store_true",
        help="torch.compile the UNet: the first image at each size compiles (slow), later ones run "
        "faster; compiled kernels are kept in the studio's cache folder",
    )  # fmt: skip
    add_rework_options(parser)
    _add_verbose(parser, argparse.SUPPRESS)


def _add_prompt_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--clip-skip", type=int, default=1, metavar="N",
                        help="read the text encoder's N-th layer from the end (SD 1.x; 1-12)")  # fmt: skip
    parser.add_argument(
        "--lora", action="append", default=[], metavar="NAME_OR_PATH:WEIGHT",
        help="apply a LoRA, as <lora:NAME:WEIGHT> in the prompt would (repeatable)",
    )  # fmt: skip
    parser.add_argument("--embedding-dir", action="append", type=Path, default=[],
                        help="a folder of textual-inversion embeddings (repeatable)")  # fmt: skip


def _add_verbose(parser: argparse.ArgumentParser, default: object) -> None:
    parser.add_argument(
        "--verbose", "-v", action="store_true", default=default,
        help="show progress messages and, on errors, the traceback (always in the log file)",
    )  # fmt: skip


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("diffusion-studio")
    except PackageNotFoundError:
        return "0.1.0 (source)"


def _engine(args: argparse.Namespace) -> Engine:
    from pipelines.engine import Engine, EngineSettings

    settings = EngineSettings(
        model_folders=tuple(args.model_dir),
        annotator_folders=tuple(getattr(args, "annotator_dir", ())),
        device=getattr(args, "device", "auto"),
        allow_pickle=getattr(args, "allow_pickle", False),
        embedding_folders=tuple(getattr(args, "embedding_dir", ())),
        compile=getattr(args, "compile", False),
    )
    return Engine(settings)


def _absolute(path: str) -> str:
    # A relative path means nothing once the request is restored from another folder.
    return os.path.abspath(os.path.expanduser(path))


def _model_argument(model: str) -> str:
    # --model takes a path or a name found in the model folders; only a path is made absolute.
    return _absolute(model) if model and os.path.exists(os.path.expanduser(model)) else model


def parse_controlnet(item: str) -> tuple[ControlKind, str]:
    kind_text, sep, path = item.partition("=")
    if not sep or not path.strip():
        raise ValidationError(f"--controlnet {item!r}: use KIND=PATH.")
    try:
        kind = ControlKind(kind_text.strip().lower())
    except ValueError:
        kinds = ", ".join(k.value for k in ControlKind)
        raise ValidationError(
            f"--controlnet {item!r}: unknown control kind {kind_text!r}; use {kinds}."
        ) from None
    return kind, _absolute(path.strip())


def prompt_with_loras(prompt: str, loras: Sequence[str]) -> str:
    """``prompt`` with a ``<lora:…>`` tag for each ``--lora NAME_OR_PATH[:WEIGHT]``."""
    from pipelines.prompt_syntax import lora_tag

    tags = []
    for item in loras:
        name, sep, weight = item.rpartition(":")
        try:
            value = float(weight) if sep else 1.0
        except ValueError:  # not a weight: the colon belongs to the name (a Windows path)
            sep = ""
        if not sep:
            name, value = item, 1.0
        if not name.strip():
            raise ValidationError(f"--lora {item!r}: use NAME_OR_PATH:WEIGHT.")
        if os.path.exists(os.path.expanduser(name)):
            name = _absolute(name)
        tags.append(lora_tag(name, value))
    return " ".join([prompt, *tags]) if tags else prompt


def build_request(args: argparse.Namespace, engine: Engine) -> GenerationRequest:
    """The request the arguments describe; control images and model paths are absolute, and the
    ControlNet units follow the order of ``--control`` and ``--control-map`` as given."""
    width = height = None
    if args.size:
        width, height = parse_size(args.size)
    chosen = dict(parse_controlnet(item) for item in args.controlnet)
    model = _model_argument(args.model)
    units = []
    for preprocess, text in args.controls or ():
        kind, image, strength = parse_control(text, preprocess)
        controlnet = chosen.get(kind) or str(engine.default_controlnet(model, kind))
        units.append(
            ControlUnit(
                kind, controlnet, image=_absolute(image), preprocess=preprocess, strength=strength
            )
        )
    return GenerationRequest(
        prompt=prompt_with_loras(args.prompt, args.lora),
        negative_prompt=args.negative,
        model=model,
        seed=args.seed,
        steps=args.steps,
        cfg_scale=args.cfg,
        width=width,
        height=height,
        sampler=args.sampler,
        controls=tuple(units),
        branches=_branches(getattr(args, "branch", [])),
        batch_size=getattr(args, "batch_size", 1),
        clip_skip=args.clip_skip,
        **rework_fields(args),
        memory=MemoryOptions(
            cpu_offload=args.cpu_offload,
            fp8_weights=args.fp8_weights,
            sequential_offload=args.sequential_offload,
        ),  # fmt: skip
    )


def _branches(items: list[str]) -> tuple[Branch, ...]:
    from pipelines.branching import merge_by_step, parse_cli_branch

    return merge_by_step([parse_cli_branch(item) for item in items])


def keep_map_copies(
    request: GenerationRequest, data_folder: Path | None = None
) -> GenerationRequest:
    """The request with each control image replaced by a copy kept in the app's data folder, as the
    window keeps its maps: the request, and the PNG that records it, then name a file that stays
    where it is when the original is moved, edited or deleted. Reading the images here also checks
    them before any model loads."""
    from dataclasses import replace

    from pipelines.conditions import load_image
    from pipelines.export import condition_maps_folder, default_data_folder, save_condition_map

    folder = condition_maps_folder(data_folder or default_data_folder())
    units = []
    for unit in request.controls:
        if unit.image:
            copy = save_condition_map(load_image(unit.image), folder, Path(unit.image).stem)
            log.info("kept a copy of %s as %s", unit.image, copy)
            unit = replace(unit, image=str(copy))
        units.append(unit)
    return keep_source_copies(replace(request, controls=tuple(units)), folder)


def check_device(device: str) -> None:
    import torch

    if device == "cuda" and not torch.cuda.is_available():
        raise ValidationError("--device cuda: no usable CUDA GPU here; use --device cpu or auto.")
    mps = getattr(torch.backends, "mps", None)
    if device == "mps" and not (mps is not None and mps.is_available()):
        raise ValidationError("--device mps: Apple's GPU (MPS) is not available here; use cpu.")


class _ProgressBar:
    def __init__(self) -> None:
        from tqdm import tqdm

        self._tqdm = tqdm
        self.bar = None

    def step(self, preview: StepPreview) -> None:
        if self.bar is None:
            self.bar = self._tqdm(total=preview.total, unit="step", file=sys.stderr)
        self.bar.update(preview.step - self.bar.n)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _progress_printer(args: argparse.Namespace) -> ProgressCallback:
    # Loading messages are for someone watching; a script reading stderr gets only the outcome.
    if getattr(args, "verbose", False) or sys.stderr.isatty():
        return lambda fraction, message: print(message, file=sys.stderr)
    return lambda fraction, message: log.info("%s", message)


def _quiet_loading(args: argparse.Namespace) -> None:
    if not (getattr(args, "verbose", False) or sys.stderr.isatty()):
        from diffusers.utils import logging as diffusers_logging

        diffusers_logging.disable_progress_bar()  # its loading bar would precede an error line
        from transformers.utils import logging as transformers_logging

        transformers_logging.disable_progress_bar()  # SD 3.x / Flux text encoders load with one


def _refuse_existing(*paths: Path | None, overwrite: bool) -> None:
    for path in paths:
        if path is None or overwrite:
            continue
        try:
            taken = path.is_file()  # a folder of that name is refused by check_target instead
        except OSError:
            continue  # a name no file can have: check_target says why
        if taken:
            raise StudioError(f"{path} exists; pass --overwrite to replace it.")


def _sweep(*folders: Path | None) -> None:
    from pipelines.export import condition_maps_folder, default_data_folder, sweep_stale_temp_files

    # Leftovers of writes killed half-way (kill -9, a power cut) in the folders written to now.
    for folder in (*folders, condition_maps_folder(default_data_folder())):
        if folder is not None:
            for path in sweep_stale_temp_files(folder):
                log.info("removed %s, left by an interrupted save", path)


def cmd_generate(args: argparse.Namespace) -> int:
    from pipelines.batches import (
        batch_paths,
        batch_requests,
        check_batch_count,
        check_batch_size,
        split_batch,
    )
    from pipelines.export import check_target, run_details, write_png

    check_batch_count(args.batch_count)
    check_batch_size(args.batch_size)
    # every name checked before any work
    outputs = batch_paths(args.out, args.batch_count * args.batch_size)
    _refuse_existing(*outputs, overwrite=args.overwrite)
    for path in outputs:
        check_target(path, args.overwrite, make_folder=False, create=False)
    check_device(args.device)
    engine = _engine(args)
    request = build_request(args, engine)
    request.validate()
    check_sampler_for_model(engine, request)
    _sweep(args.out.parent)
    request = keep_map_copies(request)
    _quiet_loading(args)
    paths = iter(outputs)
    for job_request in batch_requests(request, args.batch_count):
        bar = _ProgressBar()
        try:
            result = engine.run(job_request, on_step=bar.step, cancel=threading.Event(),
                                on_progress=_progress_printer(args))  # fmt: skip
        finally:
            bar.close()
        for warning in result.warnings:
            print(f"warning: {warning}", file=sys.stderr)
        for image in split_batch(result):  # a batch size B gives B images, each with its seed
            written = write_png(image.image, image.request, next(paths), overwrite=args.overwrite,
                                extra=run_details(image))  # fmt: skip
            print(f"wrote {written} (seed {image.request.seed})", flush=True)
    return 0


def parse_samplers(text: str) -> list[str | tuple[str, int]]:
    entries: list[str | tuple[str, int]] = []
    for item in (part.strip() for part in text.split(",")):
        if not item:
            continue
        name, sep, steps = item.rpartition(":")
        if sep:
            try:
                count = int(steps)
            except ValueError:
                raise ValidationError(f"{item!r}: use NAME or NAME:STEPS.") from None
            if not MIN_STEPS <= count <= MAX_STEPS:
                raise ValidationError(
                    f"{item!r}: Steps must be a whole number from {MIN_STEPS} to {MAX_STEPS}."
                )
            entries.append((name.strip(), count))
        else:
            entries.append(item)
    if len(entries) < 2:
        raise ValidationError("Name at least two samplers to compare, separated by commas.")
    return entries


def check_sampler_for_model(engine: Engine, request: GenerationRequest, *names: str) -> None:
    """Refuse a sampler the model's family cannot run, from the model's header, before loading."""
    from pipelines.flow_samplers import sampler_for
    from pipelines.models import detect_family

    try:
        family = detect_family(engine.resolve_model_path(request.model))
    except StudioError:
        return  # the loader says what is wrong with the model, in its own words
    for name in names or (request.sampler,):
        sampler_for(name, family)


def cmd_compare(args: argparse.Namespace) -> int:
    from pipelines.batches import batch_paths, batch_requests, check_batch_count
    from pipelines.grids import check_comparison_targets

    samplers = parse_samplers(args.samplers)
    columns = [(e, args.steps) if isinstance(e, str) else e for e in samplers]
    # --batch-count N: N comparisons, seeds SEED, SEED+1, …; OUT-0001.png, …, COLUMNS/0001/, …
    count = args.batch_count
    check_batch_count(count)
    outs = batch_paths(args.out, count)
    animations = batch_paths(args.animation, count) if args.animation else [None] * count
    folders = [args.columns if count == 1 or not args.columns else args.columns / f"{n:04d}"
               for n in range(1, count + 1)]  # fmt: skip
    _refuse_existing(*outs, *animations, overwrite=args.overwrite)
    for out, animation, folder in zip(outs, animations, folders):
        check_comparison_targets(out, animation, folder, columns, args.overwrite)
    check_device(args.device)
    engine = _engine(args)
    request = build_request(args, engine)
    request.validate()
    check_sampler_for_model(engine, request, *(c[0] for c in columns))
    _sweep(args.out.parent, args.animation and args.animation.parent, args.columns)
    request = keep_map_copies(request)
    _quiet_loading(args)
    for each, out, animation, folder in zip(batch_requests(request, count), outs, animations,
                                            folders):  # fmt: skip
        _compare_one(engine, each, samplers, out, animation, folder, args.overwrite)
    return 0


def _compare_one(
    engine: Engine, request: GenerationRequest, samplers: list[str | tuple[str, int]], out: Path,
    animation: Path | None, folder: Path | None, overwrite: bool,
) -> None:  # fmt: skip
    from pipelines.compare import compare
    from pipelines.grids import save_animation, save_columns, save_grid

    total = sum(entry[1] if isinstance(entry, tuple) else request.steps for entry in samplers)
    from tqdm import tqdm

    with tqdm(total=total, unit="step", file=sys.stderr) as bar:
        result = compare(engine, request, samplers, on_step=lambda column, preview: bar.update(1))
    for warning in result.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    written = [save_grid(result, out, overwrite=overwrite)]
    if animation:
        written.append(save_animation(result, animation, overwrite=overwrite))
    if folder:
        written += save_columns(result, folder, overwrite=overwrite)
    for column in result.columns:
        mode = "batched" if column.lockstep else "alone"
        print(f"{column.sampler:22s} {column.steps:3d} steps {column.total_evaluations:4d} "
              f"evaluations {column.seconds:7.2f} s ({mode})")  # fmt: skip
    print("wrote " + ", ".join(str(p) for p in written) + f" (seed {result.request.seed})")


def cmd_models(args: argparse.Namespace) -> int:
    from pipelines.engine import default_model_path
    from pipelines.models import discover_models
    from pipelines.upscalers import find_upscalers

    found = discover_models([default_model_path().parent, *args.model_dir])
    for info in sorted(found.models, key=lambda m: (m.role, m.family or "", m.name)):
        kind = f" [{info.control_kind.value}]" if info.control_kind else ""
        print(f"{info.role:10s} {info.family_label:7s} {info.name}{kind}\n           {info.path}")
    if not found.models:
        print("no models found")
    for path in find_upscalers([default_model_path().parent, *args.model_dir]):
        print(f"{'upscaler':10s} {'':7s} {path.stem}\n           {path}")
    print("\nlooked in:")
    for folder in found.searched:
        print(f"  {folder}{'' if folder.exists() else '  (missing)'}")
    for problem in found.problems:
        print(f"skipped: {problem}", file=sys.stderr)
    from pipelines.add_ons import add_on_listing

    listing, skipped = add_on_listing(args.model_dir, args.embedding_dir)
    print("\n".join(listing))
    for line in skipped:
        print(f"skipped: {line}", file=sys.stderr)
    return 0


def cmd_info(args: argparse.Namespace) -> int:
    import json

    from pipelines.export import format_parameters, read_metadata
    from pipelines.unapplied import not_applied_text

    metadata = read_metadata(args.file)
    for warning in metadata.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    request = metadata.request
    print(json.dumps(request.to_dict(), indent=2) if args.json else format_parameters(request))
    left = not_applied_text(list(metadata.not_applied))
    if left:  # beside the JSON, not inside it, so the JSON stays a request
        print(left, file=sys.stderr if args.json else sys.stdout)
    return 0


def log_folder() -> Path:
    """The folder of the app's logs, the window's too."""
    from pipelines.export import default_log_folder

    return default_log_folder()


def _start_logging(verbose: bool) -> tuple[list[logging.Handler], Path | None]:
    handlers: list[logging.Handler] = []
    path: Path | None = log_folder() / LOG_FILE_NAME
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handlers.append(logging.FileHandler(path, encoding="utf-8"))
    except OSError:
        path = None  # no log file: the console still gets the one-line message
    if verbose:
        handlers.append(logging.StreamHandler(sys.stderr))
    root = logging.getLogger()
    for handler in handlers:
        handler.setFormatter(logging.Formatter(LOG_FORMAT))
        handler.setLevel(logging.DEBUG if verbose else logging.INFO)
        root.addHandler(handler)
    if not handlers:
        # Without any handler, Python prints warnings (and logged tracebacks) to stderr.
        handlers.append(logging.NullHandler())
        root.addHandler(handlers[0])
    if root.level > logging.INFO or root.level == logging.NOTSET:
        root.setLevel(logging.INFO)
    return handlers, path


def _stop_logging(handlers: list[logging.Handler], level: int) -> None:
    root = logging.getLogger()
    for handler in handlers:
        root.removeHandler(handler)
        handler.close()
    root.setLevel(level)


def main(argv: Sequence[str] | None = None) -> int:
    args = _build_parser().parse_args(argv)
    handler = {
        "generate": cmd_generate,
        "compare": cmd_compare,
        "models": cmd_models,
        "info": cmd_info,
    }[args.command]
    level = logging.getLogger().level
    handlers, log_path = _start_logging(bool(getattr(args, "verbose", False)))
    where = f"; details in {log_path}" if log_path else ""
    try:
        return handler(args)
    except StudioError as error:
        log.info("%s failed: %s", args.command, error, exc_info=True)
        print(f"error: {error}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("cancelled", file=sys.stderr)
        return 130
    except Exception as error:  # a bug, not the user's doing: one line, the traceback in the log
        log.exception("%s failed unexpectedly", args.command)
        detail = (str(error).strip().splitlines() or [""])[0][:300]
        print(f"error: unexpected {type(error).__name__}: {detail}{where}", file=sys.stderr)
        return EXIT_FAILURE
    finally:
        _stop_logging(handlers, level)
        if "diffusers.utils" in sys.modules:  # loaded by the command: leave its bars as found
            sys.modules["diffusers.utils"].logging.enable_progress_bar()


if __name__ == "__main__":
    sys.exit(main())
