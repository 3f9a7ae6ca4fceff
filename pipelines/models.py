"""Find Stable Diffusion models on this machine and load them strictly offline.

Discovery reads only JSON configs and safetensors headers, never weights, so scanning a folder of
multi-gigabyte checkpoints stays fast. Loading never reaches the network: single files are paired
with the diffusers configs shipped in ``resources/configs`` and the tokenizers in
``resources/tokenizers``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
import warnings
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch

from pipelines.errors import FamilyMismatchError, ModelFormatError, ModelNotFoundError
from pipelines.flow_files import (
    COMPANION_FOLDERS,
    FLOW_CONTROLNETS,
    FLOW_PIPELINES,
    folder_variant,
    inspect_flow_header,
    tiny_vae_family,
)
from pipelines.model_files import hf_cache_dir as _hf_cache_dir
from pipelines.model_files import (
    read_safetensors_header,  # noqa: F401 - re-exported
    read_tensor_table,
)
from pipelines.model_files import snapshot_of as _snapshot_of
from pipelines.offline import set_offline_environment  # noqa: F401 - re-exported
from pipelines.resources import resource_path
from pipelines.types import ControlKind, ModelFamily, guess_control_kind

log = logging.getLogger(__name__)

Role = Literal["base", "controlnet", "tiny_vae"]
Format = Literal["diffusers", "single_file", "hf_cache"]

SAFE_SUFFIXES = (".safetensors", ".gguf")  # GGUF: quantized SD 3.x / Flux.1 transformers
PICKLE_SUFFIXES = (".ckpt", ".pt", ".pth", ".bin")
# Folders other UIs keep their models in, relative to the folder the user points at.
UI_SUBFOLDERS = (
    "models/Stable-diffusion",  # AUTOMATIC1111 / Forge
    "models/ControlNet",
    "models/checkpoints",  # ComfyUI
    "models/controlnet",
    "models/diffusers",
    "models/unet",  # ComfyUI: SD 3.x / Flux.1 transformer-only files
    "models/diffusion_models",
)
_MAX_DEPTH = 3
_SKIP_DIRS = {
    "venv",
    ".venv",
    "env",
    "node_modules",
    "__pycache__",
    "site-packages",
    "repositories",
}
_CONTROL_DIR_NAMES = {"controlnet", "control"}
# Folders of add-ons to a model (LoRAs, embeddings): listed by pipelines/loras.py and
# pipelines/embeddings.py, not scanned for models.
_ADD_ON_DIR_NAMES = {"lora", "loras", "lycoris", "embeddings"}
_WEIGHT_SUFFIXES = (".safetensors", ".bin")


@dataclass(frozen=True)
class ModelInfo:
    path: Path
    name: str
    role: Role
    family: ModelFamily | None
    format: Format
    source: Path
    control_kind: ControlKind | None = None
    variant: str = ""  # Flux.1: "dev" or "schnell"

    @property
    def family_label(self) -> str:
        if self.family is None:
            return "?"
        return f"{self.family.label}-{self.variant}" if self.variant else self.family.label

    @property
    def needs_pickle(self) -> bool:
        # Pickled checkpoints can run arbitrary code when loaded; loading asks for explicit consent.
        return self.path.is_file() and self.path.suffix.lower() in PICKLE_SUFFIXES


@dataclass
class Discovery:
    models: list[ModelInfo] = field(default_factory=list)
    searched: list[Path] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    # Entries the scan could not look at (no permission, a broken disk): (path, reason). Each is
    # also told in ``problems``; the rest of the scan goes on without them.
    skipped: list[tuple[Path, str]] = field(default_factory=list)

    def bases(self) -> list[ModelInfo]:
        return [m for m in self.models if m.role == "base"]

    def controlnets(self, family: ModelFamily | None = None) -> list[ModelInfo]:
        return [
            m
            for m in self.models
            if m.role == "controlnet" and (family is None or m.family in (family, None))
        ]

    def tiny_vaes(self) -> list[ModelInfo]:
        return [m for m in self.models if m.role == "tiny_vae"]


# ---------------------------------------------------------------------------------------------
# Reading configs and headers


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _shape(header: dict[str, Any], key: str) -> list[int] | None:
    entry = header.get(key)
    return list(entry.get("shape", [])) if isinstance(entry, dict) else None


def _is_controlnet_keys(keys: Iterable[str]) -> bool:
    markers = (
        "input_hint_block.",
        "zero_convs.",
        "controlnet_cond_embedding.",
        "controlnet_down_blocks.",
    )
    return any(marker in key for key in keys for marker in markers)


def _is_base_keys(keys: Iterable[str]) -> bool:
    return any(key.startswith("model.diffusion_model.") for key in keys)


def _context_dim(header: dict[str, Any]) -> int | None:
    # The cross-attention key projection maps the text encoder's width: 768 SD1, 1024 SD2, 2048 SDXL.
    for key in header:
        if key.endswith("attn2.to_k.weight"):
            shape = _shape(header, key)
            if shape and len(shape) == 2:
                return shape[1]
    return None


# A text-to-image UNet reads the 4 latent channels; an inpainting one also the mask (1) and the
# masked picture's latents (4).
INPUT_CHANNELS = (4, 9)


def unet_input_channels(header: dict[str, Any]) -> int:
    """The input channels of a single-file checkpoint's UNet, from its tensor table."""
    conv_in = _shape(header, "model.diffusion_model.input_blocks.0.0.weight")
    return conv_in[1] if conv_in and len(conv_in) == 4 else 4


