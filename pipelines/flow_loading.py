"""Load SD 3.x and Flux.1 pipelines offline: diffusers folders, all-in-one files, transformer-only
files completed from the text-encoder and VAE files users keep beside them.

Single files are read one component at a time (a Flux transformer alone is 12 billion weights), each
built from the configs shipped in ``resources/configs/{sd3,flux}`` with the sizes its tensors tell
(:mod:`pipelines.flow_files`); the companion files are found by :mod:`pipelines.flow_companions`.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from pipelines.errors import ModelFormatError, ModelNotFoundError
from pipelines.flow_companions import (
    companion_folders,
    find_t5_tokenizer,
    find_text_encoder,
    find_vae,
    load_t5_tokenizer,
)
from pipelines.flow_files import (
    ENCODER_FOLDERS,
    TEXT_ENCODER_PREFIXES,
    VAE_FOLDERS,
    VAE_PREFIX,
    FlowFile,
    clip_config,
    flux_transformer_config,
    inspect_flow_header,
    sd3_transformer_config,
    t5_config,
    vae_config,
)
from pipelines.model_files import (
    read_safetensors_header,
    read_tensor_table,
)
from pipelines.resources import resource_path
from pipelines.types import ModelFamily

log = logging.getLogger(__name__)

_ENCODER_LABELS = {
    "clip_l": "CLIP-L text encoder (clip_l.safetensors)",
    "clip_g": "OpenCLIP-G text encoder (clip_g.safetensors)",
    "t5xxl": "T5-XXL text encoder (t5xxl_fp16.safetensors or t5xxl_fp8_e4m3fn.safetensors)",
}


FLUX_WIDTH = 3072


def config_root(family: ModelFamily) -> Path:
    return resource_path("configs", family.value)


# ---------------------------------------------------------------------------------------------
# Building components from tensors


class _Tensors:
    """Lazy access to a safetensors file: each component reads only its own tensors."""

    def __init__(self, path: Path) -> None:
        from safetensors import safe_open

        self.path = path
        self.header = read_safetensors_header(path)
        self._open = safe_open(str(path), framework="pt")

    def part(self, prefix: str, strip: bool = True) -> dict[str, torch.Tensor]:
        keys = [k for k in self.header if k.startswith(prefix)]
        return {(k[len(prefix) :] if strip else k): self._open.get_tensor(k) for k in keys}

    def part_header(self, prefix: str) -> dict[str, Any]:
        return {k[len(prefix) :]: v for k, v in self.header.items() if k.startswith(prefix)}


def _component(
    cls: type, tensors: dict[str, torch.Tensor] | str, family: ModelFamily, subfolder: str,
    dtype: torch.dtype, **sizes: Any,
) -> Any:  # fmt: skip
    """A diffusers model from tensors (or a GGUF path), its shipped config and the file's sizes."""
    return cls.from_single_file(
        tensors,
        config=str(config_root(family)),
        subfolder=subfolder,
        torch_dtype=dtype,
        local_files_only=True,
        **sizes,
    )


def _transformer(
    tensors: dict[str, torch.Tensor] | str,
    header: dict[str, Any],
    family: ModelFamily,
    dtype: torch.dtype,
    **loading: Any,
) -> Any:
    from diffusers import FluxTransformer2DModel, SD3Transformer2DModel

    if family is ModelFamily.SD3:
        cls, sizes = SD3Transformer2DModel, sd3_transformer_config(header)
    else:
        cls, sizes = FluxTransformer2DModel, flux_transformer_config(header)
        width = sizes["num_attention_heads"] * sizes["attention_head_dim"]
        if "img_in.weight" in header and width != FLUX_WIDTH:
            # diffusers' converter of this layout is written for the released models' width.
            raise ModelFormatError(
                f"it is {width} wide in Black Forest Labs' layout, which loads only at Flux.1's "
                f"width of {FLUX_WIDTH}; save it in diffusers' layout instead"
            )
    return _component(cls, tensors, family, "transformer", dtype, **sizes, **loading)


def _vae(
    tensors: dict[str, torch.Tensor],
    header: dict[str, Any],
    family: ModelFamily,
    dtype: torch.dtype,
) -> Any:
    from diffusers import AutoencoderKL

    return _component(AutoencoderKL, tensors, family, "vae", dtype, **vae_config(header))


