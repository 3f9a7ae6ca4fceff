"""Command line: ``diffusion-studio generate|compare|models|info``.

Errors the user can fix (bad sizes, missing files, unknown samplers) print one line on stderr and
exit with status 2; no traceback.
"""

from __future__ import annotations

import argparse
import sys
import threading
from collections.abc import Sequence
from pathlib import Path

from pipelines.errors import StudioError, ValidationError
from pipelines.samplers import DEFAULT_SAMPLER, sampler_names
from pipelines.types import ControlKind, ControlUnit, GenerationRequest

EXIT_USAGE = 2


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
    sub = parser.add_subparsers(dest="command", required=True)

    gen = sub.add_parser("generate", help="generate one image")
    _add_request_options(gen)
    gen.add_argument("--out", required=True, type=Path, help="PNG file to write")
    gen.add_argument("--overwrite", action="store_true", help="replace --out if it exists")

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

    models = sub.add_parser("models", help="list the models found and where the studio looked")
    models.add_argument("--model-dir", action="append", type=Path, default=[])

    info = sub.add_parser("info", help="print the settings stored in a PNG")
    info.add_argument("file", type=Path)
    info.add_argument("--json", action="store_true", help="print the full request as JSON")
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
    parser.add_argument(
        "--control", action="append", default=[], metavar="KIND:IMAGE[:STRENGTH]",
        help="run KIND's preprocessor on a photo (repeatable)",
    )  # fmt: skip
    parser.add_argument(
        "--control-map", action="append", default=[], metavar="KIND:MAP[:STRENGTH]",
        help="use a ready-made condition map (repeatable)",
    )  # fmt: skip
    parser.add_argument(
        "--controlnet", action="append", default=[], metavar="KIND=PATH",
        help="ControlNet model for KIND (default: found beside the model or in the model folders)",
    )  # fmt: skip
    parser.add_argument("--annotator-dir", action="append", type=Path, default=[])
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda", "mps"])
    parser.add_argument("--allow-pickle", action="store_true", help="allow .ckpt files (runs code)")


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("diffusion-studio")
    except PackageNotFoundError:
        return "0.1.0 (source)"


def _engine(args):
    from pipelines.engine import Engine, EngineSettings

    settings = EngineSettings(
        model_folders=tuple(args.model_dir),
        annotator_folders=tuple(getattr(args, "annotator_dir", ())),
        device=getattr(args, "device", "auto"),
        allow_pickle=getattr(args, "allow_pickle", False),
    )
    return Engine(settings)


def build_request(args, engine) -> GenerationRequest:
    width = height = None
    if args.size:
        width, height = parse_size(args.size)
    chosen = {}
    for item in args.controlnet:
        kind, sep, path = item.partition("=")
        if not sep:
            raise ValidationError(f"--controlnet {item!r}: use KIND=PATH.")
        chosen[ControlKind(kind.lower())] = path
    units = []
    for texts, preprocess in ((args.control, True), (args.control_map, False)):
        for text in texts:
            kind, image, strength = parse_control(text, preprocess)
            model = chosen.get(kind) or str(engine.default_controlnet(args.model, kind))
            units.append(
                ControlUnit(kind, model, image=image, preprocess=preprocess, strength=strength)
            )
    return GenerationRequest(
        prompt=args.prompt,
        negative_prompt=args.negative,
        model=args.model,
        seed=args.seed,
        steps=args.steps,
        cfg_scale=args.cfg,
        width=width,
        height=height,
        sampler=args.sampler,
        controls=tuple(units),
    )