def _family_from_header(path: Path, header: dict[str, Any]) -> ModelFamily:
    flow = inspect_flow_header(header)
    if flow is not None:
        return flow.family
    keys = list(header)
    if _is_controlnet_keys(keys):
        return _controlnet_family_from_header(path, header)
    if not _is_base_keys(keys):
        raise ModelFormatError(
            f"{path.name} is neither a Stable Diffusion checkpoint nor a ControlNet "
            "(it may be a LoRA, VAE or embedding, or a model family the studio does not support)."
        )
    channels = unet_input_channels(header)
    if channels not in INPUT_CHANNELS:
        raise ModelFormatError(
            f"{path.name} is an edit model ({channels} input channels); only text-to-image and "
            "inpainting checkpoints are supported."
        )
    if any(k.startswith("conditioner.embedders.") for k in keys) or any(
        k.startswith("model.diffusion_model.label_emb.") for k in keys
    ):
        if not any(k.startswith("conditioner.embedders.1.") for k in keys) and any(
            k.startswith("conditioner.embedders.0.model.") for k in keys
        ):
            raise ModelFormatError(f"{path.name} is an SDXL refiner, which cannot be used alone.")
        return ModelFamily.SDXL
    dim = _context_dim(header)
    if dim == 1024 or any(k.startswith("cond_stage_model.model.") for k in keys):
        raise ModelFormatError(
            f"{path.name} is a Stable Diffusion 2.x model, which is not supported."
        )
    if dim == 2048:
        return ModelFamily.SDXL
    return ModelFamily.SD1


def _controlnet_family_from_header(path: Path, header: dict[str, Any]) -> ModelFamily:
    keys = list(header)
    if any("add_embedding." in k or "label_emb." in k for k in keys):
        return ModelFamily.SDXL
    dim = _context_dim(header)
    if dim == 2048:
        return ModelFamily.SDXL
    if dim == 1024:
        raise ModelFormatError(
            f"{path.name} is a ControlNet for Stable Diffusion 2.x (not supported)."
        )
    return ModelFamily.SD1


def _family_from_unet_config(path: Path, config: dict[str, Any]) -> ModelFamily:
    if config.get("addition_embed_type") == "text_time":
        return ModelFamily.SDXL
    dim = config.get("cross_attention_dim")
    if dim == 2048:
        return ModelFamily.SDXL
    if dim == 1024:
        raise ModelFormatError(f"{path} is a Stable Diffusion 2.x model, which is not supported.")
    if config.get("in_channels", 4) not in INPUT_CHANNELS:
        raise ModelFormatError(
            f"{path} is an edit model; only text-to-image and inpainting models are supported."
        )
    return ModelFamily.SD1


