"""Writing finished images with their settings, and reading settings back from PNGs.

A PNG written here carries two text chunks:

- ``parameters``: the AUTOMATIC1111 "infotext" (prompt, ``Negative prompt: …`` and one line of
  ``Key: value`` pairs), so A1111, Forge, ComfyUI loaders, Civitai and image browsers show the
  settings;
- ``diffusion-studio``: JSON with the complete request (``{"version": 1, "request": {...},
  "extra": {...}}``), which is what this app reads back, because the A1111 text cannot carry
  everything (file paths, memory and preview options, condition images).

Qt-free: used by the window, the CLI and tests.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import string
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, BinaryIO

from PIL import Image, PngImagePlugin

from pipelines.branching import branch_pairs, branches_from_fields
from pipelines.errors import ExportError, ImageReadError, StudioError, ValidationError
from pipelines.images import open_image
from pipelines.rework_metadata import rework_pairs, rework_values
from pipelines.types import (
    MAX_SEED,
    ControlKind,
    ControlUnit,
    GenerationRequest,
    GenerationResult,
    ResizeMode,
    guess_control_kind,
)
from pipelines.unapplied import split_unit_text, unapplied_settings

PARAMETERS_KEY = "parameters"
METADATA_KEY = "diffusion-studio"
METADATA_VERSION = 1
DEFAULT_FILE_PATTERN = "{date}-{index:05d}-{seed}-{prompt}.png"
# Files being written are hidden beside their target under this prefix, so that a later start can
# tell its own leftovers (after a kill or a power cut) from anyone else's files.
TEMP_PREFIX = ".diffusion-studio-"
MAX_FILE_NAME_BYTES = 255  # a file name's limit on the common file systems (ext4, NTFS, APFS)
STALE_TEMP_AGE = 3600.0  # seconds; a write takes seconds, so an older temp file is abandoned
_OWN_TEMP_RE = re.compile(re.escape(TEMP_PREFIX) + r"[0-9a-f]{8}-.*\.tmp")
_EARLIER_TEMP_RE = re.compile(r"\..*\.[0-9a-f]{8}\.tmp")  # .<stem>.<hex>.tmp, before the prefix
PROMPT_IN_NAME_MAX = 40
# Pillow refuses to read a text chunk over 1 MiB (PngImagePlugin.MAX_TEXT_CHUNK); a request within
# its own limits takes a few tens of kilobytes.
MAX_METADATA_BYTES = 512 * 1024

# Our registry's names are A1111's, except where the algorithm differs in name only.
# Read direction: A1111 / older tools' name -> our registry name.
_SAMPLER_FROM_A1111 = {
    "DPM++ SDE Karras": "DPM++ SDE",  # our "DPM++ SDE" always uses Karras noise levels
    "PLMS": "PNDM",  # diffusers' PNDM with skip_prk_steps is the PLMS sampler
    # k-diffusion style names other front ends write into the same format
    "k_euler": "Euler",
    "k_euler_a": "Euler a",
    "k_euler_ancestral": "Euler a",
    "k_heun": "Heun",
    "k_dpm_2": "DPM2",
    "k_dpm_2_a": "DPM2 a",
    "k_dpmpp_2m": "DPM++ 2M",
    "k_lms": "LMS",
}
_SAMPLER_TO_A1111 = {"DPM++ SDE": "DPM++ SDE Karras", "PNDM": "PLMS"}
# A1111 >= 1.9 splits "DPM++ 2M Karras" into "Sampler: DPM++ 2M, Schedule type: Karras". Only the
# schedules our registry spells as a suffix are joined back; "Automatic"/"Uniform" mean the plain
# sampler. Other schedules (SGM Uniform, Align Your Steps, ...) leave the sampler name unchanged.
_SCHEDULE_SUFFIXES = ("Karras", "Exponential")

# sd-webui-controlnet's resize mode labels, current and pre-1.1 spellings.
_RESIZE_TO_A1111 = {
    ResizeMode.STRETCH: "Just Resize",
    ResizeMode.CROP: "Crop and Resize",
    ResizeMode.FIT: "Resize and Fill",
}
_RESIZE_FROM_A1111 = {
    "just resize": ResizeMode.STRETCH,
    "crop and resize": ResizeMode.CROP,
    "scale to fit (inner fit)": ResizeMode.CROP,
    "inner fit": ResizeMode.CROP,
    "resize and fill": ResizeMode.FIT,
    "envelope (outer fit)": ResizeMode.FIT,
    "outer fit": ResizeMode.FIT,
    "0": ResizeMode.STRETCH,
    "1": ResizeMode.CROP,
    "2": ResizeMode.FIT,
}
# The sd-webui-controlnet preprocessor ("Module") each kind runs when it preprocesses a photo.
_MODULE_FOR_KIND = {
    ControlKind.CANNY: "canny",
    ControlKind.POSE: "openpose",
    ControlKind.DEPTH: "depth_midas",
}
_NO_MODULE = {"", "none", "None"}
_WEIGHT_SUFFIXES = {".safetensors", ".ckpt", ".pt", ".pth", ".bin", ".sft", ".gguf"}

# One "Key: value" pair of the A1111 parameters line; a value is either a JSON string (A1111
# quotes values that hold a comma, colon or newline) or runs to the next comma.
_PARAM_RE = re.compile(r'\s*(\w[\w \-/]+):\s*("(?:\\.|[^\\"])*"|[^,]*)(?:,|$)')
# A last line counts as settings only with one of these keys, so a prompt line such as
# "style: anime, pose: sitting, mood: calm" stays prompt.
_CORE_KEYS = {"Steps", "Sampler", "CFG scale", "Seed", "Size", "Model"}
_SIZE_RE = re.compile(r"^\s*(\d+)\s*x\s*(\d+)\s*$")
_MODEL_HASH_RE = re.compile(r"\s*\[[0-9a-fA-F]+\]\s*$")
_WINDOWS_RESERVED = {"CON", "PRN", "AUX", "NUL"} | {
    f"{p}{i}" for p in ("COM", "LPT") for i in range(10)
}


@dataclass(frozen=True)
class ImageMetadata:
    request: GenerationRequest
    extra: dict[str, Any] = field(default_factory=dict)
    parameters: str | None = None  # the A1111 text as stored, if any
    from_json: bool = False  # False: rebuilt from the A1111 text, so paths and options are missing
    warnings: tuple[str, ...] = ()  # the two records disagree, or the JSON one was unreadable
    not_applied: tuple[str, ...] = ()  # "Key: value" of the settings text the request cannot hold


# ---------------------------------------------------------------------------------------------
# A1111 parameters text


def model_display_name(model: str) -> str:
    if not model:
        return "default"
    last = re.split(r"[\\/]", model.rstrip("\\/"))[-1]
    suffix = Path(last).suffix
    # Folder names such as "stable-diffusion-v1.5" keep their dots; only weight files lose them.
    return last[: -len(suffix)] if suffix.lower() in _WEIGHT_SUFFIXES else last


def _number(value: float | int) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _quote(value: str) -> str:
    if any(c in value for c in ",:\n"):
        return json.dumps(value, ensure_ascii=False)
    return value


def _unit_text(unit: ControlUnit) -> str:
    module = _MODULE_FOR_KIND.get(unit.kind, "none") if unit.preprocess else "none"
    if unit.preprocess and unit.module and guess_control_kind(unit.module) is unit.kind:
        module = unit.module  # the name it was read with (openpose_full, depth_midas, ...)
    # The unit text is split on ", " and ": " by readers and cannot be quoted inside.
    model = re.sub(r"[,:]", "_", model_display_name(unit.model)) if unit.model else "None"
    items = [
        ("Module", module),
        ("Model", model),
        ("Weight", str(float(unit.strength))),
        ("Resize Mode", _RESIZE_TO_A1111[unit.resize_mode]),
    ]
    if module == "canny":
        items += [("Threshold A", str(unit.canny_low)), ("Threshold B", str(unit.canny_high))]
    items += [
        ("Guidance Start", str(float(unit.start))),
        ("Guidance End", str(float(unit.end))),
        ("Control Mode", "Balanced"),
    ]
    return ", ".join(f"{key}: {value}" for key, value in items)


# A prompt line a reader could take for the negative prompt's start or for the settings line.
_MARKER_LINE_RE = re.compile(r"^\s*Negative prompt:")


def _looks_like_settings(line: str) -> bool:
    return len(_PARAM_RE.findall(line)) >= 3 and bool(_CORE_KEYS & _parameter_pairs(line).keys())


def _unambiguous(text: str) -> str:
    """``text`` with each line that readers would take for structure written in lower case.

    The CLIP tokenizers lower-case every prompt, so the model reads the same words, while every
    reader of this format (ours, A1111's and those that copy it) matches these keys case-sensitively.
    Lines split on carriage returns too, as :func:`split_parameters` does.
    """
    lines = re.split(r"(\r\n|\r|\n)", text)
    for i in range(0, len(lines), 2):
        if _MARKER_LINE_RE.match(lines[i]) or _looks_like_settings(lines[i]):
            lines[i] = lines[i].lower()
    return "".join(lines)


def format_parameters(request: GenerationRequest) -> str:
    sampler = _SAMPLER_TO_A1111.get(request.sampler, request.sampler)
    # The combined "DPM++ 2M Karras" spelling is read by every A1111 version, the split one
    # ("Schedule type: Karras") only by 1.9 and later.
    pairs: list[tuple[str, str]] = [
        ("Steps", str(request.steps)),
        ("Sampler", sampler),
        ("CFG scale", _number(1.0 if request.distilled_guidance else request.cfg_scale)),
    ]
    if request.distilled_guidance:  # Flux.1-dev's guidance, named as Forge writes it
        pairs.append(("Distilled CFG Scale", _number(request.cfg_scale)))
    if request.seed is not None:
        pairs.append(("Seed", str(request.seed)))
    if request.width is not None and request.height is not None:
        pairs.append(("Size", f"{request.width}x{request.height}"))
    pairs.append(("Model", model_display_name(request.model)))
    if request.batch_size > 1:  # as AUTOMATIC1111 writes it; the seed is each image's own
        pairs.append(("Batch size", str(request.batch_size)))
    if request.clip_skip != 1:  # as A1111: written only when it differs from its default
        pairs.append(("Clip skip", str(request.clip_skip)))
    for key, hashes in (("Lora hashes", request.lora_hashes), ("TI hashes", request.ti_hashes)):
        if hashes:
            pairs.append((key, hashes))
    pairs += rework_pairs(request.source, request.hires)
    # Units keep their slot number, as sd-webui-controlnet does: disabled slots leave gaps.
    for index, unit in enumerate(request.controls):
        if unit.enabled:
            pairs.append((f"ControlNet {index}", _unit_text(unit)))
    pairs += branch_pairs(request.branches)  # the run's changes part way (pipelines/branching)
    line = ", ".join(f"{key}: {_quote(value)}" for key, value in pairs)
    text = _unambiguous(request.prompt)
    if request.negative_prompt:
        text += f"\nNegative prompt: {_unambiguous(request.negative_prompt)}"
    return f"{text}\n{line}"


def _unquote(value: str) -> str:
    if len(value) >= 2 and value[0] == '"' and value[-1] == '"':
        try:
            result = json.loads(value)
        except ValueError:
            return value
        return result if isinstance(result, str) else value
    return value


def _parameter_pairs(line: str) -> dict[str, str]:
    return {key.strip(): _unquote(value.strip()) for key, value in _PARAM_RE.findall(line)}


def split_parameters(text: str) -> tuple[str, str, dict[str, str]]:
    """Split A1111 text into (prompt, negative prompt, {key: value}) without interpreting values."""
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    while lines and not lines[-1].strip():
        lines.pop()
    fields: dict[str, str] = {}
    # As A1111 does: the last line holds the settings when it reads as three or more pairs;
    # otherwise the text is all prompt.
    if lines and len(_PARAM_RE.findall(lines[-1])) >= 3:
        candidate = _parameter_pairs(lines[-1])
        if _CORE_KEYS & candidate.keys():
            fields = candidate
            lines.pop()
    prompt_lines: list[str] = []
    negative_lines: list[str] = []
    for line in lines:
        if not negative_lines and line.lstrip().startswith("Negative prompt:"):
            negative_lines.append(line.lstrip()[len("Negative prompt:") :].strip())
        elif negative_lines:
            negative_lines.append(line)
        else:
            prompt_lines.append(line)
    return "\n".join(prompt_lines), "\n".join(negative_lines), fields


def _to_int(key: str, value: str) -> int:
    try:
        return int(value.strip())
    except ValueError:
        try:
            number = float(value)
        except ValueError:
            raise ValidationError(f"The setting '{key}: {value}' is not a whole number.") from None
        if not number.is_integer():
            raise ValidationError(f"The setting '{key}: {value}' is not a whole number.") from None
        return int(number)


def _to_float(key: str, value: str) -> float:
    try:
        return float(value.strip())
    except ValueError:
        raise ValidationError(f"The setting '{key}: {value}' is not a number.") from None


def _sampler_name(sampler: str, schedule: str | None) -> str:
    sampler = sampler.strip()
    if schedule:
        schedule = schedule.strip()
        for suffix in _SCHEDULE_SUFFIXES:
            if schedule.lower() == suffix.lower() and not sampler.endswith(f" {suffix}"):
                sampler = f"{sampler} {suffix}"
    return _SAMPLER_FROM_A1111.get(sampler, sampler)


def _kind_for(*names: str) -> ControlKind:
    for name in names:
        kind = guess_control_kind(name)
        if kind is not None:
            return kind
    return ControlKind.CUSTOM


def _control_from_values(values: dict[str, str], label: str) -> ControlUnit | None:
    module = values.get("Module", values.get("Preprocessor", "none")).strip()
    model = _MODEL_HASH_RE.sub("", values.get("Model", "")).strip()
    if model in _NO_MODULE:
        model = ""
    if module in _NO_MODULE and not model:
        return None
    # Only a module we run ourselves means "preprocess"; any other (softedge, invert, ...) is
    # recorded as a ready map whose kind the model name tells. A1111 text never carries the image,
    # so the user supplies it either way.
    module_kind = ControlKind.CUSTOM if module in _NO_MODULE else _kind_for(module)
    preprocess = module_kind is not ControlKind.CUSTOM
    kind = module_kind if preprocess else _kind_for(model)
    unit: dict[str, Any] = {"kind": kind, "model": model, "preprocess": preprocess}
    if preprocess and module != _MODULE_FOR_KIND.get(kind):
        unit["module"] = module
    if "Weight" in values:
        unit["strength"] = _to_float(f"{label} Weight", values["Weight"])
    if "Guidance Start" in values:
        unit["start"] = _to_float(f"{label} Guidance Start", values["Guidance Start"])
    end_key = "Guidance End" if "Guidance End" in values else "Guidance Strength"
    if end_key in values:  # "Guidance Strength" was the first releases' name for the end
        unit["end"] = _to_float(f"{label} {end_key}", values[end_key])
    resize = values.get("Resize Mode", "").strip().lower()
    if resize in _RESIZE_FROM_A1111:
        unit["resize_mode"] = _RESIZE_FROM_A1111[resize]
    if kind is ControlKind.CANNY and preprocess:
        for key, name in (("Threshold A", "canny_low"), ("Threshold B", "canny_high")):
            if key in values:
                threshold = _to_float(f"{label} {key}", values[key])
                if 0 <= threshold <= 255:  # non-canny modules reuse these slots for other ranges
                    unit[name] = round(threshold)
    if values.get("Enabled", "True").strip() == "False":
        unit["enabled"] = False
    return ControlUnit(**unit)


def _controls(fields: Mapping[str, str]) -> tuple[ControlUnit, ...]:
    units: dict[int, dict[str, str]] = {}
    for key, value in fields.items():
        modern = re.fullmatch(r"ControlNet (\d+)", key)
        if modern:
            units.setdefault(int(modern[1]), {}).update(split_unit_text(value))
            continue
        # Before the quoted form (early 2023): "ControlNet Module: canny" for a single unit,
        # then "ControlNet-0 Module: canny, ControlNet-1 Module: depth".
        legacy = re.fullmatch(r"ControlNet(?:-(\d+))? (\D.*)", key)
        if legacy:
            units.setdefault(int(legacy[1] or 0), {})[legacy[2].strip()] = value
    controls = []
    for index in sorted(units):
        unit = _control_from_values(units[index], f"ControlNet {index}")
        if unit is not None:
            controls.append(unit)
    return tuple(controls)


def parse_parameters(text: str) -> GenerationRequest:
    """Read A1111-style text into a request.

    Fields the request has no place for (``Model hash``, ``Denoising strength``, ``Version``, ...)
    are not in it; :func:`pipelines.unapplied.unapplied_settings` lists them for the user. ``Model`` becomes a model *name*, not a
    path, and ControlNet units have no image: the caller resolves both against local files.
    Values are not range-checked here; the engine validates the request before a run.
    """
    if not text or not text.strip():
        raise ValidationError("The image's settings text is empty.")
    prompt, negative, fields = split_parameters(text)
    values: dict[str, Any] = {"prompt": prompt, "negative_prompt": negative}
    if "Steps" in fields:
        values["steps"] = _to_int("Steps", fields["Steps"])
    if "CFG scale" in fields:
        values["cfg_scale"] = _to_float("CFG scale", fields["CFG scale"])
    if "Distilled CFG Scale" in fields:
        values["cfg_scale"] = _to_float("Distilled CFG Scale", fields["Distilled CFG Scale"])
        values["distilled_guidance"] = True
    if "Seed" in fields:
        values["seed"] = _to_int("Seed", fields["Seed"])
    if "Size" in fields:
        size = _SIZE_RE.match(fields["Size"])
        if size is None:
            raise ValidationError(f"The setting 'Size: {fields['Size']}' is not WIDTHxHEIGHT.")
        values["width"], values["height"] = int(size[1]), int(size[2])
    if fields.get("Sampler", "").strip():
        values["sampler"] = _sampler_name(fields["Sampler"], fields.get("Schedule type"))
    model = fields.get("Model", "").strip()
    if model and model != "default":  # "default" is what format_parameters writes for ""
        values["model"] = model
    values["controls"] = _controls(fields)
    values["branches"] = branches_from_fields(fields)
    if "Batch size" in fields:
        values["batch_size"] = _to_int("Batch size", fields["Batch size"])
    if "Clip skip" in fields:
        values["clip_skip"] = _to_int("Clip skip", fields["Clip skip"])
    values["lora_hashes"] = fields.get("Lora hashes", "")
    values["ti_hashes"] = fields.get("TI hashes", "")
    size = (values["width"], values["height"]) if "width" in values else None
    values.update(rework_values(fields, size, _to_int, _to_float))
    return GenerationRequest(**values)


# ---------------------------------------------------------------------------------------------
# PNG files


def _png_info(
    request: GenerationRequest, extra: Mapping[str, Any] | None
) -> PngImagePlugin.PngInfo:
    document: dict[str, Any] = {"version": METADATA_VERSION, "request": request.to_dict()}
    if extra:
        document["extra"] = dict(extra)
    parameters = format_parameters(request)
    text = json.dumps(document, ensure_ascii=False, allow_nan=False)
    size = len(parameters.encode("utf-8")) + len(text.encode("utf-8"))
    if size > MAX_METADATA_BYTES:
        raise ExportError(
            f"The settings to store in the PNG take {size:,} bytes; at most "
            f"{MAX_METADATA_BYTES:,} can be stored (and read back by image viewers)."
        )
    info = PngImagePlugin.PngInfo()
    # add_text writes tEXt when the text is Latin-1 and iTXt (UTF-8) otherwise, as A1111 does.
    info.add_text(PARAMETERS_KEY, parameters)
    info.add_text(METADATA_KEY, text)
    return info


def _savable(image: Image.Image) -> Image.Image:
    if image.mode in {"1", "L", "LA", "I", "I;16", "P", "RGB", "RGBA"}:
        return image
    return image.convert("RGBA" if "A" in image.getbands() else "RGB")


def check_target(
    path: str | os.PathLike[str],
    overwrite: bool,
    make_folder: bool,
    suffixes: tuple[str, ...] = (".png",),
    *,
    create: bool = True,
) -> None:
    """Raise :class:`ExportError` unless ``path`` can be written: its suffix, its folder (made
    here with ``make_folder`` and ``create``, only its last level), and no file or folder in the
    way unless ``overwrite``. Callers run it before any long work, so a bad target fails first."""
    path = Path(path)
    if "\0" in str(path):
        raise ExportError(f"Cannot save {str(path)!r}: a file name cannot contain a NUL character.")
    # Before any look at the disk: a stat of an over-long name raises instead of answering.
    if len(os.fsencode(path.name)) > MAX_FILE_NAME_BYTES:
        raise ExportError(
            f"Cannot save {path.name[:40]}…: the file name is longer than the "
            f"{MAX_FILE_NAME_BYTES} bytes file systems take."
        )
    if path.is_dir():
        raise ExportError(f"Cannot save as {path}: a folder has that name.")
    if path.suffix.lower() not in suffixes:
        names = " or ".join(suffixes)
        raise ExportError(f"Cannot save {path.name!r}: the file name must end in {names}.")
    folder = path.parent
    if not folder.exists():
        if not make_folder:
            raise ExportError(f"Cannot save {path.name}: the folder {folder} does not exist.")
        if not create:
            if not folder.parent.is_dir():
                raise ExportError(
                    f"Cannot create the folder {folder}: its parent folder does not exist."
                )
            return
        try:
            folder.mkdir()  # only the last folder: a mistyped parent should fail, not be created
        except FileNotFoundError:
            raise ExportError(
                f"Cannot create the folder {folder}: its parent folder does not exist."
            ) from None
        except OSError as exc:
            raise ExportError(f"Cannot create the folder {folder}: {exc.strerror or exc}.") from exc
    elif not folder.is_dir():
        raise ExportError(f"Cannot save into {folder}: it is a file, not a folder.")
    if path.exists() and not overwrite:
        raise ExportError(f"{path} already exists; choose another name or allow overwriting.")
    if not create and folder.is_dir():
        _probe_write(folder, path)


def _probe_write(folder: Path, path: Path) -> None:
    # Checked before long work: a folder can look fine and still refuse files (read-only mounts,
    # /proc, permissions), and the user should learn that before the image is made, not after.
    probe = folder / f"{TEMP_PREFIX}{secrets.token_hex(4)}-probe.tmp"
    try:
        fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except OSError as exc:
        raise ExportError(f"Cannot save {path.name} in {folder}: {exc.strerror or exc}.") from exc
    os.close(fd)
    _discard(probe)


def _publish(temp: Path, path: Path, overwrite: bool) -> None:
    if overwrite:
        os.replace(temp, path)
        return
    # A hard link fails when the name exists, so a file that appeared since the check is never
    # replaced. File systems without hard links fall back to check-then-rename.
    try:
        os.link(temp, path)
    except FileExistsError:
        raise ExportError(
            f"{path} already exists; choose another name or allow overwriting."
        ) from None
    except OSError:
        if path.exists():
            raise ExportError(
                f"{path} already exists; choose another name or allow overwriting."
            ) from None
        os.replace(temp, path)
    else:
        os.unlink(temp)


def write_atomically(
    path: str | os.PathLike[str],
    save: Callable[[BinaryIO], None],
    *,
    overwrite: bool = False,
    make_folder: bool = False,
    suffixes: tuple[str, ...] = (".png",),
) -> Path:
    """Run ``save(handle)`` into a hidden temporary file beside ``path``, then move it into place.

    A crash or a full disk never leaves a half-written file under the final name. Existing files
    are refused unless ``overwrite`` is true; a missing folder is created only with ``make_folder``
    (and only the last level). Every failure is an :class:`ExportError`.
    """
    path = Path(path)
    check_target(path, overwrite, make_folder, suffixes)
    # The stem is shortened so that the temp name stays within the limit the final name meets.
    temp = path.with_name(f"{TEMP_PREFIX}{secrets.token_hex(4)}-{path.stem[:64]}.tmp")
    try:
        # os.open with 0o666 lets the umask decide the final permissions, unlike mkstemp's 0o600.
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
        with os.fdopen(fd, "wb") as handle:
            save(handle)
            handle.flush()
            os.fsync(handle.fileno())
        _publish(temp, path, overwrite)
    except ExportError:
        _discard(temp)
        raise
    except PermissionError as exc:
        _discard(temp)
        raise ExportError(f"No permission to write {path}.") from exc
    except OSError as exc:
        _discard(temp)
        raise ExportError(f"Could not write {path}: {exc.strerror or exc}.") from exc
    except BaseException:
        _discard(temp)
        raise
    return path


def sweep_stale_temp_files(
    folder: str | os.PathLike[str], max_age: float = STALE_TEMP_AGE, now: float | None = None
) -> list[Path]:
    """Delete this app's own temp files older than ``max_age`` seconds in ``folder``; return them.

    A write killed half-way (``kill -9``, a crash, a power cut) leaves its hidden temp file behind;
    nothing else ever removes it. Only names this module makes are touched, never other files.
    """
    now = time.time() if now is None else now
    removed: list[Path] = []
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return removed  # a missing or unreadable folder has nothing of ours to clean
    for entry in entries:
        if not (_OWN_TEMP_RE.fullmatch(entry.name) or _EARLIER_TEMP_RE.fullmatch(entry.name)):
            continue
        try:
            if not entry.is_file(follow_symlinks=False):
                continue
            if now - entry.stat(follow_symlinks=False).st_mtime < max_age:
                continue  # another running instance may be writing it right now
            os.unlink(entry.path)
        except OSError:
            continue
        removed.append(Path(entry.path))
    return removed


def _discard(temp: Path) -> None:
    # Called while another error is on its way out: the removal's own failure (a read-only file
    # system refuses even the unlink of a file never made) must not replace that error.
    try:
        temp.unlink(missing_ok=True)
    except OSError:
        pass


def run_details(result: GenerationResult) -> dict[str, Any]:
    """What the PNG's ``extra`` record keeps about how an image was made beyond its request: the
    weights' number format (the same request gives a slightly different image in bf16)."""
    return {"precision": result.precision} if result.precision else {}


def write_png(
    image: Image.Image,
    request: GenerationRequest,
    path: str | os.PathLike[str],
    *,
    overwrite: bool = False,
    extra: Mapping[str, Any] | None = None,
    make_folder: bool = False,
) -> Path:
    """Save ``image`` as a PNG carrying ``request`` (atomically, see :func:`write_atomically`)."""
    info = _png_info(request, extra)  # before touching the disk: a bad `extra` is a bug
    return write_atomically(
        path,
        lambda handle: _savable(image).save(handle, format="PNG", pnginfo=info),
        overwrite=overwrite,
        make_folder=make_folder,
    )


def _read_text_chunks(path: Path) -> dict[str, str]:
    with open_image(path) as image:
        if image.format != "PNG":
            raise ImageReadError(
                f"{path.name} is a {image.format or 'non-PNG'} image; settings are read from "
                "PNG files only."
            )
        return {str(k): str(v) for k, v in getattr(image, "text", {}).items()}


def _from_json(text: str) -> tuple[GenerationRequest, dict[str, Any]]:
    try:
        document = json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise ValidationError(f"it is not valid JSON ({exc.__class__.__name__})") from None
    if not isinstance(document, dict) or "request" not in document:
        raise ValidationError("it holds no request")
    request = GenerationRequest.from_dict(document["request"])
    extra = document.get("extra")
    return request, extra if isinstance(extra, dict) else {}


# What the A1111 text carries, to compare it with the JSON record.
_CARRIED = ("prompt", "negative_prompt", "steps", "cfg_scale", "seed", "width", "height", "sampler",
            "clip_skip")  # fmt: skip


def _disagreement(request: GenerationRequest, parameters: str) -> str | None:
    try:
        stored = parse_parameters(parameters)
        expected = parse_parameters(format_parameters(request))
    except StudioError as exc:
        return f"its settings text cannot be read ({exc})"
    differing = [
        name.replace("_", " ")
        for name in _CARRIED
        if getattr(stored, name) != getattr(expected, name)
    ]
    if not differing:
        return None
    return "its settings text differs from its complete settings in " + ", ".join(differing)


def read_metadata(path: str | os.PathLike[str]) -> ImageMetadata:
    """The settings a PNG carries. The JSON record is complete and authoritative; the A1111 text is
    read only without it. A disagreement between the two, or a damaged JSON record, is reported
    in :attr:`ImageMetadata.warnings`."""
    path = Path(path)
    chunks = _read_text_chunks(path)
    parameters = chunks.get(PARAMETERS_KEY)
    warnings: list[str] = []
    if METADATA_KEY in chunks:
        try:
            request, extra = _from_json(chunks[METADATA_KEY])
        except StudioError as exc:
            # A damaged or future-incompatible JSON record falls back to the A1111 text below.
            warnings.append(
                f"The complete settings stored in {path.name} are damaged ({exc}); "
                "only the settings text was read, so file paths and options are missing."
            )
        else:
            if parameters is not None:
                problem = _disagreement(request, parameters)
                if problem is not None:
                    warnings.append(
                        f"{path.name}: {problem}; the complete settings were used. "
                        "Another program may have edited the text."
                    )
            return ImageMetadata(
                request, extra, parameters, from_json=True, warnings=tuple(warnings)
            )
    if parameters and parameters.strip():
        try:
            request = parse_parameters(parameters)
            request.check_fields()  # refused whole here, never half applied by a caller
        except StudioError as exc:
            raise ImageReadError(
                f"The settings stored in {path.name} cannot be read: {exc}"
            ) from exc
        left = tuple(unapplied_settings(split_parameters(parameters)[2]))
        return ImageMetadata(
            request, {}, parameters, from_json=False, warnings=tuple(warnings), not_applied=left
        )
    if warnings:
        raise ImageReadError(warnings[0].split("; only")[0] + ".")
    raise ImageReadError(f"{path.name} carries no generation settings.")


def read_request(path: str | os.PathLike[str]) -> GenerationRequest:
    return read_metadata(path).request


# ---------------------------------------------------------------------------------------------
# The app's own data folder and the condition maps kept in it

APP_FOLDER_NAME = "Diffusion Studio"  # the organisation and application names the window uses
MAPS_SUBFOLDER = "condition-maps"


# Qt's standard locations, found without Qt: per platform, the environment variable that moves
# the base folder and the base's place in the home folder when it is unset.
_QT_LOCATIONS = {
    "data": {  # AppDataLocation
        "win32": ("APPDATA", "AppData/Roaming"),
        "darwin": ("", "Library/Application Support"),
        "other": ("XDG_DATA_HOME", ".local/share"),
    },
    "state": {  # StateLocation
        "win32": ("LOCALAPPDATA", "AppData/Local"),
        "darwin": ("", "Library/Preferences"),
        "other": ("XDG_STATE_HOME", ".local/state"),
    },
}


def _app_location(kind: str) -> Path:
    table = _QT_LOCATIONS[kind]
    variable, in_home = table.get(sys.platform, table["other"])
    base = (variable and os.environ.get(variable)) or Path.home() / in_home
    return Path(base) / APP_FOLDER_NAME / APP_FOLDER_NAME


def default_data_folder() -> Path:
    """Where the window keeps its own files (Qt's AppDataLocation for its names), found without Qt
    so that the command line keeps its map copies in the same place."""
    return _app_location("data")


def default_log_folder() -> Path:
    """Where the app's logs go, the window's and the command line's: DIFFUSION_STUDIO_LOG_DIR when
    set, else Qt's StateLocation for the window's names (plus "logs"), found without Qt."""
    override = os.environ.get("DIFFUSION_STUDIO_LOG_DIR")
    return Path(override) if override else _app_location("state") / "logs"


def condition_maps_folder(data_folder: str | os.PathLike[str]) -> Path:
    return Path(data_folder) / MAPS_SUBFOLDER


def save_condition_map(
    image: Image.Image, folder: str | os.PathLike[str], stem: str = "map"
) -> Path:
    """Write ``image`` as a new RGB PNG in ``folder`` under a name never used before; return it.

    A request names its condition image by path, and history, settings and exported PNGs keep that
    path: so a map is never overwritten, and a later edit is a new file.
    """
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ExportError(f"Cannot create the folder {folder}: {exc.strerror or exc}.") from exc
    rgb = image if image.mode == "RGB" else image.convert("RGB")
    while True:
        # Time for people browsing the folder, a random part so that two maps never share a name.
        stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
        path = folder / f"{file_name_part(stem) or 'map'}-{stamp}-{secrets.token_hex(4)}.png"
        try:
            return write_atomically(path, lambda handle: rgb.save(handle, format="PNG"))
        except ExportError:
            if not path.exists():
                raise  # taken names are retried; any other failure is reported


# ---------------------------------------------------------------------------------------------
# File names

_NAME_FIELDS = ("date", "time", "seed", "sampler", "steps", "prompt", "index")
# How each field looks once formatted, to recognise earlier files' indices in the folder.
_FIELD_PATTERNS = {
    "date": r"\d{4}-\d{2}-\d{2}",
    "time": r"\d{2}-\d{2}-\d{2}",
    "seed": r"(?:\d+|random)",
    "steps": r"\d+",
    "sampler": r"[\w-]*",
    "prompt": r"[\w-]*",
}


def file_name_part(text: str, limit: int = PROMPT_IN_NAME_MAX) -> str:
    # \w keeps non-Latin letters too: a Japanese prompt should not give an empty name.
    cleaned = re.sub(r"[^\w-]+", "_", text, flags=re.UNICODE)
    cleaned = re.sub(r"_{2,}", "_", cleaned).strip("_-")
    return cleaned[:limit].rstrip("_-")


def _pattern_fields(pattern: str) -> list[tuple[str, str | None, str, str | None]]:
    try:
        parsed = list(string.Formatter().parse(pattern))
    except ValueError as exc:
        raise ExportError(f"The file name pattern {pattern!r} is malformed: {exc}.") from None
    for _literal, name, _spec, _conversion in parsed:
        if name is not None and name not in _NAME_FIELDS:
            known = ", ".join(f"{{{n}}}" for n in _NAME_FIELDS)
            raise ExportError(f"Unknown field {{{name}}} in the file name pattern; use {known}.")
    return parsed


# File systems allow 255 bytes a name; the hidden temp name and a collision suffix need some.
MAX_NAME_BYTES = 200
MAX_PATTERN_CHARS = 500
_MAX_FIELD_WIDTH = 40


def check_file_pattern(pattern: str) -> None:
    """Refuse, with a message a person can act on, a pattern that cannot give a plain file name.

    Checked when the pattern is set, so that saving never meets it: unknown or malformed fields,
    control characters, folder separators, field widths that would build huge names, and names
    too long for the file system even with the longest values the fields take.
    """
    if not isinstance(pattern, str) or not pattern.strip():
        raise ExportError("The file name pattern is empty; e.g. " + DEFAULT_FILE_PATTERN)
    if len(pattern) > MAX_PATTERN_CHARS:
        raise ExportError(f"The file name pattern is longer than {MAX_PATTERN_CHARS} characters.")
    if any(ord(c) < 32 or ord(c) == 127 for c in pattern):
        raise ExportError("The file name pattern contains a control character (such as NUL).")
    if "/" in pattern or "\\" in pattern:
        raise ExportError("The file name pattern must give a file name, without / or \\.")
    for _literal, name, spec, _conversion in _pattern_fields(pattern):
        if name is None or not spec:
            continue
        if "{" in spec:
            raise ExportError(f"The field {{{name}}} has a nested field in its format {spec!r}.")
        widths = [int(n) for n in re.findall(r"\d+", spec)]
        if any(w > _MAX_FIELD_WIDTH for w in widths):
            raise ExportError(
                f"The field {{{name}:{spec}}} is wider than {_MAX_FIELD_WIDTH} characters."
            )
    longest = GenerationRequest("w" * PROMPT_IN_NAME_MAX, seed=MAX_SEED, sampler="DPM++ 2M Karras")
    name = _fill_pattern(pattern, longest, 99_999, datetime(2000, 12, 31, 23, 59, 59))
    if len(name.encode("utf-8")) > MAX_NAME_BYTES:
        raise ExportError(
            f"The file name pattern can give names of {len(name.encode('utf-8'))} bytes; "
            f"file systems take about {MAX_NAME_BYTES}. Shorten its text or its fields."
        )


def _split_extension(pattern: str) -> str:
    return pattern[:-4] if pattern.lower().endswith(".png") else pattern


def _index_regex(pattern: str) -> re.Pattern[str] | None:
    parts: list[str] = []
    has_index = False
    for literal, name, spec, conversion in _pattern_fields(_split_extension(pattern)):
        parts.append(re.escape(literal))
        if name is None:
            continue
        if name == "index":
            parts.append(r"(\d+)" if not has_index else r"\d+")
            has_index = True
        elif spec or conversion:
            parts.append(r".*?")
        else:
            parts.append(_FIELD_PATTERNS[name])
    if not has_index:
        return None
    # Collision suffixes ("-1", "-2") sit between the name and the extension.
    return re.compile("".join(parts) + r"(?:-\d+)?\.png", re.IGNORECASE)


def _next_index(folder: Path, regex: re.Pattern[str]) -> int:
    highest = 0
    try:
        names = [entry.name for entry in os.scandir(folder)]
    except FileNotFoundError:
        return 1
    except OSError as exc:
        raise ExportError(f"Cannot list the folder {folder}: {exc.strerror or exc}.") from exc
    for name in names:
        match = regex.fullmatch(name)
        if match:
            highest = max(highest, int(match[1]))
    return highest + 1


def _fill_pattern(pattern: str, request: GenerationRequest, index: int, now: datetime) -> str:
    values = {
        "date": now.strftime("%Y-%m-%d"),
        "time": now.strftime("%H-%M-%S"),  # no colons: Windows forbids them in names
        "seed": str(request.seed) if request.seed is not None else "random",
        "sampler": file_name_part(request.sampler),
        "steps": request.steps,
        "prompt": file_name_part(request.prompt) or "untitled",
        "index": index,
    }
    try:
        name = pattern.format(**values)
    except (ValueError, TypeError, IndexError, KeyError, AttributeError) as exc:
        raise ExportError(
            f"The file name pattern {pattern!r} cannot be filled in: {exc}."
        ) from None
    if "/" in name or "\\" in name or "\0" in name or name in {"", ".", ".."}:
        raise ExportError(f"The file name pattern {pattern!r} must give a plain file name.")
    return name


def next_free_path(
    folder: str | os.PathLike[str],
    pattern: str,
    request: GenerationRequest,
    index: int | None = None,
    *,
    now: datetime | None = None,
) -> Path:
    """A path in ``folder`` for the next image, named by ``pattern``, that does not exist yet.

    ``index`` defaults to one more than the highest index among files in the folder that match
    the pattern. The name is free when returned; :func:`write_png` still refuses to overwrite if
    another writer takes it first.
    """
    folder = Path(folder)
    check_file_pattern(pattern)
    now = now or datetime.now()
    if index is None:
        regex = _index_regex(pattern)
        index = _next_index(folder, regex) if regex is not None else 1
    name = _fill_pattern(pattern, request, index, now)
    stem, suffix = (name[:-4], name[-4:]) if name.lower().endswith(".png") else (name, ".png")
    if not stem or stem.upper() in _WINDOWS_RESERVED:
        stem = f"{stem}_image"
    candidate = folder / f"{stem}{suffix}"
    counter = 1
    while candidate.exists():
        candidate = folder / f"{stem}-{counter}{suffix}"
        counter += 1
    return candidate