class _ProgressBar:
    def __init__(self) -> None:
        from tqdm import tqdm

        self._tqdm = tqdm
        self.bar = None

    def step(self, preview) -> None:
        if self.bar is None:
            self.bar = self._tqdm(total=preview.total, unit="step", file=sys.stderr)
        self.bar.update(preview.step - self.bar.n)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def cmd_generate(args) -> int:
    from pipelines.export import write_png

    engine = _engine(args)
    request = build_request(args, engine)
    request.validate()
    if args.out.exists() and not args.overwrite:
        raise StudioError(f"{args.out} exists; pass --overwrite to replace it.")
    bar = _ProgressBar()
    try:
        result = engine.run(
            request,
            on_step=bar.step,
            cancel=threading.Event(),
            on_progress=lambda fraction, message: print(message, file=sys.stderr),
        )
    finally:
        bar.close()
    for warning in result.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    path = write_png(result.image, result.request, args.out, overwrite=args.overwrite)
    print(f"wrote {path} (seed {result.request.seed})")
    return 0


def parse_samplers(text: str) -> list[str | tuple[str, int]]:
    entries: list[str | tuple[str, int]] = []
    for item in (part.strip() for part in text.split(",")):
        if not item:
            continue
        name, sep, steps = item.rpartition(":")
        if sep:
            try:
                entries.append((name.strip(), int(steps)))
            except ValueError:
                raise ValidationError(f"{item!r}: use NAME or NAME:STEPS.") from None
        else:
            entries.append(item)
    if len(entries) < 2:
        raise ValidationError("Name at least two samplers to compare, separated by commas.")
    return entries


def cmd_compare(args) -> int:
    from pipelines.compare import compare
    from pipelines.grids import save_animation, save_columns, save_grid

    engine = _engine(args)
    request = build_request(args, engine)
    request.validate()
    samplers = parse_samplers(args.samplers)
    for target in (args.out, args.animation):
        if target is not None and target.exists() and not args.overwrite:
            raise StudioError(f"{target} exists; pass --overwrite to replace it.")
    total = sum(entry[1] if isinstance(entry, tuple) else request.steps for entry in samplers)
    from tqdm import tqdm

    with tqdm(total=total, unit="step", file=sys.stderr) as bar:
        result = compare(engine, request, samplers, on_step=lambda column, preview: bar.update(1))
    for warning in result.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    written = [save_grid(result, args.out, overwrite=args.overwrite)]
    if args.animation:
        written.append(save_animation(result, args.animation, overwrite=args.overwrite))
    if args.columns:
        written += save_columns(result, args.columns, overwrite=args.overwrite)
    for column in result.columns:
        mode = "batched" if column.lockstep else "alone"
        print(f"{column.sampler:22s} {column.steps:3d} steps {column.total_evaluations:4d} "
              f"evaluations {column.seconds:7.2f} s ({mode})")  # fmt: skip
    print("wrote " + ", ".join(str(p) for p in written) + f" (seed {result.request.seed})")
    return 0


def cmd_models(args) -> int:
    from pipelines.engine import default_model_path
    from pipelines.models import discover_models

    found = discover_models([default_model_path().parent, *args.model_dir])
    for info in sorted(found.models, key=lambda m: (m.role, m.family or "", m.name)):
        family = info.family.label if info.family else "?"
        kind = f" [{info.control_kind.value}]" if info.control_kind else ""
        print(f"{info.role:10s} {family:7s} {info.name}{kind}\n           {info.path}")
    if not found.models:
        print("no models found")
    print("\nlooked in:")
    for folder in found.searched:
        print(f"  {folder}{'' if folder.exists() else '  (missing)'}")
    for problem in found.problems:
        print(f"skipped: {problem}", file=sys.stderr)
    return 0


def cmd_info(args) -> int:
    import json

    from pipelines.export import format_parameters, read_metadata

    metadata = read_metadata(args.file)
    for warning in metadata.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    request = metadata.request
    print(json.dumps(request.to_dict(), indent=2) if args.json else format_parameters(request))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = _build_parser().parse_args(argv)
    handler = {
        "generate": cmd_generate,
        "compare": cmd_compare,
        "models": cmd_models,
        "info": cmd_info,
    }[args.command]
    try:
        return handler(args)
    except StudioError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("cancelled", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