def _family_from_pipeline_folder(path: Path, index: dict[str, Any]) -> ModelFamily:
    name = str(index.get("_class_name", ""))
    if name in FLOW_PIPELINES:
        return FLOW_PIPELINES[name]
    if name and not name.startswith("StableDiffusion"):
        raise ModelFormatError(f"{path} holds a {name}, which the studio does not support.")
    unet = _read_json(path / "unet" / "config.json")
    if unet is None:
        raise ModelFormatError(f"{path} has no readable unet/config.json.")
    if "text_encoder_2" in index and index["text_encoder_2"][0] is not None:
        if "text_encoder" not in index or index["text_encoder"][0] is None:
            raise ModelFormatError(f"{path} is an SDXL refiner, which cannot be used alone.")
        return ModelFamily.SDXL
    return _family_from_unet_config(path, unet)


def _resolve(path: Path) -> Path:
    path = Path(path).expanduser()
    if not path.exists():
        raise ModelNotFoundError(f"Model not found: {path}")
    if path.is_dir() and path.name.startswith("models--") and (path / "snapshots").is_dir():
        snapshot = _snapshot_of(path)
        if snapshot is None:
            raise ModelNotFoundError(
                f"The Hugging Face cache entry {path} has no downloaded snapshot."
            )
        return snapshot
    return path


def detect_family(path: Path | str) -> ModelFamily:
    """The family of a base model or ControlNet, from its configs or safetensors header only."""
    path = _resolve(Path(path))
    if path.is_dir():
        index = _read_json(path / "model_index.json")
        if index is not None:
            return _family_from_pipeline_folder(path, index)
        config = _read_json(path / "config.json")
        if config is not None and config.get("_class_name") in FLOW_CONTROLNETS:
            return FLOW_CONTROLNETS[config["_class_name"]]
        if config is not None and config.get("_class_name") in (
            "ControlNetModel",
            "UNet2DConditionModel",
        ):
            return _family_from_unet_config(path, config)
        raise ModelFormatError(
            f"{path} is not a diffusers model folder (no model_index.json, or a config.json that "
            "is not a ControlNet)."
        )
    suffix = path.suffix.lower()
    if suffix in PICKLE_SUFFIXES:
        guessed = _family_from_name(path.name)
        if guessed is None:
            raise ModelFormatError(
                f"Cannot tell whether {path.name} is SD 1.x or SDXL without unpickling it; "
                "convert it to .safetensors (or put 'sdxl' / 'sd15' in its name)."
            )
        return guessed
    if suffix not in SAFE_SUFFIXES:
        raise ModelFormatError(f"{path.name} is not a model file the studio can read.")
    return _family_from_header(path, read_tensor_table(path))


def _pickle_header(path: Path) -> dict[str, Any]:
    # Only called once the user allowed pickle files: unpickling is the only way to see the keys.
    try:
        state = torch.load(path, map_location="cpu", weights_only=False, mmap=True)
    except Exception as exc:  # unpickling can fail in any way a corrupt or foreign file makes it
        raise ModelFormatError(f"Cannot read {path.name}: {exc}") from exc
    while isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise ModelFormatError(f"{path.name} does not hold a state dict.")
    return {
        str(k): {"shape": list(v.shape)} for k, v in state.items() if isinstance(v, torch.Tensor)
    }


def _family_for_loading(path: Path) -> tuple[ModelFamily, dict[str, Any] | None]:
    """The family and, for single files, the tensor table (names and shapes) of ``path``."""
    if path.is_dir():
        return detect_family(path), None
    if path.suffix.lower() in PICKLE_SUFFIXES:
        header = _pickle_header(path)
    else:
        header = read_tensor_table(path)
    return _family_from_header(path, header), header


def check_family(
    base: ModelFamily, controlnet: ModelFamily, controlnet_path: Path | str | None = None
) -> None:
    if base == controlnet:
        return
    what = Path(controlnet_path).name if controlnet_path else "The ControlNet"
    raise FamilyMismatchError(
        f"{what} is an {controlnet.label} ControlNet but the model is {base.label}; "
        f"choose a {base.label} ControlNet or an {controlnet.label} model."
    )


# ---------------------------------------------------------------------------------------------
# Discovery


def default_search_folders() -> list[Path]:
    return [_hf_cache_dir()]