def _text_model(
    cls: type,
    config_file: Path,
    sizes: dict[str, Any],
    tensors: dict[str, torch.Tensor],
    dtype: torch.dtype,
    source: Path,
) -> Any:
    from accelerate import init_empty_weights

    config = cls.config_class.from_json_file(config_file)
    for key, value in sizes.items():
        setattr(config, key, value)
    # Weights come from the file: building them on the meta device skips a useless random init.
    with init_empty_weights(include_buffers=False):
        model = cls(config)
    wanted = model.state_dict()
    tensors = {_model_key(k, wanted): v for k, v in tensors.items()}
    tensors = {k: v for k, v in tensors.items() if k in wanted}
    model.load_state_dict(tensors, strict=False, assign=True)
    if hasattr(model, "tie_weights"):
        model.tie_weights()
    missing = [n for n, p in model.named_parameters() if p.device.type == "meta"]
    if missing:
        raise ModelFormatError(
            f"{source.name} lacks {len(missing)} weights of its {cls.__name__} (e.g. "
            f"{missing[0]}); the file is incomplete or not the text encoder it is named for."
        )
    return model.to(dtype).eval()


_CLIP_ROOT = "text_model."


def _model_key(key: str, wanted: dict[str, Any]) -> str:
    # CLIP files name their tensors with or without "text_model." (transformers 5 models drop it).
    if key in wanted:
        return key
    if key.startswith(_CLIP_ROOT) and key[len(_CLIP_ROOT) :] in wanted:
        return key[len(_CLIP_ROOT) :]
    return _CLIP_ROOT + key if _CLIP_ROOT + key in wanted else key


def _with_clip_root(table: dict[str, Any]) -> dict[str, Any]:
    top = ("text_model.", "text_projection.", "logit_scale")
    return {(k if k.startswith(top) else _CLIP_ROOT + k): v for k, v in table.items()}


def _clip(
    tensors: dict[str, torch.Tensor],
    header: dict[str, Any],
    config_file: Path,
    dtype: torch.dtype,
    source: Path,
    projection: bool,
) -> Any:
    from transformers import CLIPTextModel, CLIPTextModelWithProjection

    tensors, header = _with_clip_root(tensors), _with_clip_root(header)
    sizes = clip_config(header)
    if projection and "projection_dim" not in sizes:
        raise ModelFormatError(
            f"{source.name} has no text projection; SD 3.x needs the CLIP encoders exported with "
            "it (clip_l.safetensors / clip_g.safetensors from the SD 3 text_encoders folder)."
        )
    cls = CLIPTextModelWithProjection if projection else CLIPTextModel
    return _text_model(cls, config_file, sizes, tensors, dtype, source)


def _t5(
    tensors: dict[str, torch.Tensor],
    header: dict[str, Any],
    config_file: Path,
    dtype: torch.dtype,
    source: Path,
) -> Any:
    from transformers import T5EncoderModel

    return _text_model(T5EncoderModel, config_file, t5_config(header), tensors, dtype, source)


def _clip_tokenizer(pad_exclaim: bool = False) -> Any:
    from transformers import CLIPTokenizer

    return CLIPTokenizer.from_pretrained(
        resource_path("tokenizers", "clip-pad-exclaim" if pad_exclaim else "clip")
    )


def _scheduler(family: ModelFamily, variant: str) -> Any:
    from diffusers import FlowMatchEulerDiscreteScheduler

    subfolder = "scheduler-schnell" if variant == "schnell" else "scheduler"
    return FlowMatchEulerDiscreteScheduler.from_pretrained(config_root(family), subfolder=subfolder)


