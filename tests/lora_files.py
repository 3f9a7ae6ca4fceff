"""LoRA and embedding files as users download them, built from random weights for the tiny models."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file

_UNET_LAYERS = ("to_q", "to_k", "to_v", "to_out.0")
_TEXT_LAYERS = ("q_proj", "k_proj", "v_proj", "out_proj")


def _kohya_layers(prefix: str, model: Any, ends: tuple[str, ...], text: bool) -> list[tuple]:
    layers = []
    for name, module in model.named_modules():
        if isinstance(module, torch.nn.Linear) and name.endswith(ends):
            # kohya names text-encoder layers from the transformers model's "text_model" root.
            path = name if not text or name.startswith("text_model") else f"text_model.{name}"
            layers.append((f"{prefix}_{path.replace('.', '_')}", module))
    return layers


def save_kohya_lora(
    path: Path, pipe: Any, seed: int = 0, rank: int = 4, scale: float = 0.1
) -> Path:
    """A LoRA in kohya/AUTOMATIC1111 naming (lora_unet_…, lora_te_… or lora_te1_/lora_te2_ for
    SDXL) for ``pipe``'s UNet and text encoders. ``scale`` keeps the changes of the order of the
    weights themselves, as a trained LoRA's are: far larger ones make the model chaotic, and a
    batched evaluation would then drift from a single one by more than rounding."""
    generator = torch.Generator().manual_seed(seed)
    layers = _kohya_layers("lora_unet", pipe.unet, _UNET_LAYERS, text=False)
    sdxl = getattr(pipe, "text_encoder_2", None) is not None
    layers += _kohya_layers(
        "lora_te1" if sdxl else "lora_te", pipe.text_encoder, _TEXT_LAYERS, True
    )
    if sdxl:
        layers += _kohya_layers("lora_te2", pipe.text_encoder_2, _TEXT_LAYERS, True)
    tensors = {}
    for key, module in layers:
        tensors[f"{key}.lora_down.weight"] = torch.randn(rank, module.in_features,
                                                         generator=generator) * scale  # fmt: skip
        tensors[f"{key}.lora_up.weight"] = torch.randn(module.out_features, rank,
                                                       generator=generator) * scale  # fmt: skip
        tensors[f"{key}.alpha"] = torch.tensor(float(rank))
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(path))
    return path


def save_embedding(path: Path, widths: tuple[int, ...], vectors: int = 2, seed: int = 0) -> Path:
    """An AUTOMATIC1111 safetensors embedding: ``emb_params`` for one encoder, ``clip_l`` and
    ``clip_g`` for SDXL's two."""
    generator = torch.Generator().manual_seed(seed)
    if len(widths) == 1:
        tensors = {"emb_params": torch.randn(vectors, widths[0], generator=generator)}
    else:
        tensors = {
            key: torch.randn(vectors, width, generator=generator)
            for key, width in zip(("clip_l", "clip_g"), widths)
        }
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(path))
    return path