def _family_from_name(name: str) -> ModelFamily | None:
    lowered = name.lower()
    if re.search(r"(sd_?xl|[-_ ]xl[-_ .]|^xl[-_])", lowered) or "sdxl" in lowered:
        return ModelFamily.SDXL
    if re.search(r"(sd_?1[._-]?5|sd15|sd_?v?1|v1-5|v1_5)", lowered):
        return ModelFamily.SD1
    return None


def _has_weights(folder: Path) -> bool:
    try:
        return any(p.name.endswith(_WEIGHT_SUFFIXES) for p in folder.iterdir())
    except OSError:
        return False


class _Scanner:
    def __init__(self, discovery: Discovery) -> None:
        self.discovery = discovery
        self.seen: set[Path] = set()

    def add(self, info: ModelInfo) -> None:
        key = info.path.resolve()
        if key not in self.seen:
            self.seen.add(key)
            self.discovery.models.append(info)

    def problem(self, message: str) -> None:
        self.discovery.problems.append(message)

    def skip(self, path: Path, error: OSError) -> None:
        reason = error.strerror or str(error) or type(error).__name__
        self.discovery.skipped.append((path, reason))
        self.problem(f"{path}: cannot be read ({reason}); skipped.")

    def guarded(self, path: Path, look: Callable[[], object]) -> None:
        # One unreadable entry (stat or listing refused) must not end the scan of everything else.
        try:
            look()
        except OSError as error:
            self.skip(path, error)

    def folder_model(self, folder: Path, source: Path, name: str, fmt: Format) -> bool:
        """Record ``folder`` if it is a diffusers model; True when it was one (do not descend)."""
        index = _read_json(folder / "model_index.json")
        if index is not None:
            flow = index.get("_class_name") in FLOW_PIPELINES
            if not _has_weights(folder / ("transformer" if flow else "unet")):
                what = "transformer" if flow else "UNet"
                self.problem(f"{folder}: configs only, no {what} weights; skipped.")
                return True
            try:
                family = _family_from_pipeline_folder(folder, index)
            except ModelFormatError as exc:
                self.problem(str(exc))
                return True
            variant = folder_variant(folder) if family is ModelFamily.FLUX else ""
            self.add(ModelInfo(folder, name, "base", family, fmt, source, variant=variant))
            return True
        config = _read_json(folder / "config.json")
        if config is None:
            return False
        kind = config.get("_class_name")
        if kind not in ("ControlNetModel", "AutoencoderTiny", *FLOW_CONTROLNETS):
            return False
        if not _has_weights(folder):
            self.problem(f"{folder}: config only, no weights; skipped.")
            return True
        if kind == "AutoencoderTiny":
            family = (
                tiny_vae_family(name, config)
                or _family_from_name(name)
                or (ModelFamily.SD1 if "taesd" in name.lower() else None)
            )
            self.add(ModelInfo(folder, name, "tiny_vae", family, fmt, source))
            return True
        try:
            family = FLOW_CONTROLNETS.get(kind) or _family_from_unet_config(folder, config)
        except ModelFormatError as exc:
            self.problem(str(exc))
            return True
        self.add(
            ModelInfo(folder, name, "controlnet", family, fmt, source, guess_control_kind(name))
        )
        return True

    def single_file(self, path: Path, source: Path, name: str | None = None) -> None:
        suffix = path.suffix.lower()
        name = name or path.stem
        if suffix in PICKLE_SUFFIXES:
            in_control_dir = path.parent.name.lower() in _CONTROL_DIR_NAMES
            role: Role = "controlnet" if in_control_dir or "control" in name.lower() else "base"
            kind = guess_control_kind(name) if role == "controlnet" else None
            family = _family_from_name(name)
            self.add(ModelInfo(path, name, role, family, "single_file", source, kind))
            return
        try:
            header = read_tensor_table(path)
            family = _family_from_header(path, header)
        except ModelFormatError as exc:
            self.problem(f"{path}: {exc}")
            return
        if _is_controlnet_keys(header):
            self.add(
                ModelInfo(
                    path,
                    name,
                    "controlnet",
                    family,
                    "single_file",
                    source,
                    guess_control_kind(name),
                )
            )
        else:
            flow = inspect_flow_header(header)
            variant = flow.variant if flow is not None else ""
            self.add(ModelInfo(path, name, "base", family, "single_file", source, variant=variant))

    def walk(self, folder: Path, source: Path, depth: int = 0) -> None:
        if self.folder_model(folder, source, folder.name, "diffusers"):
            return
        for entry in self.entries(folder):
            self.guarded(entry, lambda entry=entry: self.walk_entry(folder, entry, source, depth))

    def walk_entry(self, folder: Path, entry: Path, source: Path, depth: int) -> None:
        if entry.is_dir():
            if (depth < _MAX_DEPTH and entry.name not in _SKIP_DIRS
                    and entry.name.lower() not in _ADD_ON_DIR_NAMES):  # fmt: skip
                self.walk(entry, source, depth + 1)
        elif entry.suffix.lower() in SAFE_SUFFIXES + PICKLE_SUFFIXES:
            if folder.name in COMPANION_FOLDERS:
                return  # text encoders and VAEs: parts of models, not models
            # Pickle files beside a config.json are parts of a transformers/diffusers model.
            if entry.suffix.lower() in PICKLE_SUFFIXES and (folder / "config.json").exists():
                return
            self.single_file(entry, source)

    def hf_cache(self, cache: Path) -> None:
        for repo in self.entries(cache):
            self.guarded(repo, lambda repo=repo: self.hf_repo(cache, repo))

    def hf_repo(self, cache: Path, repo: Path) -> None:
        if not (repo.is_dir() and repo.name.startswith("models--")):
            return
        snapshot = _snapshot_of(repo)
        if snapshot is None:
            return
        name = repo.name.removeprefix("models--").replace("--", "/")
        if self.folder_model(snapshot, cache, name, "hf_cache"):
            return
        for entry in self.entries(snapshot):
            if entry.is_file() and entry.suffix.lower() in SAFE_SUFFIXES:
                self.single_file(entry, cache, f"{name}/{entry.stem}")

    def entries(self, folder: Path) -> Iterator[Path]:
        try:
            return _entries(folder, strict=True)
        except FileNotFoundError:
            return iter(())
        except OSError as error:
            self.skip(folder, error)
            return iter(())