class _Assembly:
    """The parts of one single-file model, each from the file itself or a companion file."""

    def __init__(self, path: Path, info: FlowFile, dtype: torch.dtype) -> None:
        self.path = path
        self.info = info
        self.family = info.family
        self.dtype = dtype
        self.gguf = path.suffix.lower() == ".gguf"  # a quantized transformer alone
        self.file = None if self.gguf else _Tensors(path)
        self.notes: list[str] = []

    def transformer(self, **loading: Any) -> Any:
        prefix = self.info.prefix
        if self.gguf:
            from diffusers import GGUFQuantizationConfig

            # Weights stay quantized in memory; each layer dequantizes to dtype as it runs.
            header = read_tensor_table(self.path)
            header = {k[len(prefix) :]: v for k, v in header.items() if k.startswith(prefix)}
            quantization = GGUFQuantizationConfig(compute_dtype=self.dtype)
            return _transformer(str(self.path), header, self.family, self.dtype,
                                quantization_config=quantization, **loading)  # fmt: skip
        own = [k for k in self.file.header if k.startswith(prefix)]
        outside = (VAE_PREFIX, "text_encoders.") if not prefix else ()
        keys = [k for k in own if not (outside and k.startswith(outside))]
        tensors = {k[len(prefix) :]: self.file._open.get_tensor(k) for k in keys}
        header = {k[len(prefix) :]: self.file.header[k] for k in keys}
        return _transformer(tensors, header, self.family, self.dtype, **loading)

    def vae(self) -> Any:
        if self.info.has_vae:
            header = self.file.part_header(VAE_PREFIX)
            return _vae(self.file.part(VAE_PREFIX), header, self.family, self.dtype)
        found = find_vae(self.path, self.family)
        if found is None:
            raise self._missing("VAE (ae.safetensors for Flux.1, the SD 3 VAE for SD 3.x)",
                                companion_folders(self.path, VAE_FOLDERS))  # fmt: skip
        vae = _Tensors(found)
        return _vae(vae.part(""), vae.header, self.family, self.dtype)

    def encoder(self, role: str, required: bool = True) -> tuple[dict, dict, Path] | None:
        """(tensors, header, source) of a text encoder, from the file or beside it."""
        prefix = TEXT_ENCODER_PREFIXES[role]
        if role in self.info.text_encoders:
            return self.file.part(prefix), self.file.part_header(prefix), self.path
        found = find_text_encoder(self.path, role)
        if found is None:
            if required:
                raise self._missing(
                    _ENCODER_LABELS[role], companion_folders(self.path, ENCODER_FOLDERS)
                )
            return None
        tensors = _Tensors(found)
        return tensors.part(""), tensors.header, found

    def _missing(self, what: str, looked: list[Path]) -> ModelNotFoundError:
        places = "; ".join(str(p) for p in looked)
        return ModelNotFoundError(
            f"{self.path.name} holds the {self.family.label} transformer but not its {what}, and "
            f"none was found. Looked in: {places}. Put the file in one of them (ComfyUI keeps "
            "them in models/text_encoders and models/vae)."
        )

    def tokenizer_t5(self, encoder_source: Path) -> Any:
        return load_t5_tokenizer(find_t5_tokenizer(self.path, encoder_source))


def load_single_file(
    path: Path, info: FlowFile, dtype: torch.dtype, **loading: Any
) -> tuple[Any, list[str]]:
    """A StableDiffusion3Pipeline or FluxPipeline from one file and its companions, with notes
    for the user (e.g. an SD 3.x model running without its optional T5 encoder)."""
    from diffusers import FluxPipeline, StableDiffusion3Pipeline

    parts = _Assembly(path, info, dtype)
    root = config_root(info.family)
    transformer = parts.transformer(**loading)
    vae = parts.vae()
    if info.family is ModelFamily.FLUX:
        clip_l = parts.encoder("clip_l")
        t5 = parts.encoder("t5xxl")
        tokenizer_2 = parts.tokenizer_t5(t5[2])
        pipe = FluxPipeline(
            transformer=transformer,
            vae=vae,
            scheduler=_scheduler(info.family, info.variant),
            text_encoder=_clip(
                *clip_l[:2],
                root / "text_encoder" / "config.json",
                dtype,
                clip_l[2],
                projection=False,
            ),  # fmt: skip
            tokenizer=_clip_tokenizer(),
            text_encoder_2=_t5(*t5[:2], root / "text_encoder_2" / "config.json", dtype, t5[2]),
            tokenizer_2=tokenizer_2,
        )
        return pipe, parts.notes
    clip_l, clip_g = parts.encoder("clip_l"), parts.encoder("clip_g")
    t5 = parts.encoder("t5xxl", required=False)
    encoder_3 = tokenizer_3 = None
    if t5 is None:
        parts.notes.append(
            f"{path.name}: no T5-XXL text encoder was found beside it, so SD 3.x reads the prompt "
            "with its two CLIP encoders only (shorter prompts, less exact text)."
        )
    else:
        tokenizer_3 = parts.tokenizer_t5(t5[2])
        encoder_3 = _t5(*t5[:2], root / "text_encoder_3" / "config.json", dtype, t5[2])
    pipe = StableDiffusion3Pipeline(
        transformer=transformer,
        vae=vae,
        scheduler=_scheduler(info.family, ""),
        text_encoder=_clip(
            *clip_l[:2], root / "text_encoder" / "config.json", dtype, clip_l[2], projection=True
        ),  # fmt: skip
        tokenizer=_clip_tokenizer(),
        text_encoder_2=_clip(
            *clip_g[:2], root / "text_encoder_2" / "config.json", dtype, clip_g[2], projection=True
        ),  # fmt: skip
        tokenizer_2=_clip_tokenizer(pad_exclaim=True),
        text_encoder_3=encoder_3,
        tokenizer_3=tokenizer_3,
    )
    return pipe, parts.notes


