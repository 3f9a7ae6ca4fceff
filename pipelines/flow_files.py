"""What an SD 3.x or Flux.1 file holds, read from its tensor names and shapes alone.

Files come in two key layouts: the original one (Stability's ``joint_blocks``, Black Forest Labs'
``double_blocks``; ComfyUI adds ``model.diffusion_model.``) and diffusers' (``transformer_blocks``).
SD 3.x all-in-one checkpoints carry their text encoders (``text_encoders.clip_l.transformer.`` ...)
and VAE (``first_stage_model.``); transformer-only files rely on companion files. The shapes give
every size a config needs (layer counts, widths), so one shipped config serves every model size.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipelines.errors import ModelFormatError
from pipelines.types import ModelFamily

TRANSFORMER_PREFIX = "model.diffusion_model."
VAE_PREFIX = "first_stage_model."
TEXT_ENCODER_PREFIXES = {
    "clip_l": "text_encoders.clip_l.transformer.",
    "clip_g": "text_encoders.clip_g.transformer.",
    "t5xxl": "text_encoders.t5xxl.transformer.",
}
# Where ComfyUI, Forge and diffusers users keep the parts a transformer-only file needs.
ENCODER_FOLDERS = ("text_encoders", "clip", "text_encoder")
VAE_FOLDERS = ("vae", "VAE")
COMPANION_FOLDERS = frozenset((*ENCODER_FOLDERS, *VAE_FOLDERS))
# Heads are not stored in weights; every released model of these families uses these widths.
SD3_HEAD_DIM = 64
FLUX_HEAD_DIM = 128
CLIP_HEAD_DIM = 64


@dataclass(frozen=True)
class FlowFile:
    family: ModelFamily
    prefix: str  # before the transformer's keys: "model.diffusion_model." or ""
    original_layout: bool  # Stability / BFL key names (diffusers converts them)
    controlnet: bool = False
    variant: str = ""  # Flux: "dev" (distilled guidance) or "schnell"
    has_vae: bool = False
    text_encoders: tuple[str, ...] = ()  # of TEXT_ENCODER_PREFIXES carried inside the file

    @property
    def label(self) -> str:
        return f"{self.family.label}-{self.variant}" if self.variant else self.family.label


def _shape(header: dict[str, Any], key: str) -> list[int] | None:
    entry = header.get(key)
    if isinstance(entry, dict):
        return list(entry.get("shape", []))
    return None


def _has(keys: list[str], fragment: str) -> bool:
    return any(fragment in key for key in keys)


def _count(keys: list[str], pattern: str) -> int:
    found = {int(m[1]) for k in keys if (m := re.match(pattern, k))}
    return max(found) + 1 if found else 0


def inspect_flow_header(header: dict[str, Any]) -> FlowFile | None:
    """The flow family of a safetensors/GGUF tensor table, or None when it is not one."""
    keys = list(header)
    prefix = TRANSFORMER_PREFIX if any(k.startswith(TRANSFORMER_PREFIX) for k in keys) else ""
    own = [k[len(prefix) :] for k in keys if k.startswith(prefix)]
    extras = dict(
        has_vae=any(k.startswith(VAE_PREFIX) for k in keys),
        text_encoders=tuple(
            n for n, p in TEXT_ENCODER_PREFIXES.items() if any(k.startswith(p) for k in keys)
        ),
    )
    if any(k.startswith("joint_blocks.") for k in own):
        return FlowFile(ModelFamily.SD3, prefix, True, **extras)
    if any(k.startswith("double_blocks.") for k in own):
        return FlowFile(ModelFamily.FLUX, prefix, True, variant=_flux_variant(own), **extras)
    controlnet = any(k.startswith("controlnet_blocks.") for k in own)
    if any(k.startswith("single_transformer_blocks.") for k in own):
        variant = _flux_variant(own)
        return FlowFile(ModelFamily.FLUX, prefix, False, controlnet, variant, **extras)
    if _has(own, "ff_context.") and any(k.startswith("pos_embed.") for k in own):
        return FlowFile(ModelFamily.SD3, prefix, False, controlnet, **extras)
    return None


def _flux_variant(keys: list[str]) -> str:
    # dev was distilled from guided outputs and takes the guidance value as an input; schnell not.
    guided = any(k.startswith(("guidance_in.", "time_text_embed.guidance_embedder.")) for k in keys)
    return "dev" if guided else "schnell"


def _own(header: dict[str, Any], prefix: str) -> dict[str, Any]:
    return {k[len(prefix) :]: v for k, v in header.items() if k.startswith(prefix)}


def _first_shape(header: dict[str, Any], *keys: str) -> list[int]:
    for key in keys:
        shape = _shape(header, key)
        if shape:
            return shape
    raise ModelFormatError(f"the weights lack {keys[0]}")


def sd3_transformer_config(header: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """SD3Transformer2DModel config entries that the tensor shapes decide (SD3, 3.5 M/L)."""
    own = _own(header, prefix)
    keys = list(own)
    original = any(k.startswith("joint_blocks.") for k in keys)
    patch = _first_shape(own, "x_embedder.proj.weight", "pos_embed.proj.weight")
    hidden, in_channels, patch_size = patch[0], patch[1], patch[2]
    joint = _first_shape(own, "context_embedder.weight")[1]
    pooled = _first_shape(own, "y_embedder.mlp.0.weight", "time_text_embed.text_embedder.linear_1.weight")[1]  # fmt: skip
    out = _first_shape(own, "final_layer.linear.weight", "proj_out.weight")[0]
    blocks = "joint_blocks" if original else "transformer_blocks"
    layers = _count(keys, rf"{blocks}\.(\d+)\.")
    dual = "x_block.attn2." if original else "attn2."
    dual_layers = tuple(
        sorted({int(m[1]) for k in keys if (m := re.match(rf"{blocks}\.(\d+)\.", k)) and dual in k})
    )
    config: dict[str, Any] = dict(
        in_channels=in_channels,
        patch_size=patch_size,
        num_layers=layers,
        attention_head_dim=SD3_HEAD_DIM,
        num_attention_heads=hidden // SD3_HEAD_DIM,
        joint_attention_dim=joint,
        caption_projection_dim=hidden,
        pooled_projection_dim=pooled,
        out_channels=out // (patch_size * patch_size),
        dual_attention_layers=dual_layers,
        qk_norm="rms_norm" if _has(keys, "ln_q.") or _has(keys, "norm_q.") else None,
    )
    positions = _shape(own, "pos_embed") or _shape(own, "pos_embed.pos_embed")
    if positions:
        config["pos_embed_max_size"] = math.isqrt(positions[1])
    if hidden % SD3_HEAD_DIM:
        raise ModelFormatError(f"its width {hidden} is not a multiple of {SD3_HEAD_DIM}")
    return config


def flux_transformer_config(header: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """FluxTransformer2DModel config entries that the tensor shapes decide (dev, schnell, sizes)."""
    own = _own(header, prefix)
    keys = list(own)
    original = any(k.startswith("double_blocks.") for k in keys)
    hidden, in_channels = _first_shape(own, "img_in.weight", "x_embedder.weight")[:2]
    joint = _first_shape(own, "txt_in.weight", "context_embedder.weight")[1]
    pooled = _first_shape(own, "vector_in.in_layer.weight", "time_text_embed.text_embedder.linear_1.weight")[1]  # fmt: skip
    if in_channels != 64:
        raise ModelFormatError(
            f"it takes {in_channels} input channels: a Flux fill, depth or other edit model, "
            "which text-to-image generation cannot drive"
        )
    double = "double_blocks" if original else "transformer_blocks"
    single = "single_blocks" if original else "single_transformer_blocks"
    if hidden % FLUX_HEAD_DIM:
        raise ModelFormatError(f"its width {hidden} is not a multiple of {FLUX_HEAD_DIM}")
    return dict(
        in_channels=in_channels,
        num_layers=_count(keys, rf"{double}\.(\d+)\."),
        num_single_layers=_count(keys, rf"{single}\.(\d+)\."),
        attention_head_dim=FLUX_HEAD_DIM,
        num_attention_heads=hidden // FLUX_HEAD_DIM,
        joint_attention_dim=joint,
        pooled_projection_dim=pooled,
        guidance_embeds=_flux_variant(keys) == "dev",
    )


def clip_config(header: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """CLIPTextConfig entries from a CLIP text encoder's shapes (CLIP-L 768, OpenCLIP bigG 1280)."""
    own = _own(header, prefix)
    vocab, hidden = _first_shape(own, "text_model.embeddings.token_embedding.weight")
    config = dict(
        vocab_size=vocab,
        hidden_size=hidden,
        num_attention_heads=max(1, hidden // CLIP_HEAD_DIM),
        num_hidden_layers=_count(list(own), r"text_model\.encoder\.layers\.(\d+)\."),
        intermediate_size=_first_shape(own, "text_model.encoder.layers.0.mlp.fc1.weight")[0],
        max_position_embeddings=_first_shape(
            own, "text_model.embeddings.position_embedding.weight"
        )[0],
    )
    projection = _shape(own, "text_projection.weight")
    if projection:
        config["projection_dim"] = projection[0]
    return config


def t5_config(header: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """T5Config entries from a T5 encoder's shapes (T5 v1.1 XXL: 4096 wide, 24 blocks, 64 heads)."""
    own = _own(header, prefix)
    vocab, width = _first_shape(own, "shared.weight", "encoder.embed_tokens.weight")
    heads = _first_shape(
        own, "encoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight"
    )[1]
    inner = _first_shape(own, "encoder.block.0.layer.0.SelfAttention.q.weight")[0]
    gated = _shape(own, "encoder.block.0.layer.1.DenseReluDense.wi_0.weight")
    feed = gated or _first_shape(own, "encoder.block.0.layer.1.DenseReluDense.wi.weight")
    return dict(
        vocab_size=vocab,
        d_model=width,
        d_kv=inner // heads,
        d_ff=feed[0],
        num_heads=heads,
        num_layers=_count(list(own), r"encoder\.block\.(\d+)\."),
        feed_forward_proj="gated-gelu" if gated else "relu",
    )


def vae_config(header: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """AutoencoderKL config entries from a VAE's shapes (original or diffusers key names)."""
    own = _own(header, prefix)
    keys = list(own)
    original = any(k.startswith("encoder.down.") for k in keys)
    down, layer = ("encoder.down", "block") if original else ("encoder.down_blocks", "resnets")
    count = _count(keys, rf"{re.escape(down)}\.(\d+)\.")
    channels = [_first_shape(own, f"{down}.{i}.{layer}.0.conv1.weight")[0] for i in range(count)]
    return dict(
        block_out_channels=channels,
        layers_per_block=_count(keys, rf"{re.escape(down)}\.0\.{layer}\.(\d+)\."),
        down_block_types=["DownEncoderBlock2D"] * count,
        up_block_types=["UpDecoderBlock2D"] * count,
        latent_channels=_first_shape(own, "decoder.conv_in.weight")[1],
    )


FLOW_PIPELINES = {"StableDiffusion3Pipeline": ModelFamily.SD3, "FluxPipeline": ModelFamily.FLUX}
FLOW_CONTROLNETS = {
    "SD3ControlNetModel": ModelFamily.SD3,
    "FluxControlNetModel": ModelFamily.FLUX,
}


def tiny_vae_family(name: str, config: dict[str, Any]) -> ModelFamily | None:
    """TAESD3 / TAEF1 (16 latent channels) by name; None for the 4-channel TAESD family."""
    if config.get("latent_channels") != 16:
        return None
    lowered = name.lower()
    if "taef1" in lowered or "flux" in lowered:
        return ModelFamily.FLUX
    if "taesd3" in lowered or "sd3" in lowered:
        return ModelFamily.SD3
    return None


def folder_variant(folder: Path) -> str:
    """A Flux diffusers folder's variant, from its transformer config."""
    try:
        config = json.loads((folder / "transformer" / "config.json").read_text("utf-8"))
    except (OSError, ValueError):
        return ""
    return "dev" if isinstance(config, dict) and config.get("guidance_embeds") else "schnell"