def _entries(folder: Path, strict: bool = False) -> Iterator[Path]:
    try:
        children = sorted(folder.iterdir())
    except OSError:
        if strict:
            raise
        return iter(())
    return iter(p for p in children if not p.name.startswith("."))


def discover_models(folders: Iterable[Path], include_hf_cache: bool = True) -> Discovery:
    discovery = Discovery()
    scanner = _Scanner(discovery)
    roots = [Path(f).expanduser() for f in folders]
    cache = _hf_cache_dir()
    for root in roots:
        if root == cache or _looks_like_hf_cache(root):
            discovery.searched.append(root)
            scanner.guarded(root, lambda root=root: scanner.hf_cache(root))
            continue
        for folder in [root, *(root / sub for sub in UI_SUBFOLDERS)]:
            if folder in discovery.searched:
                continue
            discovery.searched.append(folder)
            scanner.guarded(
                folder,
                lambda folder=folder, root=root: folder.is_dir() and scanner.walk(folder, root),
            )
    if include_hf_cache and cache not in discovery.searched:
        discovery.searched.append(cache)
        scanner.guarded(cache, lambda: scanner.hf_cache(cache))
    return discovery


def _looks_like_hf_cache(folder: Path) -> bool:
    try:
        return any(p.name.startswith("models--") and p.is_dir() for p in _entries(folder))
    except OSError:
        return False  # an unreadable entry: scanned as a plain folder, which notes it


# ---------------------------------------------------------------------------------------------
# Loading


def config_folder_for(family: ModelFamily, controlnet: bool = False) -> Path:
    name = f"controlnet-{family.value}" if controlnet else family.value
    return resource_path("configs", name)


def _tokenizers(family: ModelFamily) -> dict[str, Any]:
    from transformers import CLIPTokenizer

    tokenizers = {"tokenizer": CLIPTokenizer.from_pretrained(resource_path("tokenizers", "clip"))}
    if family == ModelFamily.SDXL:
        # SDXL's second encoder (OpenCLIP bigG) was trained padding with "!", not the end token.
        folder = resource_path("tokenizers", "clip-pad-exclaim")
        tokenizers["tokenizer_2"] = CLIPTokenizer.from_pretrained(folder)
    return tokenizers