def load_folder(path: Path, family: ModelFamily, dtype: torch.dtype) -> Any:
    """A diffusers folder (or HF cache snapshot) of StableDiffusion3Pipeline / FluxPipeline."""
    from diffusers import FluxPipeline, StableDiffusion3Pipeline

    cls = FluxPipeline if family is ModelFamily.FLUX else StableDiffusion3Pipeline
    slot = "tokenizer_2" if family is ModelFamily.FLUX else "tokenizer_3"
    encoder = "text_encoder_2" if family is ModelFamily.FLUX else "text_encoder_3"
    extra: dict[str, Any] = {}
    index = json.loads((path / "model_index.json").read_text("utf-8"))
    if (index.get(encoder) or [None])[0] is not None:
        folder = find_t5_tokenizer(path, slot=slot)
        if folder != path / slot or not (folder / "tokenizer.json").is_file():
            extra[slot] = load_t5_tokenizer(folder)
    safetensors = any(path.glob("*/*.safetensors"))
    return cls.from_pretrained(
        path, torch_dtype=dtype, local_files_only=True, use_safetensors=safetensors, **extra
    )


def load_flow_pipeline(
    path: Path,
    family: ModelFamily,
    header: dict[str, Any] | None,
    dtype: torch.dtype,
    load_errors: tuple[type[Exception], ...],
    wrap_error: Callable[[Path, Exception], ModelFormatError],
    **loading: Any,
) -> Any:
    """The pipeline of a folder or single file whose family is SD 3.x or Flux.1; notes for the
    user are kept on it as ``load_notes``."""
    notes: list[str] = []
    try:
        if path.is_dir():
            if not (path / "model_index.json").is_file():
                raise ModelFormatError(f"{path} is a ControlNet, not a base model.")
            pipe = load_folder(path, family, dtype)
        else:
            info = inspect_flow_header(header or {})
            if info is None or info.controlnet:
                raise ModelFormatError(f"{path.name} is a ControlNet, not a base model.")
            pipe, notes = load_single_file(path, info, dtype, **loading)
    except load_errors as error:
        raise wrap_error(path, error) from error
    except ModelFormatError as error:
        text = str(error)
        if text.startswith(("it ", "its ", "the weights")):  # a reason about the file's contents
            raise ModelFormatError(f"Cannot load {path.name}: {text}.") from error
        raise
    pipe.load_notes = tuple(notes)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def load_flow_controlnet(path: Path, family: ModelFamily, dtype: torch.dtype) -> Any:
    """An SD3ControlNetModel or FluxControlNetModel (single-kind or Union) from its folder."""
    from diffusers import FluxControlNetModel, SD3ControlNetModel

    if not path.is_dir():
        raise ModelFormatError(
            f"{path.name}: {family.label} ControlNets load from their diffusers folder (the "
            "config.json beside the weights, as their authors publish them); choose the folder."
        )
    cls = FluxControlNetModel if family is ModelFamily.FLUX else SD3ControlNetModel
    safetensors = any(path.glob("*.safetensors"))
    return cls.from_pretrained(
        path, torch_dtype=dtype, local_files_only=True, use_safetensors=safetensors
    )