def _check_loadable_file(path: Path, allow_pickle: bool) -> None:
    suffix = path.suffix.lower()
    if suffix in PICKLE_SUFFIXES:
        if not allow_pickle:
            raise ModelFormatError(
                f"{path.name} is a pickle checkpoint ({suffix}), which can run arbitrary code when "
                "loaded. Convert it to .safetensors, or allow pickle files if you trust its source."
            )
        return
    if suffix not in SAFE_SUFFIXES:
        raise ModelFormatError(f"{path.name} is not a .safetensors model file.")
    read_tensor_table(path)  # a corrupt file fails here with a clear message


_LOAD_ERRORS = (
    OSError,
    ValueError,
    RuntimeError,
    KeyError,
    TypeError,
    AttributeError,
    NotImplementedError,
)


def _check_no_missing_weights(module: torch.nn.Module, path: Path, part: str) -> None:
    # Single-file loading builds models on the meta device and fills in what the file holds;
    # anything still on meta was missing from the file (a pruned or mismatched checkpoint).
    missing = [name for name, p in module.named_parameters() if p.device.type == "meta"]
    if missing:
        raise ModelFormatError(
            f"{path.name} lacks {len(missing)} weights of its {part} (e.g. {missing[0]}); "
            "the file is incomplete or made for another architecture."
        )


def _load_errors() -> tuple[type[Exception], ...]:
    try:  # where diffusers says a component's weights are missing from a single file
        from diffusers.loaders.single_file_utils import SingleFileComponentError
    except ImportError:
        return _LOAD_ERRORS
    return (*_LOAD_ERRORS, SingleFileComponentError)


_SHAPE_RE = re.compile(
    r"(\S+) expected shape torch\.Size\((\[[^\]]*\])\), but got torch\.Size\((\[[^\]]*\])\)"
)
_MISSING_RE = re.compile(r"Failed to load (\w+)\. Weights for this component appear to be missing")


def _wrap_load_error(path: Path, exc: Exception) -> ModelFormatError:
    log.exception("loading %s failed", path)
    text = str(exc).strip()
    shape, missing = _SHAPE_RE.search(text), _MISSING_RE.search(text)
    if shape:
        # diffusers' own advice (ignore_mismatched_sizes, ...) is for programmers; say what it means.
        detail = (
            f"its weight {shape[1]} has the shape {shape[3]}, the architecture needs {shape[2]}; "
            "the file is damaged or made for another kind of model"
        )
    elif missing:
        detail = (
            f"it holds no weights for its {missing[1]}; the file is incomplete (a pruned or "
            "partial checkpoint) or made for another kind of model"
        )
    else:
        detail = text.splitlines()[0] if text else type(exc).__name__
    return ModelFormatError(f"Cannot load {path.name}: {detail}.")


@contextlib.contextmanager
def _quiet_deprecations() -> Iterator[None]:
    # diffusers renames `torch_dtype` to `dtype` in newer releases; the old name works in every
    # supported version, so its FutureWarning is noise for the user.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=FutureWarning, module="diffusers")
        yield


def _pipeline_class(family: ModelFamily) -> type:
    from diffusers import StableDiffusionPipeline, StableDiffusionXLPipeline

    return StableDiffusionXLPipeline if family == ModelFamily.SDXL else StableDiffusionPipeline


def _open_for_loading(
    path: Path | str, allow_pickle: bool
) -> tuple[Path, ModelFamily, dict[str, Any] | None]:
    """What both loaders check before any weights are read: the path, pickle opt-in, the family."""
    path = _resolve(Path(path))
    set_offline_environment()
    if path.is_file():
        _check_loadable_file(path, allow_pickle)
    family, header = _family_for_loading(path)
    return path, family, header


def load_base_pipeline(
    path: Path | str,
    *,
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float32,
    allow_pickle: bool = False,
    config_folder: Path | str | None = None,
) -> tuple[Any, ModelFamily]:
    """Load an SD 1.x or SDXL text-to-image pipeline from a diffusers folder or a single file."""
    path, family, header = _open_for_loading(path, allow_pickle)
    if family.is_flow:
        from pipelines.flow_loading import load_flow_pipeline

        pipe = load_flow_pipeline(path, family, header, dtype, _load_errors(), _wrap_load_error)
        pipe.to(device)
        return pipe, family
    if (
        path.is_dir()
        and (path / "config.json").exists()
        and not (path / "model_index.json").exists()
    ):
        raise ModelFormatError(f"{path} is a ControlNet, not a base model.")
    if header is not None and _is_controlnet_keys(header):
        raise ModelFormatError(f"{path.name} is a ControlNet, not a base model.")
    cls = _pipeline_class(family)
    extra: dict[str, Any] = {}
    if family == ModelFamily.SD1:
        extra = {
            "safety_checker": None,
            "feature_extractor": None,
            "requires_safety_checker": False,
        }
    try:
        with _quiet_deprecations():
            if path.is_dir():
                pipe = cls.from_pretrained(
                    path,
                    torch_dtype=dtype,
                    local_files_only=True,
                    use_safetensors=_folder_has_safetensors(path),
                    **extra,
                )
            else:
                config = Path(config_folder) if config_folder else config_folder_for(family)
                pipe = cls.from_single_file(
                    str(path),
                    config=str(config),
                    local_files_only=True,
                    torch_dtype=dtype,
                    **_tokenizers(family),
                    **_inpainting_unet(path, header, config, dtype),
                    **extra,
                )
    except _load_errors() as exc:
        raise _wrap_load_error(path, exc) from exc
    for name, component in pipe.components.items():
        if isinstance(component, torch.nn.Module):
            _check_no_missing_weights(component, path, name)
    pipe.to(device)
    return pipe, family


def _inpainting_unet(
    path: Path, header: dict[str, Any] | None, config: Path, dtype: torch.dtype
) -> dict[str, Any]:
    """An inpainting checkpoint's UNet, loaded with the input channels its file has (the family's
    config folder describes the text-to-image UNet); nothing for other checkpoints."""
    channels = unet_input_channels(header or {})
    if channels == 4:
        return {}
    from diffusers import UNet2DConditionModel

    unet = UNet2DConditionModel.from_single_file(
        str(path), config=str(config), subfolder="unet", in_channels=channels,
        local_files_only=True, torch_dtype=dtype,
    )  # fmt: skip
    return {"unet": unet}


def _folder_has_safetensors(folder: Path) -> bool:
    return any(folder.glob("*/*.safetensors")) or any(folder.glob("*.safetensors"))


def load_controlnet(
    path: Path | str,
    *,
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float32,
    allow_pickle: bool = False,
    config_folder: Path | str | None = None,
) -> tuple[Any, ModelFamily]:
    from diffusers import ControlNetModel

    path, family, header = _open_for_loading(path, allow_pickle)
    if path.is_dir() and (path / "model_index.json").exists():
        raise ModelFormatError(f"{path} is a full pipeline, not a ControlNet.")
    if family.is_flow:
        from pipelines.flow_loading import load_flow_controlnet

        try:
            with _quiet_deprecations():
                model = load_flow_controlnet(path, family, dtype)
        except _load_errors() as exc:
            raise _wrap_load_error(path, exc) from exc
        return model.to(device), family
    if header is not None and not _is_controlnet_keys(header):
        raise ModelFormatError(f"{path.name} is a base checkpoint, not a ControlNet.")
    try:
        with _quiet_deprecations():
            if path.is_dir():
                model = ControlNetModel.from_pretrained(
                    path,
                    torch_dtype=dtype,
                    local_files_only=True,
                    use_safetensors=_folder_has_safetensors(path),
                )
            else:
                config = Path(config_folder) if config_folder else config_folder_for(family, True)
                model = ControlNetModel.from_single_file(
                    str(path), config=str(config), local_files_only=True, torch_dtype=dtype
                )
    except _load_errors() as exc:
        raise _wrap_load_error(path, exc) from exc
    _check_no_missing_weights(model, path, "ControlNet")
    model.to(device)
    return model, family
